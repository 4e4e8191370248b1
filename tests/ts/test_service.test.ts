// The generated TestService client against the real bridge and backend:
// the four kinds, statuses, metadata, 64-bit integers, and messages that
// look like the legacy end marker.

import { describe, expect, it } from "vitest";

import { type TestResponse, TestService, TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, createClient, decodeBinaryMetadata, RpcError, type Transport } from "./gen/wsgrpc_runtime.js";
import { sharedServer } from "./support/harness.js";
import { testResponse } from "./support/responses.js";

let client: TestServiceClient;
let transport: Transport;
sharedServer((shared) => {
  transport = shared;
  client = new TestServiceClient(shared);
});

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) {
    items.push(item);
  }
  return items;
}

/** The error a promise rejects with; fails if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(RpcError);
    return error as RpcError;
  }
  throw new Error("expected the call to fail");
}

describe("TestService: the four kinds", () => {
  it("unary", async () => {
    await expect(client.unary({ text: "one" })).resolves.toEqual(testResponse({ text: "one" }));
  });

  it("server streaming", async () => {
    const responses = await collect(client.serverStream({ text: "s", count: 3 }));
    expect(responses).toEqual([{ text: "s" }, { text: "s", index: 1 }, { text: "s", index: 2 }].map((fields) => testResponse(fields)));
  });

  it("client streaming sums 64-bit integers as strings", async () => {
    const response = await client.clientStream([
      { text: "a", big: "9007199254740993" },
      { text: "b", big: "1" },
    ]);
    // 2^53 + 2: more than a double holds exactly.
    expect(response).toEqual(testResponse({ text: "a b", index: 2, sum: "9007199254740994" }));
  });

  it("bidi streaming answers each request with `count` responses", async () => {
    const responses = await collect(
      client.bidi([
        { text: "x", count: 2 },
        { text: "y", count: 1 },
      ]),
    );
    expect(responses).toEqual([{ text: "x" }, { text: "x", index: 1 }, { text: "y" }].map((fields) => testResponse(fields)));
  });

  it("a slow reader loses nothing: stream output is buffered", async () => {
    const stream = client.serverStream({ text: "b", count: 20 });
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    // Everything else arrives while nobody reads.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const rest: TestResponse[] = [];
    for (let step = await iterator.next(); step.done !== true; step = await iterator.next()) {
      rest.push(step.value);
    }
    expect(first.value).toEqual(testResponse({ text: "b" }));
    expect(rest.map((response) => response.index)).toEqual(Array.from({ length: 19 }, (_, i) => i + 1));
  });
});

describe("statuses", () => {
  it("a backend status becomes an RpcError with code, name, message and trailers", async () => {
    let trailers: Record<string, string> | undefined;
    const error = await rejection(
      client.unary({ failCode: 5, failMessage: "no such thing" }, { onTrailer: (t) => (trailers = t) }),
    );
    expect(error.code).toBe(Code.NOT_FOUND);
    expect(error.code).toBe(5);
    expect(error.codeName).toBe("NOT_FOUND");
    expect(error.message).toBe("no such thing");
    expect(error.name).toBe("RpcError");
    expect(error.metadata["x-failed-by"]).toBe("test-backend");
    expect(trailers?.["x-failed-by"]).toBe("test-backend");
  });

  it("a stream delivers its messages, then fails", async () => {
    const received: TestResponse[] = [];
    let failure: unknown;
    try {
      for await (const response of client.serverStream({ text: "f", count: 2, failCode: 9, failMessage: "stop" })) {
        received.push(response);
      }
    } catch (error) {
      failure = error;
    }
    expect(received).toHaveLength(2);
    expect(failure).toBeInstanceOf(RpcError);
    expect((failure as RpcError).codeName).toBe("FAILED_PRECONDITION");
    expect((failure as RpcError).message).toBe("stop");
  });

  it("an invalid request fails with INVALID_ARGUMENT naming the field", async () => {
    // Through the types' back door: the bridge still checks.
    const error = await rejection(client.unary({ count: "many" } as never));
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
    expect(error.message).toContain("count");
  });

  it("reserved metadata is refused", async () => {
    const error = await rejection(client.unary({}, { metadata: { "grpc-timeout": "1S" } }));
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
  });
});

describe("metadata", () => {
  it("goes to the backend, and headers come back through onHeader", async () => {
    const headers: Record<string, string>[] = [];
    const trailers: Record<string, string>[] = [];
    const response = await client.unary(
      { echoMetadata: true },
      {
        metadata: { "x-user": "ada", "x-trace-bin": "AAEC" },
        onHeader: (h) => headers.push(h),
        onTrailer: (t) => trailers.push(t),
      },
    );
    expect(response.metadata?.["x-user"]).toBe("ada");
    expect(headers).toHaveLength(1);
    expect(headers[0]?.["echo-x-user"]).toBe("ada");
    expect(trailers).toHaveLength(1);
  });

  it("takes -bin values as bytes, and gives them back with decodeBinaryMetadata", async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 251, 255]);
    const response = await client.unary({ echoMetadata: true }, { metadata: { "x-trace-bin": bytes } });
    // The backend echoes what it received as base64.
    expect(decodeBinaryMetadata(response.metadata["x-trace-bin"])).toEqual(bytes);
    const error = await client.unary({}, { metadata: { "x-user": new Uint8Array([1]) } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it("headers arrive with the first message of a stream", async () => {
    const events: string[] = [];
    for await (const response of client.serverStream(
      { text: "h", count: 2, echoMetadata: true },
      { metadata: { "x-n": "1" }, onHeader: (h) => events.push(`header ${h["echo-x-n"]}`) },
    )) {
      events.push(`message ${response.index ?? 0}`);
    }
    expect(events).toEqual(["header 1", "message 0", "message 1"]);
  });
});

describe("a call's result", () => {
  it("carries its headers and trailers, for unary calls and streams", async () => {
    const call = client.unary({ echoMetadata: true }, { metadata: { "x-user": "ada" } });
    expect((await call).metadata["x-user"]).toBe("ada");
    expect((await call.headers)["echo-x-user"]).toBe("ada");
    expect(await call.trailers).toBeTypeOf("object");

    const stream = client.serverStream({ text: "h", count: 2, echoMetadata: true }, { metadata: { "x-n": "2" } });
    const read = collect(stream);
    expect((await stream.headers)["echo-x-n"]).toBe("2");
    expect(await read).toHaveLength(2);
    expect(await stream.trailers).toBeTypeOf("object");
  });

  it("a stream's headers come as soon as the backend answers, before its first message", async () => {
    const { sent: before } = await client.stats({});
    const stream = client.serverStream(
      { text: "slow", count: 1, delayMs: 1_000, echoMetadata: true },
      { metadata: { "x-n": "3" } },
    );
    const first = stream[Symbol.asyncIterator]().next();
    expect((await stream.headers)["echo-x-n"]).toBe("3");
    // The backend has sent no message of the stream yet.
    expect((await client.stats({})).sent).toBe(before);
    expect((await first).value?.text).toBe("slow");
  });

  it("a failed call's trailers come; a call aborted before any answer rejects both", async () => {
    const failed = client.unary({ failCode: 5, failMessage: "no such thing" });
    await expect(failed).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect((await failed.trailers)["x-failed-by"]).toBe("test-backend");

    const abort = new AbortController();
    const aborted = client.unary({ delayMs: 5_000 }, { signal: abort.signal });
    const { headers, trailers } = aborted;
    abort.abort();
    await expect(aborted).rejects.toMatchObject({ code: Code.CANCELLED });
    await expect(headers).rejects.toMatchObject({ code: Code.CANCELLED });
    await expect(trailers).rejects.toMatchObject({ code: Code.CANCELLED });
  });
});

describe("a client made from the service descriptor", () => {
  it("calls every kind as the generated class does", async () => {
    const made = createClient(TestService, transport);
    expect(await made.unary({ text: "u" })).toEqual(testResponse({ text: "u" }));
    expect((await collect(made.serverStream({ text: "s", count: 2 }))).map((r) => r.index)).toEqual([0, 1]);
    expect((await made.clientStream([{ text: "a", big: "1" }, { text: "b", big: "2" }])).sum).toBe("3");
    expect((await collect(made.bidi([{ text: "x" }]))).map((r) => r.text)).toEqual(["x"]);
  });
});

describe("a bidi call made without an iterable", () => {
  it("takes its requests from send() as the answers come, and ends them with close()", async () => {
    const chat = client.bidi();
    chat.send({ text: "a" });
    const answers: string[] = [];
    for await (const answer of chat) {
      answers.push(answer.text);
      // Each answer asks the next request, as a conversation does.
      if (answers.length === 1) {
        chat.send({ text: "b", count: 2 });
      } else if (answers.length === 3) {
        chat.close();
      }
    }
    expect(answers).toEqual(["a", "b", "b"]);
    expect(() => chat.send({ text: "late" })).toThrow(RpcError);
  });

  it("given an iterable, has no send", async () => {
    const chat = client.bidi([{ text: "x" }]);
    expect(() => chat.send({ text: "y" })).toThrow(/iterable/);
    expect((await collect(chat)).map((answer) => answer.text)).toEqual(["x"]);
  });
});

describe("the end of a stream is the envelope's, never the payload's", () => {
  it("messages that are {\"end\": true} are delivered as messages", async () => {
    const responses = await collect(client.serverStream({ count: 3, markEnd: true }));
    expect(responses).toEqual([{ end: true }, { end: true }, { end: true }].map((fields) => testResponse(fields)));
  });

  it("in bidi streams too", async () => {
    const responses = await collect(client.bidi([{ count: 2, markEnd: true }, { text: "after" }]));
    expect(responses).toEqual([{ end: true }, { end: true }, { text: "after" }].map((fields) => testResponse(fields)));
  });

  it("a unary response {\"end\": true} is the response", async () => {
    await expect(client.unary({ markEnd: true })).resolves.toEqual(testResponse({ end: true }));
  });
});
