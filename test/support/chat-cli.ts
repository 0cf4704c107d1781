// `chat-cli follow` as a test drives it: a process of its own, its output collected.
import type { ChildProcess } from "node:child_process";
import { waitFor } from "./wait.js";

/** `chat-cli follow` running: what it printed so far, Ctrl+C, and its exit code. */
export class Follower {
  out = "";
  err = "";
  /** Its exit code, once it has exited. */
  readonly exited: Promise<number | null>;
  /** Its exit code once it has exited (null: ended by a signal); undefined before. */
  exitCode: number | null | undefined;
  /** What it wrote, each piece with when (ms since it started): a test that timed out says where it was by it. */
  private readonly timeline: string[] = [];
  private readonly startedAt = performance.now();

  constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (d) => {
      this.out += d;
      this.note("out", String(d));
    });
    child.stderr!.on("data", (d) => {
      this.err += d;
      this.note("err", String(d));
    });
    this.exited = new Promise((r) =>
      child.on("close", (code, signal) => {
        this.exitCode = code;
        this.note("exit", `${code ?? signal}`);
        r(code);
      }),
    );
  }

  private note(what: string, text: string): void {
    this.timeline.push(`${Math.round(performance.now() - this.startedAt)} ms ${what}: ${text.trimEnd()}`);
  }

  /** Everything it wrote and did so far, timed, with the test's own steps (`step`) among it. */
  transcript(): string {
    return this.timeline.join("\n");
  }

  /** Marks a test's step in the transcript. */
  step(what: string): void {
    this.note("test", what);
  }

  /** Resolves once it says it is following: the history it prints first is out. */
  started(): Promise<unknown> {
    return this.waiting(`"following" on stderr`, () => waitFor(() => /following/.test(this.err), `"following" on stderr (got: ${this.err})`, 30_000));
  }

  /** Resolves once stderr has `pattern` `times` times. */
  said(pattern: RegExp, times = 1): Promise<unknown> {
    const g = new RegExp(pattern.source, "g");
    return this.waiting(`${pattern} ${times}× on stderr`, () => waitFor(() => (this.err.match(g)?.length ?? 0) >= times, `${pattern} ${times}× on stderr (got: ${this.err})`, 30_000));
  }

  printed(text: string): Promise<unknown> {
    return this.waiting(`"${text.trimEnd()}" on stdout`, () => waitFor(() => this.out.includes(text), `"${text}" on stdout (got: ${this.out}; stderr: ${this.err})`, 30_000));
  }

  private async waiting<T>(what: string, wait: () => Promise<T>): Promise<T> {
    this.step(`waits for ${what}`);
    const got = await wait();
    this.step(`saw ${what}`);
    return got;
  }

  interrupt(): void {
    this.step("Ctrl+C");
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
  }
}
