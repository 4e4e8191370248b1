// The browser benchmark's client-stream workload
// (bench/browser/page/client_stream.ts) against the real bridge, in Node,
// with the page's copy of the generated client. Protocol v1 has no flow
// control: the bridge fails a client stream that gets more than its queue
// of 64 messages ahead of the backend, and tells the client nothing of how
// far the backend is, so the workload must keep its v1 calls within that.

import { describe, expect, it } from "vitest";
import WebSocket from "ws";

import { clientStream } from "../../bench/browser/page/client_stream.js";
import { ExampleServiceClient } from "../../example/client/src/gen/example_wsgrpc.js";
import { type Protocol, WebSocketGRPCClient } from "../../example/client/src/gen/wsgrpc_runtime.js";
import { onCleanup, server } from "./support/harness.js";

/** The page's client over `protocol`, and the subprotocol its socket took. */
async function connect(protocol: Protocol): Promise<{ client: ExampleServiceClient; negotiated: string }> {
  const bridge = await server();
  let socket: WebSocket | undefined;
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      socket = this;
    }
  }
  const transport = new WebSocketGRPCClient(bridge.bridgeUrl, { WebSocket: Recording, protocol });
  onCleanup(() => transport.close());
  await transport.connect();
  return { client: new ExampleServiceClient(transport), negotiated: socket?.protocol ?? "" };
}

describe("the browser benchmark's client stream", () => {
  it.each([
    { protocol: "v1" as const, negotiated: "", how: "in calls of what the bridge takes" },
    { protocol: "v2" as const, negotiated: "wsgrpc.v2", how: "in one call, at the pace of the bridge's credit" },
  ])("over $protocol, sends 10,000 messages as fast as it can, $how; the bridge takes every one, in order", async (want) => {
    const { client, negotiated } = await connect(want.protocol);
    expect(negotiated).toBe(want.negotiated);
    const result = await clientStream(client, 10_000, undefined, negotiated);
    expect(result.error).toBeUndefined();
    expect(result.count).toBe(10_000);
  });

  it("over v1, runs calls until its time is up, none past what the bridge takes", async () => {
    const { client, negotiated } = await connect("v1");
    const result = await clientStream(client, 400_000, 300, negotiated);
    expect(result.error).toBeUndefined();
    expect(result.count).toBeGreaterThan(64);
  });
});
