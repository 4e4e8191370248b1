// Real processes for the browser tests: the example binary, Envoy, nginx.
// Each is started with its output captured, waited for until it serves,
// and stopped by its PID.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
export const clientDir = join(repoRoot, "example", "client");
export const targetDir = process.env["CARGO_TARGET_DIR"] ?? join(repoRoot, "target");

// Everything started here, so that an aborted run leaves nothing behind.
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

// tracing colours its output unless told otherwise; strip what is left.
const ANSI_ESCAPE = /\u001b\[[0-9;]*m/g;

export class Service {
  readonly name: string;
  readonly #child: ChildProcess;
  #output = "";
  #exit: Promise<number | null>;
  #ended = false;
  #listeners = new Set<() => void>();

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.#child = child;
    running.add(child);
    const collect = (chunk: Buffer) => {
      this.#output += chunk.toString("utf8").replace(ANSI_ESCAPE, "");
      for (const listener of this.#listeners) {
        listener();
      }
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    this.#exit = new Promise((resolve) => {
      const ended = (code: number | null) => {
        this.#ended = true;
        running.delete(child);
        for (const listener of this.#listeners) {
          listener();
        }
        resolve(code);
      };
      child.on("exit", ended);
      // It could not be started at all.
      child.on("error", (error) => {
        this.#output += `could not start: ${error.message}\n`;
        ended(null);
      });
    });
  }

  /**
   * Starts `command`. `ownSession` puts it in a session of its own, as
   * `setsid` does, so that it outlives whatever started it unless stopped.
   */
  static start(name: string, command: string, args: string[], options: { ownSession?: boolean } = {}): Service {
    const child = spawn(command, args, {
      cwd: repoRoot,
      env: { ...process.env, NO_COLOR: "1", RUST_LOG: process.env["RUST_LOG"] ?? "info" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: options.ownSession ?? false,
    });
    return new Service(name, child);
  }

  get pid(): number {
    if (this.#child.pid === undefined) {
      throw new Error(`${this.name} has no PID: it did not start`);
    }
    return this.#child.pid;
  }

  /** Everything it wrote to stdout and stderr so far. */
  get output(): string {
    return this.#output;
  }

  get exited(): boolean {
    return this.#ended;
  }

  /** Waits until its output matches `pattern` (searching from `from` on). */
  waitForOutput(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.#output.slice(from).match(pattern);
        if (match !== null) {
          done();
          resolve(match);
        } else if (this.exited) {
          done();
          reject(new Error(`${this.name} exited before writing ${pattern}:\n${this.#output}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} did not write ${pattern} within ${timeoutMs} ms:\n${this.#output}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Stops it with SIGTERM, then SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (this.exited) {
      return;
    }
    process.kill(this.pid, "SIGTERM");
    const killer = setTimeout(() => {
      if (!this.exited) {
        process.kill(this.pid, "SIGKILL");
      }
    }, 5_000);
    await this.#exit;
    clearTimeout(killer);
  }
}

/** Runs a command to completion; fails with its output unless it succeeds. */
export function run(command: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) {
        resolve(output);
      } else {
        reject(new Error(`${command} ${args.join(" ")} failed (exit ${code}):\n${output}`));
      }
    });
  });
}

/** A TCP port nobody listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === "string") {
          reject(new Error("no port"));
        } else {
          resolve(address.port);
        }
      });
    });
  });
}

/** Polls `url` until it answers with `status`. */
export async function waitForHttp(url: string, status = 200, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      const body = await response.text();
      if (response.status === status) {
        return body;
      }
      last = `HTTP ${response.status}: ${body.slice(0, 200)}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms; last: ${last}`);
}

/**
 * A program from `$VARIABLE`, else the first of `candidates` that exists
 * (absolute, or found on PATH).
 */
export function findProgram(variable: string, candidates: string[], hint: string): string {
  const fromEnv = process.env[variable];
  if (fromEnv !== undefined && fromEnv !== "") {
    return fromEnv;
  }
  const path = (process.env["PATH"] ?? "").split(delimiter);
  for (const candidate of candidates) {
    if (candidate.includes("/")) {
      if (existsSync(candidate)) {
        return candidate;
      }
    } else {
      for (const dir of path) {
        if (existsSync(join(dir, candidate))) {
          return join(dir, candidate);
        }
      }
    }
  }
  throw new Error(`${candidates.join(" or ")} not found (set ${variable}): ${hint}`);
}

/** Replaces `from` in `text`, which must hold it exactly once. */
export function replaceOnce(text: string, from: string, to: string): string {
  const parts = text.split(from);
  if (parts.length !== 2) {
    throw new Error(`expected "${from}" once, found it ${parts.length - 1} times`);
  }
  return parts.join(to);
}
