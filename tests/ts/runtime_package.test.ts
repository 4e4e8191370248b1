// The transport as the npm package @wsgrpc/runtime (packages/runtime): it
// packs clean, and code generated with `runtime_package=@wsgrpc/runtime`
// imports it, type-checks and runs.

import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";

import { beforeAll, describe, expect, it } from "vitest";

import { RpcError as CopiedRpcError } from "./gen/wsgrpc_runtime.js";
import { cargoBinary, repoRoot } from "./support/server.js";

const packageDir = path.join(repoRoot, "packages", "runtime");
// Inside the repository, so that the import resolves through node_modules.
const outDir = path.join(repoRoot, "target", "ts-runtime-package");

beforeAll(() => {
  execFileSync("npm", ["run", "build", "--workspace", "packages/runtime"], { cwd: repoRoot });
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  execFileSync("protoc", [
    `--plugin=protoc-gen-wsgrpc=${cargoBinary("protoc-gen-wsgrpc")}`,
    `--wsgrpc_out=${outDir}`,
    "--wsgrpc_opt=typescript,runtime_package=@wsgrpc/runtime",
    `-I${path.join(repoRoot, "proto")}`,
    "example.proto",
  ]);
}, 60_000);

// npm pack and tsc take seconds, and many more on a loaded machine.
describe("@wsgrpc/runtime", () => {
  it("packs its README, package.json and the built module with its types, nothing else", () => {
    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: packageDir, encoding: "utf8" }),
    ) as { name: string; files: { path: string }[] }[];
    expect(packed[0]!.name).toBe("@wsgrpc/runtime");
    expect(packed[0]!.files.map((file) => file.path).sort()).toEqual([
      "README.md",
      "dist/wsgrpc_runtime.d.ts",
      "dist/wsgrpc_runtime.js",
      "package.json",
    ]);
  }, 90_000);

  it("is the transport the generator copies, to the same errors", async () => {
    const runtime = await import("@wsgrpc/runtime");
    expect(typeof runtime.WebSocketGRPCClient).toBe("function");
    expect(runtime.Code.NOT_FOUND).toBe(5);
    // One brand: an error of either copy is an error of both.
    expect(new runtime.RpcError(5, "gone") instanceof CopiedRpcError).toBe(true);
  });

  it("generated code imports the package, type-checks, and calls through it", async () => {
    execFileSync(
      process.execPath,
      [
        path.join(repoRoot, "node_modules", "typescript", "bin", "tsc"),
        "--noEmit",
        "--strict",
        "--target",
        "ES2022",
        "--module",
        "NodeNext",
        "--moduleResolution",
        "NodeNext",
        "--lib",
        "ES2022,DOM",
        path.join(outDir, "example_wsgrpc.ts"),
      ],
      { cwd: repoRoot, encoding: "utf8" },
    );
    const generated = (await import(path.join(outDir, "example_wsgrpc.ts"))) as typeof import("./gen/example_wsgrpc.js");
    const none = { headers: Promise.resolve({}), trailers: Promise.resolve({}) };
    const client = new generated.ExampleServiceClient({
      unary: <I, O>(method: { path: string }, request: I) =>
        Object.assign(Promise.resolve({ message: `${method.path} ${JSON.stringify(request)}` } as O), none),
      serverStream: () => Object.assign((async function* () {})(), none),
      clientStream: <O>() => Object.assign(Promise.resolve({} as O), none),
      bidiStream: () => Object.assign((async function* () {})(), none, { send() {}, close() {} }),
    });
    await expect(client.sayHello({ name: "Ada" })).resolves.toEqual({
      message: 'example.ExampleService/SayHello {"name":"Ada"}',
    });
  }, 90_000);
});
