import { LruMap } from "../cache/lru-map.js";
import { FailedLogins } from "./failed-logins.js";
import type { Counted, LoginAttempts, WindowCount, WindowCounts } from "./port.js";
import { monotonicNow } from "../model/clock.js";

// Windows are durations within this process's life, so they are timed on the
// monotonic clock: a wall clock stepped back (NTP, a restored VM) stretched a
// lockout by the step, and told the owner to wait hours; one stepped forward
// ended it early for a guesser.

interface Window {
  count: number;
  endsAtMs: number;
}

interface MemoryOptions {
  capacity?: number;
  now?: () => number;
}

/**
 * WindowCounts in process memory, for chatd. Bounded: past `capacity` keys
 * the least recently counted is forgotten, so a flood of made-up keys costs
 * memory up to the bound and no more.
 */
export class MemoryWindowCounts implements WindowCounts {
  private readonly windows: LruMap<string, Window>;
  private readonly now: () => number;

  constructor(
    private readonly windowMs: number,
    options: MemoryOptions = {},
  ) {
    this.windows = new LruMap(options.capacity ?? 100_000);
    this.now = options.now ?? monotonicNow;
  }

  async get(key: string): Promise<WindowCount> {
    return this.read(this.open(key));
  }

  async add(key: string): Promise<Counted> {
    const w = this.open(key) ?? { count: 0, endsAtMs: this.now() + this.windowMs };
    w.count += 1;
    this.windows.set(key, w);
    return { ...this.read(w), windowEndsAt: w.endsAtMs };
  }

  async takeBack(key: string, counted: Counted): Promise<void> {
    const w = this.open(key);
    if (w && w.count > 0 && w.endsAtMs === counted.windowEndsAt) w.count -= 1;
  }

  async clear(key: string): Promise<void> {
    this.windows.delete(key);
  }

  async close(): Promise<void> {}

  private open(key: string): Window | undefined {
    const w = this.windows.peek(key);
    return w && w.endsAtMs > this.now() ? w : undefined;
  }

  private read(w: Window | undefined): WindowCount {
    return w ? { count: w.count, resetInMs: w.endsAtMs - this.now() } : { count: 0, resetInMs: 0 };
  }
}

/** LoginAttempts in process memory, for chatd, bounded as MemoryWindowCounts. */
export class MemoryLoginAttempts extends FailedLogins implements LoginAttempts {
  /** Successful sign-ins: key -> until when they are remembered. */
  private readonly successes: LruMap<string, number>;
  private readonly now: () => number;

  constructor(windowMs: number, options: MemoryOptions = {}) {
    super(new MemoryWindowCounts(windowMs, options));
    this.successes = new LruMap(options.capacity ?? 100_000);
    this.now = options.now ?? monotonicNow;
  }

  async rememberSuccess(key: string, ms: number): Promise<void> {
    this.successes.set(key, this.now() + ms);
  }

  async succeededBefore(key: string): Promise<boolean> {
    return (this.successes.peek(key) ?? 0) > this.now();
  }

  async close(): Promise<void> {}
}
