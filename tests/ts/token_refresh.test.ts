// A fresh token without a new socket (docs/PROTOCOL.md): against the real
// bridge with an authenticator whose tokens (`USER:EXPIRY`) run out, the
// client asks its token source again before then and the socket lives on.

import { describe, expect, it } from "vitest";
import WebSocket from "ws";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, type RpcError, type WebSocketConstructor } from "./gen/wsgrpc_runtime.js";
import { rpcError, transportFor } from "./support/harness.js";
import { serverWith } from "./support/server_flags.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A WebSocket class that keeps the URL of every socket it opens. */
function countingSockets(urls: URL[]): WebSocketConstructor {
  class Counting extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      urls.push(new URL(url));
    }
  }
  return Counting as unknown as WebSocketConstructor;
}

describe("token refresh", () => {
  it("keeps a socket whose token runs out in 1.5 s usable for 4 s", async () => {
    const bridge = await serverWith({ expiringTokens: true });
    const urls: URL[] = [];
    let asked = 0;
    const { transport } = transportFor(bridge.bridgeUrl, {
      WebSocket: countingSockets(urls),
      token: async () => {
        asked += 1;
        await sleep(5);
        return `alice:${Date.now() + 1_500}`;
      },
    });
    const client = new TestServiceClient(transport);
    const started = Date.now();
    while (Date.now() - started < 4_000) {
      const response = await client.unary({ text: "hi", echoMetadata: true });
      expect(response.metadata?.["x-user-id"]).toBe("alice");
      await sleep(200);
    }
    // One socket all along, its token in the URL; fresh tokens went over it.
    expect(urls).toHaveLength(1);
    expect(urls[0]!.searchParams.get("access_token")).toMatch(/^alice:\d+$/);
    expect(asked).toBeGreaterThanOrEqual(4);
  });

  it("ends the calls UNAUTHENTICATED when the token source fails", async () => {
    const bridge = await serverWith({ expiringTokens: true });
    let asked = 0;
    const errors: RpcError[] = [];
    const { transport } = transportFor(bridge.bridgeUrl, {
      token: () => {
        asked += 1;
        if (asked > 1) {
          throw new Error("the identity provider is down");
        }
        return `bob:${Date.now() + 1_500}`;
      },
      onProtocolError: (error) => errors.push(error),
    });
    const client = new TestServiceClient(transport);
    await client.unary({ text: "hi" });
    const started = Date.now();
    const error = await rpcError(client.hang({}));
    expect(error.code).toBe(Code.UNAUTHENTICATED);
    expect(Date.now() - started).toBeGreaterThan(1_000);
    // Asked again (and again) before the end, in vain.
    expect(asked).toBeGreaterThanOrEqual(3);
    expect(errors.some((e) => e.message.includes("identity provider"))).toBe(true);
  });

  it("asks again after the bridge refuses a fresh token", async () => {
    const bridge = await serverWith({ expiringTokens: true });
    const urls: URL[] = [];
    const errors: RpcError[] = [];
    let asked = 0;
    const { transport } = transportFor(bridge.bridgeUrl, {
      WebSocket: countingSockets(urls),
      // The second token names someone else: refused, and the third goes.
      token: () => `${++asked === 2 ? "mallory" : "alice"}:${Date.now() + 1_500}`,
      onProtocolError: (error) => errors.push(error),
    });
    const client = new TestServiceClient(transport);
    await client.unary({ text: "hi" });
    await sleep(2_500);
    const response = await client.unary({ text: "still", echoMetadata: true });
    expect(response.metadata?.["x-user-id"]).toBe("alice");
    expect(urls).toHaveLength(1);
    expect(errors.map((error) => error.code)).toContain(Code.PERMISSION_DENIED);
  });

  it("puts a static token in the URL", async () => {
    const bridge = await serverWith({ expiringTokens: true });
    const urls: URL[] = [];
    const { transport } = transportFor(`${bridge.bridgeUrl}?x=1`, {
      WebSocket: countingSockets(urls),
      token: `carol:${Date.now() + 60_000}`,
    });
    const response = await new TestServiceClient(transport).unary({ text: "hi", echoMetadata: true });
    expect(response.metadata?.["x-user-id"]).toBe("carol");
    expect(urls[0]!.searchParams.get("x")).toBe("1");
  });
});
