// The browser benchmark's table, its JSON, its section of BENCHMARKS.md and
// its chart.

import { readFileSync, writeFileSync } from "node:fs";
import type { Protocol } from "../shared/spec.js";

/** Per second, microseconds, a share, or a plain number. */
export type Unit = "/s" | "µs" | "×" | "";

/** One figure per protocol; absent where that protocol did not run. */
export interface Row {
  label: string;
  unit: Unit;
  v1?: number;
  v2?: number;
  /** The protocols whose run failed: no figure. */
  failed?: Protocol[];
}

export interface Report {
  /** As wsgrpc-bench names it: model, cores, memory. */
  machine: string;
  chromium: string;
  date: string;
  rows: Row[];
  /** Runs that gave no figure, or a wrong one, and why. */
  failures: string[];
}

const START_MARKER = "<!-- browser:start -->";
const END_MARKER = "<!-- browser:end -->";

/** v2 ÷ v1, where both ran and the row compares protocols. */
function ratio(row: Row): number | undefined {
  if (row.unit === "×" || row.unit === "" || row.v1 === undefined || row.v2 === undefined || row.v1 === 0) {
    return undefined;
  }
  return row.v2 / row.v1;
}

function format(value: number | undefined, unit: Unit): string {
  if (value === undefined) {
    return "";
  }
  if (unit === "×") {
    return value.toFixed(2);
  }
  if (unit === "") {
    return value.toLocaleString("en-US", { maximumFractionDigits: 1 });
  }
  const digits = value >= 100 ? 0 : 1;
  const number = value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return unit === "/s" ? `${number} /s` : `${number} µs`;
}

function cell(row: Row, protocol: Protocol): string {
  return row.failed?.includes(protocol) === true ? "failed" : format(row[protocol], row.unit);
}

function formatRatio(row: Row): string {
  const value = ratio(row);
  return value === undefined ? "" : value.toFixed(2);
}

export function table(report: Report): string {
  const lines = [
    `machine: ${report.machine}; ${report.chromium}`,
    `${"workload".padEnd(72)} ${"v1".padStart(14)} ${"v2".padStart(14)} ${"v2 ÷ v1".padStart(8)}`,
  ];
  for (const row of report.rows) {
    lines.push(
      `${row.label.padEnd(72)} ${cell(row, "v1").padStart(14)} ${cell(row, "v2").padStart(14)} ${formatRatio(row).padStart(8)}`,
    );
  }
  return lines.join("\n");
}

function markdown(report: Report): string {
  const lines = [
    START_MARKER,
    "## In the browser",
    "",
    `Produced by \`npm run bench:browser\` (${report.date.slice(0, 10)}): headless ${report.chromium} runs the generated ` +
      "TypeScript client in a page against the example binary (bridge and tonic backend in one process) " +
      `on the same machine, ${report.machine}. Every workload runs once per protocol in the same run, ` +
      "each after a warm-up, the first protocol alternating from workload to workload; the page times " +
      "itself with `performance.now()` (5 µs resolution: the page is cross-origin isolated).",
    "",
    "The ceiling is a minimal Node WebSocket server that answers the stream with frames built before " +
      "the clock starts, the same envelopes and batch size as the bridge's; the bare-WebSocket row reads " +
      "those frames with `JSON.parse` and a loop, without the client. Ratios are v2 ÷ v1: for rates higher " +
      "is better, for latencies lower is; bridge ÷ ceiling is the share of the page's possible rate that " +
      "the bridge delivers.",
    "",
    "![v1 and v2 in Chromium](docs/benchmarks-browser.svg)",
    "",
    "| workload | v1 | v2 | v2 ÷ v1 |",
    "|---|---:|---:|---:|",
  ];
  for (const row of report.rows) {
    lines.push(`| ${row.label} | ${cell(row, "v1")} | ${cell(row, "v2")} | ${formatRatio(row)} |`);
  }
  if (report.failures.length > 0) {
    lines.push("", "What failed in this run:", "", ...report.failures.map((failure) => `- ${failure}`));
  }
  lines.push("", END_MARKER);
  return lines.join("\n");
}

/** Puts the section between its markers, or below everything else the first time. */
export function writeMarkdown(path: string, report: Report): void {
  const text = readFileSync(path, "utf8");
  const section = markdown(report);
  const start = text.indexOf(START_MARKER);
  const end = text.indexOf(END_MARKER);
  const updated =
    start !== -1 && end > start
      ? text.slice(0, start) + section + text.slice(end + END_MARKER.length)
      : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, updated);
}

function xmlEscape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

const COLOURS: Record<Protocol, string> = { v1: "#9ca3af", v2: "#3b82f6" };

/**
 * Two bars per rate, v1 and v2, on a log scale: the rates run from
 * thousands (a call at a time) to hundreds of thousands (a stream), and a
 * linear axis would flatten all but the largest. Plain SVG, as
 * docs/benchmarks.svg.
 */
export function chart(report: Report): string {
  const rates = report.rows.filter((row) => row.unit === "/s");
  const values = rates.flatMap((row) => [row.v1, row.v2]).filter((v): v is number => v !== undefined && v > 0);
  const low = Math.floor(Math.log10(Math.min(...values)));
  const high = Math.ceil(Math.log10(Math.max(...values)));
  const [labelWidth, barWidth, barHeight, rowHeight, top] = [440, 420, 11, 32, 40];
  const x = (value: number) => labelWidth + (barWidth * (Math.log10(value) - low)) / Math.max(1, high - low);
  const height = top + rowHeight * rates.length + 30;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + barWidth + 110}" height="${height}" font-family="sans-serif" font-size="13">`,
    `<text x="8" y="18" font-weight="bold">In Chromium, per second: v1 (grey) and v2 (blue), log scale (${xmlEscape(report.machine)})</text>`,
  ];
  for (let power = low; power <= high; power += 1) {
    const at = x(10 ** power);
    parts.push(
      `<line x1="${at.toFixed(1)}" y1="${top - 8}" x2="${at.toFixed(1)}" y2="${height - 24}" stroke="#e5e7eb"/>` +
        `<text x="${at.toFixed(1)}" y="${height - 10}" font-size="11" text-anchor="middle">${(10 ** power).toLocaleString("en-US")}</text>`,
    );
  }
  rates.forEach((row, index) => {
    const y = top + rowHeight * index;
    // The unit is in the title; without it the longest label fits.
    const label = row.label.replace(/: [^:]*\/s$/, "");
    parts.push(`<text x="8" y="${y + barHeight + 4}">${xmlEscape(label)}</text>`);
    (["v1", "v2"] as const).forEach((protocol, bar) => {
      const value = row[protocol];
      const barY = y + bar * (barHeight + 2);
      if (row.failed?.includes(protocol) === true) {
        parts.push(`<text x="${labelWidth + 4}" y="${barY + barHeight - 1}" font-size="10">${protocol} failed</text>`);
        return;
      }
      if (value === undefined || value <= 0) {
        return;
      }
      const end = x(value);
      parts.push(
        `<rect x="${labelWidth}" y="${barY}" width="${(end - labelWidth).toFixed(1)}" height="${barHeight}" fill="${COLOURS[protocol]}"/>` +
          `<text x="${(end + 4).toFixed(1)}" y="${barY + barHeight - 1}" font-size="10">${format(value, "/s")}</text>`,
      );
    });
  });
  parts.push("</svg>", "");
  return parts.join("\n");
}
