// The floor under any client: a bare WebSocket that parses each frame and
// walks its messages, with none of the transport's bookkeeping (no call
// table, no async iteration, no promises per message). Against the ceiling
// server it shows what Chromium itself costs per frame and per message.

import { ExampleService, type StreamResponse } from "../../../example/client/src/gen/example_wsgrpc.js";
import { STREAM_TEXT, type Protocol, type RunResult } from "../shared/spec.js";
import { checkStreamItem } from "./stream_check.js";

/** The envelope fields a stream's frames carry, unchecked. */
interface Envelope {
  type?: string;
  payload?: StreamResponse;
  payloads?: StreamResponse[];
  end?: boolean;
  error?: string;
}

/** Adds every text frame `socket` receives to `into`. */
export function countFrames(socket: WebSocket, into: { count: number; chars: number }): void {
  socket.addEventListener("message", (event: MessageEvent<unknown>) => {
    into.count += 1;
    into.chars += typeof event.data === "string" ? event.data.length : 0;
  });
}

export function rawStream(url: string, protocol: Protocol, count: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const socket = protocol === "v2" ? new WebSocket(url, ["wsgrpc.v2"]) : new WebSocket(url);
    const request = {
      type: "request",
      id: "1",
      method: ExampleService.methods.streamMessages.path,
      payload: { message: STREAM_TEXT, count },
    };
    const frames = { count: 0, chars: 0 };
    countFrames(socket, frames);
    let received = 0;
    let start = 0;
    let done = false;
    const finish = (error?: string) => {
      if (done) {
        return;
      }
      done = true;
      const elapsedMs = performance.now() - start;
      socket.close(1000);
      if (error === undefined && received !== count) {
        error = `${received} of ${count} messages arrived`;
      }
      resolve({ negotiated: socket.protocol, frames, count: received, elapsedMs, ...(error === undefined ? {} : { error }) });
    };
    const take = (item: StreamResponse): boolean => {
      const wrong = checkStreamItem(item, received);
      if (wrong !== undefined) {
        finish(wrong);
        return false;
      }
      received += 1;
      return true;
    };
    // v1 sends the request as soon as the socket opens; v2 waits for the
    // server's settings, as the protocol requires.
    const send = () => {
      start = performance.now();
      socket.send(JSON.stringify(protocol === "v2" ? [request] : request));
    };
    socket.onopen = () => {
      if (protocol === "v1") {
        send();
      }
    };
    socket.onmessage = (event: MessageEvent<string>) => {
      const parsed = JSON.parse(event.data) as Envelope | Envelope[];
      const envelopes = Array.isArray(parsed) ? parsed : [parsed];
      for (const envelope of envelopes) {
        if (envelope.type === "settings") {
          send();
          continue;
        }
        if (envelope.error !== undefined) {
          finish(envelope.error);
          return;
        }
        for (const item of envelope.payloads ?? []) {
          if (!take(item)) {
            return;
          }
        }
        // A v1 stream's end frame carries the legacy marker, not a message.
        if (envelope.end === true) {
          finish();
          return;
        }
        if (envelope.payload !== undefined && !take(envelope.payload)) {
          return;
        }
      }
    };
    socket.onclose = (event) => finish(`the socket closed (code ${event.code})`);
  });
}
