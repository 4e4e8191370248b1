/**
 * The wsgrpc transport: gRPC calls from a browser (or Node ≥ 20) over one
 * WebSocket to a wsgrpc bridge, speaking wire protocol version 2 where the
 * bridge does and version 1 where it does not (docs/PROTOCOL.md). Generated clients (`*_wsgrpc.ts`) call it; it has no
 * dependency beyond the platform.
 *
 * ```ts
 * const transport = new WebSocketGRPCClient("wss://example.com/ws", {
 *   reconnect: { initialDelayMs: 500, maxDelayMs: 10_000 },
 * });
 * const client = new ExampleServiceClient(transport);
 * const { message } = await client.sayHello({ name: "World" });
 * for await (const item of client.streamMessages({ message: "hi", count: 3 })) { … }
 * ```
 *
 * Messages are plain objects in the proto3 JSON mapping, exactly as the
 * bridge writes and reads them; docs/PROTOCOL.md ("Payloads") lists the
 * JSON, and so the TypeScript type, of every kind of field. In short:
 * lowerCamelCase names, every field optional; 64-bit integers as decimal
 * strings; `float` and `double` as {@link JsonFloat}; `bytes` as base64;
 * enums by name; Any as {@link AnyJson}; Struct, Value and ListValue as
 * {@link JsonObject}, {@link JsonValue} and `JsonValue[]`.
 *
 * @module
 */

/** The gRPC status codes. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC status code: `Code.NOT_FOUND` is `5`. */
export type Code = (typeof Code)[keyof typeof Code];

/** The canonical name of a status code: `"NOT_FOUND"`. */
export type CodeName = keyof typeof Code;

const codeNames = new Map<number, CodeName>(
  (Object.keys(Code) as CodeName[]).map((name): [number, CodeName] => [Code[name], name]),
);

/** The canonical name of `code`, or `"UNKNOWN"` for a number that is none. */
export function codeNameOf(code: number): CodeName {
  return codeNames.get(code) ?? "UNKNOWN";
}

/** Headers or trailers: lower-case keys; `-bin` keys carry base64. */
export type Metadata = Record<string, string>;

// Marks every RpcError, so that `instanceof` holds across two copies of
// this file (two generated outputs in one app, say).
const rpcErrorBrand: unique symbol = Symbol.for("wsgrpc.RpcError");

/** How a call ended when it did not succeed. */
export class RpcError extends Error {
  /** The gRPC status code, e.g. `Code.NOT_FOUND`; a number no code has reads as `UNKNOWN`. */
  readonly code: Code;
  /** Its canonical name, e.g. `"NOT_FOUND"`. */
  readonly codeName: string;
  /** The response headers and trailers that came with the status. */
  readonly metadata: Metadata;
  /** `grpc-status-details-bin`, base64: a serialized `google.rpc.Status`. */
  readonly details: string | undefined;
  readonly [rpcErrorBrand] = true;

  constructor(
    code: number,
    message: string,
    init: { codeName?: string; metadata?: Metadata; details?: string; cause?: unknown } = {},
  ) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "RpcError";
    this.code = codeNames.has(code) ? (code as Code) : Code.UNKNOWN;
    this.codeName = init.codeName ?? codeNameOf(code);
    this.metadata = init.metadata ?? {};
    this.details = init.details;
  }

  /**
   * `reason` as an RpcError: itself if it is one, `CANCELLED` for an
   * abort, else `code` (by default `UNKNOWN`) with its message and the
   * reason as `cause`.
   */
  static from(reason: unknown, code: Code = Code.UNKNOWN): RpcError {
    if (reason instanceof RpcError) {
      return reason;
    }
    if (reason instanceof Error) {
      const aborted = reason.name === "AbortError";
      return new RpcError(aborted ? Code.CANCELLED : code, reason.message, { cause: reason });
    }
    return new RpcError(code, String(reason), { cause: reason });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return value instanceof Error && (value as { [rpcErrorBrand]?: unknown })[rpcErrorBrand] === true;
  }
}

/** Any JSON value; the JSON form of `google.protobuf.Value`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object; the JSON form of `google.protobuf.Struct`. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/**
 * A `float` or `double` (or their wrappers): a number, or NaN and the
 * infinities as the proto3 JSON mapping spells them.
 */
export type JsonFloat = number | "NaN" | "Infinity" | "-Infinity";

/**
 * `google.protobuf.Any` in its proto3 JSON form: the type URL under
 * `"@type"` (`"type.googleapis.com/package.Message"`) beside the fields of
 * the embedded message, or, for a well-known type with a JSON form of its
 * own, beside its JSON under `"value"`.
 */
export interface AnyJson {
  "@type": string;
  [field: string]: JsonValue;
}

/** Per-call options; every method of a generated client takes them. */
export interface CallOptions {
  /** Aborting cancels the call, which then fails with `CANCELLED`. */
  signal?: AbortSignal;
  /**
   * The call's deadline, from now. The bridge enforces it; should its answer
   * not come, the call fails here shortly after with `DEADLINE_EXCEEDED`.
   */
  timeoutMs?: number;
  /** Request metadata: lower-case keys; keys ending in `-bin` take base64. */
  metadata?: Metadata;
  /** Called once with the response headers, when the first frame arrives. */
  onHeader?: (headers: Metadata) => void;
  /** Called once with the trailers, when the call ends. */
  onTrailer?: (trailers: Metadata) => void;
}

/** How many messages flow each way in a call. */
export type MethodKind = "unary" | "serverStreaming" | "clientStreaming" | "bidiStreaming";

/** A method as generated service descriptors list it. */
export interface MethodDescriptor {
  /** As declared: `SayHello`. */
  readonly name: string;
  /** What the client sends: `example.ExampleService/SayHello`. */
  readonly path: string;
  readonly kind: MethodKind;
}

/** Where the client's connection is. */
export type ConnectionState = "connecting" | "open" | "closed" | "reconnecting";

/** Backoff between connection attempts: the delay doubles up to a cap. */
export interface ReconnectOptions {
  /** The delay before the first reconnection attempt; default 500 ms. */
  initialDelayMs?: number;
  /** The longest delay between two attempts; default 30 s. */
  maxDelayMs?: number;
  /** Attempts in a row before giving up; default unlimited. */
  maxAttempts?: number;
}

/** What the transport needs of a WebSocket: browsers' and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  /** The subprotocol the server chose; `""` for none. */
  readonly protocol?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: unknown) => void): void;
}

/** `WebSocket` in browsers and Node ≥ 22; `WebSocket` from `ws` in Node 20. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * The wire protocol: `"v2"` carries many envelopes in one frame, which a
 * browser reads far faster than one frame per message; `"v1"` is the
 * original one envelope per frame.
 */
export type Protocol = "v1" | "v2";

export interface ClientOptions {
  /** The WebSocket implementation; default the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /**
   * Reconnect with exponential backoff when the connection drops or cannot
   * be made; `false` (the default) makes one attempt per connect.
   */
  reconnect?: ReconnectOptions | false;
  /**
   * The protocol to speak. `"v2"` (the default) offers v2 and v1 and takes
   * what the bridge picks; should a bridge that predates v2 refuse the
   * offer, the client connects again with v1 and stays with it. `"v1"`
   * offers nothing and speaks v1.
   */
  protocol?: Protocol;
  /**
   * Told of frames that concern no call: the bridge's `error` frames and
   * anything it sends that cannot be read. Default: `console.warn`.
   */
  onProtocolError?: (error: RpcError, frame: unknown) => void;
  /**
   * v2: how many responses of a server or bidi stream may wait for its
   * reader. The bridge sends no more until the reader takes some, and
   * meanwhile reads no more from the backend, so a slow reader holds the
   * backend back instead of filling memory. Default 4,096.
   */
  streamWindow?: number;
}

/** A call's inputs, for client and bidi streaming. */
export type StreamInput<I> = AsyncIterable<I> | Iterable<I>;

// How long past its deadline a call waits for the bridge's own
// DEADLINE_EXCEEDED before failing on its own.
const DEADLINE_GRACE_MS = 200;
// Input is paused while the socket has this much unsent.
const SEND_HIGH_WATER_BYTES = 1 << 20;
const SOCKET_OPEN = 1;
const SUBPROTOCOLS = ["wsgrpc.v2", "wsgrpc.v1"];
// What a v2 frame from the client may hold until the bridge's settings say.
const DEFAULT_MAX_FRAME_BYTES = 64 << 10;
const DEFAULT_STREAM_WINDOW = 4096;

/**
 * What generated clients call methods through. `WebSocketGRPCClient` is
 * the one that speaks to a bridge; a test can hand a client any object of
 * this shape instead.
 */
export interface Transport {
  /** One request, one response. */
  unary<I, O>(method: string, request: I, options?: CallOptions): Promise<O>;
  /** One request, the responses as they come. */
  serverStream<I, O>(method: string, request: I, options?: CallOptions): AsyncIterable<O>;
  /** The requests, then one response. */
  clientStream<I, O>(method: string, requests: StreamInput<I>, options?: CallOptions): Promise<O>;
  /** Requests and responses at once. */
  bidiStream<I, O>(method: string, requests: StreamInput<I>, options?: CallOptions): AsyncIterable<O>;
}

/**
 * A connection to a wsgrpc bridge that many calls share. It connects on
 * the first call (or `connect()`); calls made while it (re)connects wait.
 */
export class WebSocketGRPCClient implements Transport {
  readonly url: string;
  readonly #WebSocket: WebSocketConstructor;
  readonly #reconnect: Required<ReconnectOptions> | null;
  readonly #onProtocolError: (error: RpcError, frame: unknown) => void;
  readonly #stateListeners = new Set<(state: ConnectionState) => void>();
  #state: ConnectionState = "closed";
  #connection: Connection | null = null;
  #opening: Promise<Connection> | null = null;
  // The socket of the attempt in progress, so that close() can stop it.
  #pendingSocket: WebSocketLike | null = null;
  // Bumped by close(): loops started before it stop.
  #generation = 0;
  #wakeFromBackoff: (() => void) | null = null;
  // v2 until a bridge refuses to hear of it.
  #offerV2: boolean;
  readonly #streamWindow: number;

  constructor(url: string, options: ClientOptions = {}) {
    this.url = url;
    const WebSocket =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocket === undefined) {
      throw new TypeError(
        "WebSocketGRPCClient: this platform has no global WebSocket; pass one: new WebSocketGRPCClient(url, { WebSocket }) with WebSocket from the `ws` package",
      );
    }
    this.#WebSocket = WebSocket;
    this.#offerV2 = (options.protocol ?? "v2") === "v2";
    this.#streamWindow = Math.max(1, Math.floor(options.streamWindow ?? DEFAULT_STREAM_WINDOW));
    this.#reconnect =
      options.reconnect === undefined || options.reconnect === false
        ? null
        : {
            initialDelayMs: options.reconnect.initialDelayMs ?? 500,
            maxDelayMs: options.reconnect.maxDelayMs ?? 30_000,
            maxAttempts: options.reconnect.maxAttempts ?? Infinity,
          };
    this.#onProtocolError =
      options.onProtocolError ??
      ((error) => console.warn(`wsgrpc: ${error.codeName}: ${error.message}`));
  }

  /** Where the connection is now. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Calls `listener` on every change of state; returns the unsubscriber. */
  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Opens the connection, if it is not open. Fails with `UNAVAILABLE` when
   * it cannot (after the configured attempts).
   */
  async connect(): Promise<void> {
    await this.#open();
  }

  /**
   * Closes the connection: open calls fail with `CANCELLED`, and the bridge
   * cancels them at the backend. A later call or `connect()` opens a new one.
   */
  close(): void {
    this.#generation += 1;
    this.#opening = null;
    this.#wakeFromBackoff?.();
    this.#pendingSocket?.close(1000);
    this.#pendingSocket = null;
    const connection = this.#connection;
    this.#connection = null;
    if (connection !== null) {
      connection.failAll(new RpcError(Code.CANCELLED, "the client was closed"));
      connection.socket.close(1000);
    }
    this.#setState("closed");
  }

  /** Calls a unary method: one request, one response. */
  unary<I, O>(method: string, request: I, options?: CallOptions): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      new Call<I, O>(this.#context(), method, "unary", options, {
        message: () => {},
        end: resolve,
        fail: reject,
      }).start({ request });
    });
  }

  /** Calls a server-streaming method: one request, the responses as they come. */
  serverStream<I, O>(method: string, request: I, options?: CallOptions): AsyncIterable<O> {
    return new ResponseStream<O>((sink) =>
      new Call<I, O>(this.#context(), method, "serverStreaming", options, sink).start({ request }),
    );
  }

  /** Calls a client-streaming method: the requests, then one response. */
  clientStream<I, O>(method: string, requests: StreamInput<I>, options?: CallOptions): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      new Call<I, O>(this.#context(), method, "clientStreaming", options, {
        message: () => {},
        end: resolve,
        fail: reject,
      }).start({ requests });
    });
  }

  /** Calls a bidi-streaming method: requests and responses flow at once. */
  bidiStream<I, O>(method: string, requests: StreamInput<I>, options?: CallOptions): AsyncIterable<O> {
    return new ResponseStream<O>((sink) =>
      new Call<I, O>(this.#context(), method, "bidiStreaming", options, sink).start({ requests }),
    );
  }

  #context(): CallContext {
    return {
      open: () => this.#open(),
      streamWindow: this.#streamWindow,
      protocolError: (error, frame) => this.#onProtocolError(error, frame),
    };
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) {
      return;
    }
    this.#state = state;
    for (const listener of [...this.#stateListeners]) {
      try {
        listener(state);
      } catch (error) {
        console.error("wsgrpc: a state listener threw", error);
      }
    }
  }

  #open(): Promise<Connection> {
    if (this.#connection !== null) {
      return Promise.resolve(this.#connection);
    }
    return this.#opening ?? this.#startOpening(false);
  }

  #startOpening(afterDrop: boolean): Promise<Connection> {
    const opening = this.#openWithRetries(afterDrop);
    this.#opening = opening;
    // Handled here too, as nobody may be waiting (a reconnect after a
    // drop); failures reach whoever is through `opening`.
    const settled = () => {
      if (this.#opening === opening) {
        this.#opening = null;
      }
    };
    opening.then(settled, settled);
    return opening;
  }

  async #openWithRetries(afterDrop: boolean): Promise<Connection> {
    const generation = this.#generation;
    const stopped = () => new RpcError(Code.CANCELLED, "the client was closed");
    let failures = 0;
    let lastError: unknown = undefined;
    for (;;) {
      if (afterDrop || failures > 0) {
        const reconnect = this.#reconnect;
        if (reconnect === null || failures >= reconnect.maxAttempts) {
          this.#setState("closed");
          const why = lastError instanceof Error ? lastError.message : `could not connect to ${this.url}`;
          throw unavailable(reconnect === null ? why : `${why}; gave up after ${failures} attempts`);
        }
        this.#setState("reconnecting");
        await this.#backoff(backoffDelay(reconnect, afterDrop ? failures : failures - 1));
        if (generation !== this.#generation) {
          throw stopped();
        }
      } else {
        this.#setState("connecting");
      }
      try {
        const connection = await this.#openSocketFallingBack();
        if (generation !== this.#generation) {
          connection.socket.close(1000);
          throw stopped();
        }
        if (!connection.isOpen) {
          throw new Error(`the connection to ${this.url} closed as it opened`);
        }
        this.#connection = connection;
        this.#setState("open");
        return connection;
      } catch (error) {
        if (generation !== this.#generation) {
          throw stopped();
        }
        failures += 1;
        lastError = error;
      }
    }
  }

  /** Waits `delayMs`, or until close() cuts it short. */
  #backoff(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakeFromBackoff = null;
        resolve();
      };
      const timer = setTimeout(wake, delayMs);
      this.#wakeFromBackoff = wake;
    });
  }

  /**
   * Opens a socket offering v2. A bridge that predates v2 answers without
   * a subprotocol, which browsers and `ws` take as a failed handshake: then
   * once more without the offer, and v1 from then on if that works.
   */
  async #openSocketFallingBack(): Promise<Connection> {
    if (!this.#offerV2) {
      return this.#openSocket(false);
    }
    const generation = this.#generation;
    try {
      return await this.#openSocket(true);
    } catch (error) {
      if (generation !== this.#generation) {
        throw error;
      }
      const connection = await this.#openSocket(false).catch(() => {
        throw error;
      });
      this.#offerV2 = false;
      return connection;
    }
  }

  #openSocket(offerV2: boolean): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = offerV2 ? new this.#WebSocket(this.url, SUBPROTOCOLS) : new this.#WebSocket(this.url);
      this.#pendingSocket = socket;
      const connection = new Connection(socket, this.#onProtocolError);
      let opened = false;
      let settled = false;
      const failBeforeOpen = (reason: string) => {
        if (!settled) {
          settled = true;
          this.#pendingSocket = null;
          reject(new Error(reason));
        }
      };
      const ready = () => {
        settled = true;
        this.#pendingSocket = null;
        resolve(connection);
      };
      socket.addEventListener("open", () => {
        opened = true;
        if (socket.protocol === "wsgrpc.v2") {
          // Nothing goes out before the bridge's settings, its first frame.
          connection.awaitSettings(ready);
        } else {
          ready();
        }
      });
      socket.addEventListener("message", (event) => {
        connection.receive(property(event, "data"));
      });
      socket.addEventListener("error", () => {
        failBeforeOpen(`could not connect to ${this.url}`);
      });
      socket.addEventListener("close", (event) => {
        const code = property(event, "code");
        const reason = property(event, "reason");
        if (!opened || !settled) {
          failBeforeOpen(`could not connect to ${this.url} (close code ${String(code)})`);
          return;
        }
        this.#dropped(
          connection,
          typeof code === "number" ? code : 1006,
          typeof reason === "string" ? reason : "",
        );
      });
    });
  }

  #dropped(connection: Connection, code: number, reason: string): void {
    const why = reason === "" ? `code ${code}` : `code ${code}: ${reason}`;
    connection.failAll(unavailable(`the connection to the bridge closed (${why})`));
    if (this.#connection !== connection) {
      return;
    }
    this.#connection = null;
    if (this.#reconnect !== null) {
      this.#startOpening(true);
    } else {
      this.#setState("closed");
    }
  }
}

/** `event[key]`, for events whose type each WebSocket implementation declares its own way. */
function property(event: unknown, key: string): unknown {
  return typeof event === "object" && event !== null ? (event as Record<string, unknown>)[key] : undefined;
}

function unavailable(message: string): RpcError {
  return new RpcError(Code.UNAVAILABLE, message);
}

/** Exponential backoff with jitter: between half and all of the full delay. */
function backoffDelay(options: Required<ReconnectOptions>, retry: number): number {
  const full = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** retry);
  return full / 2 + (Math.random() * full) / 2;
}

/** What a call needs of its client. */
interface CallContext {
  open(): Promise<Connection>;
  /** v2: the responses a stream's reader may have waiting. */
  readonly streamWindow: number;
  protocolError(error: RpcError, frame: unknown): void;
}

/** What a connection needs of the calls on it. */
interface CallHandle {
  /** Whether any frame of the call has arrived. */
  readonly acknowledged: boolean;
  receive(frame: InboundFrame): void;
  refused(error: RpcError): void;
  /** v2: a `message` or `end` of the call was refused. */
  inputRefused(error: RpcError): void;
  /** v2: the bridge takes `messages` more request messages. */
  credit(messages: number): void;
  fail(error: RpcError): void;
}

/** Where a call delivers what happens to it. */
interface CallSink<O> {
  /** A response of a streaming call. */
  message(payload: O): void;
  /** The call succeeded; `payload` is the response of a unary call. */
  end(payload: O): void;
  fail(error: unknown): void;
}

/** The envelope, as far as the bridge sends it; every field unchecked. */
interface InboundFrame {
  type?: unknown;
  id?: unknown;
  payload?: unknown;
  end?: unknown;
  error?: unknown;
  code?: unknown;
  codeName?: unknown;
  details?: unknown;
  headers?: unknown;
  trailers?: unknown;
  /** v2: the messages of a stream, in order. */
  payloads?: unknown;
  /** v2, on `error`: the type of the envelope that was refused. */
  refused?: unknown;
  /** v2, on `settings`. */
  maxFrameBytes?: unknown;
  maxCallsPerConnection?: unknown;
  callQueueMessages?: unknown;
  /** v2, on `credit`. */
  messages?: unknown;
}

type OutboundFrame =
  | {
      type: "request";
      id: string;
      method: string;
      payload?: unknown;
      metadata?: Metadata;
      timeoutMs?: number;
      /** v2: the responses the bridge may send before credit. */
      window?: number;
    }
  | { type: "message"; id: string; payload: unknown }
  | { type: "end"; id: string }
  | { type: "cancel"; id: string }
  | { type: "credit"; id: string; messages: number };

/** One open WebSocket and the calls on it. */
class Connection {
  readonly socket: WebSocketLike;
  readonly #calls = new Map<string, CallHandle>();
  readonly #onProtocolError: (error: RpcError, frame: unknown) => void;
  #nextId = 1;
  #closed = false;
  // v2: told when the bridge's settings arrive; null once they have.
  #onSettings: (() => void) | null = null;
  #v2 = false;
  #maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  // v2: calls the bridge lets open at once, from its settings; calls
  // beyond wait here, in order, as an HTTP/2 client waits for a stream.
  #maxCalls = Infinity;
  readonly #waitingForRoom: { call: CallHandle; start: () => void }[] = [];
  // v2: the request messages a client or bidi stream may send before the
  // bridge's first credit: its call queue.
  #requestWindow = Infinity;
  // v2: envelopes (as JSON text) queued in this task, sent as one frame.
  #queued: string[] = [];
  #queuedBytes = 0;
  #flushScheduled = false;
  // How many were queued when the flush last looked.
  #queuedAtLastLook = 0;

  constructor(socket: WebSocketLike, onProtocolError: (error: RpcError, frame: unknown) => void) {
    this.socket = socket;
    this.#onProtocolError = onProtocolError;
  }

  get isOpen(): boolean {
    return !this.#closed && this.socket.readyState === SOCKET_OPEN;
  }

  /** Bytes given to this connection and not yet sent. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount + this.#queuedBytes;
  }

  /** Whether the socket speaks v2, with its flow control. */
  get v2(): boolean {
    return this.#v2;
  }

  /** v2: request messages a new call may send before credit arrives. */
  get requestWindow(): number {
    return this.#requestWindow;
  }

  /** v2: calls `ready` once the bridge's settings have arrived. */
  awaitSettings(ready: () => void): void {
    this.#v2 = true;
    this.#onSettings = ready;
  }

  /** Registers a call under a fresh id, unique on this connection. */
  add(call: CallHandle): string {
    const id = String(this.#nextId++);
    this.#calls.set(id, call);
    return id;
  }

  remove(id: string): void {
    if (!this.#calls.delete(id)) {
      return;
    }
    while (this.#calls.size < this.#maxCalls && !this.#closed) {
      const next = this.#waitingForRoom.shift();
      if (next === undefined) {
        break;
      }
      next.start();
    }
  }

  /**
   * Starts `call` once fewer calls are open than the bridge allows; returns
   * what takes it out of the line again (an abort, a deadline).
   */
  whenRoom(call: CallHandle, start: () => void): () => void {
    if (this.#calls.size < this.#maxCalls && this.#waitingForRoom.length === 0) {
      start();
      return () => {};
    }
    const entry = { call, start };
    this.#waitingForRoom.push(entry);
    return () => {
      const index = this.#waitingForRoom.indexOf(entry);
      if (index >= 0) {
        this.#waitingForRoom.splice(index, 1);
      }
    };
  }

  /**
   * Sends an envelope; false when the socket can no longer take one.
   * Throws what JSON.stringify throws for a payload it cannot write (a
   * BigInt). In v2 the envelope waits for the end of the current task, so
   * that everything the page sends in one task goes in one frame.
   */
  send(frame: OutboundFrame): boolean {
    const text = JSON.stringify(frame);
    if (!this.isOpen) {
      return false;
    }
    if (!this.#v2) {
      return this.#write(text);
    }
    this.#queued.push(text);
    this.#queuedBytes += text.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      this.#queuedAtLastLook = 0;
      queueMicrotask(() => this.#flushWhenQuiet());
    }
    return true;
  }

  /**
   * Waits while each turn of the microtask queue adds envelopes (calls
   * started together, a client stream's input), then sends them. This is
   * the end of the task without a new task's delay, and a lone call waits
   * two microtask turns.
   */
  #flushWhenQuiet(): void {
    const queued = this.#queued.length;
    if (queued > this.#queuedAtLastLook && this.#queuedBytes * 3 < this.#maxFrameBytes) {
      this.#queuedAtLastLook = queued;
      queueMicrotask(() => this.#flushWhenQuiet());
      return;
    }
    this.#flush();
  }

  /** v2: the queued envelopes as few frames as the bridge's limit allows. */
  #flush(): void {
    this.#flushScheduled = false;
    const queued = this.#queued;
    this.#queued = [];
    this.#queuedBytes = 0;
    let frame: string[] = [];
    let bytes = 2;
    for (const text of queued) {
      // Lengths in UTF-16 units: at most a third of UTF-8 bytes short.
      if (frame.length > 0 && (bytes + text.length + 1) * 3 > this.#maxFrameBytes) {
        this.#write(`[${frame.join(",")}]`);
        frame = [];
        bytes = 2;
      }
      frame.push(text);
      bytes += text.length + 1;
    }
    if (frame.length > 0) {
      this.#write(`[${frame.join(",")}]`);
    }
  }

  #write(text: string): boolean {
    if (!this.isOpen) {
      return false;
    }
    try {
      this.socket.send(text);
      return true;
    } catch {
      return false;
    }
  }

  failAll(error: RpcError): void {
    this.#closed = true;
    this.#queued = [];
    this.#queuedBytes = 0;
    const calls = [...this.#calls.values(), ...this.#waitingForRoom.splice(0).map(({ call }) => call)];
    this.#calls.clear();
    for (const call of calls) {
      call.fail(error);
    }
  }

  receive(data: unknown): void {
    if (typeof data !== "string") {
      this.#onProtocolError(new RpcError(Code.INTERNAL, "the bridge sent a binary frame"), data);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      this.#onProtocolError(new RpcError(Code.INTERNAL, "the bridge sent a frame that is not JSON"), data);
      return;
    }
    if (!this.#v2) {
      this.#envelope(parsed);
      return;
    }
    if (!Array.isArray(parsed)) {
      this.#onProtocolError(new RpcError(Code.INTERNAL, "the bridge sent a v2 frame that is not an array"), data);
      return;
    }
    for (const envelope of parsed) {
      this.#envelope(envelope);
    }
  }

  #envelope(parsed: unknown): void {
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      this.#onProtocolError(new RpcError(Code.INTERNAL, "the bridge sent a frame that is not an object"), parsed);
      return;
    }
    const frame = parsed as InboundFrame;
    const call = typeof frame.id === "string" ? this.#calls.get(frame.id) : undefined;
    if (frame.type === "response") {
      // Frames of calls already over (cancelled, say) still arrive: ignored.
      call?.receive(frame);
      return;
    }
    if (frame.type === "error") {
      this.#refused(frame, call);
      return;
    }
    if (frame.type === "credit" && this.#v2) {
      // Credit for a call that has ended crossed its end: ignored.
      if (typeof frame.messages === "number" && frame.messages > 0) {
        call?.credit(frame.messages);
      }
      return;
    }
    if (frame.type === "settings" && this.#v2) {
      if (typeof frame.maxFrameBytes === "number" && frame.maxFrameBytes > 0) {
        this.#maxFrameBytes = frame.maxFrameBytes;
      }
      if (typeof frame.maxCallsPerConnection === "number" && frame.maxCallsPerConnection > 0) {
        this.#maxCalls = frame.maxCallsPerConnection;
      }
      if (typeof frame.callQueueMessages === "number" && frame.callQueueMessages > 0) {
        this.#requestWindow = frame.callQueueMessages;
      }
      const ready = this.#onSettings;
      this.#onSettings = null;
      ready?.();
      return;
    }
    this.#onProtocolError(
      new RpcError(Code.INTERNAL, `the bridge sent a frame of unknown type ${JSON.stringify(frame.type)}`),
      frame,
    );
  }

  /** An `error` envelope: something the client sent was refused. */
  #refused(frame: InboundFrame, call: CallHandle | undefined): void {
    const error = errorFromFrame(frame, {});
    if (call === undefined) {
      this.#onProtocolError(error, frame);
    } else if (frame.refused === "request" || (frame.refused === undefined && !call.acknowledged)) {
      // The call never opened (ALREADY_EXISTS, say) and no other frame
      // will end it. v1 does not say what was refused: if nothing has
      // arrived for the call yet, it was the request.
      call.refused(error);
    } else if (frame.refused === "message" || frame.refused === "end") {
      call.inputRefused(error);
    } else {
      this.#onProtocolError(error, frame);
    }
  }
}


function stringMap(value: unknown): Metadata {
  const result: Metadata = {};
  if (typeof value === "object" && value !== null) {
    for (const [key, entry] of Object.entries(value)) {
      if (typeof entry === "string") {
        result[key] = entry;
      }
    }
  }
  return result;
}

function errorFromFrame(frame: InboundFrame, metadata: Metadata): RpcError {
  const code = typeof frame.code === "number" ? frame.code : Code.UNKNOWN;
  const init: { codeName?: string; metadata: Metadata; details?: string } = { metadata };
  if (typeof frame.codeName === "string") {
    init.codeName = frame.codeName;
  }
  if (typeof frame.details === "string") {
    init.details = frame.details;
  }
  return new RpcError(code, typeof frame.error === "string" ? frame.error : "", init);
}

function isAsyncIterable<T>(value: StreamInput<T>): value is AsyncIterable<T> {
  return typeof (value as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] === "function";
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One call, from its start until it ends one way or another. */
class Call<I, O> implements CallHandle {
  readonly #context: CallContext;
  readonly #method: string;
  readonly #kind: MethodKind;
  readonly #options: CallOptions;
  readonly #sink: CallSink<O>;
  readonly #deadline: number | undefined;
  #connection: Connection | null = null;
  #id = "";
  #done = false;
  #headers: Metadata = {};
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #onAbort: (() => void) | undefined;
  // Takes the call out of the line for a free place on the connection.
  #leaveLine: (() => void) | undefined;
  // v2 flow control: the request messages the bridge takes before it
  // grants more, and the input waiting for that.
  #inputCredit = Infinity;
  #wakeInput: (() => void) | undefined;
  // v2 flow control: responses the reader took since the last credit;
  // undefined where the call has no window.
  #takenSinceCredit: number | undefined;
  /** Whether any frame of this call has arrived. */
  acknowledged = false;

  constructor(context: CallContext, method: string, kind: MethodKind, options: CallOptions | undefined, sink: CallSink<O>) {
    this.#context = context;
    this.#method = method;
    this.#kind = kind;
    this.#options = options ?? {};
    this.#sink = sink;
    const timeoutMs = this.#options.timeoutMs;
    this.#deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  /** Starts the call; it reports to its sink from then on. */
  start(input: { request: I } | { requests: StreamInput<I> }): this {
    const { signal, timeoutMs } = this.#options;
    if (signal?.aborted) {
      this.#finish(cancelled());
      return this;
    }
    if (signal !== undefined) {
      this.#onAbort = () => this.abandon(cancelled());
      signal.addEventListener("abort", this.#onAbort);
    }
    if (timeoutMs !== undefined) {
      this.#deadlineTimer = setTimeout(
        () => this.abandon(deadlineExceeded(timeoutMs)),
        Math.max(0, timeoutMs) + DEADLINE_GRACE_MS,
      );
    }
    this.#context.open().then(
      (connection) => this.#send(connection, input),
      (error: unknown) => this.#finish(error),
    );
    return this;
  }

  #send(connection: Connection, input: { request: I } | { requests: StreamInput<I> }): void {
    if (this.#done) {
      return;
    }
    this.#leaveLine = connection.whenRoom(this, () => this.#sendNow(connection, input));
  }

  #sendNow(connection: Connection, input: { request: I } | { requests: StreamInput<I> }): void {
    this.#leaveLine = undefined;
    if (this.#done) {
      return;
    }
    const request: OutboundFrame = { type: "request", id: "", method: this.#method };
    if (this.#deadline !== undefined) {
      const remaining = Math.ceil(this.#deadline - Date.now());
      if (remaining <= 0) {
        this.#finish(deadlineExceeded(this.#options.timeoutMs ?? 0));
        return;
      }
      request.timeoutMs = remaining;
    }
    if (this.#options.metadata !== undefined) {
      request.metadata = this.#options.metadata;
    }
    if ("request" in input) {
      request.payload = input.request;
    }
    const streamsResponses = this.#kind === "serverStreaming" || this.#kind === "bidiStreaming";
    if (connection.v2 && streamsResponses) {
      request.window = this.#context.streamWindow;
      this.#takenSinceCredit = 0;
    }
    this.#inputCredit = connection.requestWindow;
    this.#connection = connection;
    this.#id = request.id = connection.add(this);
    let sent: boolean;
    try {
      sent = connection.send(request);
    } catch (error) {
      this.#finish(error);
      return;
    }
    if (!sent) {
      this.#finish(unavailable("the connection to the bridge closed"));
      return;
    }
    if ("requests" in input) {
      void this.#pump(connection, input.requests);
    }
  }

  /** Sends each input as a `message` frame, then `end`, while the call lasts. */
  async #pump(connection: Connection, requests: StreamInput<I>): Promise<void> {
    const iterator: AsyncIterator<I> | Iterator<I> = isAsyncIterable(requests)
      ? requests[Symbol.asyncIterator]()
      : requests[Symbol.iterator]();
    try {
      for (;;) {
        const step = await iterator.next();
        if (this.#done) {
          break;
        }
        if (step.done === true) {
          connection.send({ type: "end", id: this.#id });
          return;
        }
        // v2: no more than the bridge has room for; it grants more as the
        // backend takes them.
        while (this.#inputCredit <= 0 && !this.#done) {
          await new Promise<void>((resolve) => (this.#wakeInput = resolve));
        }
        // Nor megabytes piled up in the socket (v1 has no credit).
        while (connection.isOpen && connection.bufferedAmount > SEND_HIGH_WATER_BYTES && !this.#done) {
          await sleep(10);
        }
        if (this.#done) {
          break;
        }
        this.#inputCredit -= 1;
        connection.send({ type: "message", id: this.#id, payload: step.value });
      }
      await iterator.return?.();
    } catch (error) {
      // The input failed (or a payload would not serialize): the call
      // fails with that error, and the bridge cancels it.
      this.abandon(error);
    }
  }

  /** A frame of this call from the bridge. */
  receive(frame: InboundFrame): void {
    if (this.#done) {
      return;
    }
    try {
      if (!this.acknowledged) {
        this.acknowledged = true;
        this.#headers = stringMap(frame.headers);
        this.#options.onHeader?.(this.#headers);
      }
      const failed = frame.error !== undefined || frame.code !== undefined;
      if (Array.isArray(frame.payloads) && !failed) {
        // v2: a run of stream messages, maybe with the call's end.
        for (const payload of frame.payloads) {
          this.#message(frame, payload);
          if (this.#done) {
            return;
          }
        }
      }
      if (failed || frame.end === true) {
        const trailers = stringMap(frame.trailers);
        this.#options.onTrailer?.(trailers);
        if (failed) {
          this.#finish(errorFromFrame(frame, { ...this.#headers, ...trailers }));
        } else {
          // The response of a unary or client-streaming call rides on the
          // end frame; a stream's end frame carries no message.
          this.#finish(undefined, (frame.payload ?? {}) as O);
        }
        return;
      }
      if (!Array.isArray(frame.payloads)) {
        this.#message(frame, frame.payload ?? {});
      }
    } catch (error) {
      // onHeader or onTrailer threw: the call fails with that.
      this.abandon(error);
    }
  }

  #message(frame: InboundFrame, payload: unknown): void {
    if (this.#kind === "serverStreaming" || this.#kind === "bidiStreaming") {
      this.#sink.message(payload as O);
    } else {
      this.#context.protocolError(
        new RpcError(Code.INTERNAL, `a response without end for ${this.#kind} call ${this.#id}`),
        frame,
      );
    }
  }

  inputRefused(error: RpcError): void {
    this.abandon(error);
  }

  credit(messages: number): void {
    this.#inputCredit += messages;
    this.#wakeInput?.();
    this.#wakeInput = undefined;
  }

  /**
   * The reader took a response. Credit goes back to the bridge half a
   * window at a time, as HTTP/2 sends WINDOW_UPDATE, so a reader that
   * keeps up never finds the stream waiting for it.
   */
  taken(): void {
    if (this.#takenSinceCredit === undefined || this.#done) {
      return;
    }
    this.#takenSinceCredit += 1;
    if (this.#takenSinceCredit * 2 >= this.#context.streamWindow) {
      this.#connection?.send({ type: "credit", id: this.#id, messages: this.#takenSinceCredit });
      this.#takenSinceCredit = 0;
    }
  }

  /** The bridge refused the request frame: the call never opened. */
  refused(error: RpcError): void {
    if (error.code !== Code.ALREADY_EXISTS && (this.#kind === "clientStreaming" || this.#kind === "bidiStreaming")) {
      // It may have been a message that was refused, with the call open.
      this.abandon(error);
    } else {
      this.#finish(error);
    }
  }

  /** The connection dropped. */
  fail(error: RpcError): void {
    this.#finish(error);
  }

  /**
   * Ends the call from this side: tells the bridge to cancel it, if it was
   * sent, and reports `error` (or, without one, a quiet end).
   */
  abandon(error?: unknown): void {
    if (this.#done) {
      return;
    }
    if (this.#connection !== null) {
      this.#connection.send({ type: "cancel", id: this.#id });
    }
    this.#finish(error);
  }

  #finish(error: unknown, response?: O): void {
    if (this.#done) {
      return;
    }
    this.#done = true;
    this.#leaveLine?.();
    this.#wakeInput?.();
    this.#connection?.remove(this.#id);
    clearTimeout(this.#deadlineTimer);
    if (this.#onAbort !== undefined) {
      this.#options.signal?.removeEventListener("abort", this.#onAbort);
    }
    if (error !== undefined) {
      // Whatever went wrong — the input, a callback, a payload JSON cannot
      // carry — the caller gets an RpcError, the cause inside it.
      this.#sink.fail(RpcError.from(error));
    } else {
      this.#sink.end(response as O);
    }
  }
}

function cancelled(): RpcError {
  return new RpcError(Code.CANCELLED, "the call was cancelled");
}

function deadlineExceeded(timeoutMs: number): RpcError {
  return new RpcError(Code.DEADLINE_EXCEEDED, `the deadline of ${timeoutMs} ms passed`);
}

/** What a stream needs of its call. */
interface StreamCall {
  /** Cancels the call. */
  abandon(): void;
  /** The reader took a response. */
  taken(): void;
}

/**
 * The responses of a streaming call, buffered so that a slow reader loses
 * none; in v2, flow control keeps the buffer within the stream's window. The call starts when iteration does; leaving the loop early
 * cancels it.
 */
class ResponseStream<O> implements AsyncIterableIterator<O> {
  readonly #startCall: (sink: CallSink<O>) => StreamCall;
  #call: StreamCall | null = null;
  // Unread messages from #head on; read ones are dropped in bulk, so that
  // a long backlog costs O(1) per message, not Array.shift()'s O(n).
  #buffer: O[] = [];
  #head = 0;
  readonly #waiting: { resolve: (result: IteratorResult<O>) => void; reject: (error: unknown) => void }[] = [];
  #ended = false;
  #failure: { error: unknown } | null = null;

  constructor(startCall: (sink: CallSink<O>) => StreamCall) {
    this.#startCall = startCall;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<O>> {
    if (this.#call === null && !this.#ended) {
      this.#call = this.#startCall({
        message: (payload) => this.#push(payload),
        end: () => this.#end(null),
        fail: (error) => this.#end({ error }),
      });
    }
    if (this.#head < this.#buffer.length) {
      const value = this.#buffer[this.#head] as O;
      this.#head += 1;
      this.#call?.taken();
      if (this.#head === this.#buffer.length) {
        this.#buffer = [];
        this.#head = 0;
      } else if (this.#head >= 1024 && this.#head * 2 >= this.#buffer.length) {
        this.#buffer = this.#buffer.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#failure !== null) {
      const { error } = this.#failure;
      // The error is thrown once; after it the stream is done.
      this.#failure = null;
      return Promise.reject(error);
    }
    if (this.#ended) {
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /** Called when a `for await` loop is left early: cancels the call. */
  return(): Promise<IteratorResult<O>> {
    this.#buffer = [];
    this.#head = 0;
    this.#failure = null;
    if (!this.#ended) {
      this.#ended = true;
      this.#call?.abandon();
      for (const waiter of this.#waiting.splice(0)) {
        waiter.resolve({ value: undefined, done: true });
      }
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  #push(payload: O): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) {
      this.#call?.taken();
      waiter.resolve({ value: payload, done: false });
    } else {
      this.#buffer.push(payload);
    }
  }

  #end(failure: { error: unknown } | null): void {
    if (this.#ended) {
      return;
    }
    this.#ended = true;
    // A failure reaches the first waiting reader, or the next to come.
    const waiters = this.#waiting.splice(0);
    const first = waiters.shift();
    if (failure !== null) {
      if (first !== undefined) {
        first.reject(failure.error);
      } else {
        this.#failure = failure;
      }
    } else {
      first?.resolve({ value: undefined, done: true });
    }
    for (const waiter of waiters) {
      waiter.resolve({ value: undefined, done: true });
    }
  }
}
