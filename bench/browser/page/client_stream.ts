// The client-stream workload: numbered messages into CollectMessages
// through the generated client. Apart from the page, so that the tests
// (tests/ts/bench_client_stream.test.ts) run it against the real bridge.

import type { ExampleServiceClient } from "../../../example/client/src/gen/example_wsgrpc.js";
import { type RunResult, V1_CALL_MESSAGES } from "../shared/spec.js";

/** What a workload measured; the page adds the socket's side. */
export type Measured = Omit<RunResult, "negotiated" | "frames">;

/** Messages between two looks at the clock in a stream that runs for a time. */
export const CLOCK_EVERY = 64;

/** Why CollectMessages's answer is not that of `sent` numbered messages in order; undefined where it is. */
function collectError(response: { count: number; joined: string }, sent: number): string | undefined {
  if (response.count !== sent) {
    return `CollectMessages counted ${response.count} of ${sent}`;
  }
  const expected = Array.from({ length: sent }, (_, index) => String(index)).join(" ");
  return response.joined !== expected ? "CollectMessages joined the messages out of order" : undefined;
}

/**
 * A client stream of numbered messages into CollectMessages, whose answer
 * shows their order. `count` of them in one call; or, with `durationMs`,
 * calls of at most `count` one after another until the deadline (one call
 * answers with every message joined, within gRPC's 4 MiB), as one long
 * stream would: the next starts as soon as the last has handed over its
 * requests, not after its answer, and the windows the socket grew carry
 * over. The requests come from a plain generator, taken as an array is
 * (an async one costs the transport a turn per message, which is not what
 * this measures), that stops at the deadline, so the transport's flow
 * control sets the pace. Over protocol v1 (`negotiated` is not
 * "wsgrpc.v2"), which has none, calls of at most V1_CALL_MESSAGES instead.
 */
export async function clientStream(
  client: ExampleServiceClient,
  count: number,
  durationMs: number | undefined,
  negotiated: string,
): Promise<Measured> {
  if (negotiated !== "wsgrpc.v2") {
    return callAfterCall(client, durationMs === undefined ? count : Infinity, Math.min(count, V1_CALL_MESSAGES), durationMs);
  }
  if (durationMs === undefined) {
    // Built before the clock starts: the run measures sending, not building.
    const requests = Array.from({ length: count }, (_, index) => ({ message: String(index) }));
    const start = performance.now();
    const response = await client.collectMessages(requests);
    const elapsedMs = performance.now() - start;
    const error = collectError(response, count);
    return { count: response.count, elapsedMs, ...(error === undefined ? {} : { error }) };
  }
  const start = performance.now();
  const deadline = start + durationMs;
  const answers: Promise<{ sent: number; error: string | undefined }>[] = [];
  let failed = false;
  while (!failed && performance.now() < deadline) {
    let sent = 0;
    let handedOver = () => {};
    const allHandedOver = new Promise<void>((resolve) => (handedOver = resolve));
    const requests = (function* () {
      while (sent < count && (sent % CLOCK_EVERY !== 0 || performance.now() < deadline)) {
        yield { message: String(sent) };
        sent += 1;
      }
      handedOver();
    })();
    const answer = client.collectMessages(requests).then(
      (response) => ({ sent, error: collectError(response, sent) }),
      (error: unknown) => {
        failed = true;
        return { sent, error: String(error) };
      },
    );
    answers.push(answer);
    await Promise.race([allHandedOver, answer]);
  }
  const results = await Promise.all(answers);
  const elapsedMs = performance.now() - start;
  const error = results.find((result) => result.error !== undefined)?.error;
  const total = results.reduce((sum, result) => sum + result.sent, 0);
  return { count: total, elapsedMs, ...(error === undefined ? {} : { error }) };
}

/**
 * `total` numbered messages (or as many as `durationMs` allows) in calls
 * of at most `perCall`, each answered before the next starts: the bridge
 * holds at most `perCall` of them at any time, whatever the backend's pace.
 */
async function callAfterCall(
  client: ExampleServiceClient,
  total: number,
  perCall: number,
  durationMs: number | undefined,
): Promise<Measured> {
  // Built before the clock starts; every call sends the first `sent` of them.
  const requests = Array.from({ length: perCall }, (_, index) => ({ message: String(index) }));
  const start = performance.now();
  const deadline = durationMs === undefined ? Infinity : start + durationMs;
  let counted = 0;
  let error: string | undefined;
  while (error === undefined && counted < total && performance.now() < deadline) {
    const sent = Math.min(perCall, total - counted);
    try {
      const response = await client.collectMessages(sent === perCall ? requests : requests.slice(0, sent));
      counted += response.count;
      error = collectError(response, sent);
    } catch (failure) {
      error = String(failure);
    }
  }
  const elapsedMs = performance.now() - start;
  return { count: counted, elapsedMs, ...(error === undefined ? {} : { error }) };
}
