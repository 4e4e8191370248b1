// Flow control of protocol v2 with the real bridge and backend: a reader
// slower than its stream holds the backend back, a client stream faster
// than its backend waits for credit, and neither slows the socket's other
// calls. The figures printed here are in docs/RELIABILITY.md.

import { describe, expect, it } from "vitest";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type TestRequest } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type MessageInit } from "./gen/wsgrpc_runtime.js";
import { server, transportFor } from "./support/harness.js";
import { rssKib, type ServerOptions, type TestServer } from "./support/server.js";

// WSGRPC_FLOW_MESSAGES=N streams N messages instead (a shorter run).
const MESSAGES = Number(process.env["WSGRPC_FLOW_MESSAGES"] ?? 1_000_000);
const MIB = 1 << 20;
const MAX_WINDOW_BYTES = MIB;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function connect(
  options: ServerOptions = {},
  clientOptions: Parameters<typeof transportFor>[1] = {},
): Promise<{ bridge: TestServer; client: TestServiceClient }> {
  const bridge = await server(options);
  const { transport } = transportFor(bridge.bridgeUrl, clientOptions);
  return { bridge, client: new TestServiceClient(transport) };
}

async function backendStats(client: TestServiceClient): Promise<{ sent: number; received: number }> {
  const stats = await client.stats({});
  return { sent: Number(stats.sent ?? "0"), received: Number(stats.received ?? "0") };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

describe("a reader slower than its stream", () => {
  it(`gets all ${MESSAGES.toLocaleString("en")} messages in order while the backend is held back and memory stays flat`, async () => {
    // The stream's window grows toward what the path holds in a round
    // trip, and a busy machine's round trips are long: bounded here, so
    // that how far the backend may run ahead does not depend on the load.
    const { bridge, client } = await connect({}, { maxWindowBytes: MAX_WINDOW_BYTES });
    await client.unary({});
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = await rssKib(bridge.pid);
    let heapMax = heapBefore;
    let rssMax = rssBefore;
    let furthestAhead = 0;
    // Pauses: a long one early, then short ones through the stream.
    const pauses = new Map<number, number>([[1_000, 1_000]]);
    for (let at = 100_000; at < MESSAGES; at += 200_000) {
      pauses.set(at, 300);
    }
    const started = performance.now();
    let next = 0;
    for await (const item of client.serverStream({ text: "m", count: MESSAGES })) {
      expect(item.index ?? 0).toBe(next);
      next += 1;
      const pause = pauses.get(next);
      if (pause === undefined) {
        if (next % 10_000 === 0) {
          heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
        }
        continue;
      }
      await sleep(pause);
      // Asked on the same socket, while the stream waits for its reader.
      const { sent } = await backendStats(client);
      furthestAhead = Math.max(furthestAhead, sent - next);
      heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
      rssMax = Math.max(rssMax, await rssKib(bridge.pid));
    }
    const seconds = (performance.now() - started) / 1000;
    expect(next).toBe(MESSAGES);
    console.log(
      `${MESSAGES} messages in ${seconds.toFixed(1)} s with ${pauses.size} pauses; ` +
        `the backend at most ${furthestAhead} messages ahead of the reader; ` +
        `client heap ${(heapBefore / MIB).toFixed(1)} → max ${(heapMax / MIB).toFixed(1)} MiB; ` +
        `bridge+backend RSS ${rssBefore} → max ${rssMax} KiB`,
    );
    // The window (at most 1 MiB, some 23,000 of these messages of 30 bytes
    // and 16 counted beyond) and what HTTP/2 holds between backend and
    // bridge (256 KiB, some 25,000 more); unchecked, the backend would be
    // done while the reader sat at the first pause.
    expect(furthestAhead).toBeLessThan(60_000);
    expect(heapMax - heapBefore).toBeLessThan(48 * MIB);
    expect(rssMax - rssBefore).toBeLessThan(64 * 1024);
  }, 120_000);
});

describe("a client stream faster than its backend", () => {
  it("waits for credit instead of failing, and the bridge holds no more than its queue", async () => {
    const { bridge, client } = await connect();
    const count = 1_000;
    // 16 KiB each, so that HTTP/2's windows hold few of them, in a field
    // the backend does not echo while failCode is 0; the backend takes one
    // every 2 ms.
    const padding = "x".repeat(16 << 10);
    const rssBefore = await rssKib(bridge.pid);
    let rssMax = rssBefore;
    let furthestAhead = 0;
    const { received: receivedBefore } = await backendStats(client);
    async function* fast(): AsyncGenerator<MessageInit<TestRequest>> {
      for (let n = 0; n < count; n++) {
        if (n % 100 === 0 && n > 0) {
          const { received } = await backendStats(client);
          furthestAhead = Math.max(furthestAhead, n - (received - receivedBefore));
          rssMax = Math.max(rssMax, await rssKib(bridge.pid));
        }
        yield { failMessage: padding, big: "1", delayMs: 2 };
      }
    }
    const answer = await client.clientStream(fast());
    expect(answer.index).toBe(count);
    expect(answer.sum).toBe(String(count));
    console.log(
      `client stream of ${count} × 16 KiB into a backend taking one every 2 ms: ` +
        `at most ${furthestAhead} messages ahead of the backend; bridge+backend RSS ${rssBefore} → max ${rssMax} KiB`,
    );
    // The bridge's queue (64) and HTTP/2's window to the backend (1 MiB,
    // 64 of these), with the messages on their way; without credit the
    // transport would send them all at once.
    expect(furthestAhead).toBeLessThan(400);
    expect(rssMax - rssBefore).toBeLessThan(64 * 1024);
  }, 60_000);
});

describe("a slow stream on the socket", () => {
  it("does not slow a burst of unary calls on the same socket", async () => {
    const calls = 100;
    const { client } = await connect({ maxCalls: calls + 1 });
    async function burst(): Promise<number[]> {
      const latencies = await Promise.all(
        Array.from({ length: calls }, async (_, n) => {
          const started = performance.now();
          await client.unary({ text: String(n) });
          return performance.now() - started;
        }),
      );
      return latencies.sort((a, b) => a - b);
    }
    await burst();
    const alone = await burst();

    // A backend that streams 1 KiB messages as fast as it can, to a reader
    // that takes one every 10 ms: unchecked, 100 MB would crowd the socket.
    const text = "s".repeat(1 << 10);
    const stream = client.serverStream({ text, count: 100_000 })[Symbol.asyncIterator]();
    let read = 0;
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const step = await stream.next();
        if (step.done === true) {
          break;
        }
        expect(step.value.index ?? 0).toBe(read);
        read += 1;
        await sleep(10);
      }
      await stream.return?.();
    })();
    // The stream's first window is delivered by then.
    await sleep(500);
    const beside = await burst();
    reading = false;
    await reader;
    expect(read).toBeGreaterThan(0);

    const figures = (sorted: number[]) =>
      `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`;
    console.log(`${calls} unary calls at once: alone ${figures(alone)}; beside a slow stream ${figures(beside)}`);
  }, 60_000);
});
