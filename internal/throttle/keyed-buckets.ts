import { LruMap } from "../cache/lru-map.js";
import { TokenBucket } from "./token-bucket.js";

/**
 * A token bucket per key (a client address, an account), at most `capacity`
 * of them: the least recently used goes first, which at worst hands a quiet
 * key a full bucket again.
 */
export class KeyedBuckets {
  private readonly buckets: LruMap<string, TokenBucket>;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    /** TokenBucket's own monotonic clock unless given (tests). */
    private readonly now?: () => number,
    capacity = 100_000,
  ) {
    this.buckets = new LruMap(capacity);
  }

  /** Takes `cost` tokens of `key`'s bucket; 0 when allowed, else the milliseconds until they are there. */
  take(key: string, cost = 1): number {
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(this.ratePerSec, this.burst, this.now);
      this.buckets.set(key, b);
    }
    return b.take(cost);
  }
}
