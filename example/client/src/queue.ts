/**
 * Messages typed by a person, as the `AsyncIterable` a client-streaming or
 * bidi call reads its requests from: `push` hands one to the call (or keeps
 * it until the call asks), `close` ends the input, which half-closes the
 * call.
 */
export class MessageQueue<T> implements AsyncIterable<T> {
  readonly #buffered: T[] = [];
  #waiting: ((result: IteratorResult<T>) => void) | null = null;
  #closed = false;

  get closed(): boolean {
    return this.#closed;
  }

  push(message: T): void {
    if (this.#closed) {
      throw new Error("the queue is closed");
    }
    const waiting = this.#waiting;
    if (waiting !== null) {
      this.#waiting = null;
      waiting({ value: message, done: false });
    } else {
      this.#buffered.push(message);
    }
  }

  close(): void {
    this.#closed = true;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const message = this.#buffered.shift();
        if (message !== undefined) {
          return Promise.resolve({ value: message, done: false });
        }
        if (this.#closed) {
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve) => {
          this.#waiting = resolve;
        });
      },
      // The call stopped reading (it failed or was cancelled).
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
