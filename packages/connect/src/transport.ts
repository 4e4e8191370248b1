// A connect-es Transport whose calls go over the socket of a
// WebSocketGRPCClient from @wsgrpc/runtime: one socket for every call,
// protocol v2 with its flow control, reconnection, the bridge's limits.
// This file turns connect-es's calls into the runtime's and back; the
// runtime does everything on the wire.

import {
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type JsonReadOptions,
  type JsonValue,
  type JsonWriteOptions,
  type MessageInitShape,
  type MessageShape,
  create,
  fromJson,
  toJson,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
  createContextValues,
} from "@connectrpc/connect";
import {
  createDeadlineSignal,
  createLinkedAbortController,
  createMethodUrl,
  getAbortSignalReason,
  runUnaryCall,
} from "@connectrpc/connect/protocol";
import {
  type CallOptions,
  type ClientOptions,
  type ConnectionState,
  type Metadata,
  type MethodDescriptor,
  type MethodKind,
  type ServerStream,
  type Transport as RuntimeTransport,
  WebSocketGRPCClient,
} from "@wsgrpc/runtime";

import { toConnectError } from "./errors.js";

/** What every transport takes, whichever socket it uses. */
export interface CommonTransportOptions {
  /**
   * Interceptors for every call, run as connect-es's own transports run
   * them: the last of the array is closest to the wire.
   */
  interceptors?: Interceptor[];
  /**
   * How messages are written to and read from proto3 JSON, the bridge's
   * only format. Give a `registry` with the types of every `Any` the
   * messages may carry. Unknown fields in responses are ignored unless
   * `ignoreUnknownFields: false`, as in connect-es.
   */
  jsonOptions?: Partial<JsonReadOptions & JsonWriteOptions>;
  /** The deadline of a call that gives none; default none. */
  defaultTimeoutMs?: number;
}

/** A transport with a socket of its own. */
export interface UrlTransportOptions extends CommonTransportOptions, ClientOptions {
  /**
   * The bridge's socket: `wss://app.example.com/ws`. A token goes where the
   * bridge's authenticator reads it (a query parameter, a cookie).
   */
  url: string;
}

/**
 * A connection to a bridge, as the transport uses it: a
 * `WebSocketGRPCClient`, the package's or the copy that protoc-gen-wsgrpc
 * writes beside generated code (`wsgrpc_runtime.ts`).
 */
export interface BridgeConnection extends RuntimeTransport {
  readonly url: string;
  readonly state: ConnectionState;
  onStateChange(listener: (state: ConnectionState) => void): () => void;
  connect(): Promise<void>;
  close(): void;
}

/**
 * A transport on a connection that exists already: the calls of wsgrpc's
 * generated clients and those of connect-es share its socket.
 */
export interface ClientTransportOptions extends CommonTransportOptions {
  client: BridgeConnection;
}

export type WebSocketTransportOptions = UrlTransportOptions | ClientTransportOptions;

/** A connect-es Transport over a wsgrpc bridge's WebSocket. */
export interface WebSocketTransport extends Transport {
  /**
   * The connection the calls share: its `state`, `onStateChange`,
   * `connect()` and `close()`.
   */
  readonly client: BridgeConnection;
}

/**
 * A Transport for `createClient(Service, transport)` (and connect-query)
 * that calls through a wsgrpc bridge over one WebSocket: unary, server,
 * client and bidirectional streaming.
 *
 * ```ts
 * const transport = createWebSocketTransport({ url: "wss://app.example.com/ws" });
 * const client = createClient(ExampleService, transport);
 * const { message } = await client.sayHello({ name: "Ada" });
 * ```
 */
export function createWebSocketTransport(options: WebSocketTransportOptions): WebSocketTransport {
  const client = "client" in options ? options.client : new WebSocketGRPCClient(options.url, clientOptions(options));
  const baseUrl = client.url;
  const interceptors = options.interceptors ?? [];
  const jsonOptions: Partial<JsonReadOptions & JsonWriteOptions> = {
    ignoreUnknownFields: true,
    ...options.jsonOptions,
  };
  const defaultTimeoutMs = options.defaultTimeoutMs;

  function deadlineOf(timeoutMs: number | undefined): number | undefined {
    const ms = timeoutMs ?? defaultTimeoutMs;
    return ms === undefined || ms <= 0 ? undefined : ms;
  }

  return {
    client,

    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const deadline = new Deadline(deadlineOf(timeoutMs));
      return runUnaryCall<I, O>({
        interceptors,
        ...definedProps({ signal, timeoutMs: deadline.timeoutMs }),
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: createMethodUrl(baseUrl, method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req: UnaryRequest<I, O>): Promise<UnaryResponse<I, O>> => {
          const response = new ResponseMetadata();
          const payload = await client
            .unary(
              bridgeMethod<"unary">(method, "unary"),
              write(method.input, req.message, jsonOptions),
              response.callOptions(req, deadline),
            )
            .catch((error: unknown) => {
              throw toConnectError(error);
            });
          return {
            stream: false,
            service: method.parent,
            method,
            header: response.header,
            trailer: response.trailer,
            message: parse(method.output, payload, jsonOptions),
          };
        },
      });
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const deadline = new Deadline(deadlineOf(timeoutMs));
      return runStream<I, O>({
        interceptors,
        ...definedProps({ signal, timeoutMs: deadline.timeoutMs }),
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: createMethodUrl(baseUrl, method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req: StreamRequest<I, O>, call: CallEnd): Promise<StreamResponse<I, O>> => {
          const response = new ResponseMetadata();
          const options = response.callOptions(req, deadline);
          let responses: Responses;
          switch (method.methodKind) {
            case "server_streaming": {
              const first = await firstOf(req.message);
              responses = responsesOf(
                client.serverStream(bridgeMethod(method, "serverStreaming"), write(method.input, first, jsonOptions), options),
              );
              break;
            }
            case "client_streaming":
              responses = {
                iterator: single(
                  client.clientStream(bridgeMethod(method, "clientStreaming"), jsonMessages(method.input, req.message, jsonOptions), options),
                ),
                readArrived: noArrived,
              };
              break;
            case "bidi_streaming":
              responses = responsesOf(
                client.bidiStream(bridgeMethod(method, "bidiStreaming"), jsonMessages(method.input, req.message, jsonOptions), options),
              );
              break;
          }
          // The call starts with the first read. As connect-es's transports
          // do, this answers once the response headers are in (they come
          // with the bridge's first frame for the call), so that an
          // interceptor and `onHeader` see them; a call that fails before
          // any frame arrives fails here.
          const first = responses.iterator.next();
          first.catch(() => {});
          await Promise.race([response.headerArrived, first.then(noop, noop)]);
          if (!response.hasHeader) {
            await first.catch((error: unknown) => {
              throw toConnectError(error);
            });
          }
          return {
            stream: true,
            service: method.parent,
            method,
            header: response.header,
            trailer: response.trailer,
            message: parsedMessages((payload) => parse(method.output, payload, jsonOptions), first, responses, call),
          };
        },
      });
    },
  };
}

/** The runtime's options of a transport with a socket of its own. */
function clientOptions(options: UrlTransportOptions): ClientOptions {
  const {
    url: _url,
    interceptors: _interceptors,
    jsonOptions: _jsonOptions,
    defaultTimeoutMs: _defaultTimeoutMs,
    ...rest
  } = options;
  return rest;
}

/** The method as the bridge names it, its messages as proto3 JSON. */
function bridgeMethod<K extends MethodKind>(
  method: DescMethodUnary | DescMethodStreaming,
  kind: K,
): MethodDescriptor<JsonValue, JsonValue, K> {
  return { name: method.name, path: `${method.parent.typeName}/${method.name}`, kind };
}

/** The properties of `value` that are not undefined, for options that take no `undefined`. */
function definedProps<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const result: { [K in keyof T]?: Exclude<T[K], undefined> } = {};
  for (const key of Object.keys(value) as (keyof T)[]) {
    if (value[key] !== undefined) {
      result[key] = value[key] as Exclude<T[keyof T], undefined>;
    }
  }
  return result;
}

function noop(): void {}

/**
 * A call's deadline, fixed when the call is made: the time interceptors
 * take before the call reaches the wire comes off what the bridge is told.
 * connect-es's own deadline signal runs from the same moment.
 */
class Deadline {
  readonly timeoutMs: number | undefined;
  readonly #at: number | undefined;

  constructor(timeoutMs: number | undefined) {
    this.timeoutMs = timeoutMs;
    this.#at = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  /** What is left, at least 1 ms; by then the signal has aborted the call anyway. */
  remaining(): number | undefined {
    return this.#at === undefined ? undefined : Math.max(1, Math.ceil(this.#at - Date.now()));
  }
}

/** The response headers and trailers of one call, as connect-es reads them. */
class ResponseMetadata {
  readonly header = new Headers();
  readonly trailer = new Headers();
  /** Resolves when the headers arrive, with the call's first frame. */
  readonly headerArrived: Promise<void>;
  hasHeader = false;
  #resolveHeader: () => void = noop;

  constructor() {
    this.headerArrived = new Promise((resolve) => (this.#resolveHeader = resolve));
  }

  /** The runtime's options for the call `req` (after the interceptors). */
  callOptions(req: { signal: AbortSignal; header: Headers }, deadline: Deadline): CallOptions {
    const options: CallOptions = {
      signal: req.signal,
      onHeader: (metadata) => {
        copyInto(this.header, metadata);
        this.hasHeader = true;
        this.#resolveHeader();
      },
      onTrailer: (metadata) => copyInto(this.trailer, metadata),
    };
    const metadata = metadataOf(req.header);
    if (metadata !== undefined) {
      options.metadata = metadata;
    }
    const timeoutMs = deadline.remaining();
    if (timeoutMs !== undefined) {
      options.timeoutMs = timeoutMs;
    }
    return options;
  }
}

/**
 * Request headers as the envelope's metadata. `Headers` has made the keys
 * lower case and joined repeated values with ", ", as HTTP/2 would; `-bin`
 * values are base64 already (`encodeBinaryHeader`), as the bridge takes them.
 */
function metadataOf(header: Headers): Metadata | undefined {
  let metadata: Metadata | undefined;
  header.forEach((value, key) => {
    metadata ??= {};
    metadata[key] = value;
  });
  return metadata;
}

function copyInto(target: Headers, metadata: Metadata): void {
  for (const [key, value] of Object.entries(metadata)) {
    target.append(key, value);
  }
}

/** A message as proto3 JSON; what cannot be written (an `Any` of a type not in the registry) fails as INTERNAL. */
function write<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  options: Partial<JsonWriteOptions>,
): JsonValue {
  try {
    return toJson(schema, message, options);
  } catch (error) {
    throw ConnectError.from(error, Code.Internal);
  }
}

/** A response from proto3 JSON; what does not read as the type fails as INTERNAL. */
function parse<Desc extends DescMessage>(
  schema: Desc,
  payload: JsonValue,
  options: Partial<JsonReadOptions>,
): MessageShape<Desc> {
  try {
    return fromJson(schema, payload, options);
  } catch (error) {
    throw ConnectError.from(error, Code.Internal);
  }
}

/** The request messages in proto3 JSON, each written as the runtime takes it. */
async function* jsonMessages<Desc extends DescMessage>(
  schema: Desc,
  messages: AsyncIterable<MessageShape<Desc>>,
  options: Partial<JsonWriteOptions>,
): AsyncGenerator<JsonValue> {
  for await (const message of messages) {
    yield write(schema, message, options);
  }
}

/** The one request of a server-streaming call. */
async function firstOf<T>(messages: AsyncIterable<T>): Promise<T> {
  const iterator = messages[Symbol.asyncIterator]();
  const step = await iterator.next();
  if (step.done === true) {
    throw new ConnectError("a server-streaming call needs its request message", Code.Internal);
  }
  return step.value;
}

/** A call's responses: their iterator, and the one that has arrived unread, if any, without a promise. */
interface Responses {
  iterator: AsyncIterator<JsonValue>;
  readArrived: () => JsonValue | undefined;
}

/** The responses of a streaming call; a runtime without `readArrived` (an older copy) has every read wait. */
function responsesOf(stream: ServerStream<JsonValue>): Responses {
  return { iterator: stream[Symbol.asyncIterator](), readArrived: stream.readArrived?.bind(stream) ?? noArrived };
}

function noArrived(): undefined {
  return undefined;
}

/** The one response of a client-streaming call, as a stream of one. */
function single<T>(response: Promise<T>): AsyncIterator<T> {
  let read = false;
  return {
    async next(): Promise<IteratorResult<T>> {
      if (read) {
        return { done: true, value: undefined };
      }
      read = true;
      return { done: false, value: await response };
    },
  };
}

/**
 * The responses as protobuf-es messages, from the first read (already
 * started) on; failures as ConnectError. Leaving early cancels the call.
 * A response that has arrived (the rest of its frame's batch) is read at
 * once, and the read's promise is resolved already: no promise step of
 * its own, no async function, no race per message. Else a read is one
 * reaction on the runtime's read. Once the call has ended (abort,
 * deadline, a failure), reads end as `call` says; the runtime settles a
 * pending read when the call's signal aborts, and `return()` (which
 * runStream calls then too) settles it whatever the signal.
 */
function parsedMessages<Desc extends DescMessage>(
  message: (payload: JsonValue) => MessageShape<Desc>,
  first: Promise<IteratorResult<JsonValue>>,
  responses: Responses,
  call: CallEnd,
): AsyncIterable<MessageShape<Desc>> {
  type Read = IteratorResult<MessageShape<Desc>> | Promise<IteratorResult<MessageShape<Desc>>>;
  let pending: Promise<IteratorResult<JsonValue>> | undefined = first;
  const parsed = (payload: JsonValue): Read => {
    try {
      return { done: false, value: message(payload) };
    } catch (error) {
      return call.failed(error);
    }
  };
  const read = (result: IteratorResult<JsonValue>): Read => {
    if (result.done !== true) {
      return parsed(result.value);
    }
    if (call.signal.aborted) {
      return call.ended();
    }
    call.finished();
    return { done: true, value: undefined };
  };
  const fail = (error: unknown): Promise<IteratorResult<MessageShape<Desc>>> =>
    call.signal.aborted ? call.ended() : call.failed(toConnectError(error));
  return {
    [Symbol.asyncIterator]: () => ({
      next(): Promise<IteratorResult<MessageShape<Desc>>> {
        if (call.signal.aborted) {
          return call.ended();
        }
        if (pending === undefined) {
          const arrived = responses.readArrived();
          if (arrived !== undefined) {
            return Promise.resolve(parsed(arrived));
          }
        }
        const step = pending ?? responses.iterator.next();
        pending = undefined;
        return step.then(read, fail);
      },
      async return(): Promise<IteratorResult<MessageShape<Desc>>> {
        pending = undefined;
        await responses.iterator.return?.();
        return { done: true, value: undefined };
      },
    }),
  };
}

/** How the reads of a call's responses end, and end the call. */
interface CallEnd {
  /** Aborts when the call ends: abort, deadline, failure, or done. */
  readonly signal: AbortSignal;
  /** What a read gives after that: done if the call finished, else its error. */
  ended(): Promise<IteratorReturnResult<undefined>>;
  /** The responses ended. */
  finished(): void;
  /** A read failed with `error`: the rejection to answer. */
  failed(error: unknown): Promise<never>;
}

/**
 * A streaming call through the interceptors, with connect-es's semantics
 * (those of `runStreamingCall` from `@connectrpc/connect/protocol`): the
 * call's signal links the caller's and the deadline's and aborts when the
 * call ends; the request stream is normalized, and thrown into and
 * returned when the call ends; once the call has ended, the interceptors'
 * response stream is read to its end, so each sees the outcome; failures
 * are ConnectError, Canceled after an abort. What differs is the cost per
 * message: connect-es races each read against the signal, which costs an
 * async function, a Promise.race and a reaction on a promise that only
 * settles at the end of the call, kept until then (garbage that survives
 * into the old generation on a long stream). Here the reads of the
 * transport end with the call themselves (`parsedMessages`), and the
 * outer reads are plain reactions.
 */
function runStream<I extends DescMessage, O extends DescMessage>(opt: {
  interceptors: Interceptor[];
  signal?: AbortSignal;
  timeoutMs?: number;
  req: Omit<StreamRequest<I, O>, "signal" | "message"> & { message: AsyncIterable<MessageInitShape<I>> };
  next: (req: StreamRequest<I, O>, call: CallEnd) => Promise<StreamResponse<I, O>>;
}): Promise<StreamResponse<I, O>> {
  const deadline = createDeadlineSignal(opt.timeoutMs);
  const controller = createLinkedAbortController(opt.signal, deadline.signal);
  const signal = controller.signal;
  let finished = false;
  function abort(reason: unknown): Promise<never> {
    // After an abort, the abort's reason is the call's error, whatever a
    // read failed with on the way.
    const error = signal.aborted
      ? ConnectError.from(getAbortSignalReason(signal), Code.Canceled)
      : ConnectError.from(reason);
    controller.abort(error);
    deadline.cleanup();
    return Promise.reject(error);
  }
  function done(): void {
    finished = true;
    deadline.cleanup();
    controller.abort();
  }
  // With no interceptors, the caller reads the transport's stream itself,
  // and its reads end the call: one reaction per message, not two.
  const direct = opt.interceptors.length === 0;
  const call: CallEnd = {
    signal,
    ended: () => (finished ? Promise.resolve({ done: true, value: undefined }) : abort(getAbortSignalReason(signal))),
    finished: direct ? done : noop,
    failed: direct ? abort : (error) => Promise.reject(error),
  };
  const aborted = new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
    } else {
      signal.addEventListener("abort", () => resolve(), { once: true });
    }
  });
  // When the call ends, the request stream hears why (unless it finished)
  // and is returned, so that it can let go of what it holds.
  void aborted.then(() => {
    const requests = opt.req.message[Symbol.asyncIterator]();
    if (!finished) {
      requests.throw?.(ConnectError.from(getAbortSignalReason(signal), Code.Canceled)).catch(noop);
    }
    requests.return?.().catch(noop);
  });
  const toTransport = async (req: StreamRequest<I, O>): Promise<StreamResponse<I, O>> => {
    const res = await opt.next(req, call);
    const responses = res.message[Symbol.asyncIterator]();
    void aborted.then(() => responses.return?.().catch(noop));
    return res;
  };
  type Next = (req: StreamRequest<I, O>) => Promise<StreamResponse<I, O>>;
  // The last interceptor is closest to the transport, as in connect-es.
  const intercepted = opt.interceptors.reduceRight(
    (next: Next, interceptor) => interceptor(next as unknown as Parameters<Interceptor>[0]) as unknown as Next,
    toTransport,
  );
  const req: StreamRequest<I, O> = {
    ...opt.req,
    message: normalized(opt.req.method.input, opt.req.message),
    signal,
  };
  return intercepted(req).then((res) => {
    const responses = res.message[Symbol.asyncIterator]();
    // Once the call has ended, the interceptors' stream is read to its end,
    // so that each sees the outcome and cleans up; next() goes through every
    // interceptor, where return() or throw() might not.
    const drained = aborted.then(async () => {
      try {
        while ((await responses.next()).done !== true) {
          // Nothing to do with what is left.
        }
      } catch {
        // The outcome is the call's, not this read's.
      }
    });
    const settle = (result: IteratorResult<MessageShape<O>>): IteratorResult<MessageShape<O>> => {
      if (result.done === true) {
        done();
      }
      return result;
    };
    return {
      ...res,
      message: {
        [Symbol.asyncIterator]: () => ({
          next(): Promise<IteratorResult<MessageShape<O>>> {
            if (signal.aborted) {
              return drained.then(call.ended);
            }
            try {
              return direct ? responses.next() : responses.next().then(settle, abort);
            } catch (error) {
              return abort(error);
            }
          },
          async return(value?: unknown): Promise<IteratorResult<MessageShape<O>>> {
            if (!signal.aborted) {
              done();
            }
            await drained;
            return { done: true, value };
          },
          async throw(reason?: unknown): Promise<IteratorResult<MessageShape<O>>> {
            if (finished) {
              throw ConnectError.from(reason);
            }
            try {
              return await abort(reason);
            } finally {
              await drained;
            }
          },
        }),
      },
    };
  }, abort);
}

/** The request messages as full protobuf-es messages, as connect-es hands them to interceptors. */
function normalized<Desc extends DescMessage>(
  schema: Desc,
  messages: AsyncIterable<MessageInitShape<Desc>>,
): AsyncIterable<MessageShape<Desc>> {
  const full = (result: IteratorResult<MessageInitShape<Desc>>): IteratorResult<MessageShape<Desc>> =>
    result.done === true ? result : { done: false, value: create(schema, result.value) };
  return {
    [Symbol.asyncIterator]() {
      const iterator = messages[Symbol.asyncIterator]();
      const normalizing: AsyncIterator<MessageShape<Desc>> = { next: () => iterator.next().then(full) };
      if (iterator.throw !== undefined) {
        normalizing.throw = (error?: unknown) => iterator.throw!(error).then(full);
      }
      if (iterator.return !== undefined) {
        normalizing.return = (value?: unknown) => iterator.return!(value).then(full);
      }
      return normalizing;
    },
  };
}
