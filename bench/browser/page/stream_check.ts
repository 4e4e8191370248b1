// What every reader of the server stream checks of each message, so that a
// figure only counts messages that arrived whole and in order.

import type { StreamResponse } from "../../../example/client/src/gen/example_wsgrpc.js";
import { STREAM_TEXT } from "../shared/spec.js";

/** Why `item` is not message `index` of the stream, or undefined if it is. */
export function checkStreamItem(item: StreamResponse, index: number): string | undefined {
  // proto3 JSON leaves out a zero index.
  if ((item.index ?? 0) !== index || item.message !== STREAM_TEXT) {
    return `message ${index} arrived as ${JSON.stringify(item)}`;
  }
  return undefined;
}
