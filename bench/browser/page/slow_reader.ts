// A slow reader of large messages: what the page holds while it reads a
// stream of 1 MiB messages far slower than the bridge could send them. The
// heap comes from the driver (over CDP, after a collection); the windows
// come from what the client itself sends on its socket, read by a socket
// that passes everything through: the request's `windowBytes` (or
// `window`), its settings, and each `credit`. A credit that grows a window
// grants exactly what the window grows by (the window doubles, up to the
// maximum), while one that gives back what the reader took grants a sum of
// message costs, so the two tell apart.

import { ExampleServiceClient } from "../../../example/client/src/gen/example_wsgrpc.js";
import {
  WebSocketGRPCClient,
  type ClientOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "../../../example/client/src/gen/wsgrpc_runtime.js";
import { HEAP_SAMPLER, type RunResult, type SlowReader, type SlowReaderResult } from "../shared/spec.js";

/** The client's default `maxWindowBytes`, where the workload sets none. */
const DEFAULT_MAX_WINDOW_BYTES = 16 << 20;

/** A window in bytes as the client's frames show it. */
interface Track {
  initial: number;
  current: number;
  largest: number;
  /** The reads done when it grew, one per growth. */
  grewAtReads: number[];
}

function track(initial: number): Track {
  return { initial, current: initial, largest: initial, grewAtReads: [] };
}

/** Whether a credit of `bytes` is `window` growing (doubling, up to `max`); if so, grows it. */
function grew(window: Track, bytes: number, max: number, read: number): void {
  const growth = Math.min(max, window.current * 2) - window.current;
  if (growth > 0 && bytes === growth) {
    window.current += growth;
    window.largest = Math.max(window.largest, window.current);
    window.grewAtReads.push(read);
  }
}

interface Envelope {
  type?: unknown;
  id?: unknown;
  bytes?: unknown;
  window?: unknown;
  windowBytes?: unknown;
  connectionWindowBytes?: unknown;
}

/** What the page's socket saw of the windows and of the call's frames. */
class Observer {
  stream: Track | undefined;
  socket: Track | undefined;
  streamWindowMessages: number | undefined;
  pings = 0;
  /** Messages the page has read so far. */
  read = 0;
  /** The socket the client opened last. */
  opened: WebSocketLike | undefined;
  /** Frames that carried messages of the call (a 1 MiB message goes alone). */
  arrivedFrames = 0;
  /** What the last message counted against the windows, by the bridge's `bytes`. */
  messageCost = 0;
  #streamId: string | undefined;

  constructor(
    readonly hideByteWindows: boolean,
    readonly maxWindowBytes: number,
  ) {}

  /** A frame the client sends, looked at. */
  sent(text: string): void {
    const parsed: unknown = JSON.parse(text);
    for (const envelope of (Array.isArray(parsed) ? parsed : [parsed]) as Envelope[]) {
      if (envelope.type === "settings" && typeof envelope.connectionWindowBytes === "number") {
        this.socket = track(envelope.connectionWindowBytes);
      } else if (envelope.type === "request" && typeof envelope.id === "string") {
        this.#streamId = envelope.id;
        if (typeof envelope.windowBytes === "number") {
          this.stream = track(envelope.windowBytes);
        }
        if (typeof envelope.window === "number") {
          this.streamWindowMessages = envelope.window;
        }
      } else if (envelope.type === "credit" && typeof envelope.bytes === "number") {
        const window = envelope.id === undefined ? this.socket : envelope.id === this.#streamId ? this.stream : undefined;
        if (window !== undefined) {
          grew(window, envelope.bytes, this.maxWindowBytes, this.read);
        }
      } else if (envelope.type === "ping") {
        this.pings += 1;
      }
    }
  }

  /**
   * A frame the client receives, looked at, and passed on: with
   * `hideByteWindows`, the settings without the bridge's offer of windows
   * in bytes. The frames of messages are not parsed a second time: their
   * text is searched, from its end, for what they count.
   */
  received(text: string): string {
    if (text.length < 4096 && text.includes('"settings"')) {
      if (!this.hideByteWindows) {
        return text;
      }
      const parsed: unknown = JSON.parse(text);
      for (const envelope of (Array.isArray(parsed) ? parsed : [parsed]) as Envelope[]) {
        if (envelope.type === "settings") {
          delete envelope.windowBytes;
          delete envelope.connectionWindowBytes;
        }
      }
      return JSON.stringify(parsed);
    }
    if (text.includes('"payloads"')) {
      this.arrivedFrames += 1;
      const at = text.lastIndexOf('"bytes":');
      if (at !== -1) {
        const cost = Number.parseInt(text.slice(at + 8, at + 24), 10);
        if (Number.isFinite(cost)) {
          this.messageCost = cost;
        }
      }
    }
    return text;
  }

  /** A WebSocket for the client that shows this observer what goes by. */
  webSocket(): WebSocketConstructor {
    const observer = this;
    return class ObservedSocket implements WebSocketLike {
      readonly #socket: WebSocket;
      constructor(url: string, protocols?: string | string[]) {
        this.#socket = new WebSocket(url, protocols);
        observer.opened = this;
      }
      get readyState(): number {
        return this.#socket.readyState;
      }
      get bufferedAmount(): number {
        return this.#socket.bufferedAmount;
      }
      get protocol(): string {
        return this.#socket.protocol;
      }
      send(data: string): void {
        observer.sent(data);
        this.#socket.send(data);
      }
      close(code?: number, reason?: string): void {
        this.#socket.close(code, reason);
      }
      addEventListener(type: "open" | "message" | "close" | "error", listener: (event: unknown) => void): void {
        if (type === "message") {
          this.#socket.addEventListener("message", (event: MessageEvent<unknown>) => {
            const { data } = event;
            listener({ data: typeof data === "string" ? observer.received(data) : data });
          });
        } else {
          this.#socket.addEventListener(type, listener);
        }
      }
    };
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The driver's heap sampler: collects garbage, answers the used JS heap in bytes. */
function heapSampler(): (read: number) => Promise<number> {
  const sampler = (globalThis as unknown as Record<string, unknown>)[HEAP_SAMPLER];
  if (typeof sampler !== "function") {
    throw new Error(`the driver exposed no ${HEAP_SAMPLER}`);
  }
  return sampler as (read: number) => Promise<number>;
}

export async function slowStream(url: string, workload: SlowReader): Promise<RunResult> {
  const observer = new Observer(workload.windows === "messages", workload.maxWindowBytes ?? DEFAULT_MAX_WINDOW_BYTES);
  const options: ClientOptions = { WebSocket: observer.webSocket(), protocol: "v2" };
  if (workload.initialWindowBytes !== undefined) {
    options.initialWindowBytes = workload.initialWindowBytes;
  }
  if (workload.maxWindowBytes !== undefined) {
    options.maxWindowBytes = workload.maxWindowBytes;
  }
  const transport = new WebSocketGRPCClient(url, options);
  const client = new ExampleServiceClient(transport);
  const sample = heapSampler();
  // Built before the baseline: the request's text is the page's, not the stream's.
  const message = "x".repeat(workload.messageBytes);
  const samples: SlowReaderResult["samples"] = [];
  let negotiated = "";
  let baselineBytes = 0;
  let read = 0;
  let mostUnreadFrames = 0;
  let stoppedEarly = false;
  let error: string | undefined;
  let start = performance.now();
  try {
    await transport.connect();
    negotiated = observer.opened?.protocol ?? "";
    baselineBytes = await sample(0);
    start = performance.now();
    for await (const item of client.streamMessages({ message, count: workload.count })) {
      if ((item.index ?? 0) !== read || item.message?.length !== workload.messageBytes) {
        error = `message ${read} arrived as index ${item.index ?? 0} of ${item.message?.length ?? 0} characters`;
        break;
      }
      read += 1;
      observer.read = read;
      if (read >= workload.reads) {
        break;
      }
      // Also at once when what has arrived unread alone passes the limit:
      // with message windows it grows by hundreds of MiB a second.
      const unreadBytes = (observer.arrivedFrames - read) * workload.messageBytes;
      if (read % workload.sampleEvery === 0 || unreadBytes > workload.stopAboveBytes) {
        const heapBytes = await sample(read);
        samples.push({ read, heapBytes });
        if (heapBytes - baselineBytes > workload.stopAboveBytes) {
          stoppedEarly = true;
          break;
        }
      }
      await sleep(workload.readEveryMs);
      // What waits for the reader when it comes back: the most it holds unread.
      mostUnreadFrames = Math.max(mostUnreadFrames, observer.arrivedFrames - read);
    }
  } catch (caught) {
    error = String(caught);
  } finally {
    transport.close();
  }
  const elapsedMs = performance.now() - start;
  if (error === undefined && !stoppedEarly && read < workload.reads) {
    error = `the stream ended after ${read} of ${workload.reads} reads`;
  }
  const slowReader: SlowReaderResult = {
    baselineBytes,
    samples,
    stoppedEarly,
    messageCostBytes: observer.messageCost,
    mostUnreadFrames,
    pings: observer.pings,
  };
  if (observer.stream !== undefined) {
    const { initial, largest, grewAtReads } = observer.stream;
    slowReader.streamWindowBytes = { initial, largest, grewAtReads };
  }
  if (observer.socket !== undefined) {
    const { initial, largest, grewAtReads } = observer.socket;
    slowReader.socketWindowBytes = { initial, largest, grewAtReads };
  }
  if (observer.streamWindowMessages !== undefined) {
    slowReader.streamWindowMessages = observer.streamWindowMessages;
  }
  return {
    negotiated,
    count: read,
    elapsedMs,
    frames: { count: observer.arrivedFrames, chars: 0 },
    slowReader,
    ...(error === undefined ? {} : { error }),
  };
}
