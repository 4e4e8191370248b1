// What a dropped socket costs with sessions (docs/PROTOCOL.md, "Sessions:
// calls that survive a dropped socket"), measured and printed, not
// asserted: the figures of docs/RELIABILITY.md, "Sessions: what a dropped
// socket costs". Opt-in, and meant for a release build:
//
//   cargo build --release -p wsgrpc-tests --bin wsgrpc-test-server
//   WSGRPC_SESSION_FIGURES=1 npx vitest run tests/ts/session_figures.test.ts
//
// It uses `$WSGRPC_TEST_SERVER` where set, else the release build above.
// `WSGRPC_SESSION_FIGURES_CUTS=N` (default 20) cuts per resume run,
// `WSGRPC_SESSION_FIGURES_SESSIONS=N` (default 1,000) parked sessions.

import { setMaxListeners } from "node:events";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { describe, expect, it } from "vitest";
import WebSocket from "ws";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type ClientOptions, WebSocketGRPCClient } from "./gen/wsgrpc_runtime.js";
import { CuttingProxy } from "./support/cutting_proxy.js";
import { onCleanup, server, transportFor } from "./support/harness.js";
import { bridgeMetric, eventually, freePort, repoRoot, rssKib } from "./support/server.js";

const enabled = process.env["WSGRPC_SESSION_FIGURES"] === "1";
if (enabled && process.env["WSGRPC_TEST_SERVER"] === undefined) {
  const targetDir = process.env["CARGO_TARGET_DIR"] ?? path.join(repoRoot, "target");
  process.env["WSGRPC_TEST_SERVER"] = path.join(targetDir, "release", "wsgrpc-test-server");
}
const CUTS = Number(process.env["WSGRPC_SESSION_FIGURES_CUTS"] ?? 20);
const SESSIONS = Number(process.env["WSGRPC_SESSION_FIGURES_SESSIONS"] ?? 1_000);
// Which calls each parked session holds: `all` (default), `stream` (the
// server stream alone) or `input` (the client stream and the unary call).
const CALLS = process.env["WSGRPC_SESSION_FIGURES_CALLS"] ?? "all";
// `WSGRPC_SESSION_FIGURES_OFF=1`: the same sockets and calls without
// sessions (`session: false`), measured live only, for comparison.
const SESSIONS_OFF = process.env["WSGRPC_SESSION_FIGURES_OFF"] === "1";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const ms = (value: number) => `${value.toFixed(1)} ms`;
const summary = (values: number[]) =>
  `median ${ms(median(values))}, min ${ms(Math.min(...values))}, max ${ms(Math.max(...values))}`;

/**
 * `ws`, watched: each socket in the order made, when it opened, and the
 * highest `index` of a response that came over it (so that a message the
 * reader takes after a cut can be told to have come over a newer socket).
 */
function watchedWebSocket() {
  const sockets: { openedAt: number | undefined; maxIndex: number }[] = [];
  class Watched extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      const seen = { openedAt: undefined as number | undefined, maxIndex: -1 };
      sockets.push(seen);
      this.addEventListener("open", () => (seen.openedAt = performance.now()));
      this.addEventListener("message", (event) => {
        const text = String(event.data);
        const at = text.lastIndexOf('"index":');
        if (at >= 0) {
          seen.maxIndex = Math.max(seen.maxIndex, Number.parseInt(text.slice(at + 8), 10));
        }
      });
    }
  }
  return { WebSocket: Watched, sockets };
}

/**
 * A loopback TCP proxy to `target` (`host:port`) that holds each chunk
 * half of `rttMs` in each direction, in order: one queue per direction
 * drained by one timer for its head, as bench/browser/driver/delay_proxy.ts
 * does (without its bandwidth cap). A socket closing on one side closes the
 * other after the bytes before it. Returns `host:port`.
 */
async function delayProxy(target: string, rttMs: number): Promise<string> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<Socket>();
  const forward = (source: Socket, sink: Socket) => {
    const queue: { due: number; data: Buffer | null }[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drain = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && queue[0]!.due <= now) {
        const { data } = queue.shift()!;
        if (data === null) {
          sink.destroy();
          return;
        }
        sink.write(data);
      }
      if (queue.length > 0) {
        timer = setTimeout(drain, queue[0]!.due - now);
      }
    };
    const push = (data: Buffer | null) => {
      queue.push({ due: performance.now() + rttMs / 2, data });
      timer ??= setTimeout(drain, rttMs / 2);
    };
    source.on("data", (chunk: Buffer) => push(chunk));
    source.on("close", () => push(null));
    source.on("error", () => {});
  };
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ host, port, noDelay: true });
    sockets.add(client).add(upstream);
    forward(client, upstream);
    forward(upstream, client);
    client.on("close", () => sockets.delete(client));
    upstream.on("close", () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onCleanup(async () => {
    for (const socket of sockets) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface ResumeFigures {
  /** From the new socket's `open` to the first message over it, ms. */
  fromOpen: number[];
  /** From the cut to the first message over the new socket, ms. */
  fromCut: number[];
  /** From the cut to the new socket's `open`, ms. */
  cutToOpen: number[];
  /** Cuts after which the session was not resumed: the calls' errors. */
  failures: string[];
}

/**
 * A server stream read as fast as it comes, through a proxy cut `cuts`
 * times; `rttMs` puts a link of that round trip behind the proxy.
 */
async function resumeFigures(bridgeUrl: string, options: ClientOptions, rttMs: number): Promise<ResumeFigures> {
  let target = bridgeUrl;
  if (rttMs > 0) {
    target = `ws://${await delayProxy(new URL(bridgeUrl).host, rttMs)}/ws`;
  }
  const proxy = await CuttingProxy.start(target);
  onCleanup(() => proxy.close());
  const watched = watchedWebSocket();
  const { transport } = transportFor(proxy.url(bridgeUrl), { ...options, WebSocket: watched.WebSocket });
  const client = new TestServiceClient(transport);
  await client.unary({});

  const figures: ResumeFigures = { fromOpen: [], fromCut: [], cutToOpen: [], failures: [] };
  let delivered = 0;
  // Set at a cut; the reader settles it with the first message that came over a newer socket.
  let waiting: { before: number; resolve: (at: number) => void } | undefined;
  // The stream now read: from which socket on (in the order made), and
  // how to stop it. A stream whose session could not be resumed fails; the
  // cut counts as a failed resume and a new stream takes its place.
  let streamFrom = 0;
  let controller = new AbortController();
  let reading: Promise<void> = Promise.resolve();
  // The highest index that came over the sockets of this stream made before `before`.
  const maxOver = (before: number) =>
    Math.max(-1, ...watched.sockets.slice(streamFrom, before).map((socket) => socket.maxIndex));
  const startReading = () => {
    streamFrom = watched.sockets.length - 1;
    controller = new AbortController();
    const signal = controller.signal;
    let lastIndex = -1;
    reading = (async () => {
      for await (const message of client.serverStream({ text: "m", count: 2_000_000_000 }, { signal })) {
        delivered += 1;
        const index = message.index ?? 0;
        if (index !== lastIndex + 1) {
          throw new Error(`message ${index} after ${lastIndex}: lost or repeated`);
        }
        lastIndex = index;
        // Came over a socket made after the cut: what the old ones took,
        // some perhaps after the cut from their buffers, is all below it.
        if (waiting !== undefined && index > maxOver(waiting.before)) {
          const settle = waiting.resolve;
          waiting = undefined;
          settle(performance.now());
        }
      }
    })().catch((error: unknown) => {
      if (!signal.aborted) {
        figures.failures.push(error instanceof Error ? error.message : String(error));
        const settle = waiting?.resolve;
        waiting = undefined;
        settle?.(Number.NaN);
      }
    });
  };
  startReading();

  for (let cut = 0; cut < CUTS; cut += 1) {
    // Let the stream run on the socket a while, 200 to 400 ms.
    const before = delivered;
    await sleep(200 + Math.random() * 200);
    expect(delivered).toBeGreaterThan(before);
    const socketsBefore = watched.sockets.length;
    const cutAt = performance.now();
    proxy.cut();
    const firstAt = await new Promise<number>((resolve) => (waiting = { before: socketsBefore, resolve }));
    if (Number.isNaN(firstAt)) {
      await reading;
      await transport.connect();
      startReading();
      continue;
    }
    const openAt = watched.sockets
      .slice(socketsBefore)
      .map((socket) => socket.openedAt)
      .filter((at): at is number => at !== undefined && at <= firstAt)
      .pop();
    if (openAt === undefined) {
      throw new Error("a message after the cut, but no new socket opened");
    }
    figures.fromOpen.push(firstAt - openAt);
    figures.fromCut.push(firstAt - cutAt);
    figures.cutToOpen.push(openAt - cutAt);
  }
  controller.abort();
  await reading;
  expect(proxy.cuts).toBe(CUTS);
  return figures;
}

describe.runIf(enabled)("what a dropped socket costs with sessions", () => {
  it(`the time from a reconnection to the first resumed message, over ${CUTS} cuts`, async () => {
    const bridge = await server();
    console.log(`server: ${process.env["WSGRPC_TEST_SERVER"]}`);
    const runs: [string, ClientOptions, number][] = [
      ["RTT 0, default backoff (500 ms first delay, jittered)", {}, 0],
      ["RTT 0, no backoff (initialDelayMs 0)", { reconnect: { initialDelayMs: 0, maxDelayMs: 100 } }, 0],
      ["RTT 50 ms, no backoff", { reconnect: { initialDelayMs: 0, maxDelayMs: 100 } }, 50],
    ];
    for (const [name, options, rttMs] of runs) {
      const figures = await resumeFigures(bridge.bridgeUrl, options, rttMs);
      console.log(
        `${name}:\n  new socket open -> first resumed message: ${summary(figures.fromOpen)}\n` +
          `  cut -> first resumed message: ${summary(figures.fromCut)}\n` +
          `  cut -> new socket open: ${summary(figures.cutToOpen)}\n` +
          `  resumed ${figures.fromOpen.length} of ${CUTS}; not resumed: ${JSON.stringify(figures.failures)}`,
      );
    }
  }, 300_000);

  it(`the memory a parked session holds, ${SESSIONS} sessions of three calls each`, async () => {
    // The bridge alone in its process (in front of another's backend), so
    // that its RSS is the bridge's.
    const backend = await server();
    const bridge = await server({ backend: backend.grpcUrl });
    const proxy = await CuttingProxy.start(bridge.bridgeUrl);
    onCleanup(() => proxy.close());
    const url = proxy.url(bridge.bridgeUrl);
    const warm = new TestServiceClient(transportFor(bridge.bridgeUrl).transport);
    await warm.unary({});
    const stats = () => warm.stats({});
    await sleep(500);
    const idleKib = await rssKib(bridge.pid);

    // What every session's calls wait on until the end.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    onCleanup(() => {
      release();
      controller.abort();
    });
    const clients: WebSocketGRPCClient[] = [];
    const calls: Promise<unknown>[] = [];
    const open = async () => {
      const transport = new WebSocketGRPCClient(url, SESSIONS_OFF ? { WebSocket, session: false } : { WebSocket });
      clients.push(transport);
      const client = new TestServiceClient(transport);
      await transport.connect();
      if (CALLS !== "input") {
        // A server stream whose reader took one message and stopped.
        const stream = client.serverStream({ text: "x".repeat(64), count: 1_000_000 }, { signal: controller.signal })[Symbol.asyncIterator]();
        await stream.next();
      }
      if (CALLS === "stream") {
        return;
      }
      // A client stream ten messages in, not half-closed.
      calls.push(
        client.clientStream(
          (async function* () {
            for (let i = 0; i < 10; i += 1) {
              yield { text: "y".repeat(64), big: String(i) };
            }
            await released;
          })(),
          { signal: controller.signal },
        ),
      );
      // A unary call the backend never answers.
      calls.push(client.hang({}, { signal: controller.signal }));
    };
    for (let batch = 0; batch < SESSIONS; batch += 100) {
      await Promise.all(Array.from({ length: Math.min(100, SESSIONS - batch) }, () => open()));
    }
    for (const call of calls) {
      call.catch(() => {});
    }
    onCleanup(() => {
      for (const client of clients) {
        client.close();
      }
    });
    const perSessionCalls = { all: 3, stream: 1, input: 2 }[CALLS] ?? 3;
    await eventually(async () => Number((await stats()).active ?? 0) >= perSessionCalls * SESSIONS, "every call at the backend", 30_000);
    await sleep(2_000);
    const liveKib = await rssKib(bridge.pid);
    const liveSockets = await bridgeMetric(bridge, "wsgrpc_connections_open");
    if (SESSIONS_OFF) {
      console.log(
        `${SESSIONS} sockets without sessions (calls: ${CALLS}), bridge RSS: idle ${idleKib} KiB; live ${liveKib} KiB ` +
          `(${liveSockets} sockets, ${(((liveKib - idleKib) * 1024) / SESSIONS / 1024).toFixed(1)} KiB per socket)`,
      );
      return;
    }

    // Drop every socket; the clients' attempts to resume find nothing to connect to.
    proxy.retarget(`ws://127.0.0.1:${await freePort()}/ws`);
    proxy.cut();
    await eventually(async () => (await bridgeMetric(bridge, "wsgrpc_connections_open")) === 1, "every dropped socket gone", 30_000);
    await sleep(2_000);
    const parkedKib = await rssKib(bridge.pid);
    const parkedActive = Number((await stats()).active ?? 0);

    // The grace period (30 s by default) ends every parked session.
    await eventually(async () => Number((await stats()).active ?? 0) <= 1, "the parked sessions' calls to end", 60_000);
    await sleep(1_000);
    const afterKib = await rssKib(bridge.pid);
    const perSession = (kib: number) => ((kib - idleKib) * 1024) / SESSIONS;
    console.log(
      `${SESSIONS} sessions (calls: ${CALLS}), bridge RSS: idle ${idleKib} KiB; live ${liveKib} KiB (${liveSockets} sockets, ` +
        `${(perSession(liveKib) / 1024).toFixed(1)} KiB per session); parked ${parkedKib} KiB ` +
        `(${parkedActive} calls open at the backend, ${(perSession(parkedKib) / 1024).toFixed(1)} KiB per parked session); ` +
        `after the grace period ${afterKib} KiB (the allocator keeps what it freed)`,
    );
  }, 300_000);

  it("throughput of a server stream and a client stream, sessions on and off", async () => {
    const bridge = await server();
    const rate = async (options: ClientOptions) => {
      const client = new TestServiceClient(transportFor(bridge.bridgeUrl, options).transport);
      await client.unary({});
      const started = performance.now();
      let count = 0;
      for await (const _ of client.serverStream({ text: "m", count: 2_000_000 })) {
        count += 1;
      }
      expect(count).toBe(2_000_000);
      return count / ((performance.now() - started) / 1000);
    };
    const inputRate = async (options: ClientOptions) => {
      const client = new TestServiceClient(transportFor(bridge.bridgeUrl, options).transport);
      await client.unary({});
      const started = performance.now();
      const response = await client.clientStream(Array.from({ length: 200_000 }, (_, i) => ({ big: String(i) })));
      expect(response.index).toBe(200_000);
      return 200_000 / ((performance.now() - started) / 1000);
    };
    const rates = { off: [] as number[], on: [] as number[], inputOff: [] as number[], inputOn: [] as number[] };
    for (let round = 0; round < 5; round += 1) {
      rates.off.push(await rate({ session: false }));
      rates.on.push(await rate({}));
      rates.inputOff.push(await inputRate({ session: false }));
      rates.inputOn.push(await inputRate({}));
    }
    const line = (name: string, on: number[], off: number[]) =>
      `${name}: median ${median(on).toFixed(0)}/s with sessions, ${median(off).toFixed(0)}/s without ` +
      `(ratio ${(median(on) / median(off)).toFixed(2)}); best ${Math.max(...on).toFixed(0)} and ${Math.max(...off).toFixed(0)} ` +
      `(ratio ${(Math.max(...on) / Math.max(...off)).toFixed(2)}); runs on ${on.map((r) => r.toFixed(0)).join(", ")}; off ${off.map((r) => r.toFixed(0)).join(", ")}`;
    console.log(`${line("server stream, 2,000,000 messages", rates.on, rates.off)}\n${line("client stream, 200,000 messages", rates.inputOn, rates.inputOff)}`);
  }, 300_000);
});
