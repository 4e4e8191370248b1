// Two bridge replicas behind Envoy with consistent hashing on the session
// key (example/envoy-sessions.yaml): every socket of one session lands on
// the same replica, and sessions spread over both.

import { randomBytes } from "node:crypto";

import { expect, it } from "vitest";
import WebSocket from "ws";

import { startEnvoy } from "./support/envoy.js";
import { onCleanup, server } from "./support/harness.js";
import { bridgeMetric, eventually, type TestServer, within } from "./support/server.js";

const openSockets = (replica: TestServer) => bridgeMetric(replica, "wsgrpc_connections_open");
const port = (replica: TestServer) => Number(new URL(replica.bridgeUrl).port);

/** A session key as a client makes one: 16 random bytes, base64url, 22 characters. */
const sessionKey = () => randomBytes(16).toString("base64url");

/** Opens a socket to `url` and waits until it is open. */
async function open(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  await within(
    new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    }),
    `a socket to ${url} to open`,
  );
  return socket;
}

it("every socket of a session reaches the same replica, and sessions spread over both", async () => {
  const backend = await server();
  const replicas = [await server({ backend: backend.grpcUrl }), await server({ backend: backend.grpcUrl })];
  const envoy = await startEnvoy({
    config: "envoy-sessions.yaml",
    listen: 8080,
    admin: 9901,
    upstreams: { 50052: port(replicas[0]!), 50053: port(replicas[1]!) },
  });
  onCleanup(() => envoy.stop());
  const socketUrl = `${envoy.url.replace(/^http/, "ws")}/ws`;
  const counts = async () => Promise.all(replicas.map(openSockets));

  /** Which replica takes a socket of `url`: the one whose open sockets go up by one while it is open. */
  const replicaOf = async (url: string): Promise<number> => {
    const socket = await open(url);
    let held: number[] = [];
    await eventually(async () => {
      held = await counts();
      return held[0]! + held[1]! === 1;
    }, "one replica counts the socket");
    socket.close();
    await eventually(async () => (await counts()).every((count) => count === 0), "the socket is closed at the bridge");
    return held.indexOf(1);
  };

  expect(await counts()).toEqual([0, 0]);
  const placed = new Map<string, number>();
  for (let i = 0; i < 20; i += 1) {
    const key = sessionKey();
    expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const seen = [];
    for (let attempt = 0; attempt < 3; attempt += 1) {
      seen.push(await replicaOf(`${socketUrl}?session=${key}`));
    }
    expect(seen, `the sockets of session ${key}`).toEqual([seen[0], seen[0], seen[0]]);
    placed.set(key, seen[0]!);
  }
  const onFirst = [...placed.values()].filter((replica) => replica === 0).length;
  console.log(`sessions on each replica: ${onFirst} and ${placed.size - onFirst}`);
  expect(onFirst).toBeGreaterThan(0);
  expect(onFirst).toBeLessThan(placed.size);

  // Sockets without a session key spread as before.
  const unkeyed = new Set<number>();
  for (let i = 0; i < 20 && unkeyed.size < 2; i += 1) {
    unkeyed.add(await replicaOf(socketUrl));
  }
  expect([...unkeyed].sort()).toEqual([0, 1]);
}, 60_000);
