// Going away (docs/PROTOCOL.md, "Going away") as the client handles it,
// against the real bridge with a `max_connection_age`: calls in flight
// finish on the old socket, calls made after the goaway go to a new one
// under a new session key, and none fails across many goaways.

import { describe, expect, it } from "vitest";
import { type AddressInfo } from "node:net";

import WebSocket, { WebSocketServer } from "ws";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type TestRequest } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type MessageInit, RpcError, type WebSocketConstructor } from "./gen/wsgrpc_runtime.js";
import { onCleanup, transportFor } from "./support/harness.js";
import { serverWith } from "./support/server_flags.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sockets a transport opened: their URLs, the envelopes types they got, and how they closed. */
interface Opened {
  url: URL;
  received: string[];
  closeCode?: number;
}

function recordingSockets(sockets: Opened[]): WebSocketConstructor {
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      const opened: Opened = { url: new URL(url), received: [] };
      sockets.push(opened);
      this.on("message", (data: WebSocket.RawData) => {
        const parsed = JSON.parse(data.toString()) as unknown;
        for (const envelope of Array.isArray(parsed) ? parsed : [parsed]) {
          opened.received.push(String((envelope as { type?: unknown }).type));
        }
      });
      this.on("close", (code: number) => (opened.closeCode = code));
    }
  }
  return Recording as unknown as WebSocketConstructor;
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) {
    items.push(item);
  }
  return items;
}

async function* paced(count: number, everyMs: number): AsyncGenerator<MessageInit<TestRequest>> {
  for (let i = 0; i < count; i++) {
    await sleep(everyMs);
    yield { text: `m${i}` };
  }
}

describe("goaway", () => {
  it("finishes the calls in flight on the old socket and starts new ones on a new socket", async () => {
    const bridge = await serverWith({ maxConnectionAgeMs: 300 });
    const sockets: Opened[] = [];
    const { transport, states } = transportFor(bridge.bridgeUrl, { WebSocket: recordingSockets(sockets) });
    const client = new TestServiceClient(transport);
    await client.unary({ text: "first" });
    // 20 responses, 50 ms apart: a second, across several goaways.
    const stream = collect(client.serverStream({ text: "s", count: 20, delayMs: 50 }));
    await sleep(450);
    expect(sockets[0]!.received).toContain("goaway");
    const after = await client.unary({ text: "after" });
    expect(after.text).toBe("after");
    expect(sockets.length).toBeGreaterThanOrEqual(2);
    const items = await stream;
    expect(items.map((item) => item.index ?? 0)).toEqual([...Array(20).keys()]);
    // A new session for each new socket; the first closed by the bridge
    // once its stream ended, which resumed nothing.
    const keys = sockets.map((socket) => socket.url.searchParams.get("session"));
    expect(new Set(keys).size).toBe(keys.length);
    await sleep(100);
    expect(sockets[0]!.closeCode).toBe(1000);
    expect(sockets[0]!.received.filter((type) => type === "resume")).toHaveLength(1);
    expect(states).not.toContain("reconnecting");
    expect(transport.state).toBe("open");
  });

  it("fails no call over several goaways (a rolling restart)", async () => {
    const bridge = await serverWith({ maxConnectionAgeMs: 200 });
    const sockets: Opened[] = [];
    const { transport } = transportFor(bridge.bridgeUrl, { WebSocket: recordingSockets(sockets) });
    const client = new TestServiceClient(transport);
    const calls: Promise<unknown>[] = [];
    const streams = [
      collect(client.serverStream({ text: "a", count: 30, delayMs: 50 })).then((items) => expect(items).toHaveLength(30)),
      collect(client.serverStream({ text: "b", count: 100, delayMs: 10 })).then((items) => expect(items).toHaveLength(100)),
      client.clientStream(paced(20, 20)).then((response) => expect(response.text).toBeDefined()),
      collect(client.bidi(paced(10, 30))).then((items) => expect(items.length).toBeGreaterThan(0)),
    ];
    const started = Date.now();
    let i = 0;
    while (Date.now() - started < 3_000) {
      const text = `u${i++}`;
      calls.push(client.unary({ text }).then((response) => expect(response.text).toBe(text)));
      if (i % 50 === 0) {
        streams.push(client.clientStream([{ text: "x" }, { text: "y" }]).then((r) => expect(r).toBeDefined()));
      }
      await sleep(10);
    }
    const results = await Promise.allSettled([...calls, ...streams]);
    const failures = results.filter((result) => result.status === "rejected");
    expect(
      failures.map((failure) => {
        const reason = (failure as PromiseRejectedResult).reason as unknown;
        return reason instanceof RpcError ? `${reason.codeName}: ${reason.message}` : String(reason);
      }),
    ).toEqual([]);
    expect(calls.length).toBeGreaterThan(100);
    // Several goaways took place.
    expect(sockets.length).toBeGreaterThanOrEqual(5);
    expect(sockets.filter((socket) => socket.received.includes("goaway")).length).toBeGreaterThanOrEqual(4);
  });

  it("sends a client stream whose request crossed the goaway again, its input with it, on the next socket", async () => {
    // A scripted v2 bridge: the first socket refuses the stream as a
    // bridge that just sent the socket away does; the second answers it.
    const server = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => "wsgrpc.v2" });
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    const received: Record<string, unknown>[][] = [];
    const reason = "the socket reached its maximum age; open a new one";
    server.on("connection", (socket) => {
      const index = received.length;
      const envelopes: Record<string, unknown>[] = [];
      received.push(envelopes);
      socket.send(
        JSON.stringify([
          { type: "settings", maxFrameBytes: 65536, maxCallsPerConnection: 4, callQueueMessages: 64, windowBytes: 262144, connectionWindowBytes: 1048576 },
        ]),
      );
      socket.on("message", (data: WebSocket.RawData) => {
        for (const envelope of JSON.parse(data.toString()) as Record<string, unknown>[]) {
          envelopes.push(envelope);
          const id = envelope["id"];
          const ended = envelope["type"] === "end" || (envelope["type"] === "message" && envelope["end"] === true);
          if (!ended) {
            continue;
          }
          if (index === 0) {
            socket.send(
              JSON.stringify([
                { type: "goaway", reason },
                { type: "response", id, error: reason, code: 14, codeName: "UNAVAILABLE", end: true, unprocessed: true },
              ]),
            );
          } else {
            const texts = envelopes
              .filter((e) => e["id"] === id)
              .flatMap((e) => ((e["payloads"] as { text: string }[] | undefined) ?? []).map((p) => p.text));
            socket.send(JSON.stringify([{ type: "response", id, payload: { text: texts.join(" ") }, end: true }]));
          }
        }
      });
    });
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`;
    const { transport } = transportFor(url, { session: false });
    const client = new TestServiceClient(transport);
    const response = await client.clientStream([{ text: "a" }, { text: "b" }, { text: "c" }]);
    expect(response.text).toBe("a b c");
    expect(received).toHaveLength(2);
    expect(received[1]!.filter((e) => e["type"] === "request")).toHaveLength(1);
    // A call made after the goaway goes to the second socket too.
    const later = client.clientStream([{ text: "d" }]);
    expect((await later).text).toBe("d");
    expect(received).toHaveLength(2);
  });
});
