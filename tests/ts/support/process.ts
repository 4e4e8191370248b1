// Child processes for the tests — the transport's (tests/ts) and the
// browser's (example/client/e2e): output captured, waited for, stopped by
// PID, and killed when the test run exits, however it ends.

import { type ChildProcess, spawn } from "node:child_process";

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

// tracing colours its output unless told otherwise; strip what is left.
const ANSI_ESCAPE = /\u001b\[[0-9;]*m/g;

export interface StartOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Where it runs; by default where the test run does. */
  cwd?: string;
  /**
   * In a session of its own, as `setsid` would put it: signals sent to the
   * test run's process group do not reach it; only its PID stops it.
   */
  ownSession?: boolean;
}

export class Process {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #exit: Promise<void>;
  readonly #listeners = new Set<() => void>();
  #output = "";
  #ended = false;

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.#child = child;
    running.add(child);
    const collect = (chunk: string) => {
      this.#output += chunk.replace(ANSI_ESCAPE, "");
      this.#notify();
    };
    child.stdout?.setEncoding("utf8").on("data", collect);
    child.stderr?.setEncoding("utf8").on("data", collect);
    this.#exit = new Promise((resolve) => {
      const ended = () => {
        if (!this.#ended) {
          this.#ended = true;
          running.delete(child);
          this.#notify();
        }
        resolve();
      };
      child.once("exit", ended);
      // It could not be started at all.
      child.once("error", (error) => {
        this.#output += `could not start: ${error.message}\n`;
        ended();
      });
    });
  }

  static start(name: string, command: string, args: string[], options: StartOptions = {}): Process {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: options.ownSession ?? false,
    });
    return new Process(name, child);
  }

  get pid(): number {
    if (this.#child.pid === undefined) {
      throw new Error(`${this.name} has no PID: it did not start\n${this.#output}`);
    }
    return this.#child.pid;
  }

  /** Everything it wrote to stdout and stderr so far. */
  get output(): string {
    return this.#output;
  }

  get exited(): boolean {
    return this.#ended;
  }

  /**
   * Waits until its output (from character `from` on) matches `pattern`;
   * fails if it exits first.
   */
  waitForOutput(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} did not write ${pattern} within ${timeoutMs} ms:\n${this.#output}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      const check = () => {
        const match = pattern.exec(this.#output.slice(from));
        if (match !== null) {
          done();
          resolve(match);
        } else if (this.#ended) {
          done();
          reject(new Error(`${this.name} exited before writing ${pattern}:\n${this.#output}`));
        }
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Sends `signal` (unless it has exited) and returns at once. */
  signal(signal: NodeJS.Signals): void {
    if (!this.#ended) {
      this.#child.kill(signal);
    }
  }

  /** Waits until it exits by itself, and returns its exit code. */
  async exitCode(timeoutMs = 10_000): Promise<number | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} still runs after ${timeoutMs} ms:\n${this.#output}`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.#child.exitCode;
  }

  /** Sends `signal` (unless it has exited) and waits until it exits. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (!this.#ended) {
      this.#child.kill(signal);
    }
    await this.#exit;
  }

  /** Stops it with SIGTERM, then SIGKILL if it lingers. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.#ended) {
      return;
    }
    const killer = setTimeout(() => {
      if (!this.#ended) {
        this.#child.kill("SIGKILL");
      }
    }, graceMs);
    await this.kill("SIGTERM");
    clearTimeout(killer);
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) {
      listener();
    }
  }
}
