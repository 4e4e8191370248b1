// The connect-query page in a real headless Chromium, served by the
// example binary with its bridge: the SayHello query renders, follows its
// input, and the StreamMessages view fills as the messages arrive. A
// screenshot goes to target/e2e/connect-query.png; the assertions here are
// what checks it.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { type Browser, type Page, chromium } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Process } from "../../../tests/ts/support/process.js";

const appDir = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = path.join(appDir, "..", "..");
const targetDir = process.env["CARGO_TARGET_DIR"] ?? path.join(repoRoot, "target");
const exampleBinary = path.join(targetDir, "debug", "wsgrpc-example");
const distDir = path.join(appDir, "dist");

let browser: Browser | undefined;
let example: Process | undefined;
let page: Page;

beforeAll(async () => {
  if (!existsSync(exampleBinary)) {
    throw new Error(`${exampleBinary} does not exist: cargo build -p wsgrpc-example`);
  }
  await build({ root: appDir, logLevel: "warn" });
  example = Process.start("wsgrpc-example", exampleBinary, [
    "--grpc-addr=127.0.0.1:0",
    "--bridge-addr=127.0.0.1:0",
    `--static-dir=${distDir}`,
    // Slow enough to watch the list grow, fast enough for a test.
    "--stream-interval-ms=150",
  ]);
  const [, address] = await example.waitForOutput(/open http:\/\/(\S+)\//);
  browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  });
  page = await browser.newPage({ viewport: { width: 800, height: 720 } });
  await page.goto(`http://${address}/`);
});

afterAll(async () => {
  await browser?.close();
  await example?.stop();
});

const text = (selector: string) => page.locator(selector).textContent();

describe("the connect-query example", () => {
  it("renders the SayHello query, and queries again when its input changes", async () => {
    await page.locator("#greeting[data-status=success]").waitFor();
    expect(await text("#greeting")).toBe("Hello Ada");
    expect(await text("#connection")).toBe("open");

    await page.locator("#name").fill("Grace");
    await page.getByText("Hello Grace").waitFor();
    expect(await text("#greeting")).toBe("Hello Grace");
  });

  it("shows the StreamMessages items as they arrive, then the stream's end", async () => {
    // The stream the page started as it loaded: 5 messages.
    await page.locator("#stream-status[data-status=done]").waitFor();
    expect(await page.locator("#stream li").allTextContents()).toEqual(
      Array.from({ length: 5 }, (_, index) => `live #${index}`),
    );
    expect(await text("#stream-status")).toBe("done: 5 of 5");

    // Another count is another query, streamed from the start: caught while
    // some items are in and the rest still to come.
    await page.locator("#count").fill("8");
    const partial = await page.waitForFunction(() => {
      const items = document.querySelectorAll("#stream li").length;
      const streaming = document.querySelector("#stream-status")?.getAttribute("data-status") === "streaming";
      return streaming && items > 0 && items < 8 ? items : false;
    });
    expect(await partial.jsonValue()).toBeGreaterThan(0);
    await page.locator("#stream-status[data-status=done]").waitFor();
    expect(await page.locator("#stream li").allTextContents()).toEqual(
      Array.from({ length: 8 }, (_, index) => `live #${index}`),
    );
    expect(await text("#stream-status")).toBe("done: 8 of 8");

    const screenshots = path.join(targetDir, "e2e");
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: path.join(screenshots, "connect-query.png"), fullPage: true });
  });
});

describe("the page's protobuf-es code", () => {
  it("is what buf.gen.yaml writes with the protoc-gen-es of package-lock.json", () => {
    const out = mkdtempSync(path.join(tmpdir(), "wsgrpc-connect-query-gen-"));
    try {
      execFileSync(path.join(repoRoot, "node_modules", ".bin", "buf"), ["generate", "-o", out], { cwd: appDir });
      const checkedIn = path.join(appDir, "src", "gen");
      const files = readdirSync(checkedIn).sort();
      expect(readdirSync(path.join(out, "src", "gen")).sort()).toEqual(files);
      for (const file of files) {
        expect(
          readFileSync(path.join(out, "src", "gen", file), "utf8"),
          `src/gen/${file} is stale: npm run generate --workspace example/connect-query`,
        ).toBe(readFileSync(path.join(checkedIn, file), "utf8"));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
