// protobuf-es's `fromJson` alone: what @wsgrpc/connect's transport does to
// each payload of the stream to hand connect-es a protobuf-es message, with
// no socket and no call. The connect-es stream pays it per message beside
// what the generated client does (which hands over the parsed JSON as it
// is), so its time per message, taken off connect-es's, leaves what the
// transport and connect-es cost (driver/main.ts derives that row).

import { fromJson, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";
import { StreamResponseSchema } from "../../../example/connect-query/src/gen/example_pb.js";
import { STREAM_TEXT, streamMessageJson, type RunResult } from "../shared/spec.js";
import { checkStreamItem } from "./stream_check.js";

/**
 * The options the transport passes (packages/connect/src/transport.ts: its
 * `jsonOptions`, no registry, as page/connect.ts gives none), one object
 * for every call as there; protobuf-es merges them into its defaults on
 * each call.
 */
const TRANSPORT_JSON_OPTIONS: Partial<JsonReadOptions> = { ignoreUnknownFields: true };

/**
 * The payloads of a stream of `count` messages as the transport gets them:
 * the JSON text the bridge writes of each StreamResponse for the runtime
 * (which asks for fields at their defaults), parsed by `JSON.parse` as part
 * of a larger text, as a frame is.
 */
export function streamPayloads(count: number): JsonValue[] {
  const text = Array.from({ length: count }, (_, index) => streamMessageJson(STREAM_TEXT, index, true)).join(",");
  return JSON.parse(`[${text}]`) as JsonValue[];
}

/**
 * `fromJson(StreamResponseSchema, payload, options)` on each of `payloads`,
 * timed; nothing else in the loop but a sum of the indices, checked after
 * the clock stops with the last message, so that no result goes unused.
 */
export function fromJsonAlone(payloads: JsonValue[]): RunResult {
  let indexSum = 0;
  let last: { message: string; index: number } | undefined;
  const start = performance.now();
  for (const payload of payloads) {
    last = fromJson(StreamResponseSchema, payload, TRANSPORT_JSON_OPTIONS);
    indexSum += last.index;
  }
  const elapsedMs = performance.now() - start;
  const count = payloads.length;
  const wrong =
    indexSum !== (count * (count - 1)) / 2
      ? `the indices sum to ${indexSum}, not ${(count * (count - 1)) / 2}`
      : last === undefined
        ? undefined
        : checkStreamItem(last, count - 1);
  return {
    negotiated: "",
    frames: { count: 0, chars: 0 },
    count,
    elapsedMs,
    ...(wrong === undefined ? {} : { error: wrong }),
  };
}
