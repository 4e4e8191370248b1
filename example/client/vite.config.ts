import { defineConfig } from "vite";

// `npm run dev --workspace example/client` serves this page on
// http://localhost:5173 with live reload and passes its WebSocket, /ws, on to
// a bridge, by default the example binary's:
//
//   cargo run -p wsgrpc-example -- --allow-origin http://localhost:5173
//
// Why --allow-origin: `changeOrigin: true` rewrites the Host header to the
// bridge's address (127.0.0.1:50052), while the browser still sends the
// page's Origin, http://localhost:5173. The bridge's default policy is
// same-origin (Origin must match Host), so without the flag it refuses the
// upgrade with 403. Name the origin exactly as the address bar shows it:
// http://127.0.0.1:5173 is another origin. (`vite build` output needs none
// of this: the example binary, Envoy and nginx serve page and socket from
// one origin and keep the Host header.)
const bridge = process.env["WSGRPC_BRIDGE"] ?? "http://127.0.0.1:50052";

export default defineConfig({
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      "/ws": {
        target: bridge,
        ws: true,
        changeOrigin: true,
      },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
  },
});
