import { LruMap } from "../cache/lru-map.js";
import type { FailureCount, LoginAttempts } from "./port.js";
import { monotonicNow } from "../model/clock.js";

// Windows are durations within this process's life, so they are timed on the
// monotonic clock: a wall clock stepped back (NTP, a restored VM) stretched a
// lockout by the step, and told the owner to wait hours; one stepped forward
// ended it early for a guesser.

interface Window {
  failures: number;
  endsAtMs: number;
}

/**
 * LoginAttempts in process memory, for chatd. Bounded: past `capacity` keys
 * the least recently failed is forgotten, so a flood of made-up names costs
 * memory up to the bound and no more.
 */
export class MemoryLoginAttempts implements LoginAttempts {
  private readonly windows: LruMap<string, Window>;
  /** Successful sign-ins: key -> until when they are remembered. */
  private readonly successes: LruMap<string, number>;

  constructor(
    private readonly windowMs: number,
    options: { capacity?: number; now?: () => number } = {},
  ) {
    this.windows = new LruMap(options.capacity ?? 100_000);
    this.successes = new LruMap(options.capacity ?? 100_000);
    this.now = options.now ?? monotonicNow;
  }

  private readonly now: () => number;

  async get(key: string): Promise<FailureCount> {
    return this.read(this.windows.peek(key));
  }

  async fail(key: string): Promise<FailureCount> {
    let w = this.windows.peek(key);
    if (!w || w.endsAtMs <= this.now()) w = { failures: 0, endsAtMs: this.now() + this.windowMs };
    w.failures += 1;
    this.windows.set(key, w);
    return this.read(w);
  }

  async clear(key: string): Promise<void> {
    this.windows.delete(key);
  }

  async rememberSuccess(key: string, ms: number): Promise<void> {
    this.successes.set(key, this.now() + ms);
  }

  async succeededBefore(key: string): Promise<boolean> {
    return (this.successes.peek(key) ?? 0) > this.now();
  }

  async close(): Promise<void> {}

  private read(w: Window | undefined): FailureCount {
    const left = w ? w.endsAtMs - this.now() : 0;
    return left > 0 ? { failures: w!.failures, resetInMs: left } : { failures: 0, resetInMs: 0 };
  }
}
