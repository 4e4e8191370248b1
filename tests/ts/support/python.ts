// A backend not written in Rust — Python's grpcio serving TestService
// (tests/python/test_backend.py) — and the ready bridge, wsgrpc-bridge,
// in front of it.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { Process } from "./process.js";
import { cargoBinary, freePort, repoRoot } from "./server.js";

const python = path.join(repoRoot, ".venv", "bin", "python");

export interface PythonBackend {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface PythonOptions {
  port?: number;
  reflection?: boolean;
  /** Serves example.ExampleService besides TestService. */
  withExample?: boolean;
}

/** Starts the Python backend. */
export async function pythonBackend(options: PythonOptions = {}): Promise<PythonBackend> {
  if (!existsSync(python)) {
    throw new Error(`${python} does not exist: run scripts/install-python`);
  }
  const args = [path.join(repoRoot, "tests", "python", "test_backend.py"), "--port", String(options.port ?? 0)];
  if (options.reflection === false) {
    args.push("--no-reflection");
  }
  if (options.withExample === true) {
    args.push("--with-example");
  }
  const backend = Process.start("python backend", python, args);
  const ready = await backend.waitForOutput(/^READY grpc=(\S+)$/m, 20_000);
  const url = ready[1]!;
  return { url, port: Number(new URL(url).port), stop: () => backend.kill() };
}

/** protoc's descriptor set of the test protos, imports included. */
export function descriptorSet(): string {
  const out = path.join(mkdtempSync(path.join(tmpdir(), "wsgrpc-descriptors-")), "api.binpb");
  execFileSync("protoc", [
    "--include_imports",
    `--descriptor_set_out=${out}`,
    `-I${path.join(repoRoot, "proto")}`,
    "wsgrpc/test/v1/test.proto",
    "example.proto",
  ]);
  return out;
}

export function bridgeBinary(): string {
  return cargoBinary("wsgrpc-bridge");
}

export interface ReadyBridge {
  /** `ws://127.0.0.1:PORT/ws` */
  readonly url: string;
  readonly process: Process;
  stop(): Promise<void>;
}

/**
 * Starts wsgrpc-bridge with `args` (and a free `--listen` port); resolves
 * once it listens and, unless told not to wait, once it has loaded its
 * services.
 */
export async function readyBridge(args: string[], waitForServices = true): Promise<ReadyBridge> {
  const port = await freePort();
  const bridge = Process.start("wsgrpc-bridge", bridgeBinary(), ["--listen", `127.0.0.1:${port}`, ...args], {
    env: { RUST_LOG: "info" },
  });
  await bridge.waitForOutput(/bridge listening/);
  if (waitForServices) {
    await bridge.waitForOutput(/services loaded/);
  }
  return { url: `ws://127.0.0.1:${port}/ws`, process: bridge, stop: () => bridge.kill() };
}

/** Runs wsgrpc-bridge to its end; what it wrote and how it exited. */
export async function bridgeFailure(args: string[]): Promise<{ output: string; code: number | null }> {
  const bridge = Process.start("wsgrpc-bridge", bridgeBinary(), args);
  const code = await bridge.exitCode(15_000).finally(() => bridge.kill());
  return { output: bridge.output, code };
}
