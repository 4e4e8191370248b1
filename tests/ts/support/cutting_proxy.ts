// A TCP proxy between a client and the bridge that can cut every
// connection through it at once, as a network change or a proxy's idle
// cut would: both sockets destroyed, with no WebSocket close frame, so the
// bridge sees its socket drop and the client sees code 1006. The target
// can be changed, to send the next connections to another bridge.

import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";

export class CuttingProxy {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  #target: { host: string; port: number };
  /** Connections accepted so far. */
  accepted = 0;
  /** Cuts made so far. */
  cuts = 0;
  /** Bytes that went from the bridge to the client, over every connection. */
  bytesDown = 0;
  // Cuts to make once `bytesDown` passes each, in order.
  #cutAt: number[] = [];

  private constructor(server: Server, target: { host: string; port: number }) {
    this.#server = server;
    this.#target = target;
    server.on("connection", (client) => this.#accept(client));
  }

  /** A proxy on a loopback port to `target`, a `ws://host:port/…` URL. */
  static async start(target: string): Promise<CuttingProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return new CuttingProxy(server, hostPort(target));
  }

  /** `url` (a `ws://` URL of the target) with the proxy's host and port instead. */
  url(url: string): string {
    const proxied = new URL(url);
    proxied.host = `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return proxied.toString();
  }

  /** Where new connections go from now on. */
  retarget(target: string): void {
    this.#target = hostPort(target);
  }

  /** Cuts every connection each time the bytes sent to the client pass one of `thresholds`. */
  cutAfterBytes(thresholds: number[]): void {
    this.#cutAt = [...thresholds].sort((a, b) => a - b);
  }

  /** Connections open through the proxy now. */
  get open(): number {
    return this.#pairs.size;
  }

  /** Destroys every connection through the proxy, both sides, at once. */
  cut(): void {
    this.cuts += 1;
    for (const [client, upstream] of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.accepted += 1;
    const upstream = connect(this.#target.port, this.#target.host);
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // Backpressure both ways, as a direct connection has.
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on("data", (chunk: Buffer) => {
      this.bytesDown += chunk.length;
      if (this.#cutAt.length > 0 && this.bytesDown >= this.#cutAt[0]!) {
        this.#cutAt.shift();
        // After this chunk has gone on: a cut in the middle of the stream.
        setImmediate(() => this.cut());
      }
    });
    const end = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end);
    upstream.on("error", end);
    client.on("close", end);
    upstream.on("close", end);
  }
}

function hostPort(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}
