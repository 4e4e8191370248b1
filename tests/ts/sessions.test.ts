// Sessions (docs/PROTOCOL.md, "Sessions: calls that survive a dropped
// socket") as the client keeps them: against a scripted bridge for the
// exact envelopes, and against the real bridge behind a proxy that cuts
// every connection through it.

import { type IncomingMessage } from "node:http";
import { type AddressInfo } from "node:net";

import { describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, type ClientOptions } from "./gen/wsgrpc_runtime.js";
import { CuttingProxy } from "./support/cutting_proxy.js";
import { onCleanup, rpcError, server, transportFor } from "./support/harness.js";
import { testResponse } from "./support/responses.js";
import { eventually, freePort, startServer, within } from "./support/server.js";

type Envelope = Record<string, unknown>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const KEY = /^[A-Za-z0-9_-]{22}$/;
// Quick to reconnect, for tests.
const FAST: ClientOptions = { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } };

/** One socket the scripted bridge accepted: its URL, and what came over it. */
interface ScriptedSocket {
  readonly url: URL;
  readonly socket: WebSocket;
  readonly frames: Envelope[][];
  /** Every envelope received, in order. */
  readonly received: Envelope[];
  closeCode?: number;
}

/**
 * A v2 bridge that offers windows in bytes and says what `greet` tells it
 * after its settings (a `resume`, or nothing); a test answers the rest.
 */
class ScriptedBridge {
  readonly server: WebSocketServer;
  readonly sockets: ScriptedSocket[] = [];
  greet: (url: URL, index: number) => Envelope[] = () => [{ type: "resume", received: null, reason: "no such session" }];
  script: (envelope: Envelope, socket: ScriptedSocket) => void = () => {};

  private constructor(server: WebSocketServer) {
    this.server = server;
    server.on("connection", (socket: WebSocket, request: IncomingMessage) => {
      const url = new URL(request.url ?? "/", "ws://127.0.0.1");
      const entry: ScriptedSocket = { url, socket, frames: [], received: [] };
      this.sockets.push(entry);
      socket.on("close", (code) => (entry.closeCode = code));
      socket.send(
        JSON.stringify([
          { type: "settings", maxFrameBytes: 65536, maxCallsPerConnection: 100, callQueueMessages: 64, windowBytes: 1 << 20, connectionWindowBytes: 4 << 20 },
          ...this.greet(url, this.sockets.length - 1),
        ]),
      );
      socket.on("message", (data) => {
        const frame = JSON.parse(data.toString()) as Envelope[];
        entry.frames.push(frame);
        for (const envelope of frame) {
          entry.received.push(envelope);
          this.script(envelope, entry);
        }
      });
    });
  }

  static async start(): Promise<ScriptedBridge> {
    const server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => (protocols.has("wsgrpc.v2") ? "wsgrpc.v2" : false),
    });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    onCleanup(async () => {
      for (const client of server.clients) {
        client.terminate();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return new ScriptedBridge(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/ws`;
  }

  get last(): ScriptedSocket {
    return this.sockets[this.sockets.length - 1]!;
  }
}

const send = (socket: ScriptedSocket, ...envelopes: Envelope[]) => socket.socket.send(JSON.stringify(envelopes));
const ofType = (envelopes: Envelope[], type: string) => envelopes.filter((envelope) => envelope["type"] === type);
const counted = (envelopes: Envelope[]) =>
  envelopes.filter((envelope) => !["settings", "resume", "ack", "ping", "pong"].includes(envelope["type"] as string));

describe("against a scripted bridge", () => {
  it("names the session in the socket's URL, 22 characters of base64url beside the URL's own query, one key per client", async () => {
    const bridge = await ScriptedBridge.start();
    const first = transportFor(`${bridge.url}?token=abc`).transport;
    const second = transportFor(bridge.url).transport;
    await first.connect();
    await second.connect();
    const [a, b] = bridge.sockets;
    expect(a!.url.searchParams.get("token")).toBe("abc");
    expect(a!.url.searchParams.get("session")).toMatch(KEY);
    expect(b!.url.searchParams.get("session")).toMatch(KEY);
    expect(a!.url.searchParams.get("session")).not.toBe(b!.url.searchParams.get("session"));
    // A first socket's `resume: null` is no failure: there was nothing to resume.
    expect(first.state).toBe("open");

    // No session where there is to be no reconnection, or no session.
    await transportFor(bridge.url, { reconnect: false }).transport.connect();
    await transportFor(bridge.url, { session: false }).transport.connect();
    expect(bridge.sockets[2]!.url.searchParams.has("session")).toBe(false);
    expect(bridge.sockets[3]!.url.searchParams.has("session")).toBe(false);
  });

  it("against a bridge that says no `resume` (one without sessions), counts nothing, and a drop fails the calls at once", async () => {
    const bridge = await ScriptedBridge.start();
    bridge.greet = () => [];
    // Sessions on (the default), reconnection not configured.
    const { transport, states } = transportFor(bridge.url);
    const reading = rpcError(
      (async () => {
        for await (const _ of transport.serverStream("p.S/Stream", {})) {
          // until the drop
        }
      })(),
    );
    await eventually(async () => bridge.sockets.length === 1 && ofType(bridge.last.received, "request").length === 1, "the request");
    const socket = bridge.last;
    const id = ofType(socket.received, "request")[0]!["id"];
    send(socket, ...Array.from({ length: 300 }, (_, n) => ({ type: "response", id, payloads: [{ n }], bytes: 24 })));
    await sleep(150);
    expect(ofType(socket.received, "ack")).toEqual([]);
    socket.socket.terminate();
    const error = await within(reading, "the call to fail");
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.message).toBe("the connection to the bridge closed (code 1006)");
    expect(states).toEqual(["connecting", "open", "closed"]);
  });

  it("acknowledges at once after 256 envelopes, else 100 ms after the first it has not, beside other envelopes", async () => {
    const bridge = await ScriptedBridge.start();
    const { transport } = transportFor(bridge.url);
    const reading = (async () => {
      const items = [];
      for await (const item of transport.serverStream("p.S/Stream", {})) {
        items.push(item);
      }
      return items;
    })();
    await eventually(async () => bridge.sockets.length === 1 && ofType(bridge.last.received, "request").length === 1, "the request");
    const socket = bridge.last;
    const id = ofType(socket.received, "request")[0]!["id"];
    const response = (n: number) => ({ type: "response", id, payloads: [{ n }], bytes: 24 });
    send(socket, ...Array.from({ length: 300 }, (_, n) => response(n)));
    await eventually(async () => ofType(socket.received, "ack").length > 0, "an acknowledgement");
    expect(ofType(socket.received, "ack")[0]).toEqual({ type: "ack", received: 300 });
    const sentAt = performance.now();
    send(socket, response(300));
    await eventually(async () => ofType(socket.received, "ack").length > 1, "the second acknowledgement");
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(90);
    expect(ofType(socket.received, "ack")[1]).toEqual({ type: "ack", received: 301 });
    send(socket, { type: "response", id, end: true });
    expect(await reading).toHaveLength(301);
    // Settings, resume and ping are not counted: neither they nor the
    // envelopes the client sends (its request, its credit) are acknowledged.
    for (const frame of socket.frames) {
      const acks = ofType(frame, "ack");
      expect(acks.length).toBeLessThanOrEqual(1);
      if (acks.length === 1 && frame.length > 1) {
        // Where an ack rides with other envelopes, it goes first.
        expect(frame[0]!["type"]).toBe("ack");
      }
    }
  });

  it("resumes after a drop: its settings and resume first, then every envelope after what the bridge received, in order", async () => {
    const bridge = await ScriptedBridge.start();
    bridge.greet = (_url, index) =>
      index === 0 ? [{ type: "resume", received: null, reason: "no such session" }] : [{ type: "resume", received: 2 }];
    const { transport, states } = transportFor(bridge.url, FAST);
    // A client stream that waits between messages, so that some go before the drop and some after.
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* input() {
      yield { n: 1 };
      yield { n: 2 };
      await gate;
      yield { n: 3 };
    }
    const streaming = transport.clientStream("p.S/Collect", input());
    const unary = transport.unary("p.S/Hello", { name: "a" });
    await eventually(async () => bridge.sockets.length === 1 && counted(bridge.last.received).length === 3, "the requests and the first input");
    const first = bridge.last;
    // One envelope the client gets before the drop: it says so on resume.
    const [collect, hello] = ofType(first.received, "request").map((envelope) => envelope["id"]);
    expect(counted(first.received).map((e) => e["type"])).toEqual(["request", "request", "message"]);
    send(first, { type: "credit", id: collect, bytes: 100 });
    await sleep(20);
    first.socket.terminate();
    await eventually(async () => states.includes("reconnecting"), "the client is reconnecting");
    release();
    await eventually(async () => bridge.sockets.length === 2 && bridge.last.frames.length > 0, "the new socket's first frame");
    const second = bridge.last;
    expect(second.url.searchParams.get("session")).toBe(first.url.searchParams.get("session"));
    const [settings, resume, ...rest] = second.received;
    expect(settings!["type"]).toBe("settings");
    expect(resume).toEqual({ type: "resume", received: 1 });
    // The bridge received 2 (the requests): the stream's first input goes
    // again, as it was, then what was sent since, in order.
    await eventually(async () => counted(second.received).some((e) => e["type"] === "message" && e["end"] === true), "the rest of the input");
    expect(counted(rest)[0]).toEqual(counted(first.received)[2]);
    const messages = ofType(second.received, "message");
    expect(messages.flatMap((e) => e["payloads"] as unknown[])).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(ofType(second.received, "request")).toEqual([]);
    send(second, { type: "response", id: hello, payload: { message: "hello a" }, end: true }, { type: "response", id: collect, payload: { count: 3 }, end: true });
    await expect(unary).resolves.toEqual({ message: "hello a" });
    await expect(streaming).resolves.toEqual({ count: 3 });
    expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
  });

  it("a refused resume fails the open calls with UNAVAILABLE and the bridge's reason; a new session takes new calls", async () => {
    const bridge = await ScriptedBridge.start();
    bridge.greet = () => [{ type: "resume", received: null, reason: "the grace period ran out" }];
    bridge.script = (envelope, socket) => {
      if (envelope["type"] === "request" && envelope["method"] === "p.S/Hello") {
        send(socket, { type: "response", id: envelope["id"], payload: { message: "hi" }, end: true });
      }
    };
    const { transport, states } = transportFor(bridge.url, FAST);
    const hanging = rpcError(transport.unary("p.S/Hang", {}));
    await eventually(async () => bridge.sockets.length === 1 && ofType(bridge.last.received, "request").length === 1, "the request");
    const first = bridge.last;
    first.socket.terminate();
    const error = await within(hanging, "the call to fail");
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.message).toMatch(/connection to the bridge closed/);
    expect(error.message).toMatch(/the grace period ran out/);
    await expect(transport.unary("p.S/Hello", {})).resolves.toEqual({ message: "hi" });
    // The socket that could not resume was closed with 1000 (ending the
    // bridge's fresh session under the old key); a new key took its place.
    expect(bridge.sockets).toHaveLength(3);
    await eventually(async () => bridge.sockets[1]!.closeCode === 1000, "the refused socket closed");
    const keys = bridge.sockets.map((socket) => socket.url.searchParams.get("session"));
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).toMatch(KEY);
    expect(keys[2]).not.toBe(keys[0]);
    expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
  });

  it("holds a client stream's input while what the bridge has not acknowledged passes maxUnacknowledgedBytes, and lets it go on ack", async () => {
    const bridge = await ScriptedBridge.start();
    const { transport } = transportFor(bridge.url, { session: { maxUnacknowledgedBytes: 1_000 } });
    const count = 2_000;
    const inputs = Array.from({ length: count }, (_, n) => ({ text: "x".repeat(100), n }));
    const streaming = transport.clientStream("p.S/Collect", inputs);
    const messages = (socket: ScriptedSocket) => ofType(socket.received, "message").flatMap((e) => e["payloads"] as unknown[]);
    await eventually(async () => bridge.sockets.length === 1 && messages(bridge.last).length > 0, "the first input");
    const socket = bridge.last;
    await sleep(200);
    // A frame went (the client fills one before it sends), then nothing
    // more: what it keeps is past its bound until the bridge acknowledges.
    const held = messages(socket).length;
    expect(held).toBeLessThan(count);
    const acknowledge = () => send(socket, { type: "ack", received: counted(socket.received).length });
    acknowledge();
    await eventually(async () => messages(socket).length > held, "more input after the ack");
    while (!socket.received.some((e) => e["end"] === true)) {
      acknowledge();
      await sleep(20);
    }
    expect(messages(socket)).toEqual(inputs);
    const id = ofType(socket.received, "request")[0]!["id"];
    send(socket, { type: "response", id, payload: { count }, end: true });
    await expect(streaming).resolves.toEqual({ count });
  });

  it("a client closed while it resumes fails its calls with CANCELLED, ends the session with 1000, and stops", async () => {
    const bridge = await ScriptedBridge.start();
    const { transport } = transportFor(bridge.url, { reconnect: { initialDelayMs: 5_000 } });
    const hanging = rpcError(transport.unary("p.S/Hang", {}));
    await eventually(async () => bridge.sockets.length === 1 && ofType(bridge.last.received, "request").length === 1, "the request");
    bridge.last.socket.terminate();
    await eventually(async () => transport.state === "reconnecting", "the client is reconnecting");
    transport.close();
    expect((await hanging).code).toBe(Code.CANCELLED);
    expect(transport.state).toBe("closed");
    // One socket under the session's key, closed at once with 1000: the
    // bridge cancels the calls it kept for the session.
    await eventually(async () => bridge.sockets[1]?.closeCode === 1000, "the session ended");
    const keys = bridge.sockets.map((socket) => socket.url.searchParams.get("session"));
    expect(keys[1]).toBe(keys[0]);
    expect(bridge.sockets[1]!.received).toEqual([]);
    await sleep(50);
    expect(bridge.sockets).toHaveLength(2);
    // A later call starts another session.
    await transport.connect();
    expect(bridge.sockets[2]!.url.searchParams.get("session")).not.toBe(keys[0]);
  });
});

  it("a client closed with an acknowledgement on its way takes it as no protocol error", async () => {
    const bridge = await ScriptedBridge.start();
    const errors: string[] = [];
    const { transport } = transportFor(bridge.url, { onProtocolError: (error) => errors.push(error.message) });
    const hanging = rpcError(transport.unary("p.S/Hang", {}));
    await eventually(async () => bridge.sockets.length === 1 && ofType(bridge.last.received, "request").length === 1, "the request");
    // The bridge acknowledges the request as the page closes the client:
    // the ack arrives on a socket that is closing, for what is forgotten.
    send(bridge.last, { type: "ack", received: 1 });
    transport.close();
    expect((await hanging).code).toBe(Code.CANCELLED);
    await eventually(async () => bridge.last.closeCode === 1000, "the socket closed");
    await sleep(20);
    expect(errors).toEqual([]);
  });

/** The real bridge and backend, reached through a proxy that cuts. */
async function throughProxy(options: ClientOptions = FAST) {
  const bridge = await server();
  const proxy = await CuttingProxy.start(bridge.bridgeUrl);
  onCleanup(() => proxy.close());
  const { transport, states } = transportFor(proxy.url(bridge.bridgeUrl), options);
  return { bridge, proxy, transport, states, client: new TestServiceClient(transport) };
}

describe("against the real bridge, through a proxy that cuts every connection", () => {
  it("a server stream of 100,000 messages cut three times arrives whole: in order, none twice", async () => {
    const { proxy, client, states } = await throughProxy();
    const cuts = new Set([20_000, 50_000, 80_000]);
    let next = 0;
    for await (const item of client.serverStream({ text: "m", count: 100_000 })) {
      expect(item.index ?? 0).toBe(next);
      next += 1;
      if (cuts.has(next)) {
        proxy.cut();
      }
    }
    expect(next).toBe(100_000);
    expect(proxy.cuts).toBe(3);
    expect(proxy.accepted).toBe(4);
    expect(states.filter((state) => state === "reconnecting")).toHaveLength(3);
  }, 60_000);

  it("a client stream of 20,000 messages cut twice reaches the backend whole", async () => {
    const { proxy, client } = await throughProxy();
    const count = 20_000;
    async function* input() {
      for (let i = 0; i < count; i += 1) {
        if (i === 5_000 || i === 12_000) {
          // After a pause, so that what went before is on the wire.
          await sleep(20);
          proxy.cut();
        }
        yield { big: String(i) };
      }
    }
    const response = await client.clientStream(input());
    expect(response.index).toBe(count);
    expect(response.sum).toBe(String((count * (count - 1)) / 2));
    expect(proxy.cuts).toBe(2);
  }, 60_000);

  it("a bidi stream and unary calls beside it go on while the socket is cut every 40 ms, in the middle of resumes too", async () => {
    const { proxy, client } = await throughProxy({ reconnect: { initialDelayMs: 1, maxDelayMs: 20 } });
    await client.unary({});
    const count = 10_000;
    let done = false;
    const cutter = setInterval(() => proxy.cut(), 40);
    onCleanup(() => clearInterval(cutter));
    async function* input() {
      for (let i = 0; i < count; i += 1) {
        if (i % 250 === 0) {
          await sleep(10);
        }
        yield { text: String(i) };
      }
    }
    const unaries = (async () => {
      let n = 0;
      while (!done) {
        await expect(client.unary({ text: `u${n}` })).resolves.toEqual(testResponse({ text: `u${n}` }));
        n += 1;
      }
      return n;
    })();
    let next = 0;
    for await (const item of client.bidi(input())) {
      expect(item.text).toBe(String(next));
      next += 1;
    }
    done = true;
    clearInterval(cutter);
    expect(next).toBe(count);
    expect(await unaries).toBeGreaterThan(0);
    expect(proxy.cuts).toBeGreaterThanOrEqual(3);
    console.log(`bidi of ${count} messages and ${await unaries} unary calls through ${proxy.cuts} cuts`);
  }, 60_000);

  it("a unary call started just before a cut resolves", async () => {
    const { proxy, client, transport } = await throughProxy();
    await client.unary({});
    // Sent, with the backend taking its time, then cut.
    const sent = client.unary({ text: "sent", delayMs: 200 });
    await sleep(20);
    proxy.cut();
    // Not yet written when the socket goes: it waits for the new one.
    const queued = client.unary({ text: "queued" });
    proxy.cut();
    await expect(within(sent, "the call sent before the cut")).resolves.toEqual(testResponse({ text: "sent" }));
    await expect(within(queued, "the call made at the cut")).resolves.toEqual(testResponse({ text: "queued" }));
    expect(transport.state).toBe("open");
  });

  it("a resume the bridge refuses fails the calls with UNAVAILABLE and its reason; new calls work", async () => {
    const { proxy, client, transport } = await throughProxy();
    const other = await server();
    const hanging = rpcError(client.hang({}));
    const streaming = rpcError(
      (async () => {
        for await (const _ of client.serverStream({ count: 1000, delayMs: 20 })) {
          // reading until the session ends
        }
      })(),
    );
    await eventually(async () => Number((await client.stats({})).active ?? "0") === 2, "both calls are running");
    // The next socket reaches another bridge, which has no such session.
    proxy.retarget(other.bridgeUrl);
    proxy.cut();
    for (const call of [hanging, streaming]) {
      const error = await within(call, "a call of the lost session to fail");
      expect(error.code).toBe(Code.UNAVAILABLE);
      expect(error.message).toMatch(/connection to the bridge closed/);
      expect(error.message).toMatch(/no session with this key/);
    }
    await expect(client.unary({ text: "after" })).resolves.toEqual(testResponse({ text: "after" }));
    expect(transport.state).toBe("open");
  });

  it("close() while the client waits to resume cancels the session's calls at the backend at once", async () => {
    const { bridge, proxy, client, transport } = await throughProxy({ reconnect: { initialDelayMs: 10_000 } });
    const direct = new TestServiceClient(transportFor(bridge.bridgeUrl, { session: false }).transport);
    const hanging = rpcError(client.hang({}));
    await eventually(async () => Number((await direct.stats({})).active ?? "0") === 1, "the call is running");
    proxy.cut();
    await eventually(async () => transport.state === "reconnecting", "the client is reconnecting");
    // The bridge keeps the call for the session meanwhile.
    expect(Number((await direct.stats({})).active ?? "0")).toBe(1);
    transport.close();
    expect((await hanging).code).toBe(Code.CANCELLED);
    await eventually(async () => Number((await direct.stats({})).active ?? "0") === 0, "the backend's call is cancelled", 2_000);
  });

  it("with the bridge gone, the calls fail with UNAVAILABLE once resumeWithinMs has passed", async () => {
    const port = await freePort();
    const killed = await startServer({ bridgeAddr: `127.0.0.1:${port}` });
    onCleanup(() => killed.kill());
    const { transport, states } = transportFor(killed.bridgeUrl, { session: { resumeWithinMs: 1_000 } });
    const client = new TestServiceClient(transport);
    const hanging = rpcError(client.hang({}));
    await eventually(async () => Number((await client.stats({})).active ?? "0") === 1, "the call is running");
    const killedAt = performance.now();
    await killed.kill();
    const error = await within(hanging, "the call to fail", 5_000);
    expect(performance.now() - killedAt).toBeGreaterThanOrEqual(900);
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.message).toMatch(/connection to the bridge closed .* could not be resumed within 1000 ms/);
    // No reconnect configured: once the session is given up, the client closes.
    expect(transport.state).toBe("closed");
    expect(states).toEqual(["connecting", "open", "reconnecting", "closed"]);
  });
});
