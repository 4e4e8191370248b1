import { defineConfig } from "vitest/config";

// The browser tests: each file starts the example binary, proxies and a
// headless Chromium, so they run one file at a time with generous timeouts.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    // Building the page and the example binary comes first.
    hookTimeout: 300_000,
  },
});
