// wsgrpc-bridge in front of a backend written in Python (grpcio), its
// services loaded once through server reflection and once from a
// descriptor set, called with the same generated clients as the bridge
// generated in Rust.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { ExampleServiceClient } from "./gen/example_wsgrpc.js";
import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code, type Metadata, WebSocketGRPCClient } from "./gen/wsgrpc_runtime.js";
import { onCleanup, rpcError, transportFor } from "./support/harness.js";
import { testResponse } from "./support/responses.js";
import {
  bridgeFailure,
  descriptorSet,
  type PythonBackend,
  pythonBackend,
  type ReadyBridge,
  readyBridge,
} from "./support/python.js";
import { startEnvoy } from "./support/envoy.js";
import { eventually, freePort } from "./support/server.js";

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) {
    items.push(item);
  }
  return items;
}

const sources = [
  { source: "server reflection", args: () => ["--reflection"] },
  { source: "a descriptor set", args: () => ["--descriptor-set", descriptorSet()] },
];

describe.each(sources)("a Python backend, services from $source", ({ args }) => {
  let backend: PythonBackend;
  let bridge: ReadyBridge;
  let transport: WebSocketGRPCClient;
  let client: TestServiceClient;

  beforeAll(async () => {
    backend = await pythonBackend({ withExample: true });
    bridge = await readyBridge(["--backend", backend.url, ...args()]);
    transport = new WebSocketGRPCClient(bridge.url, { WebSocket });
    client = new TestServiceClient(transport);
  }, 30_000);
  afterAll(async () => {
    transport?.close();
    await bridge?.stop();
    await backend?.stop();
  });

  it("every kind of call", async () => {
    await expect(client.unary({ text: "one" })).resolves.toEqual(testResponse({ text: "one" }));
    await expect(collect(client.serverStream({ text: "s", count: 3 }))).resolves.toEqual(
      [0, 1, 2].map((index) => testResponse({ text: "s", index })),
    );
    // 2^53 + 2: more than a double holds exactly.
    await expect(
      client.clientStream([
        { text: "a", big: "9007199254740993" },
        { text: "b", big: "1" },
      ]),
    ).resolves.toEqual(testResponse({ text: "a b", index: 2, sum: "9007199254740994" }));
    await expect(
      collect(
        client.bidi([
          { text: "x", count: 2 },
          { text: "y", count: 1 },
        ]),
      ),
    ).resolves.toEqual([{ text: "x" }, { text: "x", index: 1 }, { text: "y" }].map((fields) => testResponse(fields)));
    const example = new ExampleServiceClient(transport);
    await expect(example.sayHello({ name: "Ada" })).resolves.toEqual({ message: "Hello, Ada!" });
  });

  it("a status arrives with its code, message, details and trailers", async () => {
    const error = await rpcError(client.unary({ text: "x", failCode: Code.NOT_FOUND, failMessage: "no such x" }));
    expect(error.code).toBe(Code.NOT_FOUND);
    expect(error.message).toBe("no such x");
    expect(error.metadata["x-failed-by"]).toBe("python-backend");
    // A serialized google.rpc.Status with an ErrorInfo in its details.
    const details = Buffer.from(error.details ?? "", "base64");
    expect(details[0]).toBe(0x08);
    expect(details[1]).toBe(Code.NOT_FOUND);
    expect(details.toString("latin1")).toContain("type.googleapis.com/google.rpc.ErrorInfo");
    expect(details.toString("latin1")).toContain("TEST_FAILURE");

    const streamed: unknown[] = [];
    const failed = await rpcError(
      (async () => {
        for await (const message of client.serverStream({ text: "s", count: 2, failCode: Code.ABORTED })) {
          streamed.push(message);
        }
      })(),
    );
    expect(streamed).toHaveLength(2);
    expect(failed.code).toBe(Code.ABORTED);
  });

  it("metadata goes to the servicer, and its headers come back", async () => {
    let headers: Metadata | undefined;
    const response = await client.unary(
      { text: "m", echoMetadata: true },
      { metadata: { "x-user": "ada" }, onHeader: (received) => (headers = received) },
    );
    expect(response.metadata?.["x-user"]).toBe("ada");
    expect(headers?.["echo-x-user"]).toBe("ada");
  });

  it("a deadline and an abort both reach the servicer, which sees its call cancelled", async () => {
    const before = await client.stats({});
    const expired = await rpcError(client.hang({}, { timeoutMs: 300 }));
    expect(expired.code).toBe(Code.DEADLINE_EXCEEDED);

    const controller = new AbortController();
    const hanging = client.hang({}, { signal: controller.signal });
    await eventually(async () => ((await client.stats({})).active ?? 0) > (before.active ?? 0), "the call runs");
    controller.abort();
    expect((await rpcError(hanging)).code).toBe(Code.CANCELLED);
    await eventually(
      async () => Number((await client.stats({})).cancelled ?? 0) === Number(before.cancelled ?? 0) + 2,
      "the servicer counts both calls cancelled",
    );
  });

  it("many calls at once on one socket", async () => {
    const texts = Array.from({ length: 300 }, (_, i) => `call ${i}`);
    const responses = await Promise.all(texts.map((text) => client.unary({ text })));
    expect(responses.map((response) => response.text)).toEqual(texts);
  });
});

describe("wsgrpc-bridge with server reflection", () => {
  it.each([
    { trigger: "SIGHUP", args: [] as string[] },
    { trigger: "an interval", args: ["--reload-interval", "300ms"] },
  ])("picks up a method the backend gained, on $trigger, without a restart", async ({ trigger, args }) => {
    const first = await pythonBackend();
    onCleanup(() => first.stop());
    const bridge = await readyBridge(["--backend", first.url, "--reflection", ...args]);
    onCleanup(() => bridge.stop());
    const { transport } = transportFor(bridge.url);
    const example = new ExampleServiceClient(transport);
    expect((await rpcError(example.sayHello({ name: "Ada" }))).code).toBe(Code.UNIMPLEMENTED);

    // The backend is redeployed with one more service, on the same port.
    await first.stop();
    const second = await pythonBackend({ port: first.port, withExample: true });
    onCleanup(() => second.stop());
    if (trigger === "SIGHUP") {
      bridge.process.signal("SIGHUP");
    }
    await bridge.process.waitForOutput(/services loaded.*added=\[[^\]]*example\.ExampleService\/SayHello/);
    await expect(example.sayHello({ name: "Ada" })).resolves.toEqual({ message: "Hello, Ada!" });
    // The socket stayed open throughout.
    await expect(new TestServiceClient(transport).unary({ text: "still" })).resolves.toEqual(testResponse({ text: "still" }));
  });

  it("starts while the backend is down, says so once, and serves once it is up", async () => {
    const port = await freePort();
    const bridge = await readyBridge(["--backend", `http://127.0.0.1:${port}`, "--reflection"], false);
    onCleanup(() => bridge.stop());
    const { transport } = transportFor(bridge.url);
    const example = new ExampleServiceClient(transport);
    expect((await rpcError(example.sayHello({ name: "Ada" }))).code).toBe(Code.UNIMPLEMENTED);
    const health = () => fetch(bridge.url.replace(/^ws/, "http").replace(/\/ws$/, "/healthz"));
    expect((await health()).status).toBe(503);
    // Long enough for a few attempts, each of which fails the same way.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(bridge.process.output.match(/retrying/g)).toHaveLength(1);

    const backend = await pythonBackend({ port, withExample: true });
    onCleanup(() => backend.stop());
    await bridge.process.waitForOutput(/services loaded/, 15_000);
    await expect(example.sayHello({ name: "Ada" })).resolves.toEqual({ message: "Hello, Ada!" });
    expect((await health()).status).toBe(200);
  });

  it("works behind Envoy, with example/envoy.yaml as it is", async () => {
    const backend = await pythonBackend();
    onCleanup(() => backend.stop());
    const bridge = await readyBridge(["--backend", backend.url, "--reflection"]);
    onCleanup(() => bridge.stop());
    const envoy = await startEnvoy({
      config: "envoy.yaml",
      listen: 8080,
      admin: 9901,
      upstreams: { 50052: Number(new URL(bridge.url).port) },
    });
    onCleanup(() => envoy.stop());
    const { transport } = transportFor(`${envoy.url.replace(/^http/, "ws")}/ws`);
    const client = new TestServiceClient(transport);
    await expect(client.unary({ text: "via envoy" })).resolves.toEqual(testResponse({ text: "via envoy" }));
    await expect(collect(client.serverStream({ text: "e", count: 2 }))).resolves.toEqual(
      [0, 1].map((index) => testResponse({ text: "e", index })),
    );
  });

  it("a backend without reflection is a clear error", async () => {
    const backend = await pythonBackend({ reflection: false });
    onCleanup(() => backend.stop());
    const { output, code } = await bridgeFailure(["--backend", backend.url, "--reflection"]);
    expect(code).not.toBe(0);
    expect(output).toMatch(/the backend serves no server reflection/);
    expect(output).not.toMatch(/panicked/);
  });
});
