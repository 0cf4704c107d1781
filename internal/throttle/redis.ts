import { Redis } from "ioredis";
import type { FailureCount, LoginAttempts } from "./port.js";

export interface RedisLoginAttemptsOptions {
  /** A client to use (not closed by close()); or give `url` and the adapter makes its own. */
  redis?: Redis;
  url?: string;
  /** Every key starts with this (default "chat:"). */
  keyPrefix?: string;
  windowMs: number;
  /** A command Redis has not answered in this long fails (default 1 s), and the login goes on uncounted. */
  commandTimeoutMs?: number;
}

/**
 * One counter per key, `<prefix>login-fail:<key>`, that expires with its
 * window: INCR, and PEXPIRE NX sets the expiry only on the failure that
 * opened the window, so later failures never stretch it. A success is a key
 * `<prefix>login-ok:<key>` that expires when it is no longer remembered.
 * Single-key commands, so it works on Redis Cluster too.
 */
export class RedisLoginAttempts implements LoginAttempts {
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly prefix: string;
  private readonly successPrefix: string;

  constructor(private readonly options: RedisLoginAttemptsOptions) {
    this.owned = !options.redis;
    // A Redis that keeps the connection and stops answering would hold every
    // login for ever (maxRetriesPerRequest only counts reconnects); a socket
    // silent past the timeouts is dropped and reconnected.
    const commandTimeout = options.commandTimeoutMs ?? 1_000;
    this.redis =
      options.redis ??
      new Redis(options.url ?? "redis://127.0.0.1:6379", { lazyConnect: true, maxRetriesPerRequest: 2, commandTimeout, socketTimeout: 3 * commandTimeout });
    if (this.owned) this.redis.on("error", () => {}); // failures surface on the commands, where the limiter logs them
    this.prefix = `${options.keyPrefix ?? "chat:"}login-fail:`;
    this.successPrefix = `${options.keyPrefix ?? "chat:"}login-ok:`;
  }

  async get(key: string): Promise<FailureCount> {
    const k = this.prefix + key;
    const [count, ttl] = await this.redis.multi().get(k).pttl(k).exec().then(results);
    return toCount(Number(count ?? 0), Number(ttl));
  }

  async fail(key: string): Promise<FailureCount> {
    const k = this.prefix + key;
    const [count, , ttl] = await this.redis.multi().incr(k).pexpire(k, this.options.windowMs, "NX").pttl(k).exec().then(results);
    return toCount(Number(count), Number(ttl));
  }

  async clear(key: string): Promise<void> {
    await this.redis.del(this.prefix + key);
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
function toCount(failures: number, ttlMs: number): FailureCount {
  return failures > 0 && ttlMs > 0 ? { failures, resetInMs: ttlMs } : { failures: 0, resetInMs: 0 };
}
