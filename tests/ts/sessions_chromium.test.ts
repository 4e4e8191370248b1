// Sessions in a real headless Chromium: the generated client reads a
// server stream through a proxy that cuts every connection three times;
// the page gets every message once, in order. The page is
// support/session_page, bundled by Vite from the tree's generated code.

import { readFileSync, statSync } from "node:fs";
import { type Server, createServer } from "node:http";
import path from "node:path";

import { type Browser, type Page, chromium } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, expect, it } from "vitest";

import type { StreamSeen } from "./support/session_page/main.js";
import { CuttingProxy } from "./support/cutting_proxy.js";
import { onCleanup, server } from "./support/harness.js";
import { repoRoot } from "./support/server.js";

const pageDir = path.join(repoRoot, "tests", "ts", "support", "session_page");
const pageOut = path.join(repoRoot, "target", "session-page");

// Debian's Chromium; no browser is downloaded.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"];

let browser: Browser | undefined;
let page: Page;
let pageServer: Server | undefined;

beforeAll(async () => {
  await build({
    root: pageDir,
    configFile: false,
    logLevel: "warn",
    build: { outDir: pageOut, emptyOutDir: true, minify: false, reportCompressedSize: false },
  });
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript" };
  pageServer = createServer((request, response) => {
    const name = new URL(request.url ?? "/", "http://page").pathname;
    const file = path.join(pageOut, name === "/" ? "index.html" : name);
    if (!file.startsWith(pageOut) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
    response.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => pageServer!.listen(0, "127.0.0.1", resolve));
  const address = pageServer.address();
  if (address === null || typeof address === "string") {
    throw new Error("the page server has no port");
  }
  browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${address.port}/`);
  await page.waitForFunction(() => document.getElementById("status")?.textContent === "ready", undefined, {
    timeout: 10_000,
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (pageServer === undefined ? resolve() : pageServer.close(() => resolve())));
});

it("a page reads a server stream of 100,000 messages whole while its socket is cut three times", async () => {
  const bridge = await server();
  const proxy = await CuttingProxy.start(bridge.bridgeUrl);
  onCleanup(() => proxy.close());
  // About 3 MB go to the page in all: cut after 0.5, 1.2 and 2 MB.
  proxy.cutAfterBytes([500_000, 1_200_000, 2_000_000]);
  const url = proxy.url(bridge.bridgeUrl);
  const seen = (await page.evaluate(([url, count]) => window.readStream(url, count), [url, 100_000] as const)) as StreamSeen;
  expect(seen.count).toBe(100_000);
  expect(seen.outOfPlace).toBe(0);
  expect(proxy.cuts).toBe(3);
  expect(seen.states.filter((state) => state === "reconnecting")).toHaveLength(3);
  expect(seen.states.at(-1)).toBe("closed");
}, 60_000);
