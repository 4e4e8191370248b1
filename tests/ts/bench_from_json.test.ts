// The browser benchmark's "protobuf-es fromJson alone" workload
// (bench/browser/page/from_json.ts), in Node: its payloads are those the
// bridge sends the page's client for the stream workload, and it checks
// what fromJson made of them.

import { describe, expect, it } from "vitest";
import WebSocket from "ws";

import { fromJsonAlone, streamPayloads } from "../../bench/browser/page/from_json.js";
import { STREAM_TEXT } from "../../bench/browser/shared/spec.js";
import { ExampleServiceClient } from "../../example/client/src/gen/example_wsgrpc.js";
import { WebSocketGRPCClient } from "../../example/client/src/gen/wsgrpc_runtime.js";
import { onCleanup, server } from "./support/harness.js";

describe("the browser benchmark's protobuf-es fromJson alone", () => {
  it("takes the payloads the bridge sends for the stream, as the generated client hands them over", async () => {
    const bridge = await server();
    const transport = new WebSocketGRPCClient(bridge.bridgeUrl, { WebSocket, protocol: "v2" });
    onCleanup(() => transport.close());
    const received: unknown[] = [];
    for await (const item of new ExampleServiceClient(transport).streamMessages({ message: STREAM_TEXT, count: 1_000 })) {
      received.push(item);
    }
    expect(streamPayloads(1_000)).toStrictEqual(received);
  });

  it("converts every payload, and says so when one is not what the stream sends", () => {
    const result = fromJsonAlone(streamPayloads(1_000));
    expect(result.error).toBeUndefined();
    expect(result.count).toBe(1_000);

    const wrong = streamPayloads(1_000);
    wrong[999] = { message: STREAM_TEXT, index: 5 };
    expect(fromJsonAlone(wrong).error).toMatch(/indices sum/);
  });
});
