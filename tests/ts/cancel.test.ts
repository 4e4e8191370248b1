// Cancellation and deadlines through the generated client, against the real
// bridge and backend: the backend must see every call cancelled.

import { describe, expect, it } from "vitest";

import { type TestRequest, TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, type MessageInit, RpcError } from "./gen/wsgrpc_runtime.js";
import { testResponse } from "./support/responses.js";
import { eventually } from "./support/server.js";
import { sharedServer } from "./support/harness.js";

let client: TestServiceClient;
sharedServer((transport) => {
  client = new TestServiceClient(transport);
});

async function stats(): Promise<{ cancelled: number; active: number }> {
  const response = await client.stats({});
  return { cancelled: Number(response.cancelled ?? "0"), active: Number(response.active ?? "0") };
}

/** Runs `body`, then waits until the backend has counted one more cancelled call. */
async function expectBackendCancellation(body: () => Promise<void>, timeoutMs = 5_000): Promise<void> {
  const before = await stats();
  await body();
  await eventually(
    async () => (await stats()).cancelled > before.cancelled,
    "the backend saw the call cancelled",
    timeoutMs,
  );
  await eventually(async () => (await stats()).active === 0, "no call is running at the backend");
}

async function failure(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}

describe("AbortSignal", () => {
  it("cancels a unary call: CANCELLED here, cancelled at the backend", async () => {
    await expectBackendCancellation(async () => {
      const controller = new AbortController();
      const call = client.hang({}, { signal: controller.signal });
      await eventually(async () => (await stats()).active > 0, "the backend has the call");
      controller.abort();
      const error = await failure(call);
      expect(error.code).toBe(Code.CANCELLED);
      expect(error.codeName).toBe("CANCELLED");
    });
  });

  it("cancels a server stream while it is being read", async () => {
    await expectBackendCancellation(async () => {
      const controller = new AbortController();
      const received: unknown[] = [];
      const reading = (async () => {
        for await (const response of client.serverStream(
          { text: "slow", count: 1000, delayMs: 20 },
          { signal: controller.signal },
        )) {
          received.push(response);
          if (received.length === 2) {
            controller.abort();
          }
        }
      })();
      const error = await failure(reading);
      expect(error.code).toBe(Code.CANCELLED);
      expect(received.length).toBeGreaterThanOrEqual(2);
    });
  });

  /** Starts a client stream whose input never ends, and aborts it once the backend has it. */
  async function abortEndlessClientStream(): Promise<{ inputClosed: () => boolean }> {
    const controller = new AbortController();
    let inputClosed = false;
    async function* endless(): AsyncGenerator<MessageInit<TestRequest>> {
      try {
        for (;;) {
          yield { text: "tick" };
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } finally {
        inputClosed = true;
      }
    }
    const call = client.clientStream(endless(), { signal: controller.signal });
    await eventually(async () => (await stats()).active > 0, "the backend has the call");
    controller.abort();
    expect((await failure(call)).code).toBe(Code.CANCELLED);
    return { inputClosed: () => inputClosed };
  }

  it("cancels a client stream whose input is still open", async () => {
    const { inputClosed } = await abortEndlessClientStream();
    await eventually(async () => inputClosed(), "the input was closed");
    await eventually(async () => (await stats()).active === 0, "the call is over at the backend");
  });

  // The bridge resets the HTTP/2 stream; the backend must never read a
  // clean end of input that would let it complete the call.
  it("cancelling a client stream reaches the backend as a cancellation", async () => {
    await expectBackendCancellation(async () => {
      await abortEndlessClientStream();
    });
  });

  it("an already aborted signal fails the call before it is sent", async () => {
    const before = await stats();
    const error = await failure(client.unary({ text: "never" }, { signal: AbortSignal.abort() }));
    expect(error.code).toBe(Code.CANCELLED);
    expect((await stats()).cancelled).toBe(before.cancelled);
  });
});

describe("leaving a for-await loop early", () => {
  it("cancels a server stream", async () => {
    await expectBackendCancellation(async () => {
      let count = 0;
      for await (const _ of client.serverStream({ text: "many", count: 1000, delayMs: 10 })) {
        if (++count === 3) {
          break;
        }
      }
      expect(count).toBe(3);
    });
  });

  it("cancels a bidi stream at the backend and closes its input", async () => {
    let inputClosed = false;
    async function* endless(): AsyncGenerator<MessageInit<TestRequest>> {
      try {
        for (let i = 0; ; i++) {
          yield { text: `m${i}` };
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      } finally {
        inputClosed = true;
      }
    }
    await expectBackendCancellation(async () => {
      for await (const response of client.bidi(endless())) {
        expect(response.text).toBe("m0");
        break;
      }
    });
    await eventually(async () => inputClosed, "the input was closed");
  });

  it("a throw out of the loop cancels too", async () => {
    await expectBackendCancellation(async () => {
      const loop = async () => {
        for await (const _ of client.serverStream({ count: 1000, delayMs: 10 })) {
          throw new Error("reader gave up");
        }
      };
      await expect(loop()).rejects.toThrow("reader gave up");
    });
  });
});

describe("deadlines", () => {
  it("a call that outlives its deadline fails with DEADLINE_EXCEEDED", async () => {
    await expectBackendCancellation(async () => {
      const started = Date.now();
      const error = await failure(client.hang({}, { timeoutMs: 300 }));
      const elapsed = Date.now() - started;
      expect(error.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(error.codeName).toBe("DEADLINE_EXCEEDED");
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(2_000);
    });
  });

  it("a stream's deadline ends it after the messages that made it", async () => {
    const received: unknown[] = [];
    const reading = (async () => {
      for await (const response of client.serverStream({ count: 1000, delayMs: 50 }, { timeoutMs: 400 })) {
        received.push(response);
      }
    })();
    expect((await failure(reading)).code).toBe(Code.DEADLINE_EXCEEDED);
    expect(received.length).toBeGreaterThan(2);
  });

  it("a call that ends in time is not affected", async () => {
    await expect(client.unary({ text: "quick", delayMs: 20 }, { timeoutMs: 5_000 })).resolves.toEqual(
      testResponse({ text: "quick" }),
    );
  });
});
