// Responses as the bridge writes them to the generated client, which asks
// for fields at their defaults: what a test expects, from what it names.

import { type CollectResponse, type StreamResponse } from "../gen/example_wsgrpc.js";
import { type TestResponse } from "../gen/wsgrpc/test/v1/test_wsgrpc.js";

/** A TestResponse with `fields`, every other field at its default. */
export function testResponse(fields: Partial<TestResponse> = {}): TestResponse {
  return { text: "", index: 0, metadata: {}, sum: "0", end: false, ...fields };
}

/** A StreamMessages response with `fields`, the others at their defaults. */
export function streamResponse(fields: Partial<StreamResponse> = {}): StreamResponse {
  return { message: "", index: 0, ...fields };
}

/** A CollectMessages response with `fields`, the others at their defaults. */
export function collectResponse(fields: Partial<CollectResponse> = {}): CollectResponse {
  return { count: 0, joined: "", ...fields };
}
