// The connection: lazy connect, state events, UNAVAILABLE when the bridge
// goes away, reconnection with backoff when it comes back on its port.

import { type AddressInfo, createServer, type Socket } from "node:net";

import { describe, expect, it } from "vitest";

import { ExampleServiceClient } from "./gen/example_wsgrpc.js";
import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, WebSocketGRPCClient } from "./gen/wsgrpc_runtime.js";
import { eventually, freePort, startServer } from "./support/server.js";
import { onCleanup, rpcError, server, transportFor } from "./support/harness.js";
import { testResponse } from "./support/responses.js";

describe("connecting", () => {
  it("the first call connects; connect() is there to do it early", async () => {
    const { bridgeUrl } = await server();
    const { transport, states } = transportFor(bridgeUrl);
    expect(transport.state).toBe("closed");
    await expect(new ExampleServiceClient(transport).sayHello({ name: "lazy" })).resolves.toEqual({
      message: "Hello lazy",
    });
    expect(states).toEqual(["connecting", "open"]);
    await transport.connect();
    expect(states).toEqual(["connecting", "open"]);
  });

  it("with nothing listening, calls and connect() fail with UNAVAILABLE", async () => {
    const port = await freePort();
    const { transport, states } = transportFor(`ws://127.0.0.1:${port}/ws`);
    const error = await rpcError(new ExampleServiceClient(transport).sayHello({}));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.codeName).toBe("UNAVAILABLE");
    expect((await rpcError(transport.connect())).code).toBe(Code.UNAVAILABLE);
    expect(transport.state).toBe("closed");
    expect(states).toEqual(["connecting", "closed", "connecting", "closed"]);
  });

  it("gives up after maxAttempts, backing off between attempts", async () => {
    const port = await freePort();
    const { transport, states } = transportFor(`ws://127.0.0.1:${port}/ws`, {
      reconnect: { initialDelayMs: 20, maxDelayMs: 40, maxAttempts: 3 },
    });
    const started = Date.now();
    expect((await rpcError(transport.connect())).code).toBe(Code.UNAVAILABLE);
    // Two waits: at least 10 + 20 ms with the jitter at its lowest.
    expect(Date.now() - started).toBeGreaterThanOrEqual(30);
    expect(states).toEqual(["connecting", "reconnecting", "closed"]);
  });

  it.runIf(typeof (globalThis as { WebSocket?: unknown }).WebSocket === "undefined")(
    "without a global WebSocket (Node 20), the constructor asks for one",
    () => {
      expect(() => new WebSocketGRPCClient("ws://127.0.0.1:1/ws")).toThrow(/WebSocket/);
    },
  );
});

describe("losing the bridge", () => {
  it("calls in flight fail with UNAVAILABLE when the server is killed", async () => {
    const killed = await server();
    // No reconnection, and so no session to resume (sessions.test.ts has that).
    const { transport, states } = transportFor(killed.bridgeUrl, { reconnect: false });
    const client = new TestServiceClient(transport);
    // rpcError() at once, so that the failures are handled when they come.
    const hanging = rpcError(client.hang({}));
    const streaming = rpcError(
      (async () => {
        for await (const _ of client.serverStream({ count: 1000, delayMs: 20 })) {
          // reading until the connection drops
        }
      })(),
    );
    await eventually(async () => Number((await client.stats({})).active ?? "0") === 2, "both calls are running");

    await killed.kill();
    for (const call of [hanging, streaming]) {
      const error = await call;
      expect(error.code).toBe(Code.UNAVAILABLE);
      expect(error.message).toMatch(/connection to the bridge closed/);
    }
    expect(transport.state).toBe("closed");
    expect(states).toEqual(["connecting", "open", "closed"]);
    // Nothing to reconnect to, and no reconnect configured.
    expect((await rpcError(client.unary({}))).code).toBe(Code.UNAVAILABLE);
  });

  it("reconnects with backoff when the bridge restarts on the same port", async () => {
    const port = await freePort();
    const bridgeAddr = `127.0.0.1:${port}`;
    const first = await startServer({ bridgeAddr });
    // Without a session, calls in flight fail at the drop; with one, they
    // wait to resume it (sessions.test.ts).
    const { transport, states } = transportFor(`ws://${bridgeAddr}/ws`, {
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
      session: false,
    });
    const client = new ExampleServiceClient(transport);
    await expect(client.sayHello({ name: "before" })).resolves.toEqual({ message: "Hello before" });
    const inFlight = rpcError(new TestServiceClient(transport).hang({}));

    await first.kill();
    expect((await inFlight).code).toBe(Code.UNAVAILABLE);
    await eventually(async () => transport.state === "reconnecting", "the client is reconnecting");

    // A call made while the bridge is down waits for the reconnection.
    const waiting = client.sayHello({ name: "after" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await server({ bridgeAddr });
    await expect(waiting).resolves.toEqual({ message: "Hello after" });
    expect(transport.state).toBe("open");
    expect(states[0]).toBe("connecting");
    expect(states.slice(1).filter((state) => state !== "reconnecting")).toEqual(["open", "open"]);
    expect(states).toContain("reconnecting");
  });

  it("close() fails open calls with CANCELLED; the next call connects again", async () => {
    const { bridgeUrl } = await server();
    const { transport, states } = transportFor(bridgeUrl);
    const client = new TestServiceClient(transport);
    const hanging = rpcError(client.hang({}));
    await transport.connect();
    transport.close();
    expect((await hanging).code).toBe(Code.CANCELLED);
    expect(transport.state).toBe("closed");
    await expect(client.unary({ text: "again" })).resolves.toEqual(testResponse({ text: "again" }));
    expect(states).toEqual(["connecting", "open", "closed", "connecting", "open"]);
  });

  it("close() while the handshake hangs stops the attempt", async () => {
    // Accepts connections and never answers the upgrade.
    const accepted: Socket[] = [];
    const silent = createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    onCleanup(() => {
      accepted.forEach((socket) => socket.destroy());
      return new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const { port } = silent.address() as AddressInfo;
    const { transport } = transportFor(`ws://127.0.0.1:${port}/ws`);
    const connecting = rpcError(transport.connect());
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(transport.state).toBe("connecting");
    transport.close();
    expect((await connecting).code).toBe(Code.CANCELLED);
    expect(transport.state).toBe("closed");
  });

  it("close() during the backoff stops reconnecting", async () => {
    const port = await freePort();
    const { transport } = transportFor(`ws://127.0.0.1:${port}/ws`, { reconnect: { initialDelayMs: 1000 } });
    const connecting = rpcError(transport.connect());
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(transport.state).toBe("reconnecting");
    transport.close();
    expect((await connecting).code).toBe(Code.CANCELLED);
    expect(transport.state).toBe("closed");
  });
});
