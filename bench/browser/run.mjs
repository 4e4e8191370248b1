// Runs driver/main.ts. Node 20 cannot run TypeScript itself; Vite's module
// runner, which the page's build needs anyway, transforms it on the fly.
import { runnerImport } from "vite";

const { module } = await runnerImport(new URL("./driver/main.ts", import.meta.url).pathname, {
  configFile: false,
  logLevel: "warn",
});
process.exitCode = await module.benchmark();
