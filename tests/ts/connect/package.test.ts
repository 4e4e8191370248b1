// The npm package @wsgrpc/connect (packages/connect): it packs clean, its
// built module loads in Node and calls a real bridge over `ws`, and status
// details become what connect-es's findDetails reads.

import { execFileSync } from "node:child_process";
import path from "node:path";

import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, base64Encode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { TestServiceClient } from "../gen/wsgrpc/test/v1/test_wsgrpc.js";
import { RpcError, WebSocketGRPCClient } from "../gen/wsgrpc_runtime.js";
import { type TestServer, bridgeMetric, eventually, repoRoot, startServer } from "../support/server.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { TestService } from "./gen/wsgrpc/test/v1/test_pb.js";

const packageDir = path.join(repoRoot, "packages", "connect");

/** A google.rpc.Status in base64, as the bridge sends `details`. */
function statusDetails(code: number, message: string, details: { typeUrl: string; value: Uint8Array }[]): string {
  const status = new BinaryWriter().uint32((1 << 3) | 0).int32(code).uint32((2 << 3) | 2).string(message);
  for (const { typeUrl, value } of details) {
    status.uint32((3 << 3) | 2).fork().uint32((1 << 3) | 2).string(typeUrl).uint32((2 << 3) | 2).bytes(value).join();
  }
  return base64Encode(status.finish());
}

describe("@wsgrpc/connect", () => {
  it("packs its README, package.json and the built modules with their types, nothing else", () => {
    // dist/ as `npm test`'s typecheck built it (prepack would build it again).
    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: packageDir, encoding: "utf8" }),
    ) as { name: string; files: { path: string }[] }[];
    expect(packed[0]!.name).toBe("@wsgrpc/connect");
    expect(packed[0]!.files.map((file) => file.path).sort()).toEqual([
      "README.md",
      "dist/errors.d.ts",
      "dist/errors.js",
      "dist/index.d.ts",
      "dist/index.js",
      "dist/transport.d.ts",
      "dist/transport.js",
      "package.json",
    ]);
  }, 60_000);

  describe("built, in Node over `ws`", () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startServer();
    });
    afterAll(async () => {
      await server?.kill();
    });

    it("calls the bridge through createClient", async () => {
      const { createWebSocketTransport } = await import("@wsgrpc/connect");
      const transport = createWebSocketTransport({ url: server.bridgeUrl, WebSocket });
      try {
        const client = createClient(TestService, transport);
        const response = await client.unary({ text: "node", big: 5n });
        expect(response.text).toBe("node");
        const texts: string[] = [];
        for await (const message of client.bidi(
          (async function* () {
            yield { text: "a", count: 2 };
          })(),
        )) {
          texts.push(`${message.text}${message.index}`);
        }
        expect(texts).toEqual(["a0", "a1"]);
        expect(transport.client.state).toBe("open");
      } finally {
        transport.client.close();
      }
    });

    it("shares a socket with wsgrpc's generated client, the generator's copy of the runtime", async () => {
      const { createWebSocketTransport } = await import("@wsgrpc/connect");
      const connection = new WebSocketGRPCClient(server.bridgeUrl, { WebSocket });
      try {
        const generated = new TestServiceClient(connection);
        const connectEs = createClient(TestService, createWebSocketTransport({ client: connection }));
        const [fromGenerated, fromConnectEs] = await Promise.all([
          generated.unary({ text: "generated" }),
          connectEs.unary({ text: "connect-es" }),
        ]);
        expect(fromGenerated.text).toBe("generated");
        expect(fromConnectEs.text).toBe("connect-es");
        await eventually(
          async () => (await bridgeMetric(server, "wsgrpc_connections_open")) === 1,
          "the bridge has exactly one socket open",
        );
      } finally {
        connection.close();
      }
    });
  });

  describe("toConnectError", () => {
    it("keeps the code, message and metadata, and decodes the details for findDetails", async () => {
      const { toConnectError } = await import("@wsgrpc/connect");
      const info = create(ErrorInfoSchema, { reason: "QUOTA", domain: "example.com", metadata: { left: "0" } });
      const details = statusDetails(Code.ResourceExhausted, "slow down", [
        { typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: toBinary(ErrorInfoSchema, info) },
        { typeUrl: "type.googleapis.com/other.Unknown", value: new Uint8Array([8, 1]) },
      ]);
      const error = toConnectError(
        new RpcError(8, "slow down", { metadata: { "x-served-by": "a", "retry-bin": "AAE" }, details }),
      );
      expect(error).toBeInstanceOf(ConnectError);
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(error.rawMessage).toBe("slow down");
      expect(error.message).toBe("[resource_exhausted] slow down");
      expect(error.metadata.get("x-served-by")).toBe("a");
      expect(error.metadata.get("retry-bin")).toBe("AAE");
      expect(error.details).toHaveLength(2);
      const found = error.findDetails(ErrorInfoSchema);
      expect(found.map(({ reason, domain, metadata }) => ({ reason, domain, metadata }))).toEqual([
        { reason: "QUOTA", domain: "example.com", metadata: { left: "0" } },
      ]);
    });

    it("ignores details that do not decode, and keeps errors it did not make", async () => {
      const { toConnectError } = await import("@wsgrpc/connect");
      expect(toConnectError(new RpcError(13, "broken", { details: "not base64 of a Status!" })).details).toEqual([]);
      expect(toConnectError(new RpcError(99, "odd")).code).toBe(Code.Unknown);
      const own = new ConnectError("mine", Code.Aborted);
      expect(toConnectError(own)).toBe(own);
      // An input iterable's ConnectError, carried by the runtime as the cause.
      expect(toConnectError(RpcError.from(own))).toBe(own);
      expect(toConnectError(new Error("plain")).code).toBe(Code.Unknown);
    });
  });
});
