// The page of sessions_chromium.test.ts: the generated client and its
// transport from the tree, reading a server stream in Chromium while the
// test's proxy cuts the socket under it.

import { TestServiceClient } from "../../gen/wsgrpc/test/v1/test_wsgrpc.js";
import { type ConnectionState, WebSocketGRPCClient } from "../../gen/wsgrpc_runtime.js";

/** What the page saw of a stream: how many messages, how many out of place, and the states. */
export interface StreamSeen {
  count: number;
  outOfPlace: number;
  states: ConnectionState[];
}

declare global {
  interface Window {
    readStream(url: string, count: number): Promise<StreamSeen>;
  }
}

window.readStream = async (url, count) => {
  const transport = new WebSocketGRPCClient(url, { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
  const states: ConnectionState[] = [];
  transport.onStateChange((state) => states.push(state));
  const client = new TestServiceClient(transport);
  let next = 0;
  let outOfPlace = 0;
  try {
    for await (const item of client.serverStream({ text: "m", count })) {
      if ((item.index ?? 0) !== next) {
        outOfPlace += 1;
      }
      next += 1;
    }
  } finally {
    transport.close();
  }
  return { count: next, outOfPlace, states };
};

document.getElementById("status")!.textContent = "ready";
