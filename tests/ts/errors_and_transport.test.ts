// RpcError as callers meet it, and generated clients over any Transport:
// no bridge needed.

import { describe, expect, it } from "vitest";

import { RpcError as OtherCopyRpcError } from "../../example/client/src/gen/wsgrpc_runtime.js";
import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import {
  type BidiStream,
  type CallOptions,
  Code,
  type MessageInit,
  type MethodDescriptor,
  RpcError,
  type ServerStream,
  type StreamInput,
  type Transport,
  type UnaryCall,
} from "./gen/wsgrpc_runtime.js";

describe("RpcError", () => {
  it("from() keeps an RpcError, reads an abort as CANCELLED, and wraps anything else", () => {
    const original = new RpcError(Code.NOT_FOUND, "gone");
    expect(RpcError.from(original)).toBe(original);

    const abort = new DOMException("the user left", "AbortError");
    const aborted = RpcError.from(abort);
    expect(aborted.code).toBe(Code.CANCELLED);
    expect(aborted.cause).toBe(abort);

    const broken = new TypeError("not a function");
    const wrapped = RpcError.from(broken);
    expect([wrapped.code, wrapped.codeName, wrapped.message]).toEqual([Code.UNKNOWN, "UNKNOWN", "not a function"]);
    expect(wrapped.cause).toBe(broken);

    expect(RpcError.from("plain text", Code.INTERNAL)).toMatchObject({ code: Code.INTERNAL, message: "plain text" });
  });

  it("a number that is no status code reads as UNKNOWN", () => {
    const error = new RpcError(42, "from a newer server");
    expect(error.code).toBe(Code.UNKNOWN);
    const code: Code = error.code;
    expect(code).toBe(2);
  });

  it("instanceof holds across two copies of the runtime", () => {
    const here = new RpcError(Code.ABORTED, "here");
    const there = new OtherCopyRpcError(Code.ABORTED, "there");
    expect(OtherCopyRpcError).not.toBe(RpcError);
    expect(here instanceof OtherCopyRpcError).toBe(true);
    expect(there instanceof RpcError).toBe(true);
    expect(new Error("plain") instanceof RpcError).toBe(false);
    expect({ code: 1, message: "lookalike" } instanceof RpcError).toBe(false);
  });
});

describe("a generated client", () => {
  it("calls through any Transport, such as a fake in a test", async () => {
    const calls: string[] = [];
    // A fake's results carry headers and trailers as the real one's do.
    const metadata = { headers: Promise.resolve({ "x-fake": "1" }), trailers: Promise.resolve({}) };
    const fake: Transport = {
      unary<I, O>(method: MethodDescriptor<I, O>, request: MessageInit<I>, options?: CallOptions): UnaryCall<O> {
        calls.push(`${method.path} ${JSON.stringify(request)} ${options?.timeoutMs ?? ""}`);
        return Object.assign(Promise.resolve({ text: "faked" } as O), metadata);
      },
      serverStream<I, O>(method: MethodDescriptor<I, O>, request: MessageInit<I>): ServerStream<O> {
        calls.push(`${method.path} ${JSON.stringify(request)}`);
        return Object.assign(
          (async function* () {
            yield { index: 1 } as O;
          })(),
          metadata,
        );
      },
      clientStream<I, O>(method: MethodDescriptor<I, O>, requests: StreamInput<MessageInit<I>>): UnaryCall<O> {
        const collected = (async () => {
          const all: MessageInit<I>[] = [];
          for await (const request of requests) {
            all.push(request);
          }
          calls.push(`${method.path} ${all.length}`);
          return {} as O;
        })();
        return Object.assign(collected, metadata);
      },
      bidiStream<I, O>(method: MethodDescriptor<I, O>): BidiStream<MessageInit<I>, O> {
        throw new RpcError(Code.UNIMPLEMENTED, `${method.path} is not faked`);
      },
    };
    const client = new TestServiceClient(fake);
    const unary = client.unary({ text: "x" }, { timeoutMs: 5 });
    await expect(unary).resolves.toEqual({ text: "faked" });
    await expect(unary.headers).resolves.toEqual({ "x-fake": "1" });
    const streamed = [];
    for await (const message of client.serverStream({ count: 1 })) {
      streamed.push(message);
    }
    expect(streamed).toEqual([{ index: 1 }]);
    await client.clientStream([{ text: "a" }, { text: "b" }]);
    expect(() => client.bidi([])).toThrow(RpcError);
    expect(calls).toEqual([
      'wsgrpc.test.v1.TestService/Unary {"text":"x"} 5',
      'wsgrpc.test.v1.TestService/ServerStream {"count":1}',
      "wsgrpc.test.v1.TestService/ClientStream 2",
    ]);
  });
});
