// `chat-cli follow` as a test drives it: a process of its own, its output collected.
import type { ChildProcess } from "node:child_process";
import { waitFor } from "./wait.js";

/** `chat-cli follow` running: what it printed so far, Ctrl+C, and its exit code. */
export class Follower {
  out = "";
  err = "";
  /** Its exit code, once it has exited. */
  readonly exited: Promise<number | null>;

  constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (d) => (this.out += d));
    child.stderr!.on("data", (d) => (this.err += d));
    this.exited = new Promise((r) => child.on("close", (code) => r(code)));
  }

  /** Resolves once it says it is following: the history it prints first is out. */
  started(): Promise<unknown> {
    return waitFor(() => /following/.test(this.err), `"following" on stderr (got: ${this.err})`, 30_000);
  }

  /** Resolves once stderr has `pattern` `times` times. */
  said(pattern: RegExp, times = 1): Promise<unknown> {
    const g = new RegExp(pattern.source, "g");
    return waitFor(() => (this.err.match(g)?.length ?? 0) >= times, `${pattern} ${times}× on stderr (got: ${this.err})`, 30_000);
  }

  printed(text: string): Promise<unknown> {
    return waitFor(() => this.out.includes(text), `"${text}" on stdout (got: ${this.out}; stderr: ${this.err})`, 30_000);
  }

  interrupt(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
  }
}
