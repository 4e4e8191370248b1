// The ceiling: a WebSocket server that speaks just enough of the wire
// protocol for StreamMessages and answers with frames built before the
// clock starts, what the bridge sends (the same envelopes, the same JSON,
// the same batch caps). A stream goes out as one buffer of WebSocket
// frames encoded in advance, in one write: sending costs this process next
// to no CPU, which the page's process would otherwise share the two cores
// with (ws's send() is a write per frame, 300,000 of them in v1). A page
// cannot receive the stream faster from any server, so the bridge's figure
// divided by this one is the share of the page's rate that the bridge
// leaves.

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { streamMessageJson } from "../shared/spec.js";

export const STREAM_METHOD = "example.ExampleService/StreamMessages";

/** The bridge's first v2 frame, with its default limits. */
export const SETTINGS_FRAME = JSON.stringify([
  { type: "settings", maxFrameBytes: 4_194_304, maxCallsPerConnection: 100, callQueueMessages: 64 },
]);

/**
 * The bridge's defaults for v2: a call closes a run of its messages into an
 * envelope once the run holds RUN_BYTES, and the socket's writer packs
 * envelopes into frames of at most BATCH_BYTES.
 */
export const BATCH_BYTES = 64 * 1024;
// Two runs, each closed just past this, fill a frame.
export const RUN_BYTES = BATCH_BYTES / 2 - 1024;

type Version = "v1" | "v2";

/**
 * v2: the stream's messages in runs of about RUN_BYTES, one envelope each,
 * the last one carrying the end; the envelopes packed into as few frames of
 * at most BATCH_BYTES as they fit. Every frame is as full as the bridge
 * makes one when the stream is ahead of the client. Lengths are counted in
 * UTF-16 units, which are bytes for the ASCII this sends.
 */
export function v2StreamFrames(id: string, message: string, count: number): string[] {
  const head = `{"type":"response","id":${JSON.stringify(id)},"payloads":[`;
  const envelopes: string[] = [];
  let run = "";
  for (let index = 0; index < count; index += 1) {
    run += (run === "" ? head : ",") + streamMessageJson(message, index);
    if (run.length >= RUN_BYTES) {
      envelopes.push(`${run}]}`);
      run = "";
    }
  }
  envelopes.push(run === "" ? `{"type":"response","id":${JSON.stringify(id)},"end":true}` : `${run}],"end":true}`);

  const frames: string[] = [];
  let frame: string[] = [];
  let size = 0;
  for (const envelope of envelopes) {
    // Brackets and commas: one byte per envelope, plus one.
    if (frame.length > 0 && size + envelope.length + 2 > BATCH_BYTES) {
      frames.push(`[${frame.join(",")}]`);
      frame = [];
      size = 0;
    }
    frame.push(envelope);
    size += envelope.length + 1;
  }
  frames.push(`[${frame.join(",")}]`);
  return frames;
}

/** v1: one envelope per frame, the method echoed, the legacy end marker last. */
export function v1StreamFrames(id: string, message: string, count: number): string[] {
  const head = `{"type":"response","method":${JSON.stringify(STREAM_METHOD)},"id":${JSON.stringify(id)},"payload":`;
  const frames = Array.from({ length: count }, (_, index) => `${head}${streamMessageJson(message, index)}}`);
  frames.push(`${head}{"end":true},"end":true}`);
  return frames;
}

/** `text` as an unmasked, final WebSocket text frame (RFC 6455, 5.2), as a server sends it. */
function encodeTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, "utf8");
  const length = payload.length;
  const header = length < 126 ? Buffer.alloc(2) : length < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = 0x81;
  if (length < 126) {
    header[1] = length;
  } else if (length < 65_536) {
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

export interface Ceiling {
  /** ws://… of the server. */
  url: string;
  /** Builds the frames of a stream now, so that no measured run builds them. */
  prepare(version: Version, id: string, message: string, count: number): void;
  close(): Promise<void>;
}

interface Request {
  type?: unknown;
  id?: unknown;
  method?: unknown;
  payload?: { message?: unknown; count?: unknown };
}

export async function startCeiling(): Promise<Ceiling> {
  const built = new Map<string, Buffer>();
  const stream = (version: Version, id: string, message: string, count: number): Buffer => {
    const key = `${version} ${id} ${count} ${message}`;
    let bytes = built.get(key);
    if (bytes === undefined) {
      const frames = version === "v2" ? v2StreamFrames(id, message, count) : v1StreamFrames(id, message, count);
      bytes = Buffer.concat(frames.map(encodeTextFrame));
      built.set(key, bytes);
    }
    return bytes;
  };

  // ws reads the client's frames and answers the handshake; the upgrade
  // comes through here so that the stream can be written to the TCP socket.
  const sockets = new WeakMap<IncomingMessage, Duplex>();
  const server = new WebSocketServer({
    noServer: true,
    // As the bridge: v2 when offered, else v1 (named, if the client named it).
    handleProtocols: (offered) =>
      offered.has("wsgrpc.v2") ? "wsgrpc.v2" : offered.has("wsgrpc.v1") ? "wsgrpc.v1" : false,
  });
  const http = createServer((_, response) => response.writeHead(426).end());
  http.on("upgrade", (request: IncomingMessage, tcp: Duplex, head: Buffer) => {
    sockets.set(request, tcp);
    server.handleUpgrade(request, tcp, head, (socket) => server.emit("connection", socket, request));
  });
  server.on("connection", (socket: WebSocket, upgrade: IncomingMessage) => {
    const tcp = sockets.get(upgrade);
    const version: Version = socket.protocol === "wsgrpc.v2" ? "v2" : "v1";
    if (version === "v2") {
      socket.send(SETTINGS_FRAME);
    }
    socket.on("message", (data) => {
      const parsed = JSON.parse(String(data)) as Request | Request[];
      for (const request of Array.isArray(parsed) ? parsed : [parsed]) {
        // Cancel and end frames need no answer here: a stream goes out whole.
        if (request.type !== "request" || typeof request.id !== "string") {
          continue;
        }
        const { message, count } = request.payload ?? {};
        if (request.method !== STREAM_METHOD || typeof message !== "string" || typeof count !== "number") {
          const error = { type: "response", id: request.id, error: "the ceiling server only streams", code: 12, codeName: "UNIMPLEMENTED", end: true };
          socket.send(JSON.stringify(version === "v2" ? [error] : error));
          continue;
        }
        // ws writes nothing else meanwhile (it only answers pings and
        // closes), so the frames cannot interleave with its own.
        tcp?.write(stream(version, request.id, message, count));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", resolve);
  });
  const address = http.address();
  if (address === null || typeof address === "string") {
    throw new Error(`the ceiling server listens on ${String(address)}, not a TCP port`);
  }
  return {
    url: `ws://127.0.0.1:${address.port}/`,
    prepare: (version, id, message, count) => void stream(version, id, message, count),
    close: () => closeServers(server, http),
  };
}

/** Drops every client of a WebSocket server and closes it and its HTTP server. */
export function closeServers(server: WebSocketServer, http: Server): Promise<void> {
  return new Promise((resolve) => {
    for (const client of server.clients) {
      client.terminate();
    }
    server.close();
    http.close(() => resolve());
  });
}
