// Would permessage-deflate (RFC 7692) pay on a slow link? Two halves:
//
// - In Node, what deflate does to the frames the bridge writes: bytes on
//   the wire with and without it, and CPU per message to compress them
//   (the bridge's side) and to inflate them (the browser's), as
//   permessage-deflate does it: raw deflate, a 32 KiB window kept from
//   message to message (context takeover), each message ended by a sync
//   flush whose 00 00 ff ff tail is left off. zlib, as Chromium and most
//   servers use it; its async stream API is the only one that keeps the
//   window between messages, so each figure includes one trip to zlib's
//   thread pool per frame (level 0, stored blocks only, shows that floor).
// - In Chromium, through the delaying proxy with a bandwidth cap: the
//   bridge (which cannot compress), and a server that sends the same v2
//   frames with `ws`, with permessage-deflate off and on, Chromium
//   inflating natively. The server has no flow control: its figure is
//   what the link and the page allow.

import {
  constants,
  createDeflateRaw,
  createInflateRaw,
  type DeflateRaw,
  type InflateRaw,
} from "node:zlib";
import { createServer } from "node:http";
import type { Page } from "playwright-core";
import { WebSocketServer } from "ws";
import { STREAM_TEXT, type RunResult, type RunSpec } from "../shared/spec.js";
import { closeServers, SETTINGS_FRAME, STREAM_METHOD, v2StreamFrames } from "./ceiling.js";
import { startDelayProxy } from "./delay_proxy.js";

/** A set of frames, each an array of v2 envelopes, and how many messages they carry. */
export interface FrameSet {
  label: string;
  frames: Buffer[];
  messages: number;
}

/** mulberry32: the same "random" records in every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Niklaus"];
const LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen", "Wirth"];
const WORDS = ["compact", "steel", "walnut", "wireless", "ergonomic", "recycled", "desk", "lamp", "kettle", "cable", "chair", "monitor"];
const STATUSES = ["ORDER_STATUS_PENDING", "ORDER_STATUS_PAID", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"];

/**
 * An order as proto3 JSON writes one: string ids, lowerCamelCase keys,
 * enums by name, int64 as strings, a Timestamp, money as units and nanos,
 * and a bytes field (a thumbnail hash: base64 of random bytes, which no
 * compressor shrinks much). About 700 bytes.
 */
function record(next: () => number, index: number): unknown {
  const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)]!;
  const [first, last] = [pick(FIRST), pick(LAST)];
  const items = Array.from({ length: 1 + Math.floor(next() * 4) }, () => ({
    sku: `SKU-${Math.floor(next() * 100_000)}-${pick(["A", "B", "C"])}`,
    title: `${pick(WORDS)} ${pick(WORDS)}`,
    quantity: 1 + Math.floor(next() * 3),
    unitPrice: { currencyCode: "EUR", units: String(Math.floor(next() * 200)), nanos: Math.floor(next() * 100) * 10_000_000 },
  }));
  const hash = Buffer.from(Array.from({ length: 32 }, () => Math.floor(next() * 256)));
  return {
    id: `ord_${String(1_000_000 + index)}`,
    createdAt: new Date(Date.UTC(2026, 11, 3) + index * 37_000 + Math.floor(next() * 1000)).toISOString(),
    status: pick(STATUSES),
    customer: {
      id: `cus_${Math.floor(next() * 1_000_000)}`,
      displayName: `${first} ${last}`,
      email: `${first.toLowerCase()}.${last.toLowerCase()}@example.com`,
      locale: pick(["en-GB", "de-DE", "fr-FR"]),
    },
    items,
    shippingAddress: { line1: `${1 + Math.floor(next() * 200)} ${pick(LAST)} Street`, city: pick(["London", "Berlin", "Paris"]), postalCode: String(10_000 + Math.floor(next() * 89_999)) },
    tags: next() < 0.5 ? ["gift"] : ["express", "insured"],
    riskScore: Math.round(next() * 10_000) / 10_000,
    thumbnailSha256: hash.toString("base64"),
  };
}

/** v2 frames of `payloads`, each frame as the bridge packs a fast stream: runs of ~31 KiB, two to a 64 KiB frame. */
function packed(payloads: string[]): Buffer[] {
  const frames: Buffer[] = [];
  let envelopes: string[] = [];
  let run: string[] = [];
  let runBytes = 0;
  let frameBytes = 0;
  const closeRun = () => {
    const envelope = `{"type":"response","id":"1","payloads":[${run.join(",")}]}`;
    if (frameBytes + envelope.length > 64 * 1024 && envelopes.length > 0) {
      frames.push(Buffer.from(`[${envelopes.join(",")}]`));
      envelopes = [];
      frameBytes = 0;
    }
    envelopes.push(envelope);
    frameBytes += envelope.length + 1;
    run = [];
    runBytes = 0;
  };
  for (const payload of payloads) {
    run.push(payload);
    runBytes += payload.length + 1;
    if (runBytes >= 31 * 1024) {
      closeRun();
    }
  }
  if (run.length > 0) {
    closeRun();
  }
  frames.push(Buffer.from(`[${envelopes.join(",")}]`));
  return frames;
}

/** The frame sets measured: the example's stream, its unary answers, and orders. */
export function frameSets(): FrameSet[] {
  const streamCount = 100_000;
  const single = 5_000;
  const next = random(22);
  const orders = Array.from({ length: 4_000 }, (_, index) => JSON.stringify(record(next, index)));
  return [
    {
      label: `StreamMessages {"message":"m","index":N}, full frames (a fast stream)`,
      frames: v2StreamFrames("1", "m", streamCount).map((frame) => Buffer.from(frame)),
      messages: streamCount,
    },
    {
      label: "StreamMessages, one message a frame (a slow stream)",
      frames: Array.from({ length: single }, (_, index) =>
        Buffer.from(`[{"type":"response","id":"1","payloads":[{"message":"m","index":${index + 1}}]}]`),
      ),
      messages: single,
    },
    {
      label: "SayHello answers, one a frame",
      frames: Array.from({ length: single }, (_, index) =>
        Buffer.from(`[{"type":"response","id":"${index * 2 + 1}","payload":{"message":"Hello x"},"end":true}]`),
      ),
      messages: single,
    },
    {
      label: `orders of ~${Math.round(orders.reduce((sum, o) => sum + o.length, 0) / orders.length)} B, full frames`,
      frames: packed(orders),
      messages: orders.length,
    },
    {
      label: "orders, one a frame",
      frames: orders.map((order) => Buffer.from(`[{"type":"response","id":"1","payloads":[${order}]}]`)).slice(0, 2_000),
      messages: 2_000,
    },
  ];
}

/** zlib's stream, one sync flush per message, as permessage-deflate frames them. */
function flushed(stream: DeflateRaw | InflateRaw, input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const onData = (chunk: Buffer) => out.push(chunk);
    stream.on("data", onData);
    stream.once("error", reject);
    stream.write(input);
    stream.flush(constants.Z_SYNC_FLUSH, () => {
      stream.off("data", onData);
      stream.off("error", reject);
      resolve(Buffer.concat(out));
    });
  });
}

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export interface DeflateFigures {
  set: string;
  level: number;
  messages: number;
  rawBytes: number;
  wireBytes: number;
  /** CPU (all threads) per message, µs. */
  compressUs: number;
  inflateUs: number;
}

function cpuUs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

/** One frame set through deflate at `level` and back, checked, timed by CPU. */
export async function measureDeflate(set: FrameSet, level: number): Promise<DeflateFigures> {
  const deflate = createDeflateRaw({ level, windowBits: 15, memLevel: 8 });
  const inflate = createInflateRaw({ windowBits: 15 });
  const compressed: Buffer[] = [];
  let cpu = process.cpuUsage();
  for (const frame of set.frames) {
    const out = await flushed(deflate, frame);
    // permessage-deflate leaves the flush's empty stored block's tail off.
    compressed.push(out.subarray(0, out.length - TAIL.length));
  }
  const compressUs = cpuUs(cpu);
  cpu = process.cpuUsage();
  const inflated: Buffer[] = [];
  for (const frame of compressed) {
    inflated.push(await flushed(inflate, Buffer.concat([frame, TAIL])));
  }
  const inflateUs = cpuUs(cpu);
  deflate.close();
  inflate.close();
  set.frames.forEach((frame, index) => {
    if (!frame.equals(inflated[index]!)) {
      throw new Error(`${set.label}: frame ${index} did not come back the same`);
    }
  });
  // Per frame on the wire: the WebSocket header (2 bytes, 4 from 126 B,
  // 10 from 64 KiB; a server does not mask).
  const header = (length: number) => (length < 126 ? 2 : length < 65_536 ? 4 : 10);
  const sum = (frames: Buffer[]) => frames.reduce((total, frame) => total + frame.length + header(frame.length), 0);
  return {
    set: set.label,
    level,
    messages: set.messages,
    rawBytes: sum(set.frames),
    wireBytes: sum(compressed),
    compressUs: compressUs / set.messages,
    inflateUs: inflateUs / set.messages,
  };
}

/** Every frame set at zlib levels 0 (the floor), 1 and 6 (zlib's and ws's default). */
export async function deflateTable(): Promise<{ figures: DeflateFigures[]; text: string }> {
  const figures: DeflateFigures[] = [];
  const lines = [
    "permessage-deflate (raw deflate, context takeover, 32 KiB window, memLevel 8), zlib in Node; CPU per message, all threads:",
    `${"frames".padEnd(72)} ${"level".padStart(5)} ${"B/msg".padStart(8)} ${"wire B/msg".padStart(10)} ${"÷".padStart(5)} ${"deflate µs".padStart(10)} ${"inflate µs".padStart(10)} ${"msg/s at 20 Mbit/s".padStart(19)}`,
  ];
  for (const set of frameSets()) {
    for (const level of [0, 1, 6]) {
      const f = await measureDeflate(set, level);
      figures.push(f);
      const raw = f.rawBytes / f.messages;
      const wire = f.wireBytes / f.messages;
      lines.push(
        `${(level === 0 ? set.label : "").padEnd(72)} ${String(level).padStart(5)} ${raw.toFixed(1).padStart(8)} ${wire.toFixed(1).padStart(10)} ` +
          `${(wire / raw).toFixed(2).padStart(5)} ${f.compressUs.toFixed(2).padStart(10)} ${f.inflateUs.toFixed(2).padStart(10)} ` +
          `${Math.round(linkRate(wire, 20)).toLocaleString("en-US").padStart(19)}`,
      );
    }
  }
  return { figures, text: lines.join("\n") };
}

/**
 * Messages per second a link of `mbit` carries at `bytesPerMessage` of
 * WebSocket payload and header; TCP/IP headers (~52 B per 1448 B segment
 * with timestamps) take 3.5 % more.
 */
export function linkRate(bytesPerMessage: number, mbit: number): number {
  return (mbit * 125_000) / (bytesPerMessage * 1.036);
}

export interface StreamServer {
  /** ws://… of the server. */
  address: string;
  /** The extensions the last socket agreed on ("" for none). */
  lastExtensions(): string;
  close(): Promise<void>;
}

/**
 * A server that answers StreamMessages with the bridge's v2 frames through
 * `ws`, permessage-deflate at `level` when Chromium offers it (it always
 * does), or not at all when `level` is undefined. No flow control, no
 * pre-encoded frames: each frame goes through ws.send(), as a server that
 * compresses must send it.
 */
export async function startStreamServer(level: number | undefined, message: string, count: number): Promise<StreamServer> {
  const frames = v2StreamFrames("1", message, count);
  let extensions = "";
  const server = new WebSocketServer({
    noServer: true,
    perMessageDeflate: level === undefined ? false : { zlibDeflateOptions: { level }, threshold: 0 },
    handleProtocols: (offered) => (offered.has("wsgrpc.v2") ? "wsgrpc.v2" : false),
  });
  const http = createServer((_, response) => response.writeHead(426).end());
  http.on("upgrade", (request, tcp, head) => {
    server.handleUpgrade(request, tcp, head, (socket) => server.emit("connection", socket, request));
  });
  server.on("connection", (socket) => {
    extensions = socket.extensions;
    socket.send(SETTINGS_FRAME);
    socket.on("message", (data) => {
      const parsed = JSON.parse(String(data)) as { type?: string; id?: string; method?: string }[];
      for (const request of parsed) {
        if (request.type === "request" && request.method === STREAM_METHOD && request.id === "1") {
          for (const frame of frames) {
            socket.send(frame);
          }
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", resolve);
  });
  const address = http.address();
  if (address === null || typeof address === "string") {
    throw new Error("the stream server has no TCP port");
  }
  return {
    address: `127.0.0.1:${address.port}`,
    lastExtensions: () => extensions,
    close: () => closeServers(server, http),
  };
}

export interface LinkRun {
  page: Page;
  runInPage(page: Page, spec: RunSpec, timeoutMs: number): Promise<RunResult>;
  /** The bridge's address, host:port. */
  bridge: string;
  rttMs: number;
  mbit: number;
}

/** StreamMessages' messages in each server's stream: about 6 MB of JSON. */
const LINK_STREAM_COUNT = 200_000;

/**
 * The stream over the capped link: the bridge for a few seconds, then the
 * `ws` server's whole stream without permessage-deflate and with it at
 * levels 1 and 6. Rates in messages per second, as the page counts them.
 */
export async function measureOverLink(run: LinkRun): Promise<string> {
  const lines = [
    `server stream over ${run.mbit} Mbit/s each way, RTT ${run.rttMs} ms (v2, generated client):`,
    `${"server".padEnd(52)} ${"extensions".padEnd(20)} ${"messages/s".padStart(12)} ${"KiB/s (inflated)".padStart(17)}`,
  ];
  const link = { rttMs: run.rttMs, mbit: run.mbit };
  const through = async (label: string, target: string, workload: RunSpec["workload"], extensions: () => string) => {
    const proxy = await startDelayProxy(target, link);
    try {
      const result = await run.runInPage(run.page, { url: `ws://${proxy.address}/ws`, protocol: "v2", workload }, 120_000);
      const rate = (result.count * 1000) / result.elapsedMs;
      const kib = (result.frames.chars * 1000) / result.elapsedMs / 1024;
      lines.push(
        `${label.padEnd(52)} ${extensions().padEnd(20)} ${(result.error === undefined ? Math.round(rate).toLocaleString("en-US") : "failed").padStart(12)} ${Math.round(kib).toLocaleString("en-US").padStart(17)}` +
          (result.error === undefined ? "" : ` — ${result.error}`),
      );
      console.log(lines.at(-1));
    } finally {
      await proxy.close();
    }
  };
  await through(
    "bridge (message windows), 3 s",
    run.bridge,
    { kind: "stream", count: 2 ** 31 - 1, reader: "client", durationMs: 3_000 },
    () => "none (tungstenite)",
  );
  for (const level of [undefined, 1, 6]) {
    const server = await startStreamServer(level, STREAM_TEXT, LINK_STREAM_COUNT);
    try {
      await through(
        `ws, no flow control, ${LINK_STREAM_COUNT.toLocaleString("en-US")} messages, ${level === undefined ? "no deflate" : `deflate level ${level}`}`,
        server.address,
        { kind: "stream", count: LINK_STREAM_COUNT, reader: "client" },
        () => server.lastExtensions() || "none",
      );
    } finally {
      await server.close();
    }
  }
  return lines.join("\n");
}
