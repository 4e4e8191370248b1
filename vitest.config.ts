import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/ts/**/*.test.ts"],
    // Each file starts its own bridge and backend (tests/ts/support/server.ts).
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
