// What the client puts in the frames it sends, against the real bridge,
// whose test configuration reads frames of at most 64 KiB: no frame is
// ever larger, however much a page sends at once and whatever its
// characters; an envelope no frame can hold fails its own call before any
// of it goes out; a client stream's input goes many messages to a frame.

import { describe, expect, it } from "vitest";

import { type TestRequest, TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, type MessageInit } from "./gen/wsgrpc_runtime.js";
import { rpcError, server, transportFor } from "./support/harness.js";
import { testResponse } from "./support/responses.js";
import { envelopesOf, type Frames, recordingWebSocket, utf8Bytes } from "./support/recording.js";

// The frame limit of the test bridge (tests/src/lib.rs), which its settings say.
const MAX_FRAME_BYTES = 64 << 10;

async function connect(options: { maxCalls?: number } = {}) {
  const bridge = await server(options);
  const frames: Frames = { sent: [], received: [] };
  const { transport, states } = transportFor(bridge.bridgeUrl, { WebSocket: recordingWebSocket(frames) });
  const client = new TestServiceClient(transport);
  await client.unary({});
  return { client, frames, states };
}

function largestFrame(frames: Frames): number {
  return Math.max(0, ...frames.sent.map(utf8Bytes));
}

describe("no frame is larger than the bridge reads", () => {
  it("a request too large for any frame fails its own call with RESOURCE_EXHAUSTED; the socket and the other calls go on", async () => {
    const { client, frames, states } = await connect();
    const sentBefore = frames.sent.length;
    const [small, large, stream] = await Promise.allSettled([
      client.unary({ text: "small" }),
      client.unary({ text: "x".repeat(70_000) }),
      (async () => {
        const responses = [];
        for await (const response of client.serverStream({ text: "s", count: 3 })) {
          responses.push(response);
        }
        return responses;
      })(),
    ]);
    expect(small).toEqual({ status: "fulfilled", value: testResponse({ text: "small" }) });
    expect(stream.status).toBe("fulfilled");
    expect(large.status).toBe("rejected");
    const error = await rpcError(client.unary({ text: "x".repeat(70_000) }));
    expect(error.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(error.message).toContain("TestService/Unary");
    expect(error.message).toContain(`${MAX_FRAME_BYTES} bytes`);
    // Nothing of it went out; the socket never dropped.
    expect(frames.sent.slice(sentBefore).some((frame) => frame.includes("xxxxxxxx"))).toBe(false);
    expect(largestFrame(frames)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    await expect(client.unary({ text: "after" })).resolves.toEqual(testResponse({ text: "after" }));
    expect(states).toEqual(["connecting", "open"]);
  });

  it("counts UTF-8 bytes, not UTF-16 units: 40,000 'é' are 80,000 bytes, too many; 30,000 fit", async () => {
    const { client, frames, states } = await connect();
    const error = await rpcError(client.unary({ text: "é".repeat(40_000) }));
    expect(error.code).toBe(Code.RESOURCE_EXHAUSTED);
    const fits = "é".repeat(30_000);
    await expect(client.unary({ text: fits })).resolves.toEqual(testResponse({ text: fits }));
    // Astral characters: two UTF-16 units, four bytes.
    const astral = "😀".repeat(15_000);
    await expect(client.unary({ text: astral })).resolves.toEqual(testResponse({ text: astral }));
    expect((await rpcError(client.unary({ text: "😀".repeat(17_000) }))).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(largestFrame(frames)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(states).toEqual(["connecting", "open"]);
  });

  it("splits calls started in one task into frames within the limit, counting multi-byte characters", async () => {
    const calls = 100;
    const { client, frames, states } = await connect({ maxCalls: calls + 1 });
    const sentBefore = frames.sent.length;
    // 100 × 4,000 bytes in UTF-8 (2,000 UTF-16 units each): six frames' worth.
    const text = "ü".repeat(2_000);
    const answers = await Promise.all(Array.from({ length: calls }, () => client.unary({ text })));
    expect(answers.every((answer) => answer.text === text)).toBe(true);
    const sent = frames.sent.slice(sentBefore);
    expect(sent.length).toBeGreaterThanOrEqual(7);
    expect(largestFrame(frames)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(states).toEqual(["connecting", "open"]);
  });

  it("a message of a client stream too large for any frame fails that stream alone, before any of it goes out", async () => {
    const { client, frames, states } = await connect();
    const huge = "y".repeat(70_000);
    const sentBefore = frames.sent.length;
    const [failed, other] = await Promise.allSettled([
      client.clientStream([{ text: "a", big: "1" }, { text: "b", big: "1" }, { text: huge }, { text: "c", big: "1" }]),
      // Padding in a field the backend does not echo while failCode is 0.
      client.clientStream(Array.from({ length: 2_000 }, (): MessageInit<TestRequest> => ({ failMessage: "ß".repeat(100), big: "1" }))),
    ]);
    expect(failed.status).toBe("rejected");
    const error = (failed as PromiseRejectedResult).reason as { code: unknown; message: string };
    expect(error.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(error.message).toContain("TestService/ClientStream");
    expect(other.status).toBe("fulfilled");
    expect((other as PromiseFulfilledResult<{ sum?: string }>).value.sum).toBe("2000");
    expect(frames.sent.slice(sentBefore).some((frame) => frame.includes("yyyyyyyy"))).toBe(false);
    expect(largestFrame(frames)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    // The failed stream was cancelled at the bridge, and said nothing else.
    const failedId = envelopesOf(frames.sent.slice(sentBefore)).find(
      (envelope) => envelope["type"] === "request",
    )?.["id"];
    const ofFailed = envelopesOf(frames.sent.slice(sentBefore)).filter((envelope) => envelope["id"] === failedId);
    expect(ofFailed.map((envelope) => envelope["type"])).toEqual(
      expect.arrayContaining(["request", "cancel"]),
    );
    expect(ofFailed.some((envelope) => envelope["type"] === "end")).toBe(false);
    await expect(client.unary({ text: "after" })).resolves.toEqual(testResponse({ text: "after" }));
    expect(states).toEqual(["connecting", "open"]);
  });
});

describe("a client stream's input", () => {
  it("goes many messages to a frame, from an array and from an async generator", async () => {
    const { client, frames } = await connect();
    const count = 10_000;
    let sentBefore = frames.sent.length;
    const fromArray = await client.clientStream(Array.from({ length: count }, (): MessageInit<TestRequest> => ({ big: "1" })));
    expect(fromArray.sum).toBe(String(count));
    const arrayFrames = frames.sent.length - sentBefore;
    sentBefore = frames.sent.length;
    async function* generated(): AsyncGenerator<MessageInit<TestRequest>> {
      for (let n = 0; n < count; n++) {
        yield { big: "1" };
      }
    }
    const fromGenerator = await client.clientStream(generated());
    expect(fromGenerator.sum).toBe(String(count));
    const generatorFrames = frames.sent.length - sentBefore;
    console.log(`client stream of ${count} messages: ${arrayFrames} frames from an array, ${generatorFrames} from an async generator`);
    // At worst a frame per message window (callQueueMessages, 64, granted
    // 32 at a time); never a frame per message.
    expect(arrayFrames).toBeLessThan(count / 25);
    expect(generatorFrames).toBeLessThan(count / 25);
    // Every message is in a `message` envelope with `payloads`.
    const envelopes = envelopesOf(frames.sent.slice(sentBefore));
    expect(envelopes.some((envelope) => envelope["type"] === "message" && "payload" in envelope)).toBe(false);
  });
});
