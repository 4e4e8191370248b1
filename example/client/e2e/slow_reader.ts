// Loaded into the page by the browser tests, from source through the Vite
// dev server: a reader of StreamMessages that stops for a while early on.
// The tests watch `window.slowReader` while it waits.

import { ExampleServiceClient } from "../src/gen/example_wsgrpc.js";
import { WebSocketGRPCClient } from "../src/gen/wsgrpc_runtime.js";

export interface SlowReader {
  /** True while the reader waits at `pauseAt`. */
  paused: boolean;
  /** Reads `count` messages, waiting `pauseMs` after the `pauseAt`-th. */
  read(count: number, pauseAt: number, pauseMs: number): Promise<{ read: number; outOfOrder: number; ms: number }>;
}

const slowReader: SlowReader = {
  paused: false,
  async read(count, pauseAt, pauseMs) {
    const transport = new WebSocketGRPCClient(`ws://${location.host}/ws`);
    const client = new ExampleServiceClient(transport);
    let next = 0;
    let outOfOrder = 0;
    const started = performance.now();
    try {
      for await (const item of client.streamMessages({ message: "c", count })) {
        outOfOrder += (item.index ?? 0) === next ? 0 : 1;
        next += 1;
        if (next === pauseAt) {
          this.paused = true;
          await new Promise((resolve) => setTimeout(resolve, pauseMs));
          this.paused = false;
        }
      }
    } finally {
      transport.close();
    }
    return { read: next, outOfOrder, ms: performance.now() - started };
  },
};

(window as unknown as { slowReader: SlowReader }).slowReader = slowReader;
