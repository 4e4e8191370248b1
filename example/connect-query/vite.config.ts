import { defineConfig } from "vite";

// `npm run dev --workspace example/connect-query` serves the page on
// http://localhost:5174 and passes its WebSocket, /ws, on to a bridge, by
// default the example binary's:
//
//   cargo run -p wsgrpc-example -- --allow-origin http://localhost:5174
//
// (--allow-origin for the reason example/client/vite.config.ts gives.) The
// built page (`npm run build`) needs no proxy: the example binary serves
// it with `--static-dir example/connect-query/dist`, page and socket from
// one origin.
const bridge = process.env["WSGRPC_BRIDGE"] ?? "http://127.0.0.1:50052";

export default defineConfig({
  server: {
    port: 5174,
    strictPort: true,
    proxy: {
      "/ws": { target: bridge, ws: true, changeOrigin: true },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rolldownOptions: {
      // TanStack Query marks its hooks "use client" for React Server
      // Components; a page bundle has no use for the directive.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") {
          warn(warning);
        }
      },
    },
  },
});
