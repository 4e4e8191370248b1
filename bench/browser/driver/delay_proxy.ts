// A TCP proxy that puts a wide-area link between Chromium and the bridge:
// each direction holds every byte for half the round trip, counted from
// when the byte reached the proxy, and can be held to a bandwidth as well.
//
// Each direction is one queue in arrival order, drained by one timer set
// for its head, so bytes leave in the order they came; a timer per chunk
// could fire out of order. A bandwidth cap serialises the bytes first, as
// a link of that speed would: a piece leaves the serialiser no earlier
// than the one before it has, and then travels for the delay. What a queue
// may hold is bounded; past the bound the proxy stops reading from the
// sender (pause/resume), as it does while the receiver's socket is full,
// so a fast sender is held back by TCP instead of by the proxy's memory.
//
// The loopback's own TCP windows and acknowledgements are not delayed:
// what the round trip slows is what waits for an answer above TCP (a
// unary call, the protocol's credit), not TCP's own window, which on a
// real path grows to cover the bandwidth-delay product anyway. The timers
// have millisecond resolution: a byte is held its delay plus up to about a
// millisecond (`lateness` says how much, per run; bytes held back because
// the receiver was full are not counted: that is backpressure, not error).

import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

export interface LinkOptions {
  /** The round trip the link adds, in ms; each direction gets half. */
  rttMs: number;
  /** The link's speed in each direction, Mbit/s; undefined for no cap. */
  mbit?: number | undefined;
}

/** Bytes a direction may hold before the proxy stops reading its sender. */
const QUEUE_BOUND_BYTES = 4 * 1024 * 1024;
/**
 * Under a bandwidth cap, chunks are cut to this size before they are
 * serialised, so that a 64 KiB read does not arrive as one lump 26 ms
 * later at 20 Mbit/s: about what a real link's segments do, at the
 * timers' resolution.
 */
const PIECE_BYTES = 4 * 1024;

interface Held {
  /** performance.now() at which the bytes may go on. */
  dueMs: number;
  data: Buffer;
}

/** How late, past their due time, bytes left: the timers' error. */
export interface Lateness {
  pieces: number;
  totalMs: number;
  maxMs: number;
}

/** One direction of one connection: from `source` to `sink`, held. */
class Direction {
  readonly #queue: Held[] = [];
  #head = 0;
  #queuedBytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the serialiser is free again (bandwidth cap only). */
  #linkFreeMs = 0;
  #waitingForDrain = false;
  #sourceEnded = false;
  #closed = false;

  constructor(
    private readonly source: Socket,
    private readonly sink: Socket,
    private readonly delayMs: number,
    private readonly bytesPerMs: number | undefined,
    private readonly lateness: Lateness,
  ) {
    source.on("data", (chunk: Buffer) => this.#arrive(chunk));
    source.on("end", () => {
      this.#sourceEnded = true;
      this.#drain(true);
    });
    sink.on("drain", () => {
      this.#waitingForDrain = false;
      this.#drain(false);
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #arrive(chunk: Buffer): void {
    const now = performance.now();
    if (this.bytesPerMs === undefined) {
      this.#push({ dueMs: now + this.delayMs, data: chunk });
    } else {
      for (let offset = 0; offset < chunk.length; offset += PIECE_BYTES) {
        const piece = chunk.subarray(offset, offset + PIECE_BYTES);
        this.#linkFreeMs = Math.max(now, this.#linkFreeMs) + piece.length / this.bytesPerMs;
        this.#push({ dueMs: this.#linkFreeMs + this.delayMs, data: piece });
      }
    }
    if (this.#queuedBytes > QUEUE_BOUND_BYTES) {
      this.source.pause();
    }
    this.#schedule();
  }

  #push(held: Held): void {
    this.#queue.push(held);
    this.#queuedBytes += held.data.length;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#waitingForDrain || this.#closed) {
      return;
    }
    const head = this.#queue[this.#head];
    if (head === undefined) {
      return;
    }
    const waitMs = head.dueMs - performance.now();
    if (waitMs <= 0) {
      this.#drain(true);
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#drain(true);
    }, waitMs);
  }

  /**
   * Sends on every piece that is due, until the sink is full. `onTime`:
   * whether the pieces' lateness is the proxy's own (a timer, an arrival),
   * not the receiver's (it was full until now).
   */
  #drain(onTime: boolean): void {
    if (this.#closed) {
      return;
    }
    const now = performance.now();
    for (;;) {
      const head = this.#queue[this.#head];
      if (head === undefined || head.dueMs > now) {
        break;
      }
      this.#head += 1;
      this.#queuedBytes -= head.data.length;
      if (onTime) {
        const late = now - head.dueMs;
        this.lateness.pieces += 1;
        this.lateness.totalMs += late;
        this.lateness.maxMs = Math.max(this.lateness.maxMs, late);
      }
      if (!this.sink.write(head.data)) {
        this.#waitingForDrain = true;
        break;
      }
    }
    // Compact now and then rather than shift() per piece.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.#queuedBytes <= QUEUE_BOUND_BYTES / 2 && this.source.isPaused()) {
      this.source.resume();
    }
    if (this.#head === this.#queue.length && this.#sourceEnded && !this.#waitingForDrain) {
      // Everything the sender sent before its FIN is through: pass the FIN on.
      this.sink.end();
      return;
    }
    this.#schedule();
  }
}

export interface DelayProxy {
  /** Where to connect instead of the target: `host:port`. */
  address: string;
  link: LinkOptions;
  /** The timers' error since the last `resetLateness`. */
  lateness: Lateness;
  resetLateness(): void;
  close(): Promise<void>;
}

/** Listens on a free loopback port and forwards each connection to `target` (`host:port`) over `link`. */
export async function startDelayProxy(target: string, link: LinkOptions): Promise<DelayProxy> {
  const separator = target.lastIndexOf(":");
  const [host, port] = [target.slice(0, separator), Number(target.slice(separator + 1))];
  const delayMs = link.rttMs / 2;
  // Mbit/s = 1000 bits/ms ÷ 8 = 125 bytes/ms per Mbit/s.
  const bytesPerMs = link.mbit === undefined ? undefined : link.mbit * 125;
  const lateness: Lateness = { pieces: 0, totalMs: 0, maxMs: 0 };
  const sockets = new Set<Socket>();

  // Half-open sockets, so that a FIN is passed on in order, after the bytes
  // before it, instead of closing the other side at once.
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const upstream = connect({ host, port, noDelay: true, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    const directions = [
      new Direction(client, upstream, delayMs, bytesPerMs, lateness),
      new Direction(upstream, client, delayMs, bytesPerMs, lateness),
    ];
    // A failure on either side ends both at once (a reset is not delayed;
    // no run depends on one).
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", fail);
      socket.on("close", () => {
        sockets.delete(socket);
        if (client.destroyed && upstream.destroyed) {
          directions.forEach((direction) => direction.close());
        }
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port: listening } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${listening}`,
    link,
    lateness,
    resetLateness() {
      Object.assign(lateness, { pieces: 0, totalMs: 0, maxMs: 0 });
    },
    close() {
      for (const socket of sockets) {
        socket.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
