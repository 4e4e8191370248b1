// Two bridge replicas behind Envoy (example/envoy-replicas.yaml), one
// backend behind both. The replica that holds a client's socket is killed:
// the calls in flight there fail with UNAVAILABLE, the client reconnects
// through Envoy to the other replica, and new calls succeed there. Nothing
// ties a client to the replica it was on.

import { expect, it } from "vitest";

import { TestServiceClient } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import { Code } from "./gen/wsgrpc_runtime.js";
import { startEnvoy } from "./support/envoy.js";
import { bridgeMetric, eventually, type TestServer, within } from "./support/server.js";
import { onCleanup, rpcError, server, transportFor } from "./support/harness.js";
import { testResponse } from "./support/responses.js";

const openSockets = (replica: TestServer) => bridgeMetric(replica, "wsgrpc_connections_open");
const port = (replica: TestServer) => Number(new URL(replica.bridgeUrl).port);

it("when the replica holding the socket is killed, the client reconnects to the other", async () => {
  // The backend in a process of its own (its bridge is not used), so that
  // killing either replica leaves it running.
  const backend = await server();
  const replicas = [await server({ backend: backend.grpcUrl }), await server({ backend: backend.grpcUrl })];
  for (const replica of replicas) {
    expect(replica.grpcUrl).toBe(backend.grpcUrl);
  }
  const envoy = await startEnvoy({
    config: "envoy-replicas.yaml",
    listen: 8080,
    admin: 9901,
    upstreams: { 50052: port(replicas[0]!), 50053: port(replicas[1]!) },
  });
  onCleanup(() => envoy.stop());
  const socketUrl = `${envoy.url.replace(/^http/, "ws")}/ws`;

  const { transport, states } = transportFor(socketUrl, { reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  const client = new TestServiceClient(transport);
  await expect(client.unary({ text: "before" })).resolves.toEqual(testResponse({ text: "before" }));

  await eventually(
    async () => (await Promise.all(replicas.map(openSockets))).sort().join() === "0,1",
    "one replica, and only one, holds the socket",
  );
  const holder = (await Promise.all(replicas.map(openSockets))).indexOf(1);
  const victim = replicas[holder]!;
  const survivor = replicas[1 - holder]!;

  // rpcError() at once, so that the failures are handled when they come.
  const hanging = rpcError(client.hang({}));
  const streaming = rpcError(
    (async () => {
      for await (const _ of client.serverStream({ count: 1000, delayMs: 20 })) {
        // reading until the connection drops
      }
    })(),
  );
  await eventually(async () => Number((await client.stats({})).active ?? "0") === 2, "both calls are running");

  const killedAt = performance.now();
  await victim.kill();
  for (const call of [hanging, streaming]) {
    const error = await within(call, "a call in flight on the killed replica to fail");
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.message).toMatch(/connection to the bridge closed/);
  }
  // Made while the client reconnects, it waits for the new socket.
  await expect(within(client.unary({ text: "after" }), "the first call after the kill")).resolves.toEqual(
    testResponse({ text: "after" }),
  );
  const failoverMs = performance.now() - killedAt;
  console.log(`failover through Envoy: first call served ${failoverMs.toFixed(0)} ms after the kill`);

  expect(transport.state).toBe("open");
  expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
  expect(await openSockets(survivor)).toBe(1);
  // The backend saw the killed replica's calls end: nothing is left running.
  await eventually(
    async () => Number((await client.stats({})).active ?? "0") === 0,
    "the backend has ended the calls of the killed replica",
  );

  // Sockets opened now, each in one attempt (no reconnect option), all
  // work: an upgrade that Envoy sends to the dead replica is retried on
  // the other one, until the health checks take the dead one out.
  for (let i = 0; i < 4; i += 1) {
    const { transport: fresh } = transportFor(socketUrl);
    await expect(new TestServiceClient(fresh).unary({ text: `fresh ${i}` })).resolves.toEqual(testResponse({ text: `fresh ${i}` }));
    fresh.close();
  }
  const retried = await envoy.stat("cluster.wsgrpc_bridge.upstream_rq_retry_success");
  console.log(`Envoy retried ${retried} upgrade(s) on the other replica after a refused connect`);
});
