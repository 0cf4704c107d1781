import { Redis } from "ioredis";
import { FailedLogins } from "./failed-logins.js";
import type { Counted, LoginAttempts, WindowCount, WindowCounts } from "./port.js";

interface RedisOptions {
  /** A client to use (not closed by close()); or give `url` and the adapter makes its own. */
  redis?: Redis;
  url?: string;
  /** Every key starts with this (default "chat:"). */
  keyPrefix?: string;
  windowMs: number;
  /** A command Redis has not answered in this long fails (default 1 s), and the caller goes on uncounted. */
  commandTimeoutMs?: number;
}

export interface RedisWindowCountsOptions extends RedisOptions {
  /** What is counted, the middle of every key: `<prefix><name>:<key>`. */
  name: string;
}

export type RedisLoginAttemptsOptions = RedisOptions;

/** The given client, or one of the adapter's own (`owned`, to be closed with it). */
function client(options: RedisOptions): { redis: Redis; owned: boolean } {
  if (options.redis) return { redis: options.redis, owned: false };
  // A Redis that keeps the connection and stops answering would hold every
  // call for ever (maxRetriesPerRequest only counts reconnects); a socket
  // silent past the timeouts is dropped and reconnected.
  const commandTimeout = options.commandTimeoutMs ?? 1_000;
  const redis = new Redis(options.url ?? "redis://127.0.0.1:6379", { lazyConnect: true, maxRetriesPerRequest: 2, commandTimeout, socketTimeout: 3 * commandTimeout });
  redis.on("error", () => {}); // failures surface on the commands, where the callers log them
  return { redis, owned: true };
}

// Only while the window is open, so a late take-back never makes a count
// without an expiry (DECR of a missing key would leave -1 for ever); and only
// from the window the add counted in, the one that still ends when it did
// then (ARGV[1], PEXPIRETIME): one opened since ends later.
const TAKE_BACK = `if tonumber(redis.call("GET", KEYS[1]) or "0") > 0 and redis.call("PTTL", KEYS[1]) > 0 and redis.call("PEXPIRETIME", KEYS[1]) == tonumber(ARGV[1]) then redis.call("DECR", KEYS[1]) end return 0`;

// Redis keeps a key until the millisecond after its expiry, answering PTTL 0
// meanwhile: a window that get() already reads as closed. An add in that
// millisecond opens the next window rather than counting in the closing one,
// where it would be reported as no count at all (and a take-back of it skipped).
// PTTL is read once: Redis 7.0 expires keys on the script's start time but
// answers PTTL on the running clock, so a second read could say 0 of the
// window this add just counted in.
const ADD = `local ttl = redis.call("PTTL", KEYS[1])
if ttl == 0 then redis.call("DEL", KEYS[1]) end
local count = redis.call("INCR", KEYS[1])
if ttl <= 0 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {count, ttl, redis.call("PEXPIRETIME", KEYS[1])}`;

/**
 * One counter per key, `<prefix><name>:<key>`, that expires with its window:
 * INCR, and the expiry is set only by the event that opened the window, so
 * later ones never stretch it (one script, so nothing runs between the two).
 * Single-key commands, so it works on Redis Cluster too.
 */
export class RedisWindowCounts implements WindowCounts {
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly prefix: string;

  constructor(private readonly options: RedisWindowCountsOptions) {
    ({ redis: this.redis, owned: this.owned } = client(options));
    this.prefix = `${options.keyPrefix ?? "chat:"}${options.name}:`;
  }

  async get(key: string): Promise<WindowCount> {
    const k = this.prefix + key;
    const [count, ttl] = await this.redis.multi().get(k).pttl(k).exec().then(results);
    return toCount(Number(count ?? 0), Number(ttl));
  }

  async add(key: string): Promise<Counted> {
    const k = this.prefix + key;
    const [count, ttl, endsAt] = (await this.redis.eval(ADD, 1, k, this.options.windowMs)) as [number, number, number];
    return { ...toCount(Number(count), Number(ttl)), windowEndsAt: Number(endsAt) };
  }

  async takeBack(key: string, counted: Counted): Promise<void> {
    await this.redis.eval(TAKE_BACK, 1, this.prefix + key, counted.windowEndsAt);
  }

  async clear(key: string): Promise<void> {
    await this.redis.del(this.prefix + key);
  }

  async close(): Promise<void> {
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * Failures counted in RedisWindowCounts under `<prefix>login-fail:`. A
 * success is a key `<prefix>login-ok:<key>` that expires when it is no
 * longer remembered.
 */
export class RedisLoginAttempts extends FailedLogins implements LoginAttempts {
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly successPrefix: string;

  constructor(options: RedisLoginAttemptsOptions) {
    const { redis, owned } = client(options);
    super(new RedisWindowCounts({ ...options, redis, name: "login-fail" }));
    this.redis = redis;
    this.owned = owned;
    this.successPrefix = `${options.keyPrefix ?? "chat:"}login-ok:`;
  }

  async rememberSuccess(key: string, ms: number): Promise<void> {
    await this.redis.set(this.successPrefix + key, "1", "PX", ms);
  }

  async succeededBefore(key: string): Promise<boolean> {
    return (await this.redis.exists(this.successPrefix + key)) === 1;
  }

  async close(): Promise<void> {
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

function results(r: [Error | null, unknown][] | null): unknown[] {
  if (!r) throw new Error("redis transaction aborted");
  return r.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/** PTTL is -2 for a missing key: no window open. */
function toCount(count: number, ttlMs: number): WindowCount {
  return count > 0 && ttlMs > 0 ? { count, resetInMs: ttlMs } : { count: 0, resetInMs: 0 };
}
