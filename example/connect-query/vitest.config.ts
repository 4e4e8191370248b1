import { defineConfig } from "vitest/config";

// The page in headless Chromium against the example binary.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    testTimeout: 30_000,
    // Building the page comes first.
    hookTimeout: 120_000,
  },
});
