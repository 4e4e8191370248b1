// Starts the real bridge and test backend (the `wsgrpc-test-server` binary
// of the `wsgrpc-tests` crate) for the TypeScript tests.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

/** The binary: `$WSGRPC_TEST_SERVER`, else the debug build in the target dir. */
export function serverBinary(): string {
  const targetDir = process.env["CARGO_TARGET_DIR"] ?? path.join(repoRoot, "target");
  return process.env["WSGRPC_TEST_SERVER"] ?? path.join(targetDir, "debug", "wsgrpc-test-server");
}

export interface TestServer {
  /** `ws://127.0.0.1:PORT/ws` */
  readonly bridgeUrl: string;
  /** `http://127.0.0.1:PORT` */
  readonly grpcUrl: string;
  /** Kills the process (SIGKILL: no goodbye to any client) and waits for it. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

/** Starts a server; `bridgeAddr` pins the bridge's address (`127.0.0.1:PORT`). */
export async function startServer(options: { bridgeAddr?: string } = {}): Promise<TestServer> {
  const binary = serverBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `${binary} does not exist: build it with \`cargo build -p wsgrpc-tests --bin wsgrpc-test-server\``,
    );
  }
  const args = options.bridgeAddr === undefined ? [] : ["--bridge-addr", options.bridgeAddr];
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));

  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });

  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${binary} did not get ready in 10 s:\n${stderr}`)), 10_000);
    lines.on("line", (line) => {
      const match = /^READY bridge=(\S+) grpc=(\S+)$/.exec(line);
      if (match !== null) {
        clearTimeout(timer);
        resolve(match);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited with ${code} before it was ready:\n${stderr}`));
    });
  });

  return {
    bridgeUrl: ready[1]!,
    grpcUrl: ready[2]!,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
      }
      await exited;
    },
  };
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") {
    throw new Error("no port");
  }
  return address.port;
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting until ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
