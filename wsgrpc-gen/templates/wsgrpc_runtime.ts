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
 * With a bridge that keeps sessions, calls survive a dropped socket: the
 * client connects again and the calls go on where they stopped (the
 * `session` option; docs/PROTOCOL.md, "Sessions").
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

/**
 * Headers or trailers: lower-case keys; `-bin` keys carry base64, which
 * {@link decodeBinaryMetadata} turns into bytes.
 */
export type Metadata = Record<string, string>;

/** Request metadata: a `-bin` key's value may be the bytes themselves. */
export type MetadataInit = Record<string, string | Uint8Array>;

/** The bytes of a `-bin` value, from its base64 (padded or not); undefined for none. */
export function decodeBinaryMetadata(value: string | undefined): Uint8Array | undefined {
  if (value === undefined) {
    return undefined;
  }
  const binary = atob(value.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, ""));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

/** `bytes` in base64, without padding. */
function unpaddedBase64(bytes: Uint8Array): string {
  let binary = "";
  // In slices: a spread argument list has a limit.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/=+$/, "");
}

/** Request metadata as the envelope carries it: bytes in base64, under `-bin` keys only. */
function wireMetadata(metadata: MetadataInit): Metadata | RpcError {
  const wire: Metadata = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value === "string") {
      wire[key] = value;
    } else if (key.endsWith("-bin")) {
      wire[key] = unpaddedBase64(value);
    } else {
      return new RpcError(Code.INVALID_ARGUMENT, `metadata ${JSON.stringify(key)} takes text; only keys ending in -bin take bytes`);
    }
  }
  return wire;
}

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
  /**
   * Request metadata: lower-case keys; keys ending in `-bin` take bytes, as
   * a `Uint8Array` (or already in base64).
   */
  metadata?: MetadataInit;
  /** Called once with the response headers, when the first frame arrives. */
  onHeader?: (headers: Metadata) => void;
  /** Called once with the trailers, when the call ends. */
  onTrailer?: (trailers: Metadata) => void;
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

/**
 * Sessions (docs/PROTOCOL.md, "Sessions"): calls that survive a dropped
 * socket. The client names its session with a random key in the socket's
 * URL (`?session=…`); when the socket drops, it connects again with the
 * same key and the bridge's calls go on where they stopped, nothing lost
 * and nothing twice.
 */
export interface SessionOptions {
  /**
   * How long after a drop the client tries to resume before it fails the
   * calls that were open with `UNAVAILABLE`; default 30 s, the bridge's
   * default grace period (its `session_grace`).
   */
  resumeWithinMs?: number;
  /**
   * The bytes of envelopes sent and not yet acknowledged by the bridge
   * that the client keeps (to send again after a drop) before a client
   * stream's input waits for acknowledgements; default twice the socket's
   * request window from the bridge's settings, from 4 to 64 MiB, and twice
   * that window as the bridge grows it (64 MiB at most).
   */
  maxUnacknowledgedBytes?: number;
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
   * be made. Without it, connecting makes one attempt, and a dropped socket
   * is connected again only to resume its session (see `session`), with
   * the default backoff; `false` turns that off too: no session, and a
   * drop fails the calls that were open.
   */
  reconnect?: ReconnectOptions | false;
  /**
   * Sessions, on by default (v2, with a bridge that offers windows in
   * bytes and keeps sessions): a dropped socket is connected again and its
   * calls go on, the page sees only a delay and the state
   * `"reconnecting"`. `false` turns them off: calls open when a socket
   * drops fail with `UNAVAILABLE`.
   */
  session?: SessionOptions | false;
  /**
   * The protocol to speak. `"v2"` (the default) offers v2 and v1 and takes
   * what the bridge picks; should a bridge that predates v2 refuse the
   * offer, the client connects again with v1 and stays with it. `"v1"`
   * offers nothing and speaks v1. Only v2 lets the client ask for fields
   * at their defaults: over v1 the bridge writes them where its own
   * options say, and the generated types' always-present fields may be
   * missing.
   */
  protocol?: Protocol;
  /**
   * Told of frames that concern no call: the bridge's `error` frames and
   * anything it sends that cannot be read. Default: `console.warn`.
   */
  onProtocolError?: (error: RpcError, frame: unknown) => void;
  /**
   * v2, with a bridge that counts windows in messages (one that offers no
   * windows in bytes): how many responses of a server or bidi stream may
   * wait for its reader. The bridge sends no more until the reader takes
   * some, and meanwhile reads no more from the backend, so a slow reader
   * holds the backend back instead of filling memory. Default 4,096.
   */
  streamWindow?: number;
  /**
   * v2, with a bridge that offers windows in bytes: the bytes of responses
   * each server or bidi stream may have on their way or waiting for its
   * reader at first; the socket's window, across its streams, starts at
   * four times it. Default 256 KiB.
   */
  initialWindowBytes?: number;
  /**
   * v2, with a bridge that offers windows in bytes: how far the windows in
   * bytes (each stream's and the socket's) may grow. The client measures
   * the round trip with `ping` and doubles a window while a round trip's
   * worth of data comes near it, as HTTP/2 clients do, so that a stream
   * runs at the path's speed on a network with a long round trip; a slow
   * reader still holds no more than its window. Default 16 MiB.
   */
  maxWindowBytes?: number;
  /**
   * The token that lets the socket in, added to every socket's URL as the
   * query parameter `tokenParam`: a string, or a function asked for a
   * fresh one (it may return a promise) before each new socket and, where
   * the bridge says when the socket's token runs out (docs/PROTOCOL.md, "A
   * fresh token without a new socket"), before then: at three quarters of
   * its life, at least a second before the end, the client sends the
   * bridge what it returns, and the socket lives on. Default none: a token
   * in `url` itself stays as it is.
   */
  token?: string | (() => string | Promise<string>);
  /** The query parameter that carries `token`; default `access_token`. */
  tokenParam?: string;
}

/** A call's inputs, for client and bidi streaming. */
export type StreamInput<I> = AsyncIterable<I> | Iterable<I>;

/** How many messages flow each way in a call. */
export type MethodKind = "unary" | "serverStreaming" | "clientStreaming" | "bidiStreaming";

// The key of a method's message types: a type only, never set.
declare const messageTypes: unique symbol;

/**
 * One method of a service, as a generated service descriptor holds it:
 * its path and kind, and, as types only, its request and response
 * messages, so that a call through a `Transport` takes and gives exactly
 * those.
 */
export interface MethodDescriptor<I, O, K extends MethodKind = MethodKind> {
  /** As declared in the .proto: `SayHello`. */
  readonly name: string;
  /** What the client sends: `example.ExampleService/SayHello`. */
  readonly path: string;
  readonly kind: K;
  readonly [messageTypes]?: { readonly input: I; readonly output: O };
}

/** A service as a generated descriptor describes it. */
export interface ServiceDescriptor {
  /** The service's full name: `example.ExampleService`. */
  readonly typeName: string;
  readonly methods: { readonly [method: string]: MethodDescriptor<any, any> };
}

function methodOf<I, O, K extends MethodKind>(kind: K, service: string, name: string): MethodDescriptor<I, O, K> {
  return { name, path: `${service}/${name}`, kind };
}

/** The descriptor of a unary method of `service`, for generated code. */
export function unaryMethod<I, O>(service: string, name: string): MethodDescriptor<I, O, "unary"> {
  return methodOf("unary", service, name);
}

/** The descriptor of a server-streaming method of `service`, for generated code. */
export function serverStreamingMethod<I, O>(service: string, name: string): MethodDescriptor<I, O, "serverStreaming"> {
  return methodOf("serverStreaming", service, name);
}

/** The descriptor of a client-streaming method of `service`, for generated code. */
export function clientStreamingMethod<I, O>(service: string, name: string): MethodDescriptor<I, O, "clientStreaming"> {
  return methodOf("clientStreaming", service, name);
}

/** The descriptor of a bidi-streaming method of `service`, for generated code. */
export function bidiStreamingMethod<I, O>(service: string, name: string): MethodDescriptor<I, O, "bidiStreaming"> {
  return methodOf("bidiStreaming", service, name);
}

/** A client of a service: one method per RPC, as the generated client class has them. */
export type Client<S extends ServiceDescriptor> = {
  readonly [K in keyof S["methods"]]: ClientMethod<S["methods"][K]>;
};

/** The client method that calls `M`. */
export type ClientMethod<M> =
  M extends MethodDescriptor<infer I, infer O, "unary">
    ? (request: MessageInit<I>, options?: CallOptions) => UnaryCall<O>
    : M extends MethodDescriptor<infer I, infer O, "serverStreaming">
      ? (request: MessageInit<I>, options?: CallOptions) => ServerStream<O>
      : M extends MethodDescriptor<infer I, infer O, "clientStreaming">
        ? (requests: StreamInput<MessageInit<I>>, options?: CallOptions) => UnaryCall<O>
        : M extends MethodDescriptor<infer I, infer O, "bidiStreaming">
          ? (requests?: StreamInput<MessageInit<I>>, options?: CallOptions) => BidiStream<MessageInit<I>, O>
          : never;

/**
 * A client of `service` over `transport`, made from the descriptor alone,
 * as connect-es's `createClient` is: `createClient(ExampleService, transport)`.
 */
export function createClient<S extends ServiceDescriptor>(service: S, transport: Transport): Client<S> {
  const client: Record<string, unknown> = {};
  for (const [name, described] of Object.entries(service.methods)) {
    // A union, so that the kind narrows the descriptor.
    const method = described as { [K in MethodKind]: MethodDescriptor<unknown, unknown, K> }[MethodKind];
    switch (method.kind) {
      case "unary":
        client[name] = (request: unknown, options?: CallOptions) => transport.unary(method, request, options);
        break;
      case "serverStreaming":
        client[name] = (request: unknown, options?: CallOptions) => transport.serverStream(method, request, options);
        break;
      case "clientStreaming":
        client[name] = (requests: StreamInput<unknown>, options?: CallOptions) =>
          transport.clientStream(method, requests, options);
        break;
      case "bidiStreaming":
        client[name] = (requests?: StreamInput<unknown>, options?: CallOptions) =>
          transport.bidiStream(method, requests, options);
        break;
    }
  }
  return client as Client<S>;
}

/**
 * What a request may be: the message with every field optional, all the
 * way down, as proto3 JSON allows; a oneof still takes one member at most.
 */
export type MessageInit<T> = T extends readonly (infer E)[]
  ? MessageInit<E>[]
  : T extends object
    ? { [K in keyof T]?: MessageInit<T[K]> }
    : T;

/** What a call gives beside its messages, as it arrives. */
export interface CallMetadata {
  /**
   * The response headers, with the call's first answer (an error's too).
   * Rejects with the call's error where it fails before any answer: an
   * abort, a lost socket.
   */
  readonly headers: Promise<Metadata>;
  /**
   * The trailers, when the call ends, failed or not. Rejects with the
   * call's error where it ends without them (an abort, a lost socket, a
   * stream left early).
   */
  readonly trailers: Promise<Metadata>;
}

/** A unary or client-streaming call: its response, with its headers and trailers. */
export type UnaryCall<O> = Promise<O> & CallMetadata;

/**
 * A server-streaming call: its responses as they come, with its headers
 * and trailers. The call starts with the first read; leaving a `for await`
 * early cancels it.
 */
export interface ServerStream<O> extends AsyncIterable<O>, CallMetadata {
  /**
   * The next response if it has arrived and is unread, taken as a read of
   * the stream takes it, without a promise; undefined if none is there yet
   * (then a read waits for it, or ends the stream). For code that hands
   * the responses on through an iterator of its own, such as
   * `@wsgrpc/connect`: a response read this way costs it no promise step.
   * The streams of `WebSocketGRPCClient` have it; a `Transport` of other
   * making may leave it out.
   */
  readArrived?(): O | undefined;
}

/**
 * A bidi-streaming call. Its input is the iterable it was given or, made
 * without one, what `send` gives until `close`.
 */
export interface BidiStream<I, O> extends ServerStream<O> {
  /** Sends a request; throws where the input is an iterable, or after `close`. */
  send(request: I): void;
  /** Ends the input: the bridge half-closes the call. */
  close(): void;
}

/**
 * The JSON form the client asks the bridge to write (v2): fields at their
 * defaults too, so that the generated types can say a field without
 * presence is always there.
 */
const JSON_FORM = { emitDefaults: true } as const;

// How long past its deadline a call waits for the bridge's own
// DEADLINE_EXCEEDED before failing on its own.
const DEADLINE_GRACE_MS = 200;
// Input is paused while the socket has this much unsent.
const SEND_HIGH_WATER_BYTES = 1 << 20;
// How often input held back by that looks again (browsers tell no drain).
const SEND_POLL_MS = 5;
const SOCKET_OPEN = 1;
const SUBPROTOCOLS = ["wsgrpc.v2", "wsgrpc.v1"];
// What a v2 frame from the client may hold until the bridge's settings say.
const DEFAULT_MAX_FRAME_BYTES = 64 << 10;
const DEFAULT_STREAM_WINDOW = 4096;
const DEFAULT_INITIAL_WINDOW_BYTES = 256 << 10;
const DEFAULT_MAX_WINDOW_BYTES = 16 << 20;
// The largest window or credit the protocol carries: 2^31 − 1.
const MAX_WINDOW = 2 ** 31 - 1;
// Windows in bytes: what a message costs beyond its JSON text, as HTTP/2
// counts a gRPC message's prefix, so that a window of empty messages holds
// few of them.
const MESSAGE_OVERHEAD_BYTES = 16;
// v2: what the client puts in one frame when it has more to send, as the
// bridge's writer does; one envelope larger than that goes alone.
const BATCH_BYTES = 64 << 10;
// Sessions: an acknowledgement goes once this many envelopes, or bytes of
// frames, have arrived since the last, and otherwise this long after the
// first that is not acknowledged.
const ACK_ENVELOPES = 256;
const ACK_BYTES = 64 << 10;
const ACK_DELAY_MS = 100;
// Sessions: what the client keeps unacknowledged at least and at most,
// by default; and how long it tries to resume.
const MIN_KEPT_BYTES = 4 << 20;
const MAX_KEPT_BYTES = 64 << 20;
const DEFAULT_RESUME_WITHIN_MS = 30_000;
const DEFAULT_RECONNECT: Required<ReconnectOptions> = { initialDelayMs: 500, maxDelayMs: 30_000, maxAttempts: Infinity };
// A fresh token: asked for at this share of the old one's life, and at
// least this long before it runs out; a refused one is asked for again
// after a delay that doubles from the first.
const TOKEN_REFRESH_AT = 0.75;
const TOKEN_REFRESH_MARGIN_MS = 1_000;
const TOKEN_RETRY_MS = 250;

/**
 * What generated clients call methods through. `WebSocketGRPCClient` is
 * the one that speaks to a bridge; a test can hand a client any object of
 * this shape instead.
 */
export interface Transport {
  /** One request, one response. */
  unary<I, O>(method: MethodDescriptor<I, O, "unary">, request: MessageInit<I>, options?: CallOptions): UnaryCall<O>;
  /** One request, the responses as they come. */
  serverStream<I, O>(
    method: MethodDescriptor<I, O, "serverStreaming">,
    request: MessageInit<I>,
    options?: CallOptions,
  ): ServerStream<O>;
  /** The requests, then one response. */
  clientStream<I, O>(
    method: MethodDescriptor<I, O, "clientStreaming">,
    requests: StreamInput<MessageInit<I>>,
    options?: CallOptions,
  ): UnaryCall<O>;
  /** Requests and responses at once; without `requests`, what the result's `send` gives. */
  bidiStream<I, O>(
    method: MethodDescriptor<I, O, "bidiStreaming">,
    requests?: StreamInput<MessageInit<I>>,
    options?: CallOptions,
  ): BidiStream<MessageInit<I>, O>;
}

/** A method named by its path alone (`pkg.Service/Method`): its messages are whatever the caller says. */
type MethodOrPath<I, O, K extends MethodKind> = MethodDescriptor<I, O, K> | string;

const pathOf = (method: MethodOrPath<unknown, unknown, MethodKind>): string =>
  typeof method === "string" ? method : method.path;

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
  // Whether a bridge has spoken v2 to this client: then a failed handshake
  // is a network's doing (a socket cut as it opened), not a bridge that
  // predates v2, and is no reason to fall back to v1.
  #spokeV2 = false;
  readonly #streamWindow: number;
  readonly #windows: WindowOptions;
  // Sessions: null where they are off; the key names the session in the
  // socket's URL, a new one after a session could not be resumed.
  readonly #session: {
    readonly resumeWithinMs: number;
    readonly maxKeptBytes: number | undefined;
    readonly reconnect: Required<ReconnectOptions>;
  } | null;
  #sessionKey = "";
  // Sessions: the connection whose socket dropped, while a new socket is
  // sought to resume it.
  #resuming: Connection | null = null;
  // Connections the bridge sent away (`goaway`): their calls finish there,
  // new calls go to a new socket.
  readonly #draining = new Set<Connection>();
  // The token for the sockets' URLs: the latest the source gave, and the
  // source where it is a function.
  #token: string | undefined;
  readonly #tokenSource: (() => string | Promise<string>) | null;
  readonly #tokenParam: string;
  readonly #events: ConnectionEvents;

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
    const maxWindowBytes = clampWindow(options.maxWindowBytes ?? DEFAULT_MAX_WINDOW_BYTES);
    const initialWindowBytes = Math.min(maxWindowBytes, clampWindow(options.initialWindowBytes ?? DEFAULT_INITIAL_WINDOW_BYTES));
    this.#windows = {
      initialWindowBytes,
      initialConnectionWindowBytes: Math.min(maxWindowBytes, initialWindowBytes * 4),
      maxWindowBytes,
    };
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
    const session = options.session ?? {};
    // The key must be unguessable: without the platform's random numbers, no sessions.
    const random = (globalThis as { crypto?: { getRandomValues?: unknown } }).crypto;
    this.#session =
      session === false || options.reconnect === false || !this.#offerV2 || typeof random?.getRandomValues !== "function"
        ? null
        : {
            resumeWithinMs: Math.max(0, session.resumeWithinMs ?? DEFAULT_RESUME_WITHIN_MS),
            maxKeptBytes: session.maxUnacknowledgedBytes,
            reconnect: this.#reconnect ?? DEFAULT_RECONNECT,
          };
    if (this.#session !== null) {
      this.#sessionKey = newSessionKey();
    }
    const token = options.token;
    this.#token = typeof token === "string" ? token : undefined;
    this.#tokenSource = typeof token === "function" ? token : null;
    this.#tokenParam = options.tokenParam ?? "access_token";
    this.#events = {
      goaway: (connection) => this.#goaway(connection),
      freshToken: this.#tokenSource === null ? null : () => this.#freshToken(),
    };
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
    if (this.#session !== null) {
      if (this.#resuming !== null) {
        // No socket to close: one that only closes, so that the bridge
        // cancels the session's calls now, not after its grace period.
        const farewell = new this.#WebSocket(this.#socketUrl(), SUBPROTOCOLS);
        farewell.addEventListener("open", () => farewell.close(1000));
        farewell.addEventListener("error", () => {});
      }
      // The session is over; the next connection starts another.
      this.#sessionKey = newSessionKey();
    }
    for (const connection of [this.#connection, this.#resuming]) {
      if (connection !== null) {
        connection.failAll(new RpcError(Code.CANCELLED, "the client was closed"));
        // 1000: the bridge ends the session and cancels its calls.
        connection.socket.close(1000);
      }
    }
    for (const connection of this.#draining) {
      connection.failAll(new RpcError(Code.CANCELLED, "the client was closed"));
      connection.socket.close(1000);
    }
    this.#draining.clear();
    this.#connection = null;
    this.#resuming = null;
    this.#setState("closed");
  }

  /** Calls a unary method: one request, one response. */
  unary<I, O>(method: MethodOrPath<I, O, "unary">, request: MessageInit<I>, options?: CallOptions): UnaryCall<O> {
    return this.#oneResponse(pathOf(method), "unary", { request }, options);
  }

  /** Calls a server-streaming method: iterate the result for the responses. */
  serverStream<I, O>(
    method: MethodOrPath<I, O, "serverStreaming">,
    request: MessageInit<I>,
    options?: CallOptions,
  ): ServerStream<O> {
    const metadata = new ArrivingMetadata();
    return new ResponseStream<O>(
      (sink) =>
        new Call<MessageInit<I>, O>(this.#context(), pathOf(method), "serverStreaming", metadata.watch(options), sink).start({
          request,
        }),
      metadata,
    );
  }

  /** Calls a client-streaming method: the requests, then one response. */
  clientStream<I, O>(
    method: MethodOrPath<I, O, "clientStreaming">,
    requests: StreamInput<MessageInit<I>>,
    options?: CallOptions,
  ): UnaryCall<O> {
    return this.#oneResponse(pathOf(method), "clientStreaming", { requests }, options);
  }

  /**
   * Calls a bidi-streaming method: the requests as `requests` gives them
   * or, without it, as the result's `send` does until its `close`; iterate
   * the result for the responses.
   */
  bidiStream<I, O>(
    method: MethodOrPath<I, O, "bidiStreaming">,
    requests?: StreamInput<MessageInit<I>>,
    options?: CallOptions,
  ): BidiStream<MessageInit<I>, O> {
    const metadata = new ArrivingMetadata();
    const input = requests ?? new InputQueue<MessageInit<I>>();
    return new BidiResponseStream<MessageInit<I>, O>(
      (sink) =>
        new Call<MessageInit<I>, O>(this.#context(), pathOf(method), "bidiStreaming", metadata.watch(options), sink).start({
          requests: input,
        }),
      metadata,
      input instanceof InputQueue ? input : null,
    );
  }

  /** A unary or client-streaming call: its response, with its headers and trailers beside it. */
  #oneResponse<I, O>(
    path: string,
    kind: "unary" | "clientStreaming",
    input: { request: I } | { requests: StreamInput<I> },
    options: CallOptions | undefined,
  ): UnaryCall<O> {
    const metadata = new ArrivingMetadata();
    const response = new Promise<O>((resolve, reject) => {
      new Call<I, O>(this.#context(), path, kind, metadata.watch(options), {
        messages: () => {},
        end: resolve,
        fail: (error) => {
          metadata.fail(error);
          reject(error);
        },
      }).start(input);
    });
    return metadata.onto(response);
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
    return this.#opening ?? this.#startOpening(false, null);
  }

  /**
   * Opens a connection, or, with `resuming`, a socket that resumes that
   * connection's session; calls made meanwhile wait for it.
   */
  #startOpening(
    afterDrop: boolean,
    resuming: { connection: Connection; why: string } | null,
    quiet = false,
  ): Promise<Connection> {
    const opening = this.#openWithRetries(afterDrop, resuming, quiet);
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

  async #openWithRetries(
    afterDrop: boolean,
    dropped: { connection: Connection; why: string } | null,
    quiet: boolean,
  ): Promise<Connection> {
    const generation = this.#generation;
    const stopped = () => new RpcError(Code.CANCELLED, "the client was closed");
    let failures = 0;
    let lastError: unknown = undefined;
    // Sessions: the connection to resume, and until when to try.
    let resuming = dropped?.connection ?? null;
    this.#resuming = resuming;
    const session = this.#session;
    const resumeBy = performance.now() + (session?.resumeWithinMs ?? 0);
    const giveUpResuming = (why: string) => {
      resuming?.failAll(unavailable(`the connection to the bridge closed (${dropped?.why ?? ""}) ${why}`));
      resuming = null;
      this.#resuming = null;
      this.#sessionKey = newSessionKey();
    };
    let waitFirst = afterDrop;
    for (;;) {
      if (resuming !== null && session !== null) {
        if (failures >= session.reconnect.maxAttempts) {
          giveUpResuming(`and the session could not be resumed: ${failures} attempts to connect failed`);
        } else if (performance.now() >= resumeBy) {
          giveUpResuming(`and the session could not be resumed within ${session.resumeWithinMs} ms`);
        }
        if (resuming === null && this.#reconnect === null) {
          this.#setState("closed");
          throw unavailable(lastError instanceof Error ? lastError.message : `could not connect to ${this.url}`);
        }
      }
      if (waitFirst || failures > 0) {
        const reconnect = resuming !== null && session !== null ? session.reconnect : this.#reconnect;
        if (reconnect === null || failures >= reconnect.maxAttempts) {
          this.#setState("closed");
          const why = lastError instanceof Error ? lastError.message : `could not connect to ${this.url}`;
          throw unavailable(reconnect === null ? why : `${why}; gave up after ${failures} attempts`);
        }
        this.#setState("reconnecting");
        let delay = backoffDelay(reconnect, waitFirst ? failures : failures - 1);
        if (resuming !== null) {
          delay = Math.max(0, Math.min(delay, resumeBy - performance.now()));
        }
        await this.#backoff(delay);
        if (generation !== this.#generation) {
          throw stopped();
        }
      } else if (!quiet) {
        // After a drop, reconnecting until a socket is open. (After a
        // goaway the old socket still serves: the state stays "open".)
        this.#setState(afterDrop ? "reconnecting" : "connecting");
      }
      try {
        if (this.#tokenSource !== null) {
          await this.#freshToken();
          if (generation !== this.#generation) {
            throw stopped();
          }
        }
        const { connection, resumed } = await this.#openSocketFallingBack(resuming);
        if (generation !== this.#generation) {
          connection.socket.close(1000);
          throw stopped();
        }
        if (!connection.isOpen) {
          throw new Error(`the connection to ${this.url} closed as it opened`);
        }
        if (connection.goingAway !== null && resuming === null) {
          // Sent away in its first frame (a bridge that shuts down): it
          // takes no calls, and closes.
          connection.socket.close(1000);
          throw new Error(`the bridge sent the socket away as it opened: ${connection.goingAway}`);
        }
        if (resuming !== null && resumed !== true) {
          // The bridge no longer has the session (or never had it): the
          // calls that were open fail, and a fresh session under a new
          // key takes the calls to come, on a socket of its own.
          giveUpResuming(`and the session could not be resumed: ${resumed}`);
          connection.socket.close(1000);
          waitFirst = false;
          failures = 0;
          continue;
        }
        this.#resuming = null;
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
  async #openSocketFallingBack(resuming: Connection | null): Promise<Opened> {
    if (!this.#offerV2) {
      return this.#openSocket(false, resuming);
    }
    const generation = this.#generation;
    try {
      const opened = await this.#openSocket(true, resuming);
      this.#spokeV2 ||= opened.connection.v2;
      return opened;
    } catch (error) {
      if (generation !== this.#generation || this.#spokeV2) {
        throw error;
      }
      const opened = await this.#openSocket(false, resuming).catch(() => {
        throw error;
      });
      this.#offerV2 = false;
      return opened;
    }
  }

  /** The socket's URL: the client's, with the session's key where there is one. */
  #socketUrl(): string {
    let url = this.url;
    if (this.#token !== undefined) {
      const withToken = new URL(url);
      withToken.searchParams.set(this.#tokenParam, this.#token);
      url = withToken.href;
    }
    if (this.#session === null) {
      return url;
    }
    const hash = url.indexOf("#");
    const base = hash < 0 ? url : url.slice(0, hash);
    const fragment = hash < 0 ? "" : url.slice(hash);
    return `${base}${base.includes("?") ? "&" : "?"}session=${this.#sessionKey}${fragment}`;
  }

  /** Asks the token source for a token, which the next sockets' URLs carry too. */
  async #freshToken(): Promise<string> {
    const source = this.#tokenSource;
    if (source === null) {
      throw new Error("no token source");
    }
    const token = await source();
    if (typeof token !== "string") {
      throw new TypeError("the token source returned no string");
    }
    this.#token = token;
    return token;
  }

  /**
   * The bridge sent `connection` away: calls made from now on go to a new
   * socket, under a new session key (the old session ends with its
   * socket), while the calls in flight finish on the old one.
   */
  #goaway(connection: Connection): void {
    if (this.#connection !== connection) {
      return;
    }
    this.#connection = null;
    this.#draining.add(connection);
    if (this.#session !== null) {
      this.#sessionKey = newSessionKey();
    }
    if (this.#opening === null) {
      this.#startOpening(false, null, true).catch(() => {
        // Calls that wait for it hear through `#opening`.
      });
    }
  }

  /**
   * Opens a socket for a new connection, or, with `resuming`, for that
   * connection's session; settles once the bridge's first frame has said
   * whether it resumed it.
   */
  #openSocket(offerV2: boolean, resuming: Connection | null): Promise<Opened> {
    return new Promise((resolve, reject) => {
      const url = this.#socketUrl();
      const socket = offerV2 ? new this.#WebSocket(url, SUBPROTOCOLS) : new this.#WebSocket(url);
      this.#pendingSocket = socket;
      const connection =
        resuming ??
        new Connection(
          socket,
          this.#onProtocolError,
          this.#windows,
          this.#session === null ? null : { maxKeptBytes: this.#session.maxKeptBytes },
          this.#events,
        );
      let opened = false;
      let settled = false;
      const failBeforeOpen = (reason: string) => {
        if (!settled) {
          settled = true;
          this.#pendingSocket = null;
          reject(new Error(reason));
        }
      };
      const ready = (resumed: true | string) => {
        settled = true;
        this.#pendingSocket = null;
        resolve({ connection, resumed });
      };
      socket.addEventListener("open", () => {
        opened = true;
        if (settled) {
          return;
        }
        resuming?.attach(socket);
        if (socket.protocol === "wsgrpc.v2") {
          // Nothing goes out before the bridge's settings, its first frame.
          connection.awaitSettings(ready);
        } else {
          ready("the bridge answered without protocol v2");
        }
      });
      socket.addEventListener("message", (event) => {
        if (connection.socket === socket) {
          connection.receive(property(event, "data"));
        }
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
        if (connection.socket !== socket) {
          // A socket the connection no longer uses: one that a resume replaced.
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
    if (this.#draining.delete(connection)) {
      // A socket the bridge sent away, closed once its calls ended (or
      // cut before): no session to resume, and the calls left, if any,
      // are over.
      connection.failAll(unavailable(`the connection to the bridge closed (${why})`));
      return;
    }
    if (this.#connection !== connection) {
      if (connection === this.#resuming && connection.resumable) {
        // Its new socket dropped as the session resumed on it, before the
        // client took it up: the attempt failed, and the next one resumes.
        connection.suspend();
        return;
      }
      connection.failAll(unavailable(`the connection to the bridge closed (${why})`));
      return;
    }
    this.#connection = null;
    if (this.#session !== null && connection.resumable) {
      // The calls wait, and whatever they send is kept, for a new socket.
      connection.suspend();
      this.#startOpening(true, { connection, why }).catch(() => {
        // The calls have heard; new calls hear through `#opening`.
      });
      return;
    }
    connection.failAll(unavailable(`the connection to the bridge closed (${why})`));
    if (this.#reconnect !== null) {
      this.#startOpening(true, null);
    } else {
      this.#setState("closed");
    }
  }
}

/** What a connection tells its client, or asks of it. */
interface ConnectionEvents {
  /** The bridge sent the connection away: new calls go elsewhere. */
  goaway(connection: Connection): void;
  /** A fresh token from the token source; null where there is none to ask. */
  readonly freshToken: (() => Promise<string>) | null;
}

/** A socket opened: its connection, and whether it resumed the session (or why not). */
interface Opened {
  readonly connection: Connection;
  readonly resumed: true | string;
}

/** A session key: 16 random bytes in base64url, 22 characters. */
function newSessionKey(): string {
  const bytes = new Uint8Array(16);
  (globalThis as unknown as { crypto: { getRandomValues(array: Uint8Array): Uint8Array } }).crypto.getRandomValues(bytes);
  return unpaddedBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_");
}

/** A window size from an option: a whole number from 1 to 2^31 − 1. */
function clampWindow(value: number): number {
  return Number.isFinite(value) ? Math.min(MAX_WINDOW, Math.max(1, Math.floor(value))) : MAX_WINDOW;
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

/** The client's windows in bytes, from its options. */
interface WindowOptions {
  /** The response bytes a stream may have outstanding at first. */
  readonly initialWindowBytes: number;
  /** The response bytes the socket's streams may have outstanding at first. */
  readonly initialConnectionWindowBytes: number;
  /** How far those windows grow. */
  readonly maxWindowBytes: number;
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
  /** The socket's bridge sent it away before the call started: it starts on another. */
  reroute(): void;
  /** v2: the bridge takes `messages` more request messages, or `bytes` more request bytes. */
  credit(messages: number, bytes: number): void;
  /** v2, windows in bytes: the socket's window for requests opened again. */
  wake(): void;
  /** v2, windows in bytes: the round trip of ping `epoch` is over; the stream may grow its window. */
  roundTrip(epoch: number): void;
  /** Whether the call is over. */
  readonly ended: boolean;
  /**
   * v2: hands the input gathered since the last frame to `out` as
   * envelopes of at most `batchBytes` (one message larger than that goes
   * alone) and `maxPayloads` messages each, with what they cost the
   * socket's window.
   */
  drainInput(out: (text: string, bytes: number, cost: number) => void, batchBytes: number, maxPayloads: number): void;
  fail(error: RpcError): void;
}

/** Where a call delivers what happens to it. */
interface CallSink<O> {
  /**
   * Responses of a streaming call, in order, and the bytes they count
   * against the windows (0 where nothing is counted). The sink keeps the
   * array.
   */
  messages(payloads: O[], bytes: number): void;
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
  /** v2: on a call's end, the bridge started nothing of it (it was going away). */
  unprocessed?: unknown;
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
  windowBytes?: unknown;
  connectionWindowBytes?: unknown;
  /** v2, on `credit`. */
  messages?: unknown;
  /** v2, windows in bytes: on `credit`, and on a `response` what its payloads count. */
  bytes?: unknown;
  /** v2, on `ping` and `pong`. */
  data?: unknown;
  /** Sessions, on `resume` and `ack`: the envelopes the bridge received; on `resume`, why not. */
  received?: unknown;
  /** On `resume`, why not; on `goaway`, why the socket takes no new calls. */
  reason?: unknown;
  /** On `token`: when the socket's token runs out. */
  expiresInMs?: unknown;
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
      /** v2, windows in bytes: the response bytes the bridge may send before credit. */
      windowBytes?: number;
    }
  | { type: "message"; id: string; payload: unknown }
  | { type: "end"; id: string }
  | { type: "cancel"; id: string }
  | { type: "credit"; id?: string; messages?: number; bytes?: number }
  | { type: "settings"; connectionWindowBytes: number; json: typeof JSON_FORM }
  | { type: "ping" | "pong"; data: unknown }
  | { type: "token"; token: string };

/** The envelopes a session does not count: they belong to one socket. */
function isCounted(type: unknown): boolean {
  return (
    type !== "settings" &&
    type !== "resume" &&
    type !== "ack" &&
    type !== "ping" &&
    type !== "pong" &&
    type !== "goaway" &&
    type !== "token"
  );
}

// Whether a string needs more than its length in UTF-8.
const NON_ASCII = /[^\x00-\x7f]/;

/** The length of `text` in UTF-8, as the bridge counts frames and windows. */
function utf8Length(text: string): number {
  if (!NON_ASCII.test(text)) {
    return text.length;
  }
  let bytes = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) {
      bytes += 1;
    } else if (unit < 0x800) {
      bytes += 2;
    } else if (unit >= 0xd800 && unit < 0xdc00 && i + 1 < length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair: one code point of four bytes.
      bytes += 4;
      i += 1;
    } else {
      // The rest of the BMP; a lone surrogate becomes U+FFFD, also three.
      bytes += 3;
    }
  }
  return bytes;
}

/** The error of an envelope that no frame the bridge reads could hold. */
function tooLarge(what: string, bytes: number, maxFrameBytes: number): RpcError {
  return new RpcError(
    Code.RESOURCE_EXHAUSTED,
    `${what} is ${bytes} bytes as JSON in its envelope, more than the ${maxFrameBytes} bytes the bridge reads in a frame (maxFrameBytes)`,
  );
}

// Microtask turns in which nothing is queued before the queue is sent:
// an async generator's next value takes a few turns to arrive.
const QUIET_TURNS = 3;

/**
 * One open WebSocket and the calls on it; with a session, the socket that
 * carries them now, which a new one replaces after a drop.
 */
class Connection {
  #socket: WebSocketLike;
  readonly #calls = new Map<string, CallHandle>();
  readonly #onProtocolError: (error: RpcError, frame: unknown) => void;
  readonly #windows: WindowOptions;
  #nextId = 1;
  #closed = false;
  // v2: told when the bridge's settings arrive; null once they have.
  #onSettings: ((resumed: true | string) => void) | null = null;
  #v2 = false;
  #maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  // v2: calls the bridge lets open at once, from its settings; calls
  // beyond wait here, in order, as an HTTP/2 client waits for a stream.
  #maxCalls = Infinity;
  readonly #waitingForRoom: { call: CallHandle; start: () => void }[] = [];
  // v2: the request messages a client or bidi stream may send before the
  // bridge's first credit: its call queue.
  #requestWindow = Infinity;
  // v2: envelopes (as JSON text, with their UTF-8 bytes) waiting for a
  // frame; for a call's input, the call and what it cost the socket's
  // window, so that the input of a call that ended meanwhile stays here
  // and the window gets it back.
  #queued: string[] = [];
  #queuedSizes: number[] = [];
  #queuedOwners: (CallHandle | null)[] = [];
  #queuedCosts: number[] = [];
  // Whether a session counts each (docs/PROTOCOL.md, "Sessions").
  #queuedCounted: boolean[] = [];
  #queuedBytes = 0;
  // v2: calls whose input has gathered since the last frame, in order,
  // and the bytes of that input.
  #inputs = new Set<CallHandle>();
  #inputBytes = 0;
  // Everything ever queued, so that the flush sees whether the page is
  // still queueing; and what it was when the flush last looked.
  #queuedEver = 0;
  #queuedAtLastLook = 0;
  #quietTurns = 0;
  #flushScheduled = false;

  // v2, windows in bytes (docs/PROTOCOL.md), when the bridge offers them.
  #byteWindows = false;
  // Requests: what each new call may send before the bridge's credit, and
  // what the socket's calls may still send together; the calls waiting
  // for the latter.
  #callSendWindow = Infinity;
  #sendWindow = Infinity;
  readonly #sendWaiters = new Set<CallHandle>();
  // Responses: the socket's window, what the page has taken of it since
  // the last credit, and the window each new stream starts with.
  #receiveWindow: number;
  #released = 0;
  #streamWindowBytes: number;
  // The round trip being measured: the ping's data, when it went, and the
  // bytes that arrived since; the round trip, smoothed, and the highest
  // bandwidth measured.
  #ping: { data: number; sentAt: number; bytes: number } | null = null;
  #pingEpoch = 0;
  #roundTripMs = 0;
  #roundTrips = 0;
  #arrivedSincePing = 0;
  #bandwidthMax = 0;

  // Sessions: null where the socket's URL names none. Counting begins
  // once the socket takes byte windows (then the session is `resumable`).
  readonly #sessionOptions: { readonly maxKeptBytes: number | undefined } | null;
  #counting = false;
  // The socket dropped; what the calls send waits for a new one.
  #suspended = false;
  // Counted envelopes received; how many the last ack said; the bytes of
  // the frames that brought those since; and the ack's timer.
  #received = 0;
  #acked = 0;
  #unackedBytes = 0;
  #ackDue = false;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  // Counted envelopes sent and not yet acknowledged, as written, from
  // #keptHead on; the number of the first of those (from 1), and their bytes.
  #kept: string[] = [];
  #keptSizes: number[] = [];
  #keptHead = 0;
  #keptFirst = 1;
  #keptBytes = 0;
  #keptLimit = Infinity;

  readonly #events: ConnectionEvents;
  // Why the bridge sent this socket away (`goaway`); null until it does.
  #goingAway: string | null = null;
  // Calls that went to another socket after the bridge refused their
  // request here for the goaway: what is still queued of theirs stays.
  readonly #movedAway = new WeakSet<CallHandle>();
  // A fresh token without a new socket: when the socket's token runs out,
  // the timer that asks for the next, and the refusals in a row.
  #tokenExpiresAt = Infinity;
  #tokenTimer: ReturnType<typeof setTimeout> | undefined;
  #tokenRefusals = 0;

  constructor(
    socket: WebSocketLike,
    onProtocolError: (error: RpcError, frame: unknown) => void,
    windows: WindowOptions,
    session: { readonly maxKeptBytes: number | undefined } | null,
    events: ConnectionEvents,
  ) {
    this.#events = events;
    this.#socket = socket;
    this.#onProtocolError = onProtocolError;
    this.#windows = windows;
    this.#receiveWindow = windows.initialConnectionWindowBytes;
    this.#streamWindowBytes = windows.initialWindowBytes;
    this.#sessionOptions = session;
  }

  /** The socket that carries the connection now. */
  get socket(): WebSocketLike {
    return this.#socket;
  }

  get isOpen(): boolean {
    return !this.#closed && this.#socket.readyState === SOCKET_OPEN;
  }

  /**
   * Whether the connection takes envelopes: its socket is open, or it has
   * a session, whose envelopes wait for a new socket should this one drop.
   */
  get live(): boolean {
    return !this.#closed && (this.#counting || this.#socket.readyState === SOCKET_OPEN);
  }

  /** Why the bridge sent the socket away, or null while it takes calls. */
  get goingAway(): string | null {
    return this.#goingAway;
  }

  /**
   * Whether the end of a call of which nothing else arrived is the bridge's
   * refusal of a request that crossed its `goaway`: the bridge marks it
   * `unprocessed`, having started nothing, so it may go to another socket.
   */
  refusedForGoaway(frame: InboundFrame): boolean {
    if (!this.#v2 || frame.unprocessed !== true) {
      return false;
    }
    if (this.#goingAway === null) {
      // The refusal came before the goaway itself: it is one.
      this.#goaway(typeof frame.error === "string" ? frame.error : "the bridge sent the socket away");
    }
    return true;
  }

  /** Takes `call`, whose request was refused for the goaway, off this socket. */
  moveAway(call: CallHandle, id: string): void {
    this.#movedAway.add(call);
    this.remove(id);
  }

  /** Sessions: whether a new socket could take over the calls. */
  get resumable(): boolean {
    return this.#counting && !this.#closed;
  }

  /** Bytes given to this connection and not yet sent. */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount + this.#queuedBytes + this.#inputBytes;
  }

  /** Whether the socket speaks v2, with its flow control. */
  get v2(): boolean {
    return this.#v2;
  }

  /** v2: the largest frame the bridge reads. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** v2: request messages a new call may send before credit arrives. */
  get requestWindow(): number {
    return this.#requestWindow;
  }

  /** v2: whether the bridge counts windows in bytes on this socket. */
  get byteWindows(): boolean {
    return this.#byteWindows;
  }

  /** Windows in bytes: request bytes a new call may send before credit arrives. */
  get callSendWindow(): number {
    return this.#callSendWindow;
  }

  /**
   * Windows in bytes: whether the socket's window lets a request message
   * go, and, with a session, what is kept unacknowledged leaves room.
   */
  get sendWindowOpen(): boolean {
    return this.#sendWindow > 0 && this.#keptBytes <= this.#keptLimit;
  }

  /** Windows in bytes: the response window a new stream asks for. */
  get streamWindowBytes(): number {
    return this.#streamWindowBytes;
  }

  /** Windows in bytes: how far a window may grow. */
  get maxWindowBytes(): number {
    return this.#windows.maxWindowBytes;
  }

  /** Windows in bytes: the ping whose round trip is being measured. */
  get pingEpoch(): number {
    return this.#pingEpoch;
  }

  /**
   * v2: calls `ready` once the bridge's settings have arrived: with `true`,
   * or, where the connection waits to resume its session and the bridge
   * would not, why not.
   */
  awaitSettings(ready: (resumed: true | string) => void): void {
    this.#v2 = true;
    this.#onSettings = ready;
  }

  /**
   * Sessions: the socket dropped. The calls go on; what they send is kept
   * for the socket that resumes the session, and what belonged to this
   * one (pings, pongs) goes no further.
   */
  suspend(): void {
    this.#suspended = true;
    this.#ping = null;
    this.#stopTokenTimer();
    this.#onSettings = null;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const { queued, sizes, owners, costs, counted } = this.#takeQueue();
    for (let i = 0; i < queued.length; i++) {
      if (counted[i] === true) {
        this.#enqueue(queued[i] as string, sizes[i] as number, owners[i] as CallHandle | null, costs[i] as number, true);
      }
    }
  }

  /** Sessions: `socket` is to resume the session; its first frame says whether it does. */
  attach(socket: WebSocketLike): void {
    this.#socket = socket;
  }

  /** Registers a call under a fresh id, unique on this connection. */
  add(call: CallHandle): string {
    const id = String(this.#nextId++);
    this.#calls.set(id, call);
    return id;
  }

  remove(id: string): void {
    const call = this.#calls.get(id);
    if (call === undefined) {
      return;
    }
    this.#calls.delete(id);
    this.#sendWaiters.delete(call);
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
   * BigInt), and, in v2, RESOURCE_EXHAUSTED for an envelope larger than
   * the bridge reads in a frame, before any of it is written. In v2 the
   * envelope waits for the end of the current task, so that everything
   * the page sends in one task goes in one frame.
   */
  send(frame: OutboundFrame): boolean {
    const text = JSON.stringify(frame);
    if (!this.live) {
      return false;
    }
    if (!this.#v2) {
      return this.#write(text);
    }
    const bytes = utf8Length(text);
    if (bytes + 2 > this.#maxFrameBytes) {
      throw tooLarge(frame.type === "request" ? `the request of ${frame.method}` : `a ${frame.type} envelope`, bytes + 2, this.#maxFrameBytes);
    }
    this.#enqueue(text, bytes, null, 0, isCounted(frame.type));
    this.#scheduleFlush();
    return true;
  }

  /**
   * v2: `call` has gathered `bytes` more of input (or its end) for the
   * next frame, which asks for it with `drainInput`.
   */
  queueInput(call: CallHandle, bytes: number): void {
    this.#inputs.add(call);
    this.#inputBytes += bytes;
    this.#queuedEver += 1;
    this.#scheduleFlush();
  }

  /** Windows in bytes: a call sent `bytes` of request messages. */
  spend(bytes: number): void {
    this.#sendWindow -= bytes;
  }

  /** Windows in bytes: request messages that cost `bytes` will not go after all. */
  refund(bytes: number): void {
    const closed = this.#sendWindow <= 0;
    this.#sendWindow += bytes;
    if (closed && this.#sendWindow > 0) {
      this.#wakeSenders();
    }
  }

  #wakeSenders(): void {
    const waiters = [...this.#sendWaiters];
    this.#sendWaiters.clear();
    for (const waiter of waiters) {
      waiter.wake();
    }
  }

  /** Windows in bytes: wakes `call` when the socket's window opens again. */
  waitForSendWindow(call: CallHandle): void {
    this.#sendWaiters.add(call);
  }

  /**
   * Windows in bytes: `bytes` of responses arrived on a stream. One round
   * trip is measured at a time, while data flows and a window may still
   * grow, as gRPC's BDP estimator does.
   */
  arrived(bytes: number): void {
    if (this.#ping !== null) {
      this.#ping.bytes += bytes;
      return;
    }
    const smallest = Math.min(this.#receiveWindow, this.#streamWindowBytes);
    if (smallest >= this.#windows.maxWindowBytes) {
      return;
    }
    // Not for every trickle: a ping costs the page a frame, and a window
    // grows only for a round trip that brings two thirds of it. Once a
    // quarter of the smaller window has come since the last measure.
    this.#arrivedSincePing += bytes;
    if (this.#arrivedSincePing * 4 < smallest) {
      return;
    }
    this.#arrivedSincePing = 0;
    this.#pingEpoch += 1;
    this.#ping = { data: this.#pingEpoch, sentAt: performance.now(), bytes };
    this.send({ type: "ping", data: this.#pingEpoch });
  }

  /**
   * Windows in bytes: the page is done with `bytes` of responses (it took
   * them, or their call ended): the socket's window gets them back, a
   * quarter of the window at a time.
   */
  released(bytes: number): void {
    this.#released += bytes;
    if (this.#released * 4 >= this.#receiveWindow && this.live) {
      const credit = Math.min(MAX_WINDOW, this.#released);
      this.#released -= credit;
      this.send({ type: "credit", bytes: credit });
    }
  }

  /** Windows in bytes: a stream's window grew to `window`; new streams start there. */
  streamWindowGrew(window: number): void {
    this.#streamWindowBytes = Math.max(this.#streamWindowBytes, window);
  }

  #enqueue(text: string, bytes: number, owner: CallHandle | null, cost: number, counted: boolean): void {
    this.#queued.push(text);
    this.#queuedSizes.push(bytes);
    this.#queuedOwners.push(owner);
    this.#queuedCosts.push(cost);
    this.#queuedCounted.push(counted);
    this.#queuedBytes += bytes;
    this.#queuedEver += 1;
  }

  /** The frame size the client fills before it sends. */
  get #batchBytes(): number {
    return Math.min(BATCH_BYTES, this.#maxFrameBytes);
  }

  #scheduleFlush(): void {
    if (this.#queuedBytes + this.#inputBytes >= this.#batchBytes) {
      // A frame is full: out with it now, so that a long input streams.
      this.#flush(false);
    }
    if (!this.#flushScheduled && (this.#queued.length > 0 || this.#inputs.size > 0 || this.#ackDue)) {
      this.#flushScheduled = true;
      this.#queuedAtLastLook = 0;
      this.#quietTurns = 0;
      queueMicrotask(() => this.#flushWhenQuiet());
    }
  }

  /**
   * Waits while the turns of the microtask queue add envelopes (calls
   * started together, a client stream's input), then sends them. This is
   * the end of the task without a new task's delay; a lone call waits a
   * few microtask turns.
   */
  #flushWhenQuiet(): void {
    if (this.#closed || this.#suspended) {
      this.#flushScheduled = false;
      return;
    }
    if (this.#queuedEver > this.#queuedAtLastLook) {
      this.#queuedAtLastLook = this.#queuedEver;
      this.#quietTurns = 0;
      queueMicrotask(() => this.#flushWhenQuiet());
      return;
    }
    if (this.#quietTurns < QUIET_TURNS) {
      this.#quietTurns += 1;
      queueMicrotask(() => this.#flushWhenQuiet());
      return;
    }
    this.#flushScheduled = false;
    this.#flush(true);
  }

  /**
   * v2: the queued envelopes as few frames as the batch size allows, each
   * within the bridge's limit. Unless `all`, a last frame that is not full
   * stays queued.
   */
  #flush(all: boolean): void {
    if (this.#suspended || this.#closed) {
      // Kept for the socket that resumes the session.
      return;
    }
    if (this.#inputs.size > 0) {
      const inputs = this.#inputs;
      this.#inputs = new Set();
      this.#inputBytes = 0;
      const maxPayloads = Number.isFinite(this.#requestWindow) ? this.#requestWindow : Infinity;
      for (const call of inputs) {
        if (this.#movedAway.has(call)) {
          continue;
        }
        call.drainInput(
          (text, bytes, cost) => this.#enqueue(text, bytes, call, cost, true),
          this.#batchBytes,
          maxPayloads,
        );
      }
    }
    if (all && this.#counting && this.#received > this.#acked && (this.#ackDue || this.#queued.length > 0)) {
      // Sessions: an acknowledgement rides with whatever else goes (credit,
      // above all), first, or goes alone once due.
      const text = `{"type":"ack","received":${this.#received}}`;
      this.#queued.unshift(text);
      this.#queuedSizes.unshift(text.length);
      this.#queuedOwners.unshift(null);
      this.#queuedCosts.unshift(0);
      this.#queuedCounted.unshift(false);
      this.#queuedBytes += text.length;
      this.#acknowledging();
    }
    const { queued, sizes, owners, costs, counted } = this.#takeQueue();
    const batchBytes = this.#batchBytes;
    const counting = this.#counting;
    // The envelopes of the frame being filled, by their place in the queue.
    let frame: number[] = [];
    let bytes = 2;
    let refund = 0;
    const write = () => {
      if (counting) {
        // Kept until the bridge acknowledges it, as written, whether or
        // not the socket takes it now.
        for (const i of frame) {
          if (counted[i] === true) {
            this.#keep(queued[i] as string, sizes[i] as number);
          }
        }
      }
      this.#write(`[${frame.map((i) => queued[i] as string).join(",")}]`);
    };
    for (let i = 0; i < queued.length; i++) {
      const owner = owners[i];
      if (owner != null && (owner.ended || this.#movedAway.has(owner))) {
        // The input of a call that ended: the bridge would refuse it.
        refund += costs[i] as number;
        continue;
      }
      const size = sizes[i] as number;
      if (frame.length > 0 && bytes + 1 + size > batchBytes) {
        write();
        frame = [];
        bytes = 2;
      }
      bytes += (frame.length > 0 ? 1 : 0) + size;
      frame.push(i);
    }
    if (frame.length > 0 && !all && bytes < batchBytes) {
      // Not full: it waits for more, unless this flush is the last.
      for (const i of frame) {
        this.#enqueue(queued[i] as string, sizes[i] as number, owners[i] as CallHandle | null, costs[i] as number, counted[i] as boolean);
      }
      this.#queuedEver -= frame.length;
    } else if (frame.length > 0) {
      write();
    }
    if (refund > 0) {
      this.refund(refund);
    }
  }

  /** Everything queued, in order, leaving the queue empty. */
  #takeQueue() {
    const taken = {
      queued: this.#queued,
      sizes: this.#queuedSizes,
      owners: this.#queuedOwners,
      costs: this.#queuedCosts,
      counted: this.#queuedCounted,
    };
    this.#clearQueue();
    return taken;
  }

  #clearQueue(): void {
    this.#queued = [];
    this.#queuedSizes = [];
    this.#queuedOwners = [];
    this.#queuedCosts = [];
    this.#queuedCounted = [];
    this.#queuedBytes = 0;
  }

  /** Sessions: an envelope sent, kept until the bridge acknowledges it. */
  #keep(text: string, bytes: number): void {
    this.#kept.push(text);
    this.#keptSizes.push(bytes);
    this.#keptBytes += bytes;
  }

  /** Sessions: how many counted envelopes have been sent. */
  get #sent(): number {
    return this.#keptFirst + (this.#kept.length - this.#keptHead) - 1;
  }

  /**
   * Sessions: the bridge has received the first `received` envelopes:
   * forget them. False where it says it received more than was sent.
   */
  #forget(received: number): boolean {
    if (received > this.#sent) {
      return false;
    }
    const kept = this.#kept;
    const sizes = this.#keptSizes;
    let head = this.#keptHead;
    while (this.#keptFirst <= received && head < kept.length) {
      this.#keptBytes -= sizes[head] as number;
      head += 1;
      this.#keptFirst += 1;
    }
    if (head === kept.length) {
      this.#kept = [];
      this.#keptSizes = [];
      this.#keptHead = 0;
    } else if (head >= 1024 && head * 2 >= kept.length) {
      this.#kept = kept.slice(head);
      this.#keptSizes = sizes.slice(head);
      this.#keptHead = 0;
    } else {
      this.#keptHead = head;
    }
    return true;
  }

  /** Sessions: an `ack` is going out with all that has been received. */
  #acknowledging(): void {
    this.#acked = this.#received;
    this.#unackedBytes = 0;
    this.#ackDue = false;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
  }

  /** Sessions: counted envelopes arrived in a frame of `bytes`: an ack is due, or will be. */
  #receivedCounted(bytes: number): void {
    this.#unackedBytes += bytes;
    if (this.#received - this.#acked >= ACK_ENVELOPES || this.#unackedBytes >= ACK_BYTES) {
      this.#ackDue = true;
      this.#scheduleFlush();
    } else if (this.#ackTimer === undefined) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = undefined;
        if (this.#received > this.#acked && !this.#closed && !this.#suspended) {
          this.#ackDue = true;
          this.#scheduleFlush();
        }
      }, ACK_DELAY_MS);
    }
  }

  /**
   * Sessions: the bridge resumed the session, having received `received`
   * of the client's envelopes: the client's settings and resume go first,
   * then every envelope after those, as written before, then what waited.
   * The windows go on as they were: what is sent again was counted
   * against them when it was first sent.
   */
  #resume(received: number): string | null {
    if (received < this.#keptFirst - 1) {
      return `the bridge asked for envelopes from ${received + 1} on, and the client kept only those from ${this.#keptFirst} on`;
    }
    if (!this.#forget(received)) {
      return `the bridge says it received ${received} envelopes; the client sent ${this.#sent}`;
    }
    const settings = JSON.stringify({ type: "settings", connectionWindowBytes: this.#receiveWindow, json: JSON_FORM });
    const resume = `{"type":"resume","received":${this.#received}}`;
    const texts = [settings, resume, ...this.#kept.slice(this.#keptHead)];
    const batchBytes = this.#batchBytes;
    let frame: string[] = [];
    let bytes = 2;
    for (const text of texts) {
      const size = utf8Length(text);
      if (frame.length > 0 && bytes + 1 + size > batchBytes) {
        this.#write(`[${frame.join(",")}]`);
        frame = [];
        bytes = 2;
      }
      bytes += (frame.length > 0 ? 1 : 0) + size;
      frame.push(text);
    }
    this.#write(`[${frame.join(",")}]`);
    this.#suspended = false;
    this.#acknowledging();
    // What the calls sent while there was no socket goes after.
    this.#flush(true);
    if (this.sendWindowOpen) {
      this.#wakeSenders();
    }
    return null;
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
    this.#onSettings = null;
    this.#stopTokenTimer();
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#kept = [];
    this.#keptSizes = [];
    this.#keptHead = 0;
    this.#keptBytes = 0;
    this.#clearQueue();
    this.#inputs = new Set();
    this.#inputBytes = 0;
    this.#sendWaiters.clear();
    const calls = [...this.#calls.values(), ...this.#waitingForRoom.splice(0).map(({ call }) => call)];
    this.#calls.clear();
    for (const call of calls) {
      call.fail(error);
    }
  }

  receive(data: unknown): void {
    if (this.#closed) {
      // Frames that were on their way when the client closed or failed
      // the connection: its calls are over, and what it kept is gone.
      return;
    }
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
    if (this.#onSettings !== null) {
      // The bridge's first frame: its settings, and with a session key, resume.
      const settings = parsed.find((envelope) => typeOf(envelope) === "settings") as InboundFrame | undefined;
      if (settings !== undefined) {
        this.#settings(settings, parsed.find((envelope) => typeOf(envelope) === "resume") as InboundFrame | undefined);
      }
      parsed = parsed.filter((envelope) => typeOf(envelope) !== "settings" && typeOf(envelope) !== "resume");
    }
    const envelopes = parsed as unknown[];
    let counted = 0;
    for (let i = 0; i < envelopes.length; i++) {
      const envelope = envelopes[i];
      if (this.#counting && isCounted(typeOf(envelope))) {
        // Counted as it arrives, acknowledged once handled: the page holds
        // it from here on.
        counted += 1;
        this.#received += 1;
      }
      this.#envelope(envelope);
    }
    if (counted > 0 && !this.#closed) {
      this.#receivedCounted(data.length);
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
      if (call !== undefined) {
        call.receive(frame);
      } else if (this.#byteWindows && typeof frame.bytes === "number" && frame.bytes > 0) {
        // Frames of calls already over (cancelled, say) still arrive and
        // are dropped; the socket's window gets their bytes back.
        this.released(frame.bytes);
      }
      return;
    }
    if (frame.type === "error") {
      this.#refused(frame, call);
      return;
    }
    if (this.#v2) {
      switch (frame.type) {
        case "credit":
          this.#credit(frame, call);
          return;
        case "settings":
        case "resume":
          // About the start of a socket, in its first frame.
          return;
        case "ack":
          this.#acknowledged(frame);
          return;
        case "goaway":
          this.#goaway(typeof frame.reason === "string" ? frame.reason : "the bridge sent the socket away");
          return;
        case "token":
          this.#tokenExpires(frame);
          return;
        case "ping":
          // Answered at once, ahead of what is queued, so the bridge
          // measures the path and not this page's queue.
          if (this.isOpen) {
            const text = JSON.stringify({ type: "pong", data: frame.data });
            const bytes = utf8Length(text);
            this.#queued.unshift(text);
            this.#queuedSizes.unshift(bytes);
            this.#queuedOwners.unshift(null);
            this.#queuedCosts.unshift(0);
            this.#queuedCounted.unshift(false);
            this.#queuedBytes += bytes;
            this.#queuedEver += 1;
            this.#scheduleFlush();
          }
          return;
        case "pong":
          this.#pong(frame);
          return;
      }
    }
    this.#onProtocolError(
      new RpcError(Code.INTERNAL, `the bridge sent a frame of unknown type ${JSON.stringify(frame.type)}`),
      frame,
    );
  }

  #credit(frame: InboundFrame, call: CallHandle | undefined): void {
    const messages = typeof frame.messages === "number" && frame.messages > 0 ? frame.messages : 0;
    const bytes = typeof frame.bytes === "number" && frame.bytes > 0 ? frame.bytes : 0;
    if (frame.id === undefined) {
      if (bytes > 0) {
        // The socket's window.
        this.#sendWindow += bytes;
        if (this.#counting && this.#sessionOptions?.maxKeptBytes === undefined) {
          // What is kept follows the window as the bridge grows it: else a
          // grown window over a long round trip waits on acknowledgements.
          this.#keptLimit = Math.max(this.#keptLimit, Math.min(MAX_KEPT_BYTES, 2 * this.#sendWindow));
        }
        if (this.#sendWindow > 0) {
          this.#wakeSenders();
        }
      }
      return;
    }
    // Credit for a call that has ended crossed its end: ignored.
    if (messages > 0 || bytes > 0) {
      call?.credit(messages, bytes);
    }
  }

  /** Sessions: the bridge acknowledges what it received: forget it, and let input go again. */
  #acknowledged(frame: InboundFrame): void {
    if (!this.#counting || typeof frame.received !== "number") {
      return;
    }
    if (!this.#forget(frame.received)) {
      this.#onProtocolError(
        new RpcError(Code.INTERNAL, `the bridge acknowledged ${frame.received} envelopes; the client sent ${this.#sent}`),
        frame,
      );
      return;
    }
    if (this.sendWindowOpen) {
      this.#wakeSenders();
    }
  }

  #settings(frame: InboundFrame, resume: InboundFrame | undefined): void {
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
    const offersBytes =
      typeof frame.windowBytes === "number" &&
      frame.windowBytes > 0 &&
      typeof frame.connectionWindowBytes === "number" &&
      frame.connectionWindowBytes > 0;
    if (ready === null) {
      return;
    }
    if (this.#suspended) {
      // A socket to resume the session on.
      let refused: string | null;
      if (!offersBytes) {
        refused = "the bridge offers no windows in bytes";
      } else if (typeof resume?.received === "number") {
        this.#callSendWindow = frame.windowBytes as number;
        refused = this.#resume(resume.received);
      } else {
        refused = typeof resume?.reason === "string" ? resume.reason : "the bridge did not offer to resume it";
      }
      ready(refused ?? true);
      return;
    }
    if (offersBytes) {
      // Taken by saying so first, before any call.
      this.#byteWindows = true;
      this.#callSendWindow = frame.windowBytes as number;
      this.#sendWindow = frame.connectionWindowBytes as number;
      this.send({ type: "settings", connectionWindowBytes: this.#receiveWindow, json: JSON_FORM });
      if (this.#sessionOptions !== null && resume !== undefined) {
        // The bridge keeps sessions: it says `resume` (null, with why, on
        // a first socket) to every socket with a key. The session counts
        // from here on, both ways.
        this.#counting = true;
        this.#keptLimit =
          this.#sessionOptions.maxKeptBytes ??
          Math.min(MAX_KEPT_BYTES, Math.max(MIN_KEPT_BYTES, 2 * (frame.connectionWindowBytes as number)));
      }
    }
    ready(true);
  }

  /**
   * Windows in bytes: the answer to the ping. Each window that came near
   * being full in that round trip (two thirds of it) doubles, up to the
   * maximum, as gRPC's BDP estimator grows HTTP/2's windows; and, as
   * there, only while the bandwidth measured grows too: data that waits in
   * buffers on the way lengthens the round trip as much as it adds bytes,
   * and a window that grew on that alone would hold a slow reader's
   * backlog for nothing.
   */
  #pong(frame: InboundFrame): void {
    const ping = this.#ping;
    if (ping === null || frame.data !== ping.data) {
      return;
    }
    this.#ping = null;
    const sample = Math.max(performance.now() - ping.sentAt, 0.001);
    this.#roundTrips += 1;
    // The mean of the first ten, then mostly the latest, as gRPC does.
    this.#roundTripMs += (sample - this.#roundTripMs) * (this.#roundTrips <= 10 ? 1 / this.#roundTrips : 0.9);
    const bandwidth = ping.bytes / (this.#roundTripMs * 1.5);
    if (bandwidth < this.#bandwidthMax) {
      return;
    }
    this.#bandwidthMax = bandwidth;
    const max = this.#windows.maxWindowBytes;
    if (ping.bytes * 3 >= this.#receiveWindow * 2 && this.#receiveWindow < max) {
      const grown = Math.min(max, this.#receiveWindow * 2);
      this.send({ type: "credit", bytes: grown - this.#receiveWindow });
      this.#receiveWindow = grown;
    }
    for (const call of this.#calls.values()) {
      call.roundTrip(ping.data);
    }
  }

  /**
   * `goaway`: the socket takes no new calls. The client sends new ones
   * elsewhere; those waiting here for room go too, as none started.
   */
  #goaway(reason: string): void {
    if (this.#goingAway !== null) {
      return;
    }
    this.#goingAway = reason;
    this.#events.goaway(this);
    for (const { call } of this.#waitingForRoom.splice(0)) {
      call.reroute();
    }
  }

  /**
   * `token`: the socket's token runs out in `expiresInMs`. With a token
   * source, a fresh token goes before then.
   */
  #tokenExpires(frame: InboundFrame): void {
    if (typeof frame.expiresInMs !== "number" || frame.expiresInMs < 0) {
      return;
    }
    const expiresInMs = frame.expiresInMs;
    this.#tokenExpiresAt = performance.now() + expiresInMs;
    this.#tokenRefusals = 0;
    const delay = Math.max(0, Math.min(expiresInMs * TOKEN_REFRESH_AT, expiresInMs - TOKEN_REFRESH_MARGIN_MS));
    this.#scheduleTokenRefresh(delay);
  }

  #scheduleTokenRefresh(delayMs: number): void {
    this.#stopTokenTimer();
    if (this.#events.freshToken === null || this.#closed || this.#suspended) {
      return;
    }
    this.#tokenTimer = setTimeout(() => {
      this.#tokenTimer = undefined;
      void this.#refreshToken();
    }, delayMs);
  }

  #stopTokenTimer(): void {
    clearTimeout(this.#tokenTimer);
    this.#tokenTimer = undefined;
  }

  /** Asks the source for a fresh token and sends it; the bridge answers `token` or `error`. */
  async #refreshToken(): Promise<void> {
    const freshToken = this.#events.freshToken;
    if (freshToken === null) {
      return;
    }
    let token: string;
    try {
      token = await freshToken();
    } catch (error) {
      this.#tokenRefused(RpcError.from(error, Code.UNAUTHENTICATED));
      return;
    }
    if (this.#closed || this.#suspended || !this.isOpen) {
      return;
    }
    this.send({ type: "token", token });
  }

  /**
   * The bridge refused the fresh token, or the source gave none: asked
   * again after a delay that doubles, while the old token lasts.
   */
  #tokenRefused(error: RpcError): void {
    const delay = TOKEN_RETRY_MS * 2 ** this.#tokenRefusals;
    this.#tokenRefusals += 1;
    const left = this.#tokenExpiresAt - performance.now();
    if (left > TOKEN_RETRY_MS) {
      this.#scheduleTokenRefresh(Math.min(delay, left / 2));
    }
    this.#onProtocolError(new RpcError(error.code, `a fresh token failed: ${error.message}`), null);
  }

  /** An `error` envelope: something the client sent was refused. */
  #refused(frame: InboundFrame, call: CallHandle | undefined): void {
    const error = errorFromFrame(frame, {});
    if (frame.refused === "token") {
      this.#tokenRefused(error);
      return;
    }
    if (call === undefined && this.#goingAway !== null && (frame.refused === "message" || frame.refused === "end")) {
      // The input of a call that went to another socket after its request
      // was refused here.
      return;
    }
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

/** An envelope's `type`, whatever it is. */
function typeOf(envelope: unknown): unknown {
  return typeof envelope === "object" && envelope !== null ? (envelope as { type?: unknown }).type : undefined;
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
  // v2 flow control of the input: the request messages (message windows)
  // or bytes (windows in bytes) the bridge takes before it grants more,
  // and the input waiting for that.
  #inputCredit = Infinity;
  #inputCreditBytes = Infinity;
  #wakeInput: (() => void) | undefined;
  // v2: the input gathered for the next frame, as JSON text with its
  // UTF-8 bytes; whether its end goes with it.
  #pending: string[] = [];
  #pendingSizes: number[] = [];
  #endPending = false;
  // Windows in bytes: what each input costs the windows beyond its text.
  #inputOverhead = 0;
  // v2 flow control of the responses, with message windows: responses the
  // reader took since the last credit; undefined where the call has none.
  #takenSinceCredit: number | undefined;
  // With windows in bytes: the stream's window (0 where it has none), the
  // bytes the reader took since the last credit, and those arrived and not
  // yet given back to the socket's window.
  #receiveWindow = 0;
  #takenBytes = 0;
  #heldBytes = 0;
  // The bytes that arrived in the round trip of ping `#epoch`.
  #epoch = 0;
  #epochBytes = 0;
  // What the call sends, for a start on another socket should the bridge
  // refuse its request for a goaway; the input is kept (as JSON text,
  // with its UTF-8 bytes and whether its end was sent) until the bridge
  // shows the call started (its credit, a frame), null from then on.
  #input: { request: I } | { requests: StreamInput<I> } | undefined;
  #replay: { texts: string[]; sizes: number[]; end: boolean } | null = null;
  #pumping = false;
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
    this.#input = input;
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
    this.reroute();
    return this;
  }

  /** Starts the call on the client's connection: the first, or the next after a goaway. */
  reroute(): void {
    this.#leaveLine = undefined;
    this.#context.open().then(
      (connection) => this.#send(connection),
      (error: unknown) => this.#finish(error),
    );
  }

  #send(connection: Connection): void {
    if (this.#done) {
      return;
    }
    if (connection.goingAway !== null) {
      // Sent away while this call waited for it: the next one.
      this.reroute();
      return;
    }
    this.#leaveLine = connection.whenRoom(this, () => this.#sendNow(connection));
  }

  #sendNow(connection: Connection): void {
    this.#leaveLine = undefined;
    const input = this.#input;
    if (this.#done || input === undefined) {
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
      const metadata = wireMetadata(this.#options.metadata);
      if (metadata instanceof RpcError) {
        this.#finish(metadata);
        return;
      }
      request.metadata = metadata;
    }
    if ("request" in input) {
      request.payload = input.request;
    }
    const streamsResponses = this.#kind === "serverStreaming" || this.#kind === "bidiStreaming";
    if (connection.byteWindows) {
      if (streamsResponses) {
        this.#receiveWindow = request.windowBytes = connection.streamWindowBytes;
      }
      this.#inputCreditBytes = connection.callSendWindow;
    } else {
      if (connection.v2 && streamsResponses) {
        request.window = this.#context.streamWindow;
        this.#takenSinceCredit = 0;
      }
      this.#inputCredit = connection.requestWindow;
    }
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
    if (!("requests" in input)) {
      return;
    }
    if (!connection.v2) {
      // v1: no goaway, and so nothing to send again.
      this.#pumping = true;
      void this.#pump(input.requests);
      return;
    }
    const replay = this.#replay;
    if (replay !== null && (replay.texts.length > 0 || replay.end)) {
      // A second start, after a goaway: what went to the first socket goes again.
      for (let i = 0; i < replay.texts.length; i++) {
        this.#queueText(connection, replay.texts[i] as string, replay.sizes[i] as number);
      }
      if (replay.end) {
        this.#endPending = true;
        connection.queueInput(this, 0);
      }
    }
    this.#replay ??= { texts: [], sizes: [], end: false };
    if (!this.#pumping) {
      this.#pumping = true;
      void this.#pump(input.requests);
    } else {
      this.wake();
    }
  }

  /**
   * The bridge refused the request for a goaway, before anything else of
   * the call arrived: the call starts again on the client's next socket,
   * with whatever input it had sent.
   */
  #startElsewhere(): void {
    const old = this.#connection;
    if (old !== null) {
      old.moveAway(this, this.#id);
    }
    this.#connection = null;
    this.#id = "";
    this.#pending = [];
    this.#pendingSizes = [];
    this.#endPending = false;
    this.#inputCredit = Infinity;
    this.#inputCreditBytes = Infinity;
    this.#receiveWindow = 0;
    this.#takenSinceCredit = undefined;
    this.reroute();
  }

  /**
   * Takes the input while the windows let it go and sends it: in v2
   * gathered into `message` envelopes, a frame at a time, with no wait
   * per message; in v1 a frame per message.
   */
  async #pump(requests: StreamInput<I>): Promise<void> {
    const asynchronous = isAsyncIterable(requests);
    const iterator: AsyncIterator<I> | Iterator<I> = asynchronous
      ? requests[Symbol.asyncIterator]()
      : requests[Symbol.iterator]();
    try {
      for (;;) {
        // The call's connection, which a goaway may change meanwhile
        // (null while the call goes to another socket).
        while (!this.#done && (this.#connection === null || !this.#roomForInput(this.#connection))) {
          await this.#waitForRoom(this.#connection);
        }
        if (this.#done) {
          break;
        }
        const step = asynchronous ? await iterator.next() : (iterator as Iterator<I>).next();
        if (this.#done) {
          break;
        }
        if (step.done === true) {
          this.#endInput(this.#connection);
          return;
        }
        this.#queueInput(this.#connection, step.value);
      }
      await iterator.return?.();
    } catch (error) {
      // The input failed, or a payload would not serialize or fit in a
      // frame: the call fails with that error, and the bridge cancels it.
      this.abandon(error);
    }
  }

  /** Whether the next input may be taken now. */
  #roomForInput(connection: Connection): boolean {
    if (connection.byteWindows) {
      // While both windows are above zero; a message may take them below.
      if (this.#inputCreditBytes <= 0 || !connection.sendWindowOpen) {
        return false;
      }
    } else if (this.#inputCredit <= 0) {
      return false;
    }
    // Nor megabytes piled up in the socket (v1 has no credit).
    return !connection.live || connection.bufferedAmount <= SEND_HIGH_WATER_BYTES;
  }

  /** Waits for credit, the socket's window or the socket's buffer, whichever holds the input. */
  #waitForRoom(connection: Connection | null): Promise<void> {
    if (connection === null) {
      return new Promise<void>((resolve) => (this.#wakeInput = resolve));
    }
    const credit = connection.byteWindows ? this.#inputCreditBytes : this.#inputCredit;
    if (credit <= 0) {
      return new Promise<void>((resolve) => (this.#wakeInput = resolve));
    }
    if (connection.byteWindows && !connection.sendWindowOpen) {
      connection.waitForSendWindow(this);
      return new Promise<void>((resolve) => (this.#wakeInput = resolve));
    }
    return sleep(SEND_POLL_MS);
  }

  #queueInput(connection: Connection | null, value: I): void {
    if (connection !== null && !connection.v2) {
      if (!connection.send({ type: "message", id: this.#id, payload: value })) {
        throw unavailable("the connection to the bridge closed");
      }
      return;
    }
    const text = JSON.stringify(value) ?? "{}";
    const bytes = utf8Length(text);
    if (connection === null) {
      // On its way to another socket, which takes it with the rest.
      this.#replay?.texts.push(text);
      this.#replay?.sizes.push(bytes);
      return;
    }
    // The envelope around it, at its largest: `{"type":"message","id":"…","payloads":[…],"end":true}` in `[…]`.
    const envelope = bytes + this.#id.length + 53;
    if (envelope > connection.maxFrameBytes) {
      throw tooLarge(`a message of ${this.#method}`, envelope, connection.maxFrameBytes);
    }
    if (!connection.live) {
      throw unavailable("the connection to the bridge closed");
    }
    if (this.#replay !== null) {
      this.#replay.texts.push(text);
      this.#replay.sizes.push(bytes);
    }
    this.#queueText(connection, text, bytes);
  }

  /** v2: one message of input, as JSON text, for the connection's next frame. */
  #queueText(connection: Connection, text: string, bytes: number): void {
    if (connection.byteWindows) {
      this.#inputOverhead = MESSAGE_OVERHEAD_BYTES;
      this.#inputCreditBytes -= bytes + MESSAGE_OVERHEAD_BYTES;
      connection.spend(bytes + MESSAGE_OVERHEAD_BYTES);
    } else {
      this.#inputCredit -= 1;
    }
    this.#pending.push(text);
    this.#pendingSizes.push(bytes);
    connection.queueInput(this, bytes);
  }

  #endInput(connection: Connection | null): void {
    if (this.#replay !== null) {
      this.#replay.end = true;
    }
    if (connection === null) {
      return;
    }
    if (!connection.v2) {
      connection.send({ type: "end", id: this.#id });
      return;
    }
    this.#endPending = true;
    connection.queueInput(this, 0);
  }

  get ended(): boolean {
    return this.#done;
  }

  drainInput(out: (text: string, bytes: number, cost: number) => void, batchBytes: number, maxPayloads: number): void {
    const texts = this.#pending;
    const sizes = this.#pendingSizes;
    const end = this.#endPending;
    this.#pending = [];
    this.#pendingSizes = [];
    this.#endPending = false;
    if (this.#done) {
      return;
    }
    const prefix = `{"type":"message","id":${JSON.stringify(this.#id)},"payloads":[`;
    // The envelope's own bytes with the end's suffix, and the frame's brackets.
    const base = prefix.length + 13 + 2;
    const overhead = this.#inputOverhead;
    const emit = (start: number, stop: number, bytes: number, withEnd: boolean) => {
      const suffix = withEnd ? `],"end":true}` : "]}";
      const payloads = start === 0 && stop === texts.length ? texts.join(",") : texts.slice(start, stop).join(",");
      // The payloads' bytes without their commas, and what each costs beyond.
      const cost = bytes - (stop - start - 1) + (stop - start) * overhead;
      out(prefix + payloads + suffix, prefix.length + bytes + suffix.length, this.#inputOverhead > 0 ? cost : 0);
    };
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < texts.length; i++) {
      const size = sizes[i] as number;
      if (i > start && (base + bytes + 1 + size > batchBytes || i - start >= maxPayloads)) {
        emit(start, i, bytes, false);
        start = i;
        bytes = 0;
      }
      bytes += (i > start ? 1 : 0) + size;
    }
    if (start < texts.length) {
      emit(start, texts.length, bytes, end);
    } else if (end) {
      const text = `{"type":"end","id":${JSON.stringify(this.#id)}}`;
      out(text, text.length, 0);
    }
  }

  /** A frame of this call from the bridge. */
  receive(frame: InboundFrame): void {
    if (this.#done) {
      return;
    }
    try {
      if (!this.acknowledged) {
        const connection = this.#connection;
        if (
          this.#input !== undefined &&
          ("request" in this.#input || this.#replay !== null) &&
          connection !== null &&
          (frame.error !== undefined || frame.code !== undefined) &&
          connection.refusedForGoaway(frame)
        ) {
          this.#startElsewhere();
          return;
        }
        this.#replay = null;
        this.acknowledged = true;
        this.#headers = stringMap(frame.headers);
        this.#options.onHeader?.(this.#headers);
      }
      const failed = frame.error !== undefined || frame.code !== undefined;
      const payloads = frame.payloads;
      if (Array.isArray(payloads) && !failed) {
        // v2: a run of stream messages, maybe with the call's end.
        this.#messages(frame, payloads as O[]);
        if (this.#done) {
          return;
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
      if (!Array.isArray(payloads)) {
        this.#messages(frame, [(frame.payload ?? {}) as O]);
      }
    } catch (error) {
      // onHeader or onTrailer threw: the call fails with that.
      this.abandon(error);
    }
  }

  #messages(frame: InboundFrame, payloads: O[]): void {
    if (this.#kind !== "serverStreaming" && this.#kind !== "bidiStreaming") {
      this.#context.protocolError(
        new RpcError(Code.INTERNAL, `a response without end for ${this.#kind} call ${this.#id}`),
        frame,
      );
      return;
    }
    if (payloads.length === 0) {
      return;
    }
    let bytes = 0;
    const connection = this.#connection;
    if (this.#receiveWindow > 0 && connection !== null) {
      // What the bridge says they count; should it not say, what they
      // count as JSON.
      bytes =
        typeof frame.bytes === "number"
          ? frame.bytes
          : payloads.reduce((sum, payload) => sum + utf8Length(JSON.stringify(payload) ?? "") + MESSAGE_OVERHEAD_BYTES, 0);
      this.#heldBytes += bytes;
      connection.arrived(bytes);
      if (this.#epoch !== connection.pingEpoch) {
        this.#epoch = connection.pingEpoch;
        this.#epochBytes = 0;
      }
      this.#epochBytes += bytes;
    }
    this.#sink.messages(payloads, bytes);
  }

  inputRefused(error: RpcError): void {
    this.abandon(error);
  }

  credit(messages: number, bytes: number): void {
    // The call started: its request will not be refused now.
    this.#replay = null;
    this.#inputCredit += messages;
    this.#inputCreditBytes += bytes;
    this.wake();
  }

  wake(): void {
    const wake = this.#wakeInput;
    this.#wakeInput = undefined;
    wake?.();
  }

  roundTrip(epoch: number): void {
    const connection = this.#connection;
    if (epoch !== this.#epoch || this.#done || connection === null) {
      return;
    }
    const max = connection.maxWindowBytes;
    // Not while its reader falls behind: a larger window would only hold
    // more of its backlog.
    const readerKeepsUp = this.#heldBytes * 2 <= this.#receiveWindow;
    if (this.#epochBytes * 3 >= this.#receiveWindow * 2 && this.#receiveWindow < max && readerKeepsUp) {
      const grown = Math.min(max, this.#receiveWindow * 2);
      connection.send({ type: "credit", id: this.#id, bytes: grown - this.#receiveWindow });
      this.#receiveWindow = grown;
      connection.streamWindowGrew(grown);
    }
  }

  /**
   * The reader took `count` responses, which counted `bytes`. Credit goes
   * back to the bridge as HTTP/2 sends WINDOW_UPDATE, half a message
   * window or a quarter of a byte window at a time, so that a reader that
   * keeps up never finds the stream waiting for it.
   */
  taken(count: number, bytes: number): void {
    const connection = this.#connection;
    if (this.#done || connection === null) {
      return;
    }
    if (this.#receiveWindow > 0) {
      this.#heldBytes -= bytes;
      connection.released(bytes);
      this.#takenBytes += bytes;
      if (this.#takenBytes * 4 >= this.#receiveWindow) {
        const credit = Math.min(MAX_WINDOW, this.#takenBytes);
        this.#takenBytes -= credit;
        connection.send({ type: "credit", id: this.#id, bytes: credit });
      }
      return;
    }
    if (this.#takenSinceCredit === undefined) {
      return;
    }
    this.#takenSinceCredit += count;
    if (this.#takenSinceCredit * 2 >= this.#context.streamWindow) {
      connection.send({ type: "credit", id: this.#id, messages: Math.min(MAX_WINDOW, this.#takenSinceCredit) });
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
    if (this.#inputOverhead > 0 && this.#pending.length > 0) {
      // Input taken but never sent: the socket's window gets it back.
      let cost = 0;
      for (const size of this.#pendingSizes) {
        cost += size + this.#inputOverhead;
      }
      this.#connection?.refund(cost);
    }
    this.#pending = [];
    this.#pendingSizes = [];
    this.#leaveLine?.();
    this.wake();
    this.#connection?.remove(this.#id);
    if (this.#heldBytes > 0) {
      // Responses the reader has not taken leave the socket's window:
      // the call is over, and its window with it.
      this.#connection?.released(this.#heldBytes);
      this.#heldBytes = 0;
    }
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
  /** The reader took `count` responses, which counted `bytes`. */
  taken(count: number, bytes: number): void;
}

const NO_MESSAGES: never[] = [];

/**
 * The responses of a streaming call, buffered so that a slow reader loses
 * none; in v2, flow control keeps the buffer within the stream's window.
 * The call starts when iteration does; leaving the loop early cancels it.
 *
 * The runs of messages the bridge sends together are kept as they arrived
 * and read in place, and the call hears of a run once it is read, so
 * that a message costs the reader what `for await` costs and little more.
 */
class ResponseStream<O> implements AsyncIterableIterator<O>, ServerStream<O> {
  readonly #startCall: (sink: CallSink<O>) => StreamCall;
  readonly #metadata: ArrivingMetadata;
  #call: StreamCall | null = null;
  // The run being read, from #index on, and the bytes it counts; the runs
  // after it wait in #later from #laterHead on (read ones are dropped in
  // bulk, so that a long backlog costs O(1) per run).
  #run: O[] = NO_MESSAGES;
  #runBytes = 0;
  #index = 0;
  #later: ({ payloads: O[]; bytes: number } | undefined)[] = [];
  #laterHead = 0;
  readonly #waiting: { resolve: (result: IteratorResult<O>) => void; reject: (error: unknown) => void }[] = [];
  #ended = false;
  #failure: { error: unknown } | null = null;

  constructor(startCall: (sink: CallSink<O>) => StreamCall, metadata: ArrivingMetadata) {
    this.#startCall = startCall;
    this.#metadata = metadata;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  get headers(): Promise<Metadata> {
    return this.#metadata.headers;
  }

  get trailers(): Promise<Metadata> {
    return this.#metadata.trailers;
  }

  next(): Promise<IteratorResult<O>> {
    if (this.#call === null && !this.#ended) {
      this.#call = this.#startCall({
        messages: (payloads, bytes) => this.#push(payloads, bytes),
        end: () => this.#end(null),
        fail: (error) => this.#end({ error }),
      });
    }
    if (this.#index < this.#run.length) {
      return Promise.resolve({ value: this.#take(), done: false });
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

  readArrived(): O | undefined {
    return this.#index < this.#run.length ? this.#take() : undefined;
  }

  /** Called when a `for await` loop is left early: cancels the call. */
  return(): Promise<IteratorResult<O>> {
    this.#run = NO_MESSAGES;
    this.#index = 0;
    this.#later = [];
    this.#laterHead = 0;
    this.#failure = null;
    if (!this.#ended) {
      this.#ended = true;
      this.#metadata.fail(new RpcError(Code.CANCELLED, "the stream was left before its end"));
      this.#call?.abandon();
      for (const waiter of this.#waiting.splice(0)) {
        waiter.resolve({ value: undefined, done: true });
      }
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** The next unread message, of which there is one. */
  #take(): O {
    const run = this.#run;
    const value = run[this.#index] as O;
    // Read messages are the reader's now: the stream lets go of them, so a
    // slow reader of large messages holds no more than its window.
    (run as (O | undefined)[])[this.#index] = undefined;
    this.#index += 1;
    if (this.#index === run.length) {
      // The run is read: its call hears of it, and the next one is up.
      this.#call?.taken(run.length, this.#runBytes);
      const next = this.#later[this.#laterHead];
      if (next === undefined) {
        this.#run = NO_MESSAGES;
        this.#runBytes = 0;
      } else {
        this.#run = next.payloads;
        this.#runBytes = next.bytes;
        this.#later[this.#laterHead] = undefined;
        this.#laterHead += 1;
        if (this.#laterHead === this.#later.length) {
          this.#later = [];
          this.#laterHead = 0;
        } else if (this.#laterHead >= 1024 && this.#laterHead * 2 >= this.#later.length) {
          this.#later = this.#later.slice(this.#laterHead);
          this.#laterHead = 0;
        }
      }
      this.#index = 0;
    }
    return value;
  }

  #push(payloads: O[], bytes: number): void {
    if (this.#index < this.#run.length) {
      this.#later.push({ payloads, bytes });
      return;
    }
    this.#run = payloads;
    this.#runBytes = bytes;
    this.#index = 0;
    // Readers waiting, if any, get the first messages at once.
    while (this.#waiting.length > 0 && this.#index < this.#run.length) {
      const waiter = this.#waiting.shift();
      waiter?.resolve({ value: this.#take(), done: false });
    }
  }

  #end(failure: { error: unknown } | null): void {
    if (this.#ended) {
      return;
    }
    this.#ended = true;
    if (failure !== null) {
      this.#metadata.fail(failure.error);
    }
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

/**
 * A call's headers and trailers as they arrive: each a promise made only
 * when asked for, so that a call nobody asks costs nothing more, and no
 * failure goes unhandled that nobody asked about.
 */
class ArrivingMetadata implements CallMetadata {
  readonly #headers = new Arriving<Metadata>();
  readonly #trailers = new Arriving<Metadata>();

  get headers(): Promise<Metadata> {
    return this.#headers.promise;
  }

  get trailers(): Promise<Metadata> {
    return this.#trailers.promise;
  }

  /** `options` with hooks that take the headers and trailers as they come. */
  watch(options: CallOptions | undefined): CallOptions {
    const onHeader = options?.onHeader;
    const onTrailer = options?.onTrailer;
    return {
      ...options,
      onHeader: (headers) => {
        this.#headers.resolve(headers);
        onHeader?.(headers);
      },
      onTrailer: (trailers) => {
        this.#trailers.resolve(trailers);
        onTrailer?.(trailers);
      },
    };
  }

  /** The call failed: what has not come never will. */
  fail(error: unknown): void {
    this.#headers.reject(error);
    this.#trailers.reject(error);
  }

  /** `response` with the headers and trailers beside it. */
  onto<O>(response: Promise<O>): UnaryCall<O> {
    const metadata = this;
    return Object.defineProperties(response, {
      headers: { get: () => metadata.headers },
      trailers: { get: () => metadata.trailers },
    }) as UnaryCall<O>;
  }
}

/** A value that arrives once, or an error; its promise is made when asked for. */
class Arriving<T> {
  #settled: { value: T } | { error: unknown } | null = null;
  #promise: Promise<T> | null = null;
  #resolve: ((value: T) => void) | null = null;
  #reject: ((error: unknown) => void) | null = null;

  get promise(): Promise<T> {
    if (this.#promise === null) {
      const settled = this.#settled;
      this.#promise =
        settled === null
          ? new Promise<T>((resolve, reject) => {
              this.#resolve = resolve;
              this.#reject = reject;
            })
          : "value" in settled
            ? Promise.resolve(settled.value)
            : Promise.reject(settled.error);
    }
    return this.#promise;
  }

  resolve(value: T): void {
    if (this.#settled === null) {
      this.#settled = { value };
      this.#resolve?.(value);
    }
  }

  reject(error: unknown): void {
    if (this.#settled === null) {
      this.#settled = { error };
      this.#reject?.(error);
    }
  }
}

/** The input of a bidi call made without an iterable: what `send` gives, until `close`. */
class InputQueue<I> implements AsyncIterableIterator<I> {
  #items: I[] = [];
  #head = 0;
  #closed = false;
  #waiting: ((result: IteratorResult<I>) => void) | null = null;

  [Symbol.asyncIterator](): this {
    return this;
  }

  send(item: I): void {
    if (this.#closed) {
      throw new RpcError(Code.FAILED_PRECONDITION, "send() after close(), or after the call ended");
    }
    const waiting = this.#waiting;
    if (waiting !== null) {
      this.#waiting = null;
      waiting({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#head === this.#items.length) {
      this.#waiting?.({ value: undefined, done: true });
      this.#waiting = null;
    }
  }

  next(): Promise<IteratorResult<I>> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head] as I;
      this.#head += 1;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#closed) {
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => (this.#waiting = resolve));
  }

  /** The call is over: what was sent and not taken goes nowhere. */
  return(): Promise<IteratorResult<I>> {
    this.#closed = true;
    this.#items = [];
    this.#head = 0;
    this.#waiting?.({ value: undefined, done: true });
    this.#waiting = null;
    return Promise.resolve({ value: undefined, done: true });
  }
}

/** A bidi call's responses, and its input where `send` gives it. */
class BidiResponseStream<I, O> extends ResponseStream<O> implements BidiStream<I, O> {
  readonly #input: InputQueue<I> | null;

  constructor(startCall: (sink: CallSink<O>) => StreamCall, metadata: ArrivingMetadata, input: InputQueue<I> | null) {
    super(startCall, metadata);
    this.#input = input;
  }

  send(request: I): void {
    if (this.#input === null) {
      throw new RpcError(Code.FAILED_PRECONDITION, "this call takes its requests from the iterable it was given");
    }
    this.#input.send(request);
  }

  close(): void {
    if (this.#input === null) {
      throw new RpcError(Code.FAILED_PRECONDITION, "this call takes its requests from the iterable it was given");
    }
    this.#input.close();
  }
}
