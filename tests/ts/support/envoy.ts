// A real Envoy for the tests, run with a copy of a configuration in
// example/ whose ports are replaced.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { Process } from "./process.js";
import { freePort, repoRoot } from "./server.js";

/** `$ENVOY`, else `.venv/bin/envoy` (scripts/install-envoy puts it there). */
export function envoyBinary(): string {
  const binary = process.env["ENVOY"] ?? path.join(repoRoot, ".venv", "bin", "envoy");
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: install it with scripts/install-envoy (or set ENVOY)`);
  }
  return binary;
}

/** Replaces `from` in `text`, which must hold it exactly once. */
export function replaceOnce(text: string, from: string, to: string): string {
  const parts = text.split(from);
  if (parts.length !== 2) {
    throw new Error(`expected "${from}" once, found it ${parts.length - 1} times`);
  }
  return parts.join(to);
}

export interface RunningEnvoy {
  /** `http://127.0.0.1:PORT`: the listener. */
  readonly url: string;
  /** `http://127.0.0.1:PORT`: the admin interface. */
  readonly adminUrl: string;
  /** A counter or gauge from the admin interface's `/stats`, e.g. `cluster.x.upstream_rq_retry`. */
  stat(name: string): Promise<number>;
  /** Stops Envoy and removes its configuration. */
  stop(): Promise<void>;
}

/**
 * Starts Envoy with `example/<config>`, its listener (written there as
 * `port_value: <listen>`) and admin port (`port_value: <admin>`) on free
 * loopback ports, and each port of `upstreams` replaced by the one it maps
 * to. Waits until Envoy is ready: its clusters initialized, health checks
 * included.
 */
export async function startEnvoy(options: {
  config: string;
  listen: number;
  admin: number;
  upstreams: Record<number, number>;
}): Promise<RunningEnvoy> {
  const binary = envoyBinary();
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  let config = readFileSync(path.join(repoRoot, "example", options.config), "utf8");
  config = replaceOnce(config, `port_value: ${options.listen}`, `port_value: ${listenPort}`);
  config = replaceOnce(config, `port_value: ${options.admin}`, `port_value: ${adminPort}`);
  for (const [from, to] of Object.entries(options.upstreams)) {
    config = replaceOnce(config, `port_value: ${from}`, `port_value: ${to}`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), "wsgrpc-envoy-"));
  const configFile = path.join(dir, options.config);
  writeFileSync(configFile, config);
  // Without hot restart, two Envoys can run side by side.
  const envoy = Process.start(
    "envoy",
    binary,
    ["-c", configFile, "--disable-hot-restart", "--log-level", "warn"],
    { ownSession: true },
  );
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const stop = async () => {
    await envoy.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForOk(`${adminUrl}/ready`, envoy);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${listenPort}`,
    adminUrl,
    async stat(name) {
      const response = await fetch(`${adminUrl}/stats?filter=${encodeURIComponent(`^${name}$`)}`);
      const match = new RegExp(`^${name.replaceAll(".", "\\.")}: (\\d+)$`, "m").exec(await response.text());
      if (match === null) {
        throw new Error(`Envoy has no stat ${name}`);
      }
      return Number(match[1]);
    },
    stop,
  };
}

/** Polls `url` until it answers 200; fails early if `envoy` exits. */
async function waitForOk(url: string, envoy: Process, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (envoy.exited) {
      throw new Error(`${envoy.name} exited:\n${envoy.output}`);
    }
    try {
      const response = await fetch(url);
      const body = await response.text();
      if (response.status === 200) {
        return;
      }
      last = `HTTP ${response.status}: ${body.slice(0, 200)}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms; last: ${last}\n${envoy.output}`);
}
