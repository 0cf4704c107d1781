import { monotonicNow } from "../model/clock.js";

/**
 * A take told to wait N ms, back after exactly N, must find its tokens; the
 * refill (elapsed ms times the rate) comes out a hair short of them when the
 * clock's fractions of a millisecond round (1050.1 - 1000.1 is 49.99999999999977),
 * by less than this for 100 days of uptime at 256 KiB a second.
 */
const REFILL_ROUNDING = 1e-3;

/**
 * How far past a take's own due time its turn may be promised. The spread is
 * for a few callers that wait as told; one that ignores its turn and sends
 * again at once is refused again, and without a bound each of its refusals
 * pushed the promises a token further: a minute's flood at the limit told the
 * account's other, waiting device to come back in half a minute, while the
 * flood went on taking every token as it came.
 */
const PROMISE_HORIZON_MS = 1_000;

/**
 * A token bucket: `ratePerSec` tokens a second, holding at most `burst`.
 *
 * A refused take is told when to come back, and each refused take is told a
 * later time than the one before, a token apart: told the same moment, every
 * refused caller would come back at once, one would get the token, and the
 * others would be refused again however exactly they waited as told. Timed
 * on the monotonic clock: a wall clock stepped back would owe every bucket the step.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** When the token last promised to a refused take is there (on `now`'s clock). */
  private promisedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /**
   * Takes `cost` tokens (one unless told: a byte budget takes a text's bytes);
   * returns 0 when allowed, else the milliseconds until the caller's turn. A
   * cost past the burst costs the burst: it could never be paid otherwise.
   */
  take(cost = 1): number {
    const t = this.refill();
    const n = Math.min(cost, this.burst);
    if (this.tokens + REFILL_ROUNDING >= n) {
      this.tokens -= n;
      return 0;
    }
    return this.promise(t, n);
  }

  /**
   * For something refused without a take (frames past a buffer): the
   * milliseconds until its turn, promised as a refused take's is.
   */
  later(): number {
    return this.promise(this.refill());
  }

  private refill(): number {
    const t = this.now();
    // A clock that went back (a wall clock given as `now`) refills nothing rather than owing the step,
    // and the promises keep their distance from now.
    if (t < this.last) this.promisedAt -= this.last - t;
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, t - this.last) * this.ratePerSec) / 1000);
    this.last = t;
    return t;
  }

  private promise(t: number, cost = 1): number {
    const interval = (cost * 1000) / this.ratePerSec;
    const due = t + (Math.max(0, cost - this.tokens) * 1000) / this.ratePerSec;
    this.promisedAt = Math.min(Math.max(due, this.promisedAt + interval), due + Math.max(PROMISE_HORIZON_MS, interval));
    return Math.max(1, Math.ceil(this.promisedAt - t));
  }
}
