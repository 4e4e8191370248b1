// `npm run bench:browser [-- --smoke] [-- --protocols v1,v2] [-- --binary PATH] [-- --batch-linger-us N]`
//
// What a page sees: headless Chromium runs the generated client against the
// real example binary (its bridge and its tonic backend), every workload
// once per protocol in the same run, then the same client and a bare
// WebSocket against the ceiling server (ceiling.ts). Prints a table; a full
// run also writes target/bench-browser.json, its section of BENCHMARKS.md
// and docs/benchmarks-browser.svg. `--smoke` runs each workload for a
// moment and fails unless each produced a sane figure; it writes nothing.
// `--batch-linger-us` starts the bridge with that linger, to try one; such
// a run prints its table and writes nothing either.

import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Page } from "playwright-core";
import { build, preview } from "vite";
import { freePort, repoRoot, run, start, targetDir } from "../../../example/client/e2e/support.js";
import { STREAM_TEXT, type BenchPage, type Protocol, type RunResult, type RunSpec, type Workload } from "../shared/spec.js";
import { startCeiling, type Ceiling } from "./ceiling.js";
import { chart, table, writeMarkdown, type Report, type Row, type Unit } from "./report.js";

const benchDir = fileURLToPath(new URL("..", import.meta.url));
const distDir = join(targetDir, "bench-browser", "dist");

// Debian's Chromium, as the browser tests use it. --expose-gc lets the page
// collect garbage between runs.
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--js-flags=--expose-gc"];

interface Sizes {
  streamCount: number;
  unaryMs: number;
  clientStreamCount: number;
  pingPongMs: number;
}

const FULL: Sizes = { streamCount: 300_000, unaryMs: 3_000, clientStreamCount: 100_000, pingPongMs: 3_000 };
// Enough to warm the JIT and the connection paths, little enough to keep
// the run short.
const WARM_UP: Sizes = { streamCount: 20_000, unaryMs: 500, clientStreamCount: 10_000, pingPongMs: 500 };
// The bridge fails a client stream that gets more than 64 messages (its
// call queue) ahead of the backend, and a page that sends as fast as it can
// gets there: the full run shows it. The smoke run keeps to what the bridge
// always takes, so that it checks the benchmark, not that limit.
const SMOKE: Sizes = { streamCount: 3_000, unaryMs: 200, clientStreamCount: 64, pingPongMs: 200 };

interface Options {
  smoke: boolean;
  protocols: Protocol[];
  /** The example binary; by default target/{release,debug}/wsgrpc-example, built first. */
  binary: string | undefined;
  /** The bridge's linger, in µs, where one is tried; such a run writes nothing. */
  batchLingerUs: number | undefined;
}

function parseArgs(args: string[]): Options {
  const options: Options = { smoke: false, protocols: ["v1", "v2"], binary: undefined, batchLingerUs: undefined };
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i];
    if (arg === "--smoke") {
      options.smoke = true;
    } else if (arg === "--protocols" && args[i + 1] !== undefined) {
      const names = args[++i]!.split(",");
      if (!names.every((name): name is Protocol => name === "v1" || name === "v2")) {
        throw new Error(`--protocols takes v1, v2 or v1,v2, not ${names.join(",")}`);
      }
      options.protocols = names;
    } else if (arg === "--binary" && args[i + 1] !== undefined) {
      options.binary = args[++i];
    } else if (arg === "--batch-linger-us" && args[i + 1] !== undefined) {
      const linger = Number(args[++i]);
      if (!Number.isInteger(linger) || linger < 0) {
        throw new Error(`--batch-linger-us takes a whole number of microseconds, not ${args[i]}`);
      }
      options.batchLingerUs = linger;
    } else {
      throw new Error(
        `unknown argument ${arg}\nusage: bench:browser [--smoke] [--protocols v1,v2] [--binary PATH] [--batch-linger-us N]`,
      );
    }
  }
  return options;
}

/** What one workload is and how its rows read its results. */
interface Measure {
  label: string;
  workload(sizes: Sizes): Workload;
  /** The ceiling server instead of the bridge. */
  ceiling?: boolean;
  /** Its rows, from its result for each protocol that ran. */
  rows(results: Results): Row[];
}

type Results = Partial<Record<Protocol, RunResult>>;

/** A row of `read(result)` for each protocol that ran and gave a figure. */
function row(label: string, unit: Unit, results: Results, read: (result: RunResult) => number | undefined): Row {
  const built: Row = { label, unit };
  for (const protocol of ["v1", "v2"] as const) {
    const result = results[protocol];
    if (result?.error !== undefined) {
      built.failed = [...(built.failed ?? []), protocol];
      continue;
    }
    const value = result === undefined ? undefined : read(result);
    if (value !== undefined && Number.isFinite(value)) {
      built[protocol] = value;
    }
  }
  return built;
}

const rate = (result: RunResult) => (result.count * 1000) / result.elapsedMs;

/** A rate and, where the workload times single calls, their p50 and p99. */
function rateRows(label: string, unit: string, results: Results, latency: boolean): Row[] {
  const rows = [row(`${label}: ${unit}/s`, "/s", results, rate)];
  if (latency) {
    rows.push(row(`${label}: p50 latency`, "µs", results, (r) => r.latencyUs?.p50));
    rows.push(row(`${label}: p99 latency`, "µs", results, (r) => r.latencyUs?.p99));
  }
  return rows;
}

/** A stream's rate, and how many of its messages each frame carried. */
function streamRows(label: string, results: Results): Row[] {
  return [
    ...rateRows(label, "messages", results, false),
    row(`${label}: messages per frame`, "", results, (r) => r.count / Math.max(1, r.frames.count)),
  ];
}

const count = (n: number) => n.toLocaleString("en-US");
const streamLabel = (sizes: Sizes) => `server stream of ${count(sizes.streamCount)} messages`;

function measures(sizes: Sizes): Measure[] {
  const stream = streamLabel(sizes);
  return [
    {
      label: "stream",
      workload: (s) => ({ kind: "stream", count: s.streamCount, reader: "client" }),
      rows: (results) => streamRows(stream, results),
    },
    {
      // The same stream with no client in the way: with the ceiling's
      // figures, it splits the page's time between bridge and client.
      label: "stream, bare WebSocket",
      workload: (s) => ({ kind: "stream", count: s.streamCount, reader: "raw" }),
      rows: (results) => streamRows(`${stream}, bare WebSocket`, results),
    },
    {
      label: "stream, ceiling server, generated client",
      ceiling: true,
      workload: (s) => ({ kind: "stream", count: s.streamCount, reader: "client" }),
      rows: (results) => streamRows(`ceiling: ${stream}, generated client`, results),
    },
    {
      label: "stream, ceiling server, bare WebSocket",
      ceiling: true,
      workload: (s) => ({ kind: "stream", count: s.streamCount, reader: "raw" }),
      rows: (results) => streamRows(`ceiling: ${stream}, bare WebSocket`, results),
    },
    {
      label: "unary, 1 in flight",
      workload: (s) => ({ kind: "unary", inFlight: 1, durationMs: s.unaryMs }),
      rows: (results) => rateRows("unary SayHello, 1 in flight", "calls", results, true),
    },
    {
      label: "unary, 32 in flight",
      workload: (s) => ({ kind: "unary", inFlight: 32, durationMs: s.unaryMs }),
      rows: (results) => rateRows("unary SayHello, 32 in flight", "calls", results, true),
    },
    {
      label: "client stream",
      workload: (s) => ({ kind: "clientStream", count: s.clientStreamCount }),
      rows: (results) =>
        rateRows(`client stream of ${count(sizes.clientStreamCount)} messages`, "messages", results, false),
    },
    {
      label: "bidi ping-pong",
      workload: (s) => ({ kind: "pingPong", durationMs: s.pingPongMs }),
      rows: (results) => rateRows("bidi ping-pong on Chat", "round trips", results, true),
    },
  ];
}

/** Why `result` is no figure of `spec`, if it is not. */
function problems(spec: RunSpec, result: RunResult): string[] {
  // An error is the whole story; the figures that follow from it would only repeat it.
  if (result.error !== undefined) {
    return [result.error];
  }
  const found: string[] = [];
  // A v2 run that fell back to v1 would be a v1 figure under a v2 label.
  if (spec.protocol === "v2" ? result.negotiated !== "wsgrpc.v2" : result.negotiated === "wsgrpc.v2") {
    found.push(`asked for ${spec.protocol}, the server selected ${JSON.stringify(result.negotiated)}`);
  }
  if (!(result.count > 0 && result.elapsedMs > 0 && Number.isFinite(result.count / result.elapsedMs))) {
    found.push(`no rate: ${result.count} in ${result.elapsedMs} ms`);
  }
  const { workload } = spec;
  if ((workload.kind === "stream" || workload.kind === "clientStream") && result.count !== workload.count) {
    found.push(`${result.count} of ${workload.count} messages`);
  }
  return found;
}

function machine(): string {
  const model = cpus()[0]?.model.trim() ?? "unknown CPU";
  return `${model}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`;
}

async function runInPage(page: Page, spec: RunSpec, timeoutMs: number): Promise<RunResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([
      page.evaluate((s) => (globalThis as unknown as { bench: BenchPage }).bench.run(s), spec),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The example binary: the given one, or the one cargo builds for this mode. */
async function exampleBinary(options: Options): Promise<string> {
  if (options.binary !== undefined) {
    return options.binary;
  }
  const profile = options.smoke ? "debug" : "release";
  console.log(`building wsgrpc-example (${profile})…`);
  await run("cargo", ["build", "--quiet", ...(options.smoke ? [] : ["--release"]), "-p", "wsgrpc-example"]);
  return join(targetDir, profile, "wsgrpc-example");
}

interface Measured {
  rows: Row[];
  /** Why a run gave no figure, or a wrong one. */
  failures: string[];
  runs: { measure: string; spec: RunSpec; result: RunResult }[];
}

/** Every measure, once per protocol, each after a warm-up unless smoke. */
async function measureAll(
  page: Page,
  urls: { bridge: string; ceiling: string },
  options: Options,
  sizes: Sizes,
): Promise<Measured> {
  const measured: Measured = { rows: [], failures: [], runs: [] };
  const timeoutMs = options.smoke ? 30_000 : 600_000;
  for (const [index, measure] of measures(sizes).entries()) {
    const url = measure.ceiling === true ? urls.ceiling : urls.bridge;
    // Alternating which protocol goes first spreads the machine's drift
    // over both.
    const order = index % 2 === 0 ? options.protocols : [...options.protocols].reverse();
    if (!options.smoke) {
      for (const protocol of order) {
        await runInPage(page, { url, protocol, workload: measure.workload(WARM_UP) }, timeoutMs);
      }
    }
    const results: Results = {};
    for (const protocol of order) {
      const spec: RunSpec = { url, protocol, workload: measure.workload(sizes) };
      const result = await runInPage(page, spec, timeoutMs);
      measured.runs.push({ measure: measure.label, spec, result });
      const found = problems(spec, result);
      measured.failures.push(...found.map((problem) => `${measure.label}, ${protocol}: ${problem}`));
      results[protocol] = result;
      const { frames } = result;
      console.log(
        `${measure.label}, ${protocol}: ${result.count} in ${result.elapsedMs.toFixed(1)} ms, ` +
          `${frames.count} frames of ${(frames.chars / Math.max(1, frames.count) / 1024).toFixed(1)} KiB on average` +
          (found.length > 0 ? ` — ${found.join("; ")}` : ""),
      );
    }
    measured.rows.push(...measure.rows(results));
  }
  measured.rows.push(...bridgeShare(measured.rows, streamLabel(sizes)));
  return measured;
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const sizes = options.smoke ? SMOKE : FULL;
  const binary = await exampleBinary(options);

  await build({ root: benchDir, configFile: false, logLevel: "warn", build: { outDir: distDir, emptyOutDir: true } });
  // The page is served cross-origin isolated, which gives performance.now()
  // 5 µs resolution instead of 100 µs; the example binary sets no such
  // headers, so the page comes from here and its sockets go to the bridge
  // and the ceiling server, which allow its origin.
  const pagePort = await freePort();
  const pageServer = await preview({
    root: benchDir,
    configFile: false,
    logLevel: "warn",
    build: { outDir: distDir },
    preview: {
      host: "127.0.0.1",
      port: pagePort,
      strictPort: true,
      headers: { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" },
    },
  });
  const pageOrigin = `http://127.0.0.1:${pagePort}`;

  // The bridge's per-call spans cost CPU at info level; wsgrpc-bench runs it at warn too.
  process.env["RUST_LOG"] ??= "warn";
  const example = start("wsgrpc-example", binary, [
    "--grpc-addr=127.0.0.1:0",
    "--bridge-addr=127.0.0.1:0",
    // Not used (the page comes from pageServer); a directory with a page
    // keeps the binary from warning that it has none.
    `--static-dir=${distDir}`,
    "--stream-interval-ms=0",
    `--batch-linger-us=${options.batchLingerUs ?? 0}`,
    `--allow-origin=${pageOrigin}`,
  ]);
  let ceiling: Ceiling | undefined;
  const browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
  try {
    const [, address] = await example.waitForOutput(/open http:\/\/(\S+)\//);
    const bridgeUrl = `ws://${address}/ws`;
    ceiling = await startCeiling();
    // Each run has a connection of its own, whose first call is "1".
    for (const protocol of options.protocols) {
      ceiling.prepare(protocol, "1", STREAM_TEXT, sizes.streamCount);
    }

    const page = await browser.newPage();
    page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") {
        console.error(`page ${message.type()}: ${message.text()}`);
      }
    });
    await page.goto(`${pageOrigin}/`);
    await page.waitForFunction(() => document.body.dataset["ready"] === "true");
    if (!(await page.evaluate(() => globalThis.crossOriginIsolated))) {
      throw new Error("the page is not cross-origin isolated: performance.now() would be coarse");
    }

    const { rows, failures, runs } = await measureAll(page, { bridge: bridgeUrl, ceiling: ceiling.url }, options, sizes);

    const report: Report = {
      machine: machine(),
      chromium: `Chromium ${browser.version()}`,
      date: new Date().toISOString(),
      rows,
      failures,
    };
    console.log(`\n${table(report)}\n`);
    if (failures.length > 0) {
      console.error(`${failures.length} problem(s):\n  ${failures.join("\n  ")}`);
    }
    if (options.smoke) {
      console.log(failures.length > 0 ? "smoke run failed" : "smoke run: every workload gave a figure; nothing written");
      return failures.length > 0 ? 1 : 0;
    }
    if (options.batchLingerUs !== undefined) {
      console.log(`a run with a linger of ${options.batchLingerUs} µs: nothing written`);
      return failures.length > 0 ? 1 : 0;
    }
    mkdirSync(targetDir, { recursive: true });
    const json = join(targetDir, "bench-browser.json");
    writeFileSync(json, `${JSON.stringify({ ...report, sizes, runs }, null, 2)}\n`);
    writeMarkdown(join(repoRoot, "BENCHMARKS.md"), report);
    writeFileSync(join(repoRoot, "docs", "benchmarks-browser.svg"), chart(report));
    console.log(`wrote ${json}, BENCHMARKS.md and docs/benchmarks-browser.svg`);
    // The figures that came out are written, with what failed named beside
    // them; the exit status still says that not all did.
    return failures.length > 0 ? 1 : 0;
  } finally {
    await browser.close();
    await ceiling?.close();
    await example.stop();
    await new Promise<void>((resolve) => pageServer.httpServer.close(() => resolve()));
  }
}

/** The bridge's stream rate as a share of the ceiling's, per protocol. */
function bridgeShare(rows: Row[], streamLabel: string): Row[] {
  const bridge = rows.find((r) => r.label === `${streamLabel}: messages/s`);
  const ceiling = rows.find((r) => r.label === `ceiling: ${streamLabel}, generated client: messages/s`);
  if (bridge === undefined || ceiling === undefined) {
    return [];
  }
  const share: Row = { label: `${streamLabel}: bridge ÷ ceiling, generated client`, unit: "×" };
  for (const protocol of ["v1", "v2"] as const) {
    const [b, c] = [bridge[protocol], ceiling[protocol]];
    if (b !== undefined && c !== undefined) {
      share[protocol] = b / c;
    }
  }
  return [share];
}

export async function benchmark(): Promise<number> {
  try {
    return await main();
  } catch (error) {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    return 1;
  }
}
