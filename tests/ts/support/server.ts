// Starts the real bridge and test backend (the `wsgrpc-test-server` binary
// of the `wsgrpc-tests` crate) for the TypeScript tests.

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Process } from "./process.js";

export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

/** A binary of the workspace's debug build, in `$CARGO_TARGET_DIR` or `target/`. */
export function cargoBinary(name: string): string {
  const targetDir = process.env["CARGO_TARGET_DIR"] ?? path.join(repoRoot, "target");
  return path.join(targetDir, "debug", name);
}

/** The binary: `$WSGRPC_TEST_SERVER`, else the debug build. */
export function serverBinary(): string {
  return process.env["WSGRPC_TEST_SERVER"] ?? cargoBinary("wsgrpc-test-server");
}

export interface TestServer {
  /** `ws://127.0.0.1:PORT/ws` */
  readonly bridgeUrl: string;
  /** `http://127.0.0.1:PORT`: the backend, its own or the one given. */
  readonly grpcUrl: string;
  /** The process's ID: bridge and backend share it. */
  readonly pid: number;
  /** Kills the process (SIGKILL: no goodbye to any client) and waits for it. */
  kill(): Promise<void>;
}

export interface ServerOptions {
  /** Pins the bridge's address (`127.0.0.1:PORT`). */
  bridgeAddr?: string;
  /** A backend to use (`http://…`) instead of starting one: a bridge alone. */
  backend?: string;
  /** Calls open at once per socket; default 4. */
  maxCalls?: number;
  /** `max_connection_age`: sockets get `goaway` at about this age. */
  maxConnectionAgeMs?: number;
  /** Lets in only tokens `USER:EXPIRY` (milliseconds since the epoch) while they last. */
  expiringTokens?: boolean;
}

/** Starts a server: the test backend and a bridge, or a bridge alone. */
export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const binary = serverBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `${binary} does not exist: build it with \`cargo build -p wsgrpc-tests --bin wsgrpc-test-server\``,
    );
  }
  const args: string[] = [];
  if (options.bridgeAddr !== undefined) {
    args.push("--bridge-addr", options.bridgeAddr);
  }
  if (options.backend !== undefined) {
    args.push("--backend", options.backend);
  }
  if (options.maxCalls !== undefined) {
    args.push("--max-calls", String(options.maxCalls));
  }
  if (options.maxConnectionAgeMs !== undefined) {
    args.push("--max-connection-age-ms", String(options.maxConnectionAgeMs));
  }
  if (options.expiringTokens === true) {
    args.push("--expiring-tokens");
  }
  const server = Process.start("wsgrpc-test-server", binary, args);
  let ready: RegExpMatchArray;
  try {
    ready = await server.waitForOutput(/^READY bridge=(\S+) grpc=(\S+)$/m);
  } catch (error) {
    await server.kill();
    throw error;
  }
  return {
    bridgeUrl: ready[1]!,
    grpcUrl: ready[2]!,
    pid: server.pid,
    kill: () => server.kill("SIGKILL"),
  };
}

/**
 * A metric of the bridge, from the Prometheus text it serves at `/metrics`:
 * `name` without labels, e.g. `wsgrpc_connections_open`.
 */
export async function bridgeMetric(server: TestServer, name: string): Promise<number> {
  const url = new URL("/metrics", server.bridgeUrl.replace(/^ws/, "http"));
  const response = await fetch(url);
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}: ${text}`);
  }
  for (const line of text.split("\n")) {
    const [key, value] = line.split(" ");
    if (key === name && value !== undefined) {
      return Number(value);
    }
  }
  throw new Error(`${url} has no ${name}:\n${text}`);
}

/** The resident memory of process `pid`, in KiB (Linux). */
export async function rssKib(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const line = status.split("\n").find((line) => line.startsWith("VmRSS:"));
  if (line === undefined) {
    throw new Error(`/proc/${pid}/status has no VmRSS`);
  }
  return Number.parseInt(line.slice("VmRSS:".length), 10);
}

/**
 * A loopback port that was free a moment ago, for a process that must be
 * started (or restarted) on a known port.
 *
 * It is drawn at random from below the kernel's ephemeral range: a port the
 * kernel handed out for `listen(0)` and that was then closed may be handed out
 * again at once, to a parallel test's server or as the local port of a client
 * connection, and the process started on it would fail with `EADDRINUSE`.
 */
export async function freePort(): Promise<number> {
  const [ephemeralStart] = await ephemeralRange();
  const low = 10_000;
  const high = Math.max(low + 1_000, ephemeralStart);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canListen(port)) {
      return port;
    }
  }
  throw new Error(`no free loopback port in ${low}..${high}`);
}

async function ephemeralRange(): Promise<[number, number]> {
  try {
    const text = await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8");
    const [start, end] = text.trim().split(/\s+/).map(Number);
    if (start !== undefined && end !== undefined && start > 0 && end >= start) {
      return [start, end];
    }
  } catch {
    // Not Linux: the IANA range.
  }
  return [49_152, 65_535];
}

function canListen(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
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

/** What `promise` settles to, or a failure if that takes over `timeoutMs`. */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = 5_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
