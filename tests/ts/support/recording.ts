// A `ws` WebSocket that keeps every frame it sends and receives, so that a
// test can look at what went over the wire.

import WebSocket from "ws";

import { type WebSocketConstructor } from "../gen/wsgrpc_runtime.js";

/** The text frames of one transport, in order, both ways. */
export interface Frames {
  sent: string[];
  received: string[];
}

/** A WebSocket class for `ClientOptions.WebSocket` that records into `frames`. */
export function recordingWebSocket(frames: Frames): WebSocketConstructor {
  class RecordingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on("message", (data: WebSocket.RawData) => frames.received.push(data.toString()));
    }

    override send(data: unknown, ...rest: unknown[]): void {
      frames.sent.push(String(data));
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return RecordingWebSocket as unknown as WebSocketConstructor;
}

/** A frame's size as the bridge counts it: UTF-8 bytes. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** The envelopes of v2 frames (JSON arrays), in order. */
export function envelopesOf(frames: string[]): Record<string, unknown>[] {
  return frames.flatMap((frame) => JSON.parse(frame) as Record<string, unknown>[]);
}
