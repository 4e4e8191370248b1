// The benchmark page. The driver (driver/main.ts) calls `window.bench.run`
// once per measurement; each run opens its own connection, so no run pays
// for another's leftovers, and times itself with performance.now(), which
// has 5 µs resolution because the page is cross-origin isolated (100 µs
// otherwise, too coarse for a unary call).

import { ExampleServiceClient, type ChatMessage } from "../../../example/client/src/gen/example_wsgrpc.js";
import { WebSocketGRPCClient, type ClientOptions } from "../../../example/client/src/gen/wsgrpc_runtime.js";
import { STREAM_TEXT, type BenchPage, type Protocol, type RunResult, type RunSpec, type Workload } from "../shared/spec.js";
import { countFrames, rawStream } from "./raw.js";
import { checkStreamItem } from "./stream_check.js";

type Measured = Omit<RunResult, "negotiated" | "frames">;

// The sockets the transport opens, so that a run reports the subprotocol the
// server selected rather than the one it asked for, and the frames it
// received (a counter per frame: next to nothing beside parsing the frame).
const opened: WebSocket[] = [];
const received = { count: 0, chars: 0 };
class RecordingWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    opened.push(this);
    countFrames(this, received);
  }
}

// Started with --js-flags=--expose-gc: collecting before each run keeps one
// run's garbage out of the next one's time.
const collectGarbage = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** The value at quantile `q` of `samples` (ms), in µs. */
function quantileUs(samples: number[], q: number): number {
  const sorted = Float64Array.from(samples).sort();
  return (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 1000;
}

function latencyUs(samples: number[]): { p50: number; p99: number } {
  return { p50: quantileUs(samples, 0.5), p99: quantileUs(samples, 0.99) };
}

async function stream(client: ExampleServiceClient, count: number): Promise<Measured> {
  let received = 0;
  const start = performance.now();
  for await (const item of client.streamMessages({ message: STREAM_TEXT, count })) {
    const wrong = checkStreamItem(item, received);
    if (wrong !== undefined) {
      return { count: received, elapsedMs: performance.now() - start, error: wrong };
    }
    received += 1;
  }
  const elapsedMs = performance.now() - start;
  const error = received === count ? undefined : `${received} of ${count} messages arrived`;
  return { count: received, elapsedMs, ...(error === undefined ? {} : { error }) };
}

/** `inFlight` loops of SayHello, each starting a call when its last one ends. */
async function unary(client: ExampleServiceClient, inFlight: number, durationMs: number): Promise<Measured> {
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + durationMs;
  let error: string | undefined;
  const loop = async () => {
    while (error === undefined && performance.now() < deadline) {
      const sent = performance.now();
      const { message } = await client.sayHello({ name: "x" });
      latencies.push(performance.now() - sent);
      if (message !== "Hello x") {
        error = `SayHello answered ${JSON.stringify(message)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsedMs = performance.now() - start;
  return { count: latencies.length, elapsedMs, latencyUs: latencyUs(latencies), ...(error === undefined ? {} : { error }) };
}

/** One CollectMessages call; numbered messages, so the answer shows their order. */
async function clientStream(client: ExampleServiceClient, count: number): Promise<Measured> {
  // Built before the clock starts: the run measures sending, not building.
  const texts = Array.from({ length: count }, (_, index) => String(index));
  const requests = texts.map((message) => ({ message }));
  const expected = texts.join(" ");
  const start = performance.now();
  const response = await client.collectMessages(requests);
  const elapsedMs = performance.now() - start;
  const error =
    response.count !== count
      ? `CollectMessages counted ${response.count ?? 0} of ${count}`
      : response.joined !== expected
        ? "CollectMessages joined the messages out of order"
        : undefined;
  return { count: response.count ?? 0, elapsedMs, ...(error === undefined ? {} : { error }) };
}

/**
 * Chat as a ping-pong: the request stream yields the next message only once
 * the echo of the previous one has arrived, so one message is in flight.
 */
async function pingPong(client: ExampleServiceClient, durationMs: number): Promise<Measured> {
  const latencies: number[] = [];
  let sentAt = 0;
  let stop = false;
  let echoed: () => void = () => {};
  async function* pings(): AsyncGenerator<ChatMessage> {
    for (let seq = 1; !stop; seq += 1) {
      const answered = new Promise<void>((resolve) => (echoed = resolve));
      sentAt = performance.now();
      yield { text: "p", seq };
      await answered;
    }
  }
  const start = performance.now();
  const deadline = start + durationMs;
  let expectedSeq = 1;
  let error: string | undefined;
  for await (const reply of client.chat(pings())) {
    latencies.push(performance.now() - sentAt);
    if (reply.seq !== expectedSeq || reply.text !== "echo: p") {
      error = `Chat echoed ${JSON.stringify(reply)} for seq ${expectedSeq}`;
      break;
    }
    expectedSeq += 1;
    // Stopping ends the request stream, the call half-closes and the
    // server ends its replies: the loop ends on its own.
    stop = performance.now() >= deadline;
    echoed();
  }
  const elapsedMs = performance.now() - start;
  return { count: latencies.length, elapsedMs, latencyUs: latencyUs(latencies), ...(error === undefined ? {} : { error }) };
}

function measure(client: ExampleServiceClient, workload: Workload): Promise<Measured> {
  switch (workload.kind) {
    case "stream":
      return stream(client, workload.count);
    case "unary":
      return unary(client, workload.inFlight, workload.durationMs);
    case "clientStream":
      return clientStream(client, workload.count);
    case "pingPong":
      return pingPong(client, workload.durationMs);
  }
}

async function withClient(spec: RunSpec): Promise<RunResult> {
  opened.length = 0;
  // `protocol` comes with wire protocol v2; a transport without it ignores
  // the field and speaks v1, which the run then reports as negotiated.
  const options: ClientOptions & { protocol?: Protocol } = {
    WebSocket: RecordingWebSocket,
    protocol: spec.protocol,
  };
  const transport = new WebSocketGRPCClient(spec.url, options);
  let negotiated = "";
  try {
    // Connecting is not part of any figure.
    await transport.connect();
    negotiated = opened.at(-1)?.protocol ?? "";
    collectGarbage();
    received.count = received.chars = 0;
    const measured = await measure(new ExampleServiceClient(transport), spec.workload);
    return { negotiated, frames: { ...received }, ...measured };
  } catch (error) {
    return { negotiated, frames: { ...received }, count: 0, elapsedMs: 0, error: String(error) };
  } finally {
    transport.close();
  }
}

const bench: BenchPage = {
  crossOriginIsolated: globalThis.crossOriginIsolated,
  run(spec) {
    const { workload } = spec;
    if (workload.kind === "stream" && workload.reader === "raw") {
      collectGarbage();
      return rawStream(spec.url, spec.protocol, workload.count);
    }
    return withClient(spec);
  },
};
(globalThis as unknown as { bench: BenchPage }).bench = bench;
document.body.dataset["ready"] = "true";
