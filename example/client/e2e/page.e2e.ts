// The demo page in a real headless Chromium, against the real example
// binary: served by the binary itself, through Envoy and nginx with the
// configurations in example/, and by the Vite dev server as vite.config.ts
// sets it up. Every method is clicked through, and the backend's own log
// shows that Stop and Disconnect cancel streams there. Screenshots go to
// target/e2e/.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { build, createServer } from "vite";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  type Process,
  clientDir,
  findProgram,
  freePort,
  replaceOnce,
  repoRoot,
  run,
  start,
  targetDir,
  waitForHttp,
} from "./support.js";
import type { SlowReader } from "./slow_reader.js";

const distDir = join(clientDir, "dist");
const screenshotDir = join(targetDir, "e2e");
const exampleBinary = join(targetDir, "debug", "wsgrpc-example");

const envoyBinary = () =>
  findProgram("ENVOY", [join(repoRoot, ".venv", "bin", "envoy"), "envoy"], "run scripts/install-envoy");
const nginxBinary = () =>
  findProgram("NGINX", ["nginx", "/usr/sbin/nginx"], "apt-get install nginx");

// Debian's Chromium; no browser is downloaded.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser: Browser;
const scratch = mkdtempSync(join(tmpdir(), "wsgrpc-e2e-"));

beforeAll(async () => {
  mkdirSync(screenshotDir, { recursive: true });
  await Promise.all([
    build({ root: clientDir, logLevel: "warn" }),
    run("cargo", ["build", "--quiet", "-p", "wsgrpc-example"]),
  ]);
  browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
});

afterAll(async () => {
  await browser?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** The example binary on ports of its own, streaming a message every 100 ms. */
async function startExample(extraArgs: string[] = []): Promise<{ service: Process; address: string }> {
  const service = start("wsgrpc-example", exampleBinary, [
    "--grpc-addr=127.0.0.1:0",
    "--bridge-addr=127.0.0.1:0",
    `--static-dir=${distDir}`,
    "--stream-interval-ms=100",
    ...extraArgs,
  ]);
  const [, address] = await service.waitForOutput(/open http:\/\/(\S+)\//);
  return { service, address: address! };
}

/** What a front (the binary itself, or a proxy before it) gives the tests. */
interface Front {
  /** The page's URL. */
  url: string;
  /** The example binary, whose log tells what the backend saw. */
  example: Process;
  /** The example binary's own address (`127.0.0.1:PORT`), for its `/metrics`. */
  address: string;
  stop(): Promise<void>;
}

async function direct(): Promise<Front> {
  const { service, address } = await startExample();
  return { url: `http://${address}/`, example: service, address, stop: () => service.stop() };
}

/** A fresh example binary with a proxy in front, started by `start(bridgePort)`. */
async function behind(
  start: (bridgePort: string) => Promise<{ proxy: Process; url: string }>,
): Promise<Front> {
  const { service: example, address } = await startExample();
  const bridgePort = address.split(":").pop()!;
  try {
    const { proxy, url } = await start(bridgePort);
    return {
      url,
      example,
      address,
      stop: async () => {
        await proxy.stop();
        await example.stop();
      },
    };
  } catch (error) {
    await example.stop();
    throw error;
  }
}

async function envoy(bridgePort: string): Promise<{ proxy: Process; url: string }> {
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  let config = readFileSync(join(repoRoot, "example", "envoy.yaml"), "utf8");
  config = replaceOnce(config, "port_value: 8080", `port_value: ${listenPort}`);
  config = replaceOnce(config, "port_value: 9901", `port_value: ${adminPort}`);
  config = replaceOnce(config, "port_value: 50052", `port_value: ${bridgePort}`);
  const configFile = join(scratch, `envoy-${listenPort}.yaml`);
  writeFileSync(configFile, config);
  // In a session of its own, as `setsid envoy …` would be; stopped by PID.
  const proxy = start(
    "envoy",
    envoyBinary(),
    ["-c", configFile, "--disable-hot-restart", "--log-level", "warn"],
    { ownSession: true },
  );
  await waitForHttp(`http://127.0.0.1:${adminPort}/ready`);
  const url = `http://127.0.0.1:${listenPort}/`;
  await waitForHttp(url);
  return { proxy, url };
}

async function nginx(bridgePort: string): Promise<{ proxy: Process; url: string }> {
  const listenPort = await freePort();
  const prefix = mkdtempSync(join(scratch, "nginx-"));
  let config = readFileSync(join(repoRoot, "example", "nginx.conf"), "utf8");
  config = replaceOnce(config, "listen 127.0.0.1:8080;", `listen 127.0.0.1:${listenPort};`);
  config = replaceOnce(config, "server 127.0.0.1:50052;", `server 127.0.0.1:${bridgePort};`);
  const configFile = join(prefix, "nginx.conf");
  writeFileSync(configFile, config);
  const proxy = start(
    "nginx",
    nginxBinary(),
    ["-c", configFile, "-p", prefix, "-e", "stderr", "-g", `daemon off; pid ${join(prefix, "nginx.pid")};`],
    { ownSession: true },
  );
  const url = `http://127.0.0.1:${listenPort}/`;
  await waitForHttp(url);
  return { proxy, url };
}

/**
 * The development setup of vite.config.ts: the Vite dev server serves the
 * page from source and proxies /ws to a bridge that allows its origin.
 */
async function viteDevServer(extraArgs: string[] = []): Promise<Front> {
  const port = await freePort();
  const origin = `http://localhost:${port}`;
  const { service: example, address } = await startExample([`--allow-origin=${origin}`, ...extraArgs]);
  try {
    // vite.config.ts reads the bridge's address when the server loads it.
    process.env["WSGRPC_BRIDGE"] = `http://${address}`;
    const server = await createServer({ root: clientDir, logLevel: "warn", server: { port, strictPort: true } });
    delete process.env["WSGRPC_BRIDGE"];
    await server.listen();
    return {
      url: `${origin}/`,
      example,
      address,
      stop: async () => {
        await server.close();
        await example.stop();
      },
    };
  } catch (error) {
    await example.stop();
    throw error;
  }
}

const text = (page: Page, selector: string) => page.locator(selector).textContent();
const count = (page: Page, selector: string) => page.locator(selector).count();
const isDisabled = (page: Page, selector: string) => page.locator(selector).isDisabled();

/**
 * Waits for the example server to log its `total`-th cancelled
 * StreamMessages call, somewhere after offset `from` of its output.
 */
async function backendCancels(example: Process, total: number, from: number): Promise<void> {
  const line = new RegExp(`StreamMessages cancelled by the client total=${total}\\b`);
  await example.waitForOutput(line, 3_000, from);
}

/** Clicks through every method of the page; screenshots as `page-<name>*.png`. */
async function clickThrough(front: Front, name: string): Promise<void> {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") {
      pageErrors.push(message.text());
    }
  });
  const { example } = front;
  try {
    await page.goto(front.url);
    const host = new URL(front.url).host;
    expect(await text(page, "#socket-url")).toBe(`ws://${host}/ws`);
    expect(await text(page, "#status")).toBe("Disconnected");
    expect(await isDisabled(page, "#hello-btn")).toBe(true);

    // Connect.
    await page.click("#connect-btn");
    await expect.poll(() => text(page, "#status")).toBe("Connected");
    expect(await isDisabled(page, "#connect-btn")).toBe(true);

    // SayHello.
    await page.fill("#name-input", "Playwright");
    await page.click("#hello-btn");
    await expect.poll(() => text(page, "#hello-result")).toBe("Response: Hello Playwright");

    // StreamMessages, run to its end: the messages arrive one by one, about
    // 100 ms apart, not all at once at the end.
    await page.evaluate(() => {
      const arrivals: number[] = [];
      (window as unknown as { arrivals: number[] }).arrivals = arrivals;
      new MutationObserver((records) => {
        for (const record of records) {
          record.addedNodes.forEach(() => arrivals.push(performance.now()));
        }
      }).observe(document.getElementById("stream-result")!, { childList: true });
    });
    await page.fill("#stream-message-input", "tick");
    await page.fill("#stream-count-input", "5");
    await page.click("#stream-btn");
    await expect.poll(() => text(page, "#stream-status")).toBe("Done: 5 of 5 messages");
    expect(await page.locator("#stream-result li").allTextContents()).toEqual([
      "[0] tick",
      "[1] tick",
      "[2] tick",
      "[3] tick",
      "[4] tick",
    ]);
    const arrivals = await page.evaluate(() => (window as unknown as { arrivals: number[] }).arrivals);
    expect(arrivals).toHaveLength(5);
    expect(arrivals[4]! - arrivals[0]!).toBeGreaterThan(300);
    expect(await isDisabled(page, "#stream-stop-btn")).toBe(true);

    // StreamMessages, stopped mid-stream: the backend sees the call cancelled.
    await page.fill("#stream-message-input", "long");
    await page.fill("#stream-count-input", "100");
    await page.click("#stream-btn");
    await expect.poll(() => count(page, "#stream-result li")).toBeGreaterThanOrEqual(3);
    const beforeStop = example.output.length;
    await page.click("#stream-stop-btn");
    await expect.poll(() => text(page, "#stream-status")).toMatch(/^Stopped after \d+ of 100 messages$/);
    await backendCancels(example, 1, beforeStop);
    const shown = await count(page, "#stream-result li");
    expect(shown).toBeLessThan(100);
    await page.waitForTimeout(300);
    expect(await count(page, "#stream-result li")).toBe(shown);

    // CollectMessages: one message per line, one answer.
    await page.fill("#collect-input", "alpha\nbeta\n\ngamma\n");
    await page.click("#collect-btn");
    await expect.poll(() => text(page, "#collect-result")).toBe('3 messages arrived: "alpha beta gamma"');

    // Chat: each message is echoed while the call stays open; End closes it.
    await page.fill("#chat-input", "hello");
    await page.press("#chat-input", "Enter");
    await expect.poll(() => page.locator("#chat-log li.theirs").allTextContents()).toEqual(["server #1: echo: hello"]);
    expect(await text(page, "#chat-status")).toMatch(/^Chat open/);
    await page.fill("#chat-input", "how are you?");
    await page.click("#chat-send-btn");
    await expect
      .poll(() => page.locator("#chat-log li.theirs").allTextContents())
      .toEqual(["server #1: echo: hello", "server #2: echo: how are you?"]);
    expect(await page.locator("#chat-log li").allTextContents()).toEqual([
      "you #1: hello",
      "server #1: echo: hello",
      "you #2: how are you?",
      "server #2: echo: how are you?",
    ]);
    await page.click("#chat-end-btn");
    await expect.poll(() => text(page, "#chat-status")).toBe("Chat ended");
    expect(await isDisabled(page, "#chat-end-btn")).toBe(true);

    await page.screenshot({ path: join(screenshotDir, `page-${name}.png`), fullPage: true });

    // Disconnect in the middle of a stream: closing the socket cancels the
    // call at the backend too.
    await page.fill("#stream-message-input", "cut off");
    await page.click("#stream-btn");
    await expect.poll(() => count(page, "#stream-result li")).toBeGreaterThanOrEqual(2);
    const beforeDisconnect = example.output.length;
    await page.click("#disconnect-btn");
    await expect.poll(() => text(page, "#status")).toBe("Disconnected");
    await expect.poll(() => text(page, "#stream-status")).toMatch(/CANCELLED/);
    await backendCancels(example, 2, beforeDisconnect);
    for (const button of ["#hello-btn", "#stream-btn", "#collect-btn", "#chat-send-btn", "#disconnect-btn"]) {
      expect(await isDisabled(page, button), button).toBe(true);
    }
    expect(await isDisabled(page, "#connect-btn")).toBe(false);
    await page.screenshot({ path: join(screenshotDir, `page-${name}-disconnected.png`), fullPage: true });

    // And connect again: a new socket, calls work as before.
    await page.click("#connect-btn");
    await expect.poll(() => text(page, "#status")).toBe("Connected");
    await page.fill("#name-input", "again");
    await page.click("#hello-btn");
    await expect.poll(() => text(page, "#hello-result")).toBe("Response: Hello again");

    expect(pageErrors).toEqual([]);
  } finally {
    await page.close();
  }
}

describe.each([
  { name: "direct", served: "by the example binary", start: direct },
  { name: "envoy", served: "through Envoy", start: () => behind(envoy) },
  { name: "nginx", served: "through nginx", start: () => behind(nginx) },
  { name: "vite", served: "by the Vite dev server", start: viteDevServer },
])("the page served $served", ({ name, start }) => {
  let front: Front | undefined;

  beforeAll(async () => {
    front = await start();
  });

  afterAll(async () => {
    await front?.stop();
  });

  test("every method works, and Stop and Disconnect cancel at the backend", async () => {
    await clickThrough(front!, name);
  });
});

/** A counter of the example binary's bridge, from its `/metrics`. */
async function bridgeMetric(front: Front, name: string): Promise<number> {
  const text = await waitForHttp(`http://${front.address}/metrics`);
  const line = text.split("\n").find((line) => line.startsWith(`${name} `));
  if (line === undefined) {
    throw new Error(`no ${name} in:\n${text}`);
  }
  return Number(line.slice(name.length + 1));
}

describe("a stream read slowly in the page", () => {
  // Streaming as fast as the backend can, to a reader (e2e/slow_reader.ts)
  // that the Vite dev server serves from source.
  let front: Front | undefined;

  beforeAll(async () => {
    front = await viteDevServer(["--stream-interval-ms=0"]);
  });

  afterAll(async () => {
    await front?.stop();
  });

  test("arrives in order while the bridge holds back, and the page's heap stays flat", async () => {
    const count = 200_000;
    const page = await browser.newPage();
    const cdp = await page.context().newCDPSession(page);
    const heapMib = async () => {
      const { usedSize } = await cdp.send("Runtime.getHeapUsage");
      return usedSize / (1 << 20);
    };
    try {
      await page.goto(front!.url);
      const sentBefore = await bridgeMetric(front!, "wsgrpc_sent_bytes_total");
      const heapBefore = await heapMib();
      await page.addScriptTag({ type: "module", url: "/e2e/slow_reader.ts" });
      await page.waitForFunction(() => "slowReader" in window);
      const reading = page.evaluate(
        (count) => (window as unknown as { slowReader: SlowReader }).slowReader.read(count, 1_000, 1_500),
        count,
      );
      await page.waitForFunction(() => (window as unknown as { slowReader: SlowReader }).slowReader.paused);
      await page.waitForTimeout(500);
      const sentWhilePaused = (await bridgeMetric(front!, "wsgrpc_sent_bytes_total")) - sentBefore;
      const heapWhilePaused = await heapMib();
      const { read, outOfOrder, ms } = await reading;
      const heapAfter = await heapMib();
      console.log(
        `Chromium: ${read} messages in ${(ms / 1000).toFixed(1)} s with a 1.5 s pause; ` +
          `the bridge had sent ${(sentWhilePaused / 1024).toFixed(0)} KiB at the pause; ` +
          `heap ${heapBefore.toFixed(1)} → ${heapWhilePaused.toFixed(1)} (paused) → ${heapAfter.toFixed(1)} MiB`,
      );
      expect(read).toBe(count);
      expect(outOfOrder).toBe(0);
      // The window (4,096 messages of some 30 bytes) and the 1,000 read,
      // against some 6 MB for the whole stream.
      expect(sentWhilePaused).toBeLessThan(1 << 20);
      expect(heapWhilePaused - heapBefore).toBeLessThan(16);
    } finally {
      await page.close();
    }
  });
});

describe("the page against a bridge started with --token", () => {
  // Needs percent-encoding: the page must pass it on intact.
  const secret = "e2e secret+/&";
  let example: Process | undefined;
  let origin = "";

  beforeAll(async () => {
    const started = await startExample([`--token=${secret}`]);
    example = started.service;
    origin = `http://${started.address}`;
  });

  afterAll(async () => {
    await example?.stop();
  });

  test("without the token, or with a wrong one, the socket is refused", async () => {
    for (const query of ["", "?token=guess"]) {
      const page = await browser.newPage();
      try {
        await page.goto(`${origin}/${query}`);
        const beforeConnect = example!.output.length;
        await page.click("#connect-btn");
        await expect.poll(() => text(page, "#status"), { timeout: 5_000 }).toMatch(/^Disconnected: .+/);
        expect(await isDisabled(page, "#hello-btn")).toBe(true);
        // Refused by the authenticator, not for some other reason.
        await example!.waitForOutput(/refused unauthenticated WebSocket/, 3_000, beforeConnect);
      } finally {
        await page.close();
      }
    }
  });

  test("with ?token= the page connects and the backend greets the signed-in user", async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    try {
      await page.goto(`${origin}/?token=${encodeURIComponent(secret)}`);
      // The secret is not shown.
      expect(await text(page, "#socket-url")).toBe(`ws://${new URL(origin).host}/ws?token=…`);
      await page.click("#connect-btn");
      await expect.poll(() => text(page, "#status")).toBe("Connected");
      await page.fill("#name-input", "Playwright");
      await page.click("#hello-btn");
      await expect.poll(() => text(page, "#hello-result")).toBe("Response: Hello Playwright (signed in as demo)");
      expect(pageErrors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

describe("the proxy configurations", () => {
  test("envoy --mode validate accepts example/envoy.yaml", async () => {
    const output = await run(envoyBinary(), ["--mode", "validate", "-c", join(repoRoot, "example", "envoy.yaml")]);
    expect(output).toMatch(/configuration '.*envoy\.yaml' OK/);
  });

  test("nginx -t accepts example/nginx.conf", async () => {
    const prefix = mkdtempSync(join(scratch, "nginx-t-"));
    const output = await run(nginxBinary(), [
      "-t",
      "-c",
      join(repoRoot, "example", "nginx.conf"),
      "-p",
      prefix,
      "-e",
      "stderr",
      "-g",
      `daemon off; pid ${join(prefix, "nginx.pid")};`,
    ]);
    expect(output).toMatch(/test is successful/);
  });
});
