// The transport against a scripted fake bridge, for what the real one
// cannot be made to do on demand: exact framing, refused frames, frames
// for unknown calls, a bridge that never answers.

import { type AddressInfo } from "node:net";

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

import { Code, RpcError, WebSocketGRPCClient } from "./gen/wsgrpc_runtime.js";
import { eventually } from "./support/server.js";
import { rpcError } from "./support/harness.js";

type Frame = Record<string, unknown>;

/** Answers each frame the client sends with whatever `script` says. */
class FakeBridge {
  readonly server: WebSocketServer;
  /** Every frame received, in order. */
  readonly received: Frame[] = [];
  script: (frame: Frame, reply: (frame: Frame | string) => void) => void = () => {};

  constructor(server: WebSocketServer) {
    this.server = server;
    server.on("connection", (socket) => {
      socket.on("message", (data) => {
        const frame = JSON.parse(data.toString()) as Frame;
        this.received.push(frame);
        this.script(frame, (reply) => socket.send(typeof reply === "string" ? reply : JSON.stringify(reply)));
      });
    });
  }

  static async start(): Promise<FakeBridge> {
    // Answers no subprotocol, as a bridge that predates v2 does.
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => false });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    return new FakeBridge(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/ws`;
  }

  framesOf(id: unknown): Frame[] {
    return this.received.filter((frame) => frame["id"] === id);
  }
}

let bridge: FakeBridge;
let transport: WebSocketGRPCClient;
const protocolErrors: RpcError[] = [];

beforeAll(async () => {
  bridge = await FakeBridge.start();
  transport = new WebSocketGRPCClient(bridge.url, {
    WebSocket,
    // The fake speaks v1, one envelope per frame.
    protocol: "v1",
    onProtocolError: (error) => protocolErrors.push(error),
  });
});

afterEach(() => {
  bridge.received.length = 0;
  bridge.script = () => {};
  protocolErrors.length = 0;
});

afterAll(async () => {
  transport.close();
  for (const client of bridge.server.clients) {
    client.terminate();
  }
  await new Promise<void>((resolve) => bridge.server.close(() => resolve()));
});

function response(request: Frame, fields: Frame): Frame {
  return { type: "response", method: request["method"], id: request["id"], ...fields };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("framing", () => {
  it("a unary call is one request frame; its answer is the end frame's payload", async () => {
    bridge.script = (frame, reply) => reply(response(frame, { payload: { message: "hi" }, end: true }));
    const answer = await transport.unary("example.ExampleService/SayHello", { name: "x" }, {
      metadata: { authorization: "Bearer t" },
      timeoutMs: 5_000,
    });
    expect(answer).toEqual({ message: "hi" });
    const [request] = bridge.received;
    expect(request).toMatchObject({
      type: "request",
      method: "example.ExampleService/SayHello",
      payload: { name: "x" },
      metadata: { authorization: "Bearer t" },
    });
    expect(typeof request?.["id"]).toBe("string");
    expect(request?.["timeoutMs"]).toBeGreaterThan(4_900);
    expect(request?.["timeoutMs"]).toBeLessThanOrEqual(5_000);
    expect(Object.keys(request!).sort()).toEqual(["id", "metadata", "method", "payload", "timeoutMs", "type"]);
  });

  it("a client stream sends the request without payload, a message per input, then end", async () => {
    bridge.script = (frame, reply) => {
      if (frame["type"] === "end") {
        reply({ type: "response", id: frame["id"], payload: { count: 2 }, end: true });
      }
    };
    const answer = await transport.clientStream("p.S/Collect", [{ n: 1 }, { n: 2 }]);
    expect(answer).toEqual({ count: 2 });
    const id = bridge.received[0]?.["id"];
    expect(bridge.received).toEqual([
      { type: "request", id, method: "p.S/Collect" },
      { type: "message", id, payload: { n: 1 } },
      { type: "message", id, payload: { n: 2 } },
      { type: "end", id },
    ]);
  });

  it("calls open at once have different ids", async () => {
    bridge.script = (frame, reply) => {
      if (frame["type"] === "request") {
        setTimeout(() => reply(response(frame, { payload: {}, end: true })), 20);
      }
    };
    await Promise.all([1, 2, 3, 4, 5].map(() => transport.unary("p.S/U", {})));
    const ids = bridge.received.map((frame) => frame["id"]);
    expect(new Set(ids).size).toBe(5);
  });
});

describe("protocol negotiation", () => {
  it("offering v2 to a bridge that predates it falls back to v1 and stays there", async () => {
    const offered: (string | undefined)[] = [];
    const listener = (_socket: unknown, request: { headers: Record<string, string | undefined> }) =>
      offered.push(request.headers["sec-websocket-protocol"]);
    bridge.server.on("connection", listener);
    bridge.script = (frame, reply) => reply(response(frame, { payload: { message: "v1" }, end: true }));
    const defaults = new WebSocketGRPCClient(bridge.url, { WebSocket });
    try {
      await expect(defaults.unary("p.S/U", {})).resolves.toEqual({ message: "v1" });
      defaults.close();
      await expect(defaults.unary("p.S/U", {})).resolves.toEqual({ message: "v1" });
      // The first attempt offers v2 (the client then refuses the answer
      // without a subprotocol); the next ones offer nothing.
      expect(offered).toEqual(["wsgrpc.v2,wsgrpc.v1", undefined, undefined]);
    } finally {
      defaults.close();
      bridge.server.off("connection", listener);
    }
  });
});

describe("the end of a call", () => {
  it("only the envelope's end ends a stream; payloads like {end: true} are messages", async () => {
    bridge.script = (frame, reply) => {
      reply(response(frame, { payload: { end: true }, headers: { "x-h": "1" } }));
      reply(response(frame, { payload: { text: "after" } }));
      reply(response(frame, { payload: { end: true }, end: true, trailers: { "x-t": "2" } }));
    };
    const headers: Record<string, string>[] = [];
    const trailers: Record<string, string>[] = [];
    const received = [];
    for await (const message of transport.serverStream("p.S/Stream", {}, {
      onHeader: (h) => headers.push(h),
      onTrailer: (t) => trailers.push(t),
    })) {
      received.push(message);
    }
    expect(received).toEqual([{ end: true }, { text: "after" }]);
    expect(headers).toEqual([{ "x-h": "1" }]);
    expect(trailers).toEqual([{ "x-t": "2" }]);
  });

  it("an error ends the call with its code, name, message, details and metadata", async () => {
    bridge.script = (frame, reply) =>
      reply(
        response(frame, {
          error: "no such user",
          code: 5,
          codeName: "NOT_FOUND",
          details: "CAUSAQ==",
          headers: { "x-h": "h" },
          trailers: { "x-t": "t" },
          end: true,
        }),
      );
    const error = await rpcError(transport.unary("p.S/U", {}));
    expect(error).toMatchObject({
      code: Code.NOT_FOUND,
      codeName: "NOT_FOUND",
      message: "no such user",
      details: "CAUSAQ==",
      metadata: { "x-h": "h", "x-t": "t" },
    });
  });

  it("frames for unknown ids are ignored; the call goes on", async () => {
    bridge.script = (frame, reply) => {
      reply({ type: "response", id: "no-such-call", payload: { wrong: true }, end: true });
      reply(response(frame, { payload: { right: true }, end: true }));
    };
    await expect(transport.unary("p.S/U", {})).resolves.toEqual({ right: true });
    expect(protocolErrors).toEqual([]);
  });

  it("an error frame for a call not yet answered rejects it: its request was refused", async () => {
    bridge.script = (frame, reply) =>
      reply({ type: "error", id: frame["id"], error: "id `1` is open", code: 6, codeName: "ALREADY_EXISTS" });
    const error = await rpcError(transport.unary("p.S/U", {}));
    expect(error.codeName).toBe("ALREADY_EXISTS");
    expect(error.code).toBe(Code.ALREADY_EXISTS);
  });

  it("an error frame about an answered call goes to onProtocolError; the call goes on", async () => {
    bridge.script = (frame, reply) => {
      if (frame["type"] === "request") {
        reply(response(frame, { payload: { n: 1 } }));
        reply({ type: "error", id: frame["id"], error: "takes no more", code: 9, codeName: "FAILED_PRECONDITION" });
        reply(response(frame, { payload: { n: 2 } }));
        reply(response(frame, { payload: { end: true }, end: true }));
      }
    };
    const received = [];
    for await (const message of transport.bidiStream("p.S/Bidi", [])) {
      received.push(message);
    }
    expect(received).toEqual([{ n: 1 }, { n: 2 }]);
    expect(protocolErrors.map((error) => error.codeName)).toEqual(["FAILED_PRECONDITION"]);
  });

  it("text that is not JSON goes to onProtocolError", async () => {
    bridge.script = (frame, reply) => {
      reply("not json");
      reply(response(frame, { payload: {}, end: true }));
    };
    await transport.unary("p.S/U", {});
    expect(protocolErrors).toHaveLength(1);
  });
});

describe("reading what has arrived", () => {
  it("readArrived takes the responses that are there, in order and without a promise; next() waits for the rest", async () => {
    let end = () => {};
    bridge.script = (frame, reply) => {
      if (frame["method"] === "p.S/Stream") {
        for (let n = 0; n < 3; n++) {
          reply(response(frame, { payload: { n } }));
        }
        end = () => {
          reply(response(frame, { payload: { n: 3 } }));
          reply(response(frame, { end: true }));
        };
      } else if (frame["method"] === "p.S/U") {
        reply(response(frame, { payload: {}, end: true }));
      }
    };
    const stream = transport.serverStream<object, { n: number }>("p.S/Stream", {});
    const iterator = stream[Symbol.asyncIterator]();
    // The call starts with the first read: nothing has arrived before.
    expect(stream.readArrived?.()).toBeUndefined();
    expect(await iterator.next()).toEqual({ value: { n: 0 }, done: false });
    // The socket keeps order: once this answer is in, so are the stream's first three.
    await transport.unary("p.S/U", {});
    expect(stream.readArrived?.()).toEqual({ n: 1 });
    expect(stream.readArrived?.()).toEqual({ n: 2 });
    expect(stream.readArrived?.()).toBeUndefined();
    const last = iterator.next();
    end();
    expect(await last).toEqual({ value: { n: 3 }, done: false });
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
    expect(stream.readArrived?.()).toBeUndefined();
  });
});

describe("ending a call from the client", () => {
  it("aborting sends cancel and fails with CANCELLED", async () => {
    const controller = new AbortController();
    const call = rpcError(transport.unary("p.S/Hang", {}, { signal: controller.signal }));
    await eventually(async () => bridge.received.length === 1, "the request arrived");
    controller.abort();
    expect((await call).code).toBe(Code.CANCELLED);
    const id = bridge.received[0]?.["id"];
    await eventually(async () => bridge.framesOf(id).length === 2, "the cancel arrived");
    expect(bridge.framesOf(id)[1]).toEqual({ type: "cancel", id });
  });

  it("leaving for-await early sends cancel, without an error", async () => {
    bridge.script = (frame, reply) => {
      if (frame["type"] === "request") {
        for (let n = 0; n < 5; n++) {
          reply(response(frame, { payload: { n } }));
        }
      }
    };
    for await (const message of transport.serverStream("p.S/Stream", {})) {
      expect(message).toEqual({ n: 0 });
      break;
    }
    const id = bridge.received[0]?.["id"];
    await eventually(async () => bridge.framesOf(id).length === 2, "the cancel arrived");
    expect(bridge.framesOf(id)[1]).toEqual({ type: "cancel", id });
  });

  it("a bridge that never answers: DEADLINE_EXCEEDED shortly after the deadline, and cancel", async () => {
    const started = Date.now();
    const error = await rpcError(transport.unary("p.S/Hang", {}, { timeoutMs: 100 }));
    expect(error.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(Date.now() - started).toBeLessThan(1_000);
    const id = bridge.received[0]?.["id"];
    await eventually(async () => bridge.framesOf(id).length === 2, "the cancel arrived");
    expect(bridge.framesOf(id)[1]).toEqual({ type: "cancel", id });
  });

  it("input stops when the call ends, and is closed", async () => {
    bridge.script = (frame, reply) => {
      if (frame["type"] === "message") {
        reply({ type: "response", id: frame["id"], payload: { done: true }, end: true });
      }
    };
    let produced = 0;
    let closed = false;
    async function* endless() {
      try {
        for (;;) {
          produced++;
          yield { n: produced };
          await sleep(10);
        }
      } finally {
        closed = true;
      }
    }
    await expect(transport.clientStream("p.S/Collect", endless())).resolves.toEqual({ done: true });
    await eventually(async () => closed, "the input was closed");
    await sleep(50);
    const messages = bridge.received.filter((frame) => frame["type"] === "message");
    expect(messages.length).toBeLessThanOrEqual(2);
    expect(bridge.received.some((frame) => frame["type"] === "end" || frame["type"] === "cancel")).toBe(false);
  });

  it("input that throws fails the call with that error and cancels it", async () => {
    async function* failing() {
      yield { n: 1 };
      throw new Error("input broke");
    }
    const error = await rpcError(transport.clientStream("p.S/Collect", failing()));
    expect(error.code).toBe(Code.UNKNOWN);
    expect(error.message).toBe("input broke");
    expect((error.cause as Error).message).toBe("input broke");
    await eventually(async () => bridge.received.some((frame) => frame["type"] === "cancel"), "the cancel arrived");
  });

  it("a payload JSON cannot carry fails the call with an RpcError around the TypeError", async () => {
    const error = await rpcError(transport.unary("p.S/U", { big: 1n }));
    expect(error.cause).toBeInstanceOf(TypeError);
  });

  it("an onHeader that throws fails the call with an RpcError, and cancels it", async () => {
    bridge.script = (frame, reply) => reply(response(frame, { payload: { text: "a" }, headers: { "x-h": "1" } }));
    const stream = transport.serverStream("p.S/Stream", {}, {
      onHeader: () => {
        throw new Error("header handler broke");
      },
    });
    const error = await rpcError(
      (async () => {
        for await (const _ of stream) {
          // the first message never arrives
        }
      })(),
    );
    expect(error.code).toBe(Code.UNKNOWN);
    expect(error.message).toBe("header handler broke");
    await eventually(async () => bridge.received.some((frame) => frame["type"] === "cancel"), "the cancel arrived");
  });
});
