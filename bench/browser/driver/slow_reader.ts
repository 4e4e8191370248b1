// A slow reader of 1 MiB messages (issue 22): how much of the page's JS
// heap a stream holds when its reader takes a message every 50 ms while
// the bridge could send thousands, against the window in bytes the client
// gave the bridge. Each case runs in a page of its own, so that each
// baseline is a clean heap and a case that blows up takes nothing else
// with it; the page asks for its heap through a function exposed here,
// which collects garbage and reads the heap over CDP.

import type { Browser, Page } from "playwright-core";
import { HEAP_SAMPLER, type RunResult, type RunSpec, type SlowReader } from "../shared/spec.js";
import { startDelayProxy, type DelayProxy } from "./delay_proxy.js";
import { replaceSection } from "./report.js";

const MIB = 1 << 20;

export interface SlowReaderCase {
  label: string;
  rttMs: number;
  workload: SlowReader;
}

/** 200 reads, one every 50 ms; the server could send thousands meanwhile. */
const READER: Omit<SlowReader, "windows" | "count"> = {
  kind: "slowStream",
  reads: 200,
  messageBytes: MIB,
  readEveryMs: 50,
  sampleEvery: 10,
  stopAboveBytes: 1024 * MIB,
};

const DEFAULTS = "windows in bytes, the client's defaults (256 KiB, up to 16 MiB)";
const FOUR_MIB = "windows in bytes, initialWindowBytes 4 MiB";
const MESSAGES = "message windows (the bridge's offer hidden from the client)";

export const SLOW_READER_FULL: SlowReaderCase[] = [
  { label: DEFAULTS, rttMs: 0, workload: { ...READER, windows: "bytes", count: 5_000 } },
  { label: DEFAULTS, rttMs: 50, workload: { ...READER, windows: "bytes", count: 5_000 } },
  // A window larger than a message: there "window + one message" and
  // "2 × window" part.
  { label: FOUR_MIB, rttMs: 0, workload: { ...READER, windows: "bytes", count: 5_000, initialWindowBytes: 4 * MIB } },
  { label: FOUR_MIB, rttMs: 50, workload: { ...READER, windows: "bytes", count: 5_000, initialWindowBytes: 4 * MIB } },
  // 4,096 messages of 1 MiB may wait: the page leaves at 1 GiB, sampling at every read.
  { label: MESSAGES, rttMs: 0, workload: { ...READER, windows: "messages", count: 100_000, sampleEvery: 1 } },
];

/** A few messages, to keep the workload working: well under 10 s with a debug bridge. */
export const SLOW_READER_SMOKE: SlowReaderCase[] = [
  {
    label: DEFAULTS,
    rttMs: 0,
    workload: { ...READER, windows: "bytes", count: 50, reads: 6, readEveryMs: 20, sampleEvery: 2 },
  },
  {
    label: MESSAGES,
    rttMs: 0,
    workload: { ...READER, windows: "messages", count: 8, reads: 3, readEveryMs: 20, sampleEvery: 1 },
  },
];

export interface SlowReaderPoint {
  label: string;
  rttMs: number;
  windows: SlowReader["windows"];
  reads: number;
  readEveryMs: number;
  result: RunResult;
  /** Most heap above the baseline, of the samples (driver-side, so they outlive a crashed page). */
  peakAboveBytes: number | undefined;
}

export interface SlowReaderReport {
  machine: string;
  chromium: string;
  date: string;
  commit: string;
  points: SlowReaderPoint[];
  failures: string[];
}

export interface SlowReaderRun {
  browser: Browser;
  /** Where the bench page is served. */
  pageOrigin: string;
  /** The bridge's address, host:port; its socket is at /ws. */
  bridge: string;
  cases: SlowReaderCase[];
  runInPage(page: Page, spec: RunSpec, timeoutMs: number): Promise<RunResult>;
  timeoutMs: number;
}

/** A fresh page of the bench, with the heap sampler exposed; and the samples it took. */
async function openPage(run: SlowReaderRun): Promise<{ page: Page; heap: number[] }> {
  const page = await run.browser.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  const cdp = await page.context().newCDPSession(page);
  const heap: number[] = [];
  await page.exposeFunction(HEAP_SAMPLER, async () => {
    await cdp.send("HeapProfiler.collectGarbage");
    const { usedSize } = await cdp.send("Runtime.getHeapUsage");
    heap.push(usedSize);
    return usedSize;
  });
  await page.goto(`${run.pageOrigin}/`);
  await page.waitForFunction(() => document.body.dataset["ready"] === "true");
  return { page, heap };
}

function problems(c: SlowReaderCase, result: RunResult): string[] {
  if (result.error !== undefined) {
    return [result.error];
  }
  const found: string[] = [];
  const slow = result.slowReader;
  if (result.negotiated !== "wsgrpc.v2") {
    found.push(`the server selected ${JSON.stringify(result.negotiated)}, not wsgrpc.v2`);
  }
  if (slow === undefined || slow.samples.length === 0) {
    found.push("no heap sample");
    return found;
  }
  if (!slow.stoppedEarly && result.count !== c.workload.reads) {
    found.push(`${result.count} of ${c.workload.reads} reads`);
  }
  // The windows the case is about must be the ones in use.
  if (c.workload.windows === "bytes" && slow.streamWindowBytes === undefined) {
    found.push("the client asked for no window in bytes");
  }
  if (c.workload.windows === "messages" && (slow.streamWindowBytes !== undefined || slow.streamWindowMessages === undefined)) {
    found.push("the client did not keep message windows");
  }
  return found;
}

/** Every case, each in a page of its own, through a delaying proxy where its RTT is above 0. */
export async function measureSlowReader(run: SlowReaderRun): Promise<Pick<SlowReaderReport, "points" | "failures">> {
  const proxies = new Map<number, DelayProxy>();
  const points: SlowReaderPoint[] = [];
  const failures: string[] = [];
  try {
    for (const c of run.cases) {
      if (c.rttMs > 0 && !proxies.has(c.rttMs)) {
        proxies.set(c.rttMs, await startDelayProxy(run.bridge, { rttMs: c.rttMs }));
      }
    }
    for (const c of run.cases) {
      const url = `ws://${proxies.get(c.rttMs)?.address ?? run.bridge}/ws`;
      const { page, heap } = await openPage(run);
      let result: RunResult;
      try {
        result = await run.runInPage(page, { url, protocol: "v2", workload: c.workload }, run.timeoutMs);
      } catch (error) {
        // The page died (out of memory, say): what the driver sampled still counts.
        result = { negotiated: "", count: 0, elapsedMs: 0, frames: { count: 0, chars: 0 }, error: String(error) };
      } finally {
        await page.close().catch(() => {});
      }
      const baseline = result.slowReader?.baselineBytes ?? heap[0];
      const after = heap.slice(1);
      const peakAboveBytes = baseline === undefined || after.length === 0 ? undefined : Math.max(...after) - baseline;
      const found = problems(c, result);
      failures.push(...found.map((problem) => `${c.label}, RTT ${c.rttMs} ms: ${problem}`));
      const point: SlowReaderPoint = {
        label: c.label,
        rttMs: c.rttMs,
        windows: c.workload.windows,
        reads: c.workload.reads,
        readEveryMs: c.workload.readEveryMs,
        result,
        peakAboveBytes,
      };
      points.push(point);
      console.log(`${c.label}, RTT ${c.rttMs} ms: ${summary(point)}${found.length > 0 ? ` — ${found.join("; ")}` : ""}`);
    }
    return { points, failures };
  } finally {
    await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
  }
}

const mib = (bytes: number) => `${(bytes / MIB).toLocaleString("en-US", { maximumFractionDigits: 2 })} MiB`;
const ratio = (value: number) => value.toFixed(2);

/** The window the ratio is taken against: the largest the stream's grew to. */
function windowBytes(point: SlowReaderPoint): number | undefined {
  return point.result.slowReader?.streamWindowBytes?.largest;
}

function windowText(point: SlowReaderPoint): string {
  const slow = point.result.slowReader;
  if (slow?.streamWindowBytes !== undefined) {
    const { initial, largest, grewAtReads } = slow.streamWindowBytes;
    return grewAtReads.length === 0
      ? `${mib(initial)} (never grew)`
      : `${mib(initial)} → ${mib(largest)} (grew ${grewAtReads.length}×, after read ${grewAtReads.join(", ")})`;
  }
  if (slow?.streamWindowMessages !== undefined) {
    return `${slow.streamWindowMessages.toLocaleString("en-US")} messages`;
  }
  return "none seen";
}

function socketText(point: SlowReaderPoint): string {
  const socket = point.result.slowReader?.socketWindowBytes;
  if (socket === undefined) {
    return "";
  }
  return socket.grewAtReads.length === 0 ? mib(socket.initial) : `${mib(socket.initial)} → ${mib(socket.largest)}`;
}

function peakText(point: SlowReaderPoint): string {
  if (point.peakAboveBytes === undefined) {
    return "no sample";
  }
  const stopped = point.result.slowReader?.stoppedEarly === true ? `, stopped at read ${point.result.count}: unbounded` : "";
  return `${mib(point.peakAboveBytes)}${stopped}`;
}

/** Peak ÷ window, and peak ÷ (window + one message): what the protocol lets a receiver hold. */
function ratios(point: SlowReaderPoint): { window?: number; windowAndOne?: number } {
  const window = windowBytes(point);
  const cost = point.result.slowReader?.messageCostBytes ?? 0;
  if (window === undefined || point.peakAboveBytes === undefined) {
    return {};
  }
  return { window: point.peakAboveBytes / window, windowAndOne: point.peakAboveBytes / (window + cost) };
}

function summary(point: SlowReaderPoint): string {
  const { window, windowAndOne } = ratios(point);
  const slow = point.result.slowReader;
  return (
    `${point.result.count} reads in ${(point.result.elapsedMs / 1000).toFixed(1)} s, heap peak ${peakText(point)} above ` +
    `${slow === undefined ? "?" : mib(slow.baselineBytes)}, stream window ${windowText(point)}, socket window ${socketText(point) || "none"}, ` +
    `at most ${slow?.mostUnreadFrames ?? "?"} frames unread` +
    (window === undefined ? "" : `; peak ÷ window ${ratio(window)}, ÷ (window + one message) ${ratio(windowAndOne!)}`)
  );
}

const HEADER = [
  "| reader's client | RTT | heap peak above baseline | stream window (largest) | socket window | peak ÷ window | peak ÷ (window + 1 message) | frames unread, most |",
  "|---|---:|---:|---|---|---:|---:|---:|",
];

function tableRows(report: SlowReaderReport): string[] {
  return report.points.map((point) => {
    const { window, windowAndOne } = ratios(point);
    return (
      `| ${point.label} | ${point.rttMs} ms | ${peakText(point)} | ${windowText(point)} | ${socketText(point)} | ` +
      `${window === undefined ? "" : ratio(window)} | ${windowAndOne === undefined ? "" : ratio(windowAndOne)} | ` +
      `${point.result.slowReader?.mostUnreadFrames ?? ""} |`
    );
  });
}

export function slowReaderTable(report: SlowReaderReport): string {
  return [`a slow reader of 1 MiB messages; ${report.commit}`, "", ...HEADER, ...tableRows(report)].join("\n");
}

const START_MARKER = "<!-- browser-slow-reader:start -->";
const END_MARKER = "<!-- browser-slow-reader:end -->";

function markdown(report: SlowReaderReport): string {
  const first = report.points[0];
  const reads = first === undefined ? "" : `${first.reads} messages of 1 MiB, one every ${first.readEveryMs} ms`;
  return [
    START_MARKER,
    "## A slow reader of 1 MiB messages",
    "",
    `Produced by \`npm run bench:browser -- --slow-reader\` (${report.date.slice(0, 10)}; ${report.commit}): in headless ` +
      `${report.chromium} a page reads ${reads}, from a StreamMessages call that echoes a 1 MiB text (the server ` +
      "could send thousands meanwhile), then leaves it; every 10 reads (every read with message windows) the driver " +
      "collects garbage and reads the page's JS heap over CDP (`HeapProfiler.collectGarbage`, `Runtime.getHeapUsage`), " +
      "against a baseline taken the same way before the call. The windows are what the client sent: the request's " +
      "`windowBytes` and the credits that grew it (bench/browser/page/slow_reader.ts). RTT above 0 is the delaying " +
      `proxy of the section above. Target (issue 22): peak ≤ 2 × window. ${report.machine}; one run.`,
    "",
    ...HEADER,
    ...tableRows(report),
    ...(report.failures.length === 0 ? [] : ["", "What failed in this run:", "", ...report.failures.map((f) => `- ${f}`)]),
    "",
    END_MARKER,
  ].join("\n");
}

/** Puts the section between its markers, or below everything else the first time. */
export function writeSlowReaderMarkdown(path: string, report: SlowReaderReport): void {
  replaceSection(path, markdown(report), START_MARKER, END_MARKER);
}
