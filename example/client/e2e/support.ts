// Real processes for the browser tests: the example binary, Envoy, nginx.
// They are started as the transport's tests start theirs (Process, from
// tests/ts/support), with their output captured, waited for until they
// serve, and stopped by their PID.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Process, type StartOptions } from "../../../tests/ts/support/process.js";

export { replaceOnce } from "../../../tests/ts/support/envoy.js";
export { freePort } from "../../../tests/ts/support/server.js";
export { Process };

export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
export const clientDir = join(repoRoot, "example", "client");
export const targetDir = process.env["CARGO_TARGET_DIR"] ?? join(repoRoot, "target");

/** Starts `command` in the repository, logging at `RUST_LOG` (by default `info`). */
export function start(name: string, command: string, args: string[], options: StartOptions = {}): Process {
  return Process.start(name, command, args, {
    cwd: repoRoot,
    ...options,
    env: { RUST_LOG: process.env["RUST_LOG"] ?? "info", ...options.env },
  });
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
