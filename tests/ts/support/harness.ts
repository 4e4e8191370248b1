// What the tests of the transport share: processes and clients that are
// cleaned up after each test, and failures read as RpcError.

import { afterAll, afterEach, beforeAll, expect } from "vitest";
import WebSocket from "ws";

import { type ConnectionState, RpcError, WebSocketGRPCClient } from "../gen/wsgrpc_runtime.js";
import { type ServerOptions, startServer, type TestServer } from "./server.js";

const cleanups: (() => Promise<void> | void)[] = [];

// Registered in every test file that imports this module.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
});

/** Runs `cleanup` after the current test, latest first. */
export function onCleanup(cleanup: () => Promise<void> | void): void {
  cleanups.push(cleanup);
}

/** A test server that is stopped after the current test. */
export async function server(options: ServerOptions = {}): Promise<TestServer> {
  const started = await startServer(options);
  onCleanup(() => started.kill());
  return started;
}

/**
 * One test server for all the tests of a file, stopped after them; once it
 * is up, `connected` gets a transport to it over `ws`.
 */
export function sharedServer(connected: (transport: WebSocketGRPCClient) => void): void {
  let server: TestServer | undefined;
  let transport: WebSocketGRPCClient | undefined;
  beforeAll(async () => {
    server = await startServer();
    transport = new WebSocketGRPCClient(server.bridgeUrl, { WebSocket });
    connected(transport);
  });
  afterAll(async () => {
    transport?.close();
    await server?.kill();
  });
}

/** A transport over `ws`, closed after the current test, with the states it went through. */
export function transportFor(url: string, options: ConstructorParameters<typeof WebSocketGRPCClient>[1] = {}) {
  const transport = new WebSocketGRPCClient(url, { WebSocket, ...options });
  const states: ConnectionState[] = [];
  transport.onStateChange((state) => states.push(state));
  onCleanup(() => transport.close());
  return { transport, states };
}

/** The RpcError that `promise` fails with; fails the test if it succeeds. */
export async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => new Error("expected the call to fail"),
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}
