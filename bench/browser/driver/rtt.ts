// Over real round trips: the same page and bridge with a delaying proxy
// (delay_proxy.ts) between them, one per round-trip time, RTT 0 being the
// proxy with no delay; and once with no proxy at all. Every workload runs
// for a fixed time at each, so the slowest still gives a figure; each is
// reported as its rate and as a share of its own rate at RTT 0 through the
// proxy, so that the shares differ by the delay alone (the proxy is a Node
// process forwarding every byte on the page's and the bridge's cores).

import type { Page } from "playwright-core";
import type { RunResult, RunSpec, Workload } from "../shared/spec.js";
import { startDelayProxy, type DelayProxy, type Lateness } from "./delay_proxy.js";
import { replaceSection } from "./report.js";

export interface RttSizes {
  /** How long each workload runs at each RTT. */
  durationMs: number;
  /** How long each workload runs once, at RTT 0, before any is measured; 0 for none. */
  warmUpMs: number;
}

export const RTT_FULL: RttSizes = { durationMs: 3_000, warmUpMs: 500 };
export const RTT_SMOKE: RttSizes = { durationMs: 300, warmUpMs: 0 };
export const RTT_DEFAULT = [0, 20, 50, 100];
export const RTT_SMOKE_DEFAULT = [0, 20];

/** StreamMessages' count for a stream that runs for a time: int32's largest, never reached. */
const ENDLESS = 2 ** 31 - 1;
/**
 * Most messages one CollectMessages call takes: it answers with all of them
 * joined, 2.7 MB for 400,000 numbered ones, and gRPC's default limit on a
 * message is 4 MiB. The client stream runs such calls back to back for its
 * time.
 */
const CLIENT_STREAM_MOST = 400_000;

/** A workload of the round-trip table, in v2 through the generated client. */
interface RttWorkload {
  label: string;
  /** What its rate counts. */
  unit: string;
  workload(durationMs: number): Workload;
  /** Whether each of its calls waits for the one before: then its p50 latency is at least the RTT. */
  oneAtATime: boolean;
}

const SERVER_STREAM = "server stream";

const WORKLOADS: RttWorkload[] = [
  {
    label: SERVER_STREAM,
    unit: "messages",
    workload: (durationMs) => ({ kind: "stream", count: ENDLESS, reader: "client", durationMs }),
    oneAtATime: false,
  },
  {
    label: "client stream",
    unit: "messages",
    workload: (durationMs) => ({ kind: "clientStream", count: CLIENT_STREAM_MOST, durationMs }),
    oneAtATime: false,
  },
  {
    label: "unary SayHello, 1 in flight",
    unit: "calls",
    workload: (durationMs) => ({ kind: "unary", inFlight: 1, durationMs, reader: "client" }),
    oneAtATime: true,
  },
  {
    label: "unary SayHello, 32 in flight",
    unit: "calls",
    workload: (durationMs) => ({ kind: "unary", inFlight: 32, durationMs, reader: "client" }),
    oneAtATime: false,
  },
  {
    label: "bidi ping-pong on Chat",
    unit: "round trips",
    workload: (durationMs) => ({ kind: "pingPong", durationMs }),
    oneAtATime: true,
  },
];

export interface RttPoint {
  rttMs: number;
  /** Straight from page to bridge, with no proxy in the way. */
  direct?: boolean;
  /** Per second; undefined where the run failed. */
  rate?: number;
  /** Where the workload times single calls, µs. */
  p50Us?: number;
  /** Messages per frame the page received. */
  perFrame?: number;
}

export interface RttRow {
  label: string;
  unit: string;
  points: RttPoint[];
}

export interface RttReport {
  machine: string;
  chromium: string;
  date: string;
  /** `git rev-parse --short HEAD`, and what of the bridge and client differs from it. */
  commit: string;
  mbit?: number | undefined;
  durationMs: number;
  rows: RttRow[];
  /** Per RTT, how late the proxy's timers let bytes go: mean and max, ms. */
  lateness: { rttMs: number; meanMs: number; maxMs: number }[];
  failures: string[];
}

export interface RttRun {
  page: Page;
  /** The bridge's address, host:port; its socket is at /ws. */
  bridge: string;
  rtts: number[];
  mbit: number | undefined;
  sizes: RttSizes;
  /** Runs one spec in the page, within `timeoutMs`. */
  runInPage(page: Page, spec: RunSpec, timeoutMs: number): Promise<RunResult>;
  timeoutMs: number;
}

const rate = (result: RunResult) => (result.count * 1000) / result.elapsedMs;

function problems(workload: RttWorkload, rttMs: number, result: RunResult): string[] {
  if (result.error !== undefined) {
    return [result.error];
  }
  const found: string[] = [];
  if (result.negotiated !== "wsgrpc.v2") {
    found.push(`asked for v2, the server selected ${JSON.stringify(result.negotiated)}`);
  }
  if (!(result.count > 0 && result.elapsedMs > 0 && Number.isFinite(rate(result)))) {
    found.push(`no rate: ${result.count} in ${result.elapsedMs} ms`);
  }
  // A call that waits for an answer cannot beat the round trip: if it
  // does, the proxy is not in the way.
  const p50 = result.latencyUs?.p50;
  if (workload.oneAtATime && p50 !== undefined && p50 < rttMs * 1000) {
    found.push(`p50 latency ${p50} µs under the ${rttMs} ms round trip`);
  }
  return found;
}

/** Every workload at every RTT, in v2 through the generated client. */
export async function measureRtt(run: RttRun): Promise<Pick<RttReport, "rows" | "lateness" | "failures">> {
  const proxies = new Map<number, DelayProxy>();
  const lateness = new Map<number, Lateness>();
  try {
    for (const rttMs of run.rtts) {
      proxies.set(rttMs, await startDelayProxy(run.bridge, { rttMs, mbit: run.mbit }));
      lateness.set(rttMs, { pieces: 0, totalMs: 0, maxMs: 0 });
    }
    // No proxy first, then each RTT through its proxy.
    const stations: RttPoint[] = [{ rttMs: 0, direct: true }, ...run.rtts.map((rttMs) => ({ rttMs }))];
    const url = (station: RttPoint) =>
      `ws://${station.direct === true ? run.bridge : proxies.get(station.rttMs)!.address}/ws`;
    const rows: RttRow[] = [];
    const failures: string[] = [];
    for (const workload of WORKLOADS) {
      if (run.sizes.warmUpMs > 0) {
        const spec: RunSpec = { url: url(stations[0]!), protocol: "v2", workload: workload.workload(run.sizes.warmUpMs) };
        await run.runInPage(run.page, spec, run.timeoutMs);
      }
      const row: RttRow = { label: workload.label, unit: workload.unit, points: [] };
      for (const station of stations) {
        const { rttMs } = station;
        const proxy = station.direct === true ? undefined : proxies.get(rttMs);
        proxy?.resetLateness();
        const spec: RunSpec = { url: url(station), protocol: "v2", workload: workload.workload(run.sizes.durationMs) };
        const result = await run.runInPage(run.page, spec, run.timeoutMs);
        if (proxy !== undefined) {
          const total = lateness.get(rttMs)!;
          total.pieces += proxy.lateness.pieces;
          total.totalMs += proxy.lateness.totalMs;
          total.maxMs = Math.max(total.maxMs, proxy.lateness.maxMs);
        }
        const found = problems(workload, rttMs, result);
        failures.push(...found.map((problem) => `${workload.label}, RTT ${rttMs} ms: ${problem}`));
        const point: RttPoint = { ...station };
        if (found.length === 0) {
          point.rate = rate(result);
          point.perFrame = result.count / Math.max(1, result.frames.count);
          if (result.latencyUs !== undefined) {
            point.p50Us = result.latencyUs.p50;
          }
        }
        row.points.push(point);
        console.log(
          `${workload.label}, ${stationName(point)}: ${result.count} in ${result.elapsedMs.toFixed(1)} ms, ` +
            `${result.frames.count} frames` +
            (result.latencyUs === undefined ? "" : `, p50 ${result.latencyUs.p50.toFixed(0)} µs`) +
            (found.length > 0 ? ` — ${found.join("; ")}` : ""),
        );
      }
      rows.push(row);
    }
    return {
      rows,
      failures,
      lateness: [...lateness].map(([rttMs, l]) => ({
        rttMs,
        meanMs: l.pieces === 0 ? 0 : l.totalMs / l.pieces,
        maxMs: l.maxMs,
      })),
    };
  } finally {
    await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
  }
}

/** "no proxy", or the round trip. */
function stationName(point: RttPoint): string {
  return point.direct === true ? "no proxy" : `RTT ${point.rttMs} ms`;
}

/** The point every share is of: RTT 0 through the proxy. */
function isBase(point: RttPoint): boolean {
  return point.rttMs === 0 && point.direct !== true;
}

/** The point's rate ÷ the rate at RTT 0 through the proxy, where both came out. */
function share(row: RttRow, point: RttPoint): number | undefined {
  const base = row.points.find(isBase)?.rate;
  return base === undefined || point.rate === undefined || base === 0 ? undefined : point.rate / base;
}

const number = (value: number, digits = 0) =>
  value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function rateText(point: RttPoint): string {
  return point.rate === undefined ? "failed" : `${number(point.rate, point.rate >= 100 ? 0 : 1)} /s`;
}

function latencyText(point: RttPoint): string {
  return point.p50Us === undefined ? "" : `${number(point.p50Us / 1000, 2)} ms`;
}

function linkText(report: Pick<RttReport, "mbit">): string {
  return report.mbit === undefined ? "no bandwidth cap" : `${report.mbit} Mbit/s each way`;
}

/** The tables printed to the console: one per workload. */
export function rttTable(report: RttReport): string {
  const lines = [`over real round trips (v2, generated client; ${linkText(report)}); ${report.commit}`];
  for (const row of report.rows) {
    lines.push(
      "",
      `${row.label}: ${row.unit}/s`,
      `${"".padStart(10)} ${"rate".padStart(14)} ${"÷ RTT 0".padStart(8)} ${"p50".padStart(10)} ${"per frame".padStart(10)}`,
    );
    for (const point of row.points) {
      const s = share(row, point);
      lines.push(
        `${(point.direct === true ? "no proxy" : `${point.rttMs} ms`).padStart(10)} ${rateText(point).padStart(14)} ${(s === undefined ? "" : s.toFixed(2)).padStart(8)} ` +
          `${latencyText(point).padStart(10)} ${(point.perFrame === undefined ? "" : number(point.perFrame, 1)).padStart(10)}`,
      );
    }
  }
  if (report.lateness.length > 0) {
    lines.push("");
  }
  for (const l of report.lateness) {
    lines.push(`the proxy at RTT ${l.rttMs} ms let bytes go ${number(l.meanMs, 2)} ms late on average, ${number(l.maxMs, 1)} ms at most`);
  }
  return lines.join("\n");
}

const BAR_WIDTH = 40;
const BLOCKS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/** A bar of `fraction` (0…1) of BAR_WIDTH, in eighths of a character. */
function bar(fraction: number): string {
  const eighths = Math.round(Math.max(0, Math.min(1, fraction)) * BAR_WIDTH * 8);
  return "█".repeat(Math.floor(eighths / 8)) + BLOCKS[eighths % 8]!;
}

/** Each workload's share of its RTT-0 rate as text bars: readable in any Markdown viewer. */
export function rttChart(report: RttReport): string {
  const lines: string[] = [];
  const width = Math.max(...report.rows.map((row) => row.label.length));
  for (const row of report.rows) {
    row.points.forEach((point, index) => {
      const s = share(row, point);
      const name = index === 0 ? row.label.padEnd(width) : "".padEnd(width);
      const shown = s === undefined ? "failed" : `${bar(s).padEnd(BAR_WIDTH)} ${s.toFixed(2)}`;
      lines.push(`${name}  ${(point.direct === true ? "no proxy" : `${point.rttMs} ms`).padStart(8)}  ${shown}`);
    });
  }
  return lines.join("\n");
}

const START_MARKER = "<!-- browser-rtt:start -->";
const END_MARKER = "<!-- browser-rtt:end -->";

function markdown(report: RttReport): string {
  const stations = report.rows[0]?.points ?? [];
  const lines = [
    START_MARKER,
    "## Over real round trips",
    "",
    `Produced by \`npm run bench:browser\` (\`-- --rtt 0,20,50,100\` runs this part alone; ${report.date.slice(0, 10)}, ${report.commit}): the page of ` +
      `the section above in headless ${report.chromium}, wire protocol v2 through the generated client, ` +
      "against the example binary, with a delaying TCP proxy (bench/browser/driver/delay_proxy.ts) " +
      "between Chromium and the bridge that holds each direction's bytes for half the round trip, in " +
      `order, from when they arrived (${linkText(report)}). RTT 0 is the proxy with no delay, and every share is ` +
      "of the rate there, so that the shares differ by the delay alone; \"no proxy\" is the page straight " +
      "to the bridge, and its share is what the proxy itself costs (a Node process forwarding every byte " +
      "on the same cores). Each workload runs for " +
      `${number(report.durationMs / 1000, 1)} s at each, after one warm-up with no proxy; the streams ` +
      "end by time (the page leaves the server stream; the client stream, CollectMessages calls of at most " +
      "400,000 messages back to back, each started once the last has handed over its requests, stops " +
      "its requests), so a slow " +
      `figure still comes out. ${report.machine}; one run, ratios from that run.`,
    "",
    "Each rate as a share of its own rate at RTT 0 through the proxy:",
    "",
    "```text",
    rttChart(report),
    "```",
    "",
    `| workload | ${stations.map(stationName).join(" | ")} |`,
    `|---|${stations.map(() => "---:").join("|")}|`,
  ];
  for (const row of report.rows) {
    const cells = row.points.map((point) => {
      const s = share(row, point);
      return isBase(point) || s === undefined ? rateText(point) : `${rateText(point)} (${s.toFixed(2)})`;
    });
    lines.push(`| ${row.label}: ${row.unit}/s | ${cells.join(" | ")} |`);
    if (row.points.some((point) => point.p50Us !== undefined)) {
      lines.push(`| ${row.label}: p50 latency | ${row.points.map(latencyText).join(" | ")} |`);
    }
  }
  // How full the server stream's frames were: the bridge's batching at work.
  const stream = report.rows.find((row) => row.label === SERVER_STREAM);
  if (stream !== undefined) {
    lines.push(
      `| ${stream.label}: messages per frame | ${stream.points.map((p) => (p.perFrame === undefined ? "" : number(p.perFrame, 1))).join(" | ")} |`,
    );
  }
  if (report.lateness.length > 0) {
    lines.push(
      "",
      "The proxy's timers let bytes go late by " +
        report.lateness
          .map((l) => `${number(l.meanMs, 2)} ms on average (at most ${number(l.maxMs, 1)}) at RTT ${l.rttMs} ms`)
          .join(", ") +
        ": the round trips above are that much longer than their names.",
    );
  }
  if (report.failures.length > 0) {
    lines.push("", "What failed in this run:", "", ...report.failures.map((failure) => `- ${failure}`));
  }
  lines.push("", END_MARKER);
  return lines.join("\n");
}

/** Puts the section between its markers, or below everything else the first time. */
export function writeRttMarkdown(path: string, report: RttReport): void {
  replaceSection(path, markdown(report), START_MARKER, END_MARKER);
}
