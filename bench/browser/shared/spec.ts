// What the driver asks the page to run and what the page answers: the
// contract between driver/ (Node) and page/ (Chromium). Types, and the one
// value both sides must agree on.

/** The text of every StreamMessages message: small, so framing dominates. */
export const STREAM_TEXT = "x";

/** The wire protocol the page's client asks for. */
export type Protocol = "v1" | "v2";

/** Which code in the page reads the frames. */
export type Reader =
  /** The generated ExampleServiceClient over WebSocketGRPCClient. */
  | "client"
  /** A bare WebSocket, JSON.parse and a loop over the messages. */
  | "raw";

export type Workload =
  /** One StreamMessages call of `count` messages. */
  | { kind: "stream"; count: number; reader: Reader }
  /** SayHello for `durationMs`, `inFlight` calls at a time. */
  | { kind: "unary"; inFlight: number; durationMs: number }
  /** One CollectMessages call of `count` messages. */
  | { kind: "clientStream"; count: number }
  /** Chat for `durationMs`: one message out, then wait for its echo. */
  | { kind: "pingPong"; durationMs: number };

export interface RunSpec {
  /** The WebSocket endpoint: the bridge's /ws, or the ceiling server. */
  url: string;
  protocol: Protocol;
  workload: Workload;
}

export interface RunResult {
  /** The subprotocol the server selected ("" for none), as the socket saw it. */
  negotiated: string;
  /** Messages, calls or round trips completed. */
  count: number;
  /** From the first request to the last answer, by performance.now(). */
  elapsedMs: number;
  /** WebSocket frames the page received during the run, and their characters. */
  frames: { count: number; chars: number };
  /** Per-call or per-round-trip latencies, for unary and ping-pong. */
  latencyUs?: { p50: number; p99: number };
  /** Why the run failed: a wrong, missing or out-of-order message, or an error. */
  error?: string;
}

/** What the page puts on `window` for the driver to call. */
export interface BenchPage {
  run(spec: RunSpec): Promise<RunResult>;
  /** Whether performance.now() has its fine (5 µs) resolution here. */
  crossOriginIsolated: boolean;
}
