// A test server (the `wsgrpc-test-server` binary) with flags of its own —
// a bridge that sends sockets away at an age, one whose tokens run out —
// stopped after the current test.

import { onCleanup } from "./harness.js";
import { startServer, type ServerOptions, type TestServer } from "./server.js";

/** A test server with those options, stopped after the current test. */
export async function serverWith(options: ServerOptions): Promise<TestServer> {
  const started = await startServer(options);
  onCleanup(() => started.kill());
  return started;
}
