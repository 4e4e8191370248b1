// ExampleService from a React page, the way a connect-es team writes it:
// the protobuf-es service descriptor, connect-query's useQuery for a unary
// call, TanStack Query's streamedQuery for a live server stream. Nothing
// here knows that the calls go over a WebSocket; transport.ts does.

import { createClient } from "@connectrpc/connect";
import { useQuery, useTransport } from "@connectrpc/connect-query";
import { experimental_streamedQuery as streamedQuery, useQuery as useTanStackQuery } from "@tanstack/react-query";
import { useMemo, useState, useSyncExternalStore } from "react";

import { ExampleService } from "./gen/example_pb.js";
import { transport } from "./transport.js";

export function App() {
  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: 640, margin: "2rem auto", lineHeight: 1.5 }}>
      <h1>wsgrpc × connect-query</h1>
      <p>
        Socket: <strong id="connection">{useConnectionState()}</strong>
      </p>
      <Greeting />
      <LiveStream />
    </main>
  );
}

/** The connection's state, as the transport's WebSocketGRPCClient reports it. */
function useConnectionState(): string {
  return useSyncExternalStore(
    (onChange) => transport.client.onStateChange(onChange),
    () => transport.client.state,
  );
}

/** A unary call as a query: cached per input, refetched when it changes. */
function Greeting() {
  const [name, setName] = useState("Ada");
  const hello = useQuery(ExampleService.method.sayHello, { name });
  return (
    <section>
      <h2>SayHello · useQuery</h2>
      <label>
        Name <input id="name" value={name} onChange={(event) => setName(event.target.value)} />
      </label>
      <p id="greeting" data-status={hello.status}>
        {hello.isPending ? "…" : hello.isError ? hello.error.message : hello.data.message}
      </p>
    </section>
  );
}

/** A server stream as a query whose data grows with every message. */
function LiveStream() {
  const [count, setCount] = useState(5);
  const client = useClient();
  const stream = useTanStackQuery({
    queryKey: ["example.ExampleService/StreamMessages", "live", count],
    queryFn: streamedQuery({
      // The query's signal cancels the call when the query is dropped.
      streamFn: ({ signal }) => client.streamMessages({ message: "live", count }, { signal }),
    }),
  });
  const status = stream.isError ? "failed" : stream.fetchStatus === "fetching" ? "streaming" : stream.status === "success" ? "done" : "waiting";
  return (
    <section>
      <h2>StreamMessages · streamedQuery</h2>
      <label>
        Messages{" "}
        <input
          id="count"
          type="number"
          min={0}
          max={50}
          value={count}
          onChange={(event) => setCount(Number(event.target.value))}
        />
      </label>{" "}
      <button id="restart" type="button" onClick={() => void stream.refetch()}>
        Again
      </button>
      <p id="stream-status" data-status={status}>
        {stream.isError ? stream.error.message : `${status}: ${stream.data?.length ?? 0} of ${count}`}
      </p>
      <ol id="stream" start={0}>
        {stream.data?.map((item) => (
          <li key={item.index}>
            {item.message} #{item.index}
          </li>
        ))}
      </ol>
    </section>
  );
}

/** A connect-es client on the transport that TransportProvider gives. */
function useClient() {
  const transport = useTransport();
  return useMemo(() => createClient(ExampleService, transport), [transport]);
}
