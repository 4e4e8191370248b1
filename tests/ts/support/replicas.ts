// Bridge replicas behind Envoy for the tests: two `wsgrpc-example`
// processes (bridges that drain on SIGTERM) on pinned ports, so that one
// can be stopped and started again where Envoy expects it, in front of one
// `wsgrpc-example` backend; and Envoy's view of its cluster.

import { existsSync } from "node:fs";

import { Process } from "./process.js";
import { type RunningEnvoy } from "./envoy.js";
import { cargoBinary, eventually } from "./server.js";

/** `$WSGRPC_EXAMPLE`, else the debug build of `wsgrpc-example`. */
export function exampleBinary(): string {
  const binary = process.env["WSGRPC_EXAMPLE"] ?? cargoBinary("wsgrpc-example");
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: build it with \`cargo build -p wsgrpc-example\``);
  }
  return binary;
}

/** A `wsgrpc-example` process: a gRPC server and a bridge, or a bridge alone. */
export class ExampleProcess {
  readonly process: Process;
  /** `127.0.0.1:PORT`: its bridge (and page). */
  readonly bridgeAddr: string;

  private constructor(process: Process, bridgeAddr: string) {
    this.process = process;
    this.bridgeAddr = bridgeAddr;
  }

  /**
   * Starts `wsgrpc-example` with `args` (which must pin `--bridge-addr`)
   * and waits until its bridge listens.
   */
  static async start(name: string, args: string[]): Promise<ExampleProcess> {
    const process = Process.start(name, exampleBinary(), [...args, "--static-dir", "/nonexistent"]);
    try {
      const match = await process.waitForOutput(/open http:\/\/(\S+)\//, 15_000);
      return new ExampleProcess(process, match[1]!);
    } catch (error) {
      await process.kill();
      throw error;
    }
  }

  get port(): number {
    return Number(this.bridgeAddr.split(":")[1]);
  }
}

/** The example's gRPC server (its bridge unused) on `127.0.0.1:grpcPort`, its streams `streamIntervalMs` apart. */
export function startExampleBackend(grpcPort: number, bridgePort: number, streamIntervalMs: number) {
  return ExampleProcess.start("wsgrpc-example backend", [
    "--grpc-addr",
    `127.0.0.1:${grpcPort}`,
    "--bridge-addr",
    `127.0.0.1:${bridgePort}`,
    "--stream-interval-ms",
    String(streamIntervalMs),
  ]);
}

/** A bridge alone, in front of `backend`, on `127.0.0.1:port`, that drains for up to `drainTimeoutMs` on SIGTERM. */
export function startExampleReplica(name: string, port: number, backend: string, drainTimeoutMs: number) {
  return ExampleProcess.start(name, [
    "--backend",
    backend,
    "--bridge-addr",
    `127.0.0.1:${port}`,
    "--drain-timeout-ms",
    String(drainTimeoutMs),
  ]);
}

/** How many of the cluster's hosts Envoy counts healthy now. */
export function healthyHosts(envoy: RunningEnvoy, cluster = "wsgrpc_bridge"): Promise<number> {
  return envoy.stat(`cluster.${cluster}.membership_healthy`);
}

/** Waits until Envoy counts `count` hosts of the cluster healthy. */
export async function untilHealthy(envoy: RunningEnvoy, count: number, timeoutMs = 10_000): Promise<void> {
  await eventually(async () => (await healthyHosts(envoy)) === count, `Envoy counts ${count} healthy replica(s)`, timeoutMs);
}
