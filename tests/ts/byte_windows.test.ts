// Windows in bytes (docs/PROTOCOL.md, "Windows in bytes") as the client
// keeps them: against a scripted v2 bridge for exact envelopes, and
// against the real bridge once it offers them.

import { type AddressInfo } from "node:net";

import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

import { type TestRequest, TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type ClientOptions, type MessageInit } from "./gen/wsgrpc_runtime.js";
import { onCleanup, server, transportFor } from "./support/harness.js";
import { envelopesOf, type Frames, recordingWebSocket } from "./support/recording.js";
import { eventually } from "./support/server.js";

type Envelope = Record<string, unknown>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A v2 bridge whose settings offer windows in bytes, answering as `script` says. */
class ScriptedBridge {
  readonly server: WebSocketServer;
  /** Every envelope received, in order, and the frames they came in. */
  readonly received: Envelope[] = [];
  readonly frames: Envelope[][] = [];
  socket: WebSocket | undefined;
  script: (envelope: Envelope) => void = () => {};

  private constructor(server: WebSocketServer, settings: Envelope) {
    this.server = server;
    server.on("connection", (socket) => {
      this.socket = socket;
      socket.send(JSON.stringify([{ type: "settings", ...settings }]));
      socket.on("message", (data) => {
        const frame = JSON.parse(data.toString()) as Envelope[];
        this.frames.push(frame);
        for (const envelope of frame) {
          this.received.push(envelope);
          this.script(envelope);
        }
      });
    });
  }

  static async start(settings: Envelope): Promise<ScriptedBridge> {
    const server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => (protocols.has("wsgrpc.v2") ? "wsgrpc.v2" : false),
    });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    const bridge = new ScriptedBridge(server, {
      maxFrameBytes: 65536,
      maxCallsPerConnection: 100,
      callQueueMessages: 64,
      ...settings,
    });
    onCleanup(async () => {
      for (const client of server.clients) {
        client.terminate();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return bridge;
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/ws`;
  }

  send(...envelopes: Envelope[]): void {
    this.socket?.send(JSON.stringify(envelopes));
  }

  /** The credit the client granted: per call id, and the socket's under "". */
  credits(): Map<string, number[]> {
    const credits = new Map<string, number[]>();
    for (const envelope of this.received) {
      if (envelope["type"] === "credit") {
        expect(envelope["messages"]).toBeUndefined();
        const key = typeof envelope["id"] === "string" ? envelope["id"] : "";
        credits.set(key, [...(credits.get(key) ?? []), envelope["bytes"] as number]);
      }
    }
    return credits;
  }

  messagesOf(id: unknown): unknown[] {
    return this.received
      .filter((envelope) => envelope["type"] === "message" && envelope["id"] === id)
      .flatMap((envelope) => (envelope["payloads"] as unknown[] | undefined) ?? [envelope["payload"]]);
  }
}

function client(bridge: ScriptedBridge, options: ClientOptions = {}) {
  return transportFor(bridge.url, options).transport;
}

const sum = (values: number[] | undefined) => (values ?? []).reduce((a, b) => a + b, 0);

describe("against a bridge that offers windows in bytes", () => {
  let bridge: ScriptedBridge;
  afterEach(() => {
    bridge.script = () => {};
  });

  it("takes them with its settings first, asks windowBytes of a stream and gives back in bytes, per call and per socket", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 1000, connectionWindowBytes: 4000 });
    // At its maximum from the start: no pings in this test.
    const transport = client(bridge, { initialWindowBytes: 400, maxWindowBytes: 400 });
    const run = (n: number) => Array.from({ length: n }, (_, index) => ({ text: "x".repeat(10), index }));
    bridge.script = (envelope) => {
      if (envelope["type"] === "request") {
        bridge.send({ type: "response", id: envelope["id"], payloads: run(4), bytes: 120 });
      }
      const id = bridge.received.find((e) => e["type"] === "request")?.["id"];
      if (envelope["type"] === "credit" && envelope["id"] === id) {
        const granted = sum(bridge.credits().get(id as string));
        if (granted === 120) {
          bridge.send({ type: "response", id, payloads: run(4), bytes: 120 });
        } else if (granted === 240) {
          bridge.send({ type: "response", id, payloads: run(2), bytes: 100, end: true });
        }
      }
    };
    const received = [];
    for await (const message of transport.serverStream("p.S/Stream", { n: 1 })) {
      received.push(message);
    }
    expect(received).toHaveLength(10);
    const [first] = bridge.frames;
    // With the JSON form the generated types rely on: fields at their defaults.
    expect(first?.[0]).toEqual({ type: "settings", connectionWindowBytes: 400, json: { emitDefaults: true } });
    const request = bridge.received.find((envelope) => envelope["type"] === "request");
    expect(request?.["windowBytes"]).toBe(400);
    expect(request?.["window"]).toBeUndefined();
    const id = request?.["id"] as string;
    expect(bridge.credits().get(id)).toEqual([120, 120]);
    // The socket gets back all 340 bytes, a quarter of its window or more
    // at a time: what the reader took, and what the call held when it ended.
    await eventually(async () => sum(bridge.credits().get("")) === 340, "the socket's credit");
    expect(bridge.credits().get("")).toEqual([120, 120, 100]);
    expect(bridge.received.some((envelope) => envelope["type"] === "ping")).toBe(false);
  });

  it("answers ping with pong and the same data", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 1000, connectionWindowBytes: 4000 });
    const transport = client(bridge);
    await transport.connect();
    await eventually(async () => bridge.socket !== undefined, "the connection");
    bridge.send({ type: "ping", data: 42 });
    await eventually(async () => bridge.received.some((e) => e["type"] === "pong"), "the pong");
    expect(bridge.received.find((e) => e["type"] === "pong")).toEqual({ type: "pong", data: 42 });
  });

  it("sends a client stream's input while the call's and the socket's windows are above zero, and waits at zero", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 100, connectionWindowBytes: 250 });
    const transport = client(bridge);
    // 34 bytes each as JSON, which count 50 against the windows.
    const inputs = Array.from({ length: 20 }, (_, n) => ({ text: String(n % 10).repeat(23) }));
    expect(JSON.stringify(inputs[0]).length).toBe(34);
    bridge.script = (envelope) => {
      if (envelope["end"] === true || envelope["type"] === "end") {
        bridge.send({ type: "response", id: envelope["id"], payload: { count: 20 }, end: true });
      }
    };
    const answer = transport.clientStream("p.S/Collect", inputs);
    const id = () => bridge.received.find((envelope) => envelope["type"] === "request")?.["id"];
    const sent = () => bridge.messagesOf(id()).length;
    // Call 100, socket 250: two messages take the call's window to 0.
    await eventually(async () => sent() === 2, "two messages");
    await sleep(100);
    expect(sent()).toBe(2);
    bridge.send({ type: "credit", id: id(), bytes: 90 });
    // Call 90: two more, the second while 40 were left, to −10.
    await eventually(async () => sent() === 4, "four messages");
    await sleep(100);
    expect(sent()).toBe(4);
    bridge.send({ type: "credit", id: id(), bytes: 1000 });
    // The socket, at 50, lets one more go, to 0.
    await eventually(async () => sent() === 5, "five messages");
    await sleep(100);
    expect(sent()).toBe(5);
    bridge.send({ type: "credit", bytes: 1000 });
    await expect(answer).resolves.toEqual({ count: 20 });
    expect(bridge.messagesOf(id())).toEqual(inputs);
    // In `payloads`, never one envelope per message.
    expect(bridge.received.some((envelope) => envelope["type"] === "message" && "payload" in envelope)).toBe(false);
  });

  it("sends no ping for a trickle of small messages: a window could not grow from it", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 1000, connectionWindowBytes: 4000 });
    const transport = client(bridge);
    bridge.script = (envelope) => {
      if (envelope["type"] === "message") {
        const [payload] = envelope["payloads"] as unknown[];
        // The input's credit back, as the backend takes it, and the answer.
        const cost = JSON.stringify(payload).length + 16;
        bridge.send({ type: "credit", id: envelope["id"], bytes: cost }, { type: "credit", bytes: cost });
        bridge.send({ type: "response", id: envelope["id"], payloads: [payload], bytes: 40 });
      }
      if (envelope["type"] === "end") {
        bridge.send({ type: "response", id: envelope["id"], end: true });
      }
    };
    async function* pingPong(): AsyncGenerator<{ n: number }> {
      for (let n = 0; n < 50; n++) {
        yield { n };
        await sleep(1);
      }
    }
    let answers = 0;
    for await (const _ of transport.bidiStream("p.S/Chat", pingPong())) {
      answers += 1;
    }
    expect(answers).toBe(50);
    expect(bridge.received.some((envelope) => envelope["type"] === "ping")).toBe(false);
  });

  it("a stream that ends with input not yet sent gives the socket's window back, and sends none of it", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 100_000, connectionWindowBytes: 1000 });
    const transport = client(bridge);
    await transport.connect();
    bridge.script = (envelope) => {
      if (envelope["end"] === true || envelope["type"] === "end") {
        bridge.send({ type: "response", id: envelope["id"], payload: {}, end: true });
      }
    };
    // 34 bytes each as JSON, 50 against the windows.
    const input = (n: number) => ({ text: String(n % 10).repeat(23) });
    const abort = new AbortController();
    // Ten messages, then an abort in the same task, before any of it goes.
    const aborted: Iterable<{ text: string }> = {
      *[Symbol.iterator]() {
        for (let n = 0; n < 10; n++) {
          yield input(n);
        }
        abort.abort();
        yield input(10);
      },
    };
    const first = transport.clientStream("p.S/Collect", aborted, { signal: abort.signal });
    await expect(first).rejects.toMatchObject({ codeName: "CANCELLED" });
    // Fifteen more on another call: 750 of the socket's 1000, which the
    // bridge never tops up; without the 500 back, only ten would go.
    const second = transport.clientStream("p.S/Collect", Array.from({ length: 15 }, (_, n) => input(n)));
    await expect(second).resolves.toEqual({});
    const [firstId, secondId] = bridge.received.filter((e) => e["type"] === "request").map((e) => e["id"]);
    expect(bridge.messagesOf(firstId)).toEqual([]);
    expect(bridge.messagesOf(secondId)).toHaveLength(15);
  });

  it("grows a stream's window while a round trip's data comes near it, up to maxWindowBytes", async () => {
    bridge = await ScriptedBridge.start({ windowBytes: 1000, connectionWindowBytes: 4000 });
    const transport = client(bridge, { initialWindowBytes: 1000, maxWindowBytes: 4000 });
    // The bridge's view of the stream's window: it sends all of it at once,
    // in one envelope, whenever it is open; the client's credit reopens it.
    let window = 0;
    let largest = 0;
    let rounds = 0;
    let id: unknown;
    const sendWindow = () => {
      if (window <= 0) {
        return;
      }
      rounds += 1;
      const bytes = window;
      window = 0;
      bridge.send({ type: "response", id, payloads: [{ round: rounds }], bytes, ...(rounds === 12 ? { end: true } : {}) });
    };
    bridge.script = (envelope) => {
      if (envelope["type"] === "ping") {
        bridge.send({ type: "pong", data: envelope["data"] });
      } else if (envelope["type"] === "request") {
        id = envelope["id"];
        window = envelope["windowBytes"] as number;
        largest = window;
        sendWindow();
      } else if (envelope["type"] === "credit" && envelope["id"] === id) {
        window += envelope["bytes"] as number;
        largest = Math.max(largest, window);
        if (rounds < 12) {
          // Once the client's credits of this frame are all in.
          setTimeout(sendWindow, 5);
        }
      }
    };
    let read = 0;
    for await (const _ of transport.serverStream("p.S/Stream", {})) {
      read += 1;
    }
    expect(read).toBe(12);
    expect(bridge.received.some((envelope) => envelope["type"] === "ping")).toBe(true);
    expect(largest).toBe(4000);
    // A stream started now asks for the grown window at once.
    bridge.script = (envelope) => {
      if (envelope["type"] === "request") {
        bridge.send({ type: "response", id: envelope["id"], end: true });
      }
    };
    for await (const _ of transport.serverStream("p.S/Stream", {})) {
      // nothing
    }
    const requests = bridge.received.filter((envelope) => envelope["type"] === "request");
    expect(requests[1]?.["windowBytes"]).toBe(4000);
  });
});

/** Whether the real bridge's settings offer windows in bytes. */
async function bridgeOffersByteWindows(url: string): Promise<boolean> {
  const socket = new WebSocket(url, ["wsgrpc.v2", "wsgrpc.v1"]);
  try {
    const data = await new Promise<string>((resolve, reject) => {
      socket.once("message", (message) => resolve(message.toString()));
      socket.once("error", reject);
    });
    const [settings] = JSON.parse(data) as Envelope[];
    return typeof settings?.["windowBytes"] === "number";
  } finally {
    socket.close();
  }
}

const WAITS_FOR =
  "waits for the bridge to offer windows in bytes (`windowBytes` in its settings, docs/PROTOCOL.md \"Windows in bytes\"); the test server does not yet";

describe("against the real bridge, with windows in bytes", () => {
  it("a client stream sends many messages to a frame, with its settings first and credit in bytes", async ({ skip }) => {
    const bridge = await server();
    if (!(await bridgeOffersByteWindows(bridge.bridgeUrl))) {
      skip(WAITS_FOR);
    }
    const frames: Frames = { sent: [], received: [] };
    const { transport } = transportFor(bridge.bridgeUrl, { WebSocket: recordingWebSocket(frames) });
    const client = new TestServiceClient(transport);
    const count = 100_000;
    let started = performance.now();
    let streamed = 0;
    for await (const _ of client.serverStream({ text: "m", count })) {
      streamed += 1;
    }
    const serverRate = streamed / ((performance.now() - started) / 1000);
    const sentBefore = frames.sent.length;
    started = performance.now();
    const answer = await client.clientStream(Array.from({ length: count }, (): MessageInit<TestRequest> => ({ text: "m", big: "1" })));
    const clientRate = count / ((performance.now() - started) / 1000);
    expect(answer.sum).toBe(String(count));
    const sentFrames = frames.sent.length - sentBefore;
    console.log(
      `with windows in bytes: server stream ${Math.round(serverRate)}/s, client stream ${Math.round(clientRate)}/s ` +
        `(${(clientRate / serverRate).toFixed(2)} of it), ${sentFrames} frames for ${count} messages`,
    );
    const sent = envelopesOf(frames.sent);
    expect(sent[0]).toMatchObject({ type: "settings" });
    const streamRequest = sent.find((envelope) => envelope["type"] === "request" && envelope["payload"] !== undefined);
    expect(streamRequest?.["windowBytes"]).toBeGreaterThan(0);
    expect(streamRequest?.["window"]).toBeUndefined();
    const credits = sent.filter((envelope) => envelope["type"] === "credit");
    expect(credits.length).toBeGreaterThan(0);
    expect(credits.every((credit) => typeof credit["bytes"] === "number")).toBe(true);
    expect(sentFrames).toBeLessThan(count / 200);
  }, 60_000);
});
