/**
 * The last write a file refused, for a health check: a full disk still
 * answers reads, so only failed writes tell. It fails from such a write until
 * one goes through, or for `windowMs` after it when nothing is written.
 */
export class WriteFailures {
  private last?: { at: number; err: unknown };
  private count = 0;

  constructor(private readonly windowMs = 60_000) {}

  failed(err: unknown): void {
    this.count++;
    this.last = { at: Date.now(), err };
  }

  /** A write went through. */
  succeeded(): void {
    this.last = undefined;
  }

  /** Writes that failed since the start. */
  get total(): number {
    return this.count;
  }

  /** Throws `<what> failing (last N s ago: why)` while the last write failed within the window. */
  check(what: string, windowMs = this.windowMs): void {
    const failure = this.last;
    if (!failure) return;
    const ms = Date.now() - failure.at;
    if (ms >= windowMs) return;
    const why = failure.err instanceof Error ? failure.err.message : String(failure.err);
    throw new Error(`${what} failing (last ${Math.round(ms / 1000)} s ago: ${why})`);
  }
}
