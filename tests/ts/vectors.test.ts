// The wire protocol's shared test vectors (docs/protocol-vectors.json; the
// format is in docs/PROTOCOL.md, "Test vectors") over a raw WebSocket
// against the real bridge. The Rust tests run the same file.

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { repoRoot, startServer, type TestServer } from "./support/server.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

type Step =
  | { send: Json }
  | { sendText: string }
  | { sendBinary: string }
  | { sendLarge: number }
  | { expect: Json }
  | { expectClose: number };

interface Case {
  name: string;
  /** v1 unless it says v2. */
  protocol?: "v1" | "v2";
  steps: Step[];
}

const vectorsPath = path.join(repoRoot, "docs", "protocol-vectors.json");
const cases: Case[] = existsSync(vectorsPath)
  ? (JSON.parse(readFileSync(vectorsPath, "utf8")) as { cases: Case[] }).cases
  : [];

// Keys the vectors compare only where the expected frame has them.
const OPTIONAL_KEYS = new Set(["headers", "trailers", "details"]);

/**
 * Whether `actual` is the frame `expected` describes: the same keys with
 * equal values, except the optional keys, and `~text` matching any string
 * that contains `text`.
 */
function matches(expected: Json, actual: Json): boolean {
  if (typeof expected === "string" && typeof actual === "string") {
    return expected.startsWith("~") ? actual.includes(expected.slice(1)) : expected === actual;
  }
  if (Array.isArray(expected) || Array.isArray(actual)) {
    return (
      Array.isArray(expected) &&
      Array.isArray(actual) &&
      expected.length === actual.length &&
      expected.every((item, i) => matches(item, actual[i]!))
    );
  }
  if (typeof expected === "object" && expected !== null && typeof actual === "object" && actual !== null) {
    return (
      Object.entries(expected).every(([key, value]) => key in actual && matches(value, actual[key]!)) &&
      Object.keys(actual).every((key) => key in expected || OPTIONAL_KEYS.has(key))
    );
  }
  return expected === actual;
}

/**
 * A v2 envelope as the vectors expect it: a run of `payloads` becomes one
 * envelope per message (the headers on the first), then the end, if it has
 * one, so that a case does not depend on how messages were batched.
 */
function oneMessageEach(envelope: Json): Json[] {
  if (typeof envelope !== "object" || envelope === null || Array.isArray(envelope) || !Array.isArray(envelope["payloads"])) {
    return [envelope];
  }
  const { id, headers, trailers } = envelope;
  const envelopes: { [key: string]: Json }[] = envelope["payloads"].map((payload) => ({ type: "response", id: id ?? null, payload }));
  if (headers !== undefined && envelopes[0] !== undefined) {
    envelopes[0]["headers"] = headers;
  }
  if (envelope["end"] === true) {
    envelopes.push({ type: "response", id: id ?? null, end: true, ...(trailers === undefined ? {} : { trailers }) });
  }
  return envelopes;
}

/** What the socket delivered next: a text frame (v2: an envelope), or the close. */
type Received = { frame: Json } | { binary: true } | { close: number };

/** A raw WebSocket whose frames are read one at a time. */
class RawSocket {
  readonly #socket: WebSocket;
  readonly #received: Received[] = [];
  #waiting: ((received: Received) => void) | null = null;

  private constructor(socket: WebSocket, v2: boolean) {
    this.#socket = socket;
    socket.on("message", (data, isBinary) => {
      if (isBinary) {
        this.#deliver({ binary: true });
        return;
      }
      const frame = JSON.parse(data.toString()) as Json;
      if (!v2) {
        this.#deliver({ frame });
        return;
      }
      if (!Array.isArray(frame)) {
        throw new Error(`a v2 frame that is not an array: ${data.toString()}`);
      }
      for (const envelope of frame.flatMap(oneMessageEach)) {
        this.#deliver({ frame: envelope });
      }
    });
    socket.on("close", (code) => this.#deliver({ close: code }));
  }

  static async connect(url: string, v2: boolean): Promise<RawSocket> {
    const socket = v2 ? new WebSocket(url, ["wsgrpc.v2", "wsgrpc.v1"]) : new WebSocket(url);
    const raw = new RawSocket(socket, v2);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    if (v2) {
      const settings = await raw.next();
      expect(settings).toMatchObject({ frame: { type: "settings" } });
    }
    return raw;
  }

  send(data: string | Buffer): void {
    this.#socket.send(data);
  }

  next(timeoutMs = 5_000): Promise<Received> {
    const received = this.#received.shift();
    if (received !== undefined) {
      return Promise.resolve(received);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing arrived in ${timeoutMs} ms`)), timeoutMs);
      this.#waiting = (received) => {
        clearTimeout(timer);
        resolve(received);
      };
    });
  }

  close(): void {
    this.#socket.close();
  }

  #deliver(received: Received): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    if (waiting !== null) {
      waiting(received);
    } else {
      this.#received.push(received);
    }
  }
}

describe("the frame matcher", () => {
  it("follows the rules of PROTOCOL.md", () => {
    const frame = { type: "response", id: "1", error: "unknown field `x`", trailers: { a: "b" } };
    expect(matches({ type: "response", id: "1", error: "~field `x`" }, frame)).toBe(true);
    expect(matches({ type: "response", id: "1" }, frame)).toBe(false);
    expect(matches({ type: "response", id: "1", error: "~nope" }, frame)).toBe(false);
    expect(matches({ type: "response", id: "1", error: "~x", trailers: {} }, frame)).toBe(false);
  });
});

describe.skipIf(cases.length === 0)("protocol vectors", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server.kill();
  });

  it("cover the protocol", () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", async (_name, vector) => {
    const socket = await RawSocket.connect(server.bridgeUrl, vector.protocol === "v2");
    try {
      for (const [index, step] of vector.steps.entries()) {
        const where = `step ${index + 1} of "${vector.name}"`;
        if ("send" in step) {
          socket.send(JSON.stringify(step.send));
        } else if ("sendText" in step) {
          socket.send(step.sendText);
        } else if ("sendBinary" in step) {
          socket.send(Buffer.from(step.sendBinary, "base64"));
        } else if ("sendLarge" in step) {
          const name = "x".repeat(step.sendLarge);
          socket.send(JSON.stringify({ type: "request", id: "large", method: "SayHello", payload: { name } }));
        } else if ("expect" in step) {
          const received = await socket.next();
          expect("frame" in received, `${where}: expected a frame, got ${JSON.stringify(received)}`).toBe(true);
          const actual = (received as { frame: Json }).frame;
          expect(
            matches(step.expect, actual),
            `${where}:\n expected ${JSON.stringify(step.expect)}\n received ${JSON.stringify(actual)}`,
          ).toBe(true);
        } else if ("expectClose" in step) {
          const received = await socket.next();
          expect(received, where).toEqual({ close: step.expectClose });
        } else {
          throw new Error(`${where}: unknown step ${JSON.stringify(step)}`);
        }
      }
    } finally {
      socket.close();
    }
  });
});
