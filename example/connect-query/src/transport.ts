// The one transport of the page: connect-es calls over the bridge's
// WebSocket, /ws of the page's own origin (the example binary serves both;
// in development Vite passes /ws on, see vite.config.ts).

import { createWebSocketTransport } from "@wsgrpc/connect";

function socketUrl(): string {
  const url = new URL("/ws", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // A bridge that requires a token reads it from the socket's query.
  const token = new URLSearchParams(window.location.search).get("token");
  if (token !== null) {
    url.searchParams.set("token", token);
  }
  return url.toString();
}

export const transport = createWebSocketTransport({
  url: socketUrl(),
  reconnect: { initialDelayMs: 500, maxDelayMs: 5_000 },
});
