import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Id } from "../model/types.js";
import { shownRedisUrl } from "../config/engines.js";
import { OutageLog } from "../observability/outage-log.js";
import { validateRoute } from "./memory.js";
import type { SessionRoutes } from "./port.js";

export interface RedisSessionRoutesOptions {
  /** A client to use (not closed by close()); or give `url` and the adapter makes its own. */
  redis?: Redis;
  /** redis://host:port, used when no client is given. */
  url?: string;
  /** Every key starts with this (default "chat:"). */
  keyPrefix?: string;
  /** An entry lives this long after its last add/refresh (default 60 s; refresh at most every third of it). */
  ttlMs?: number;
  /** Users per pipeline in refresh and lookup (default 1000). */
  chunkSize?: number;
  /** A command Redis has not answered in this long fails (default 1 s; a chunk of 1,000 users takes milliseconds). */
  commandTimeoutMs?: number;
  logger?: Logger;
}

/**
 * Add or re-assert one server's entry in a user's hash, with Redis's own
 * clock: field = server id, value = expiry in ms. Fields of servers that
 * stopped refreshing are dropped on the way, and the key itself expires with
 * the last live field, so a user whose servers all died leaves nothing behind.
 * A write never leaves the value an earlier one left (at least a ms past it),
 * so the value returned tells this write apart from any later one (REMOVE).
 */
const TOUCH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if before ~= nil and before >= expiry then expiry = before + 1 end
redis.call('HSET', KEYS[1], ARGV[1], expiry)
local all = redis.call('HGETALL', KEYS[1])
local latest = expiry
for i = 1, #all, 2 do
  local e = tonumber(all[i + 1])
  if e == nil or e <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif e > latest then
    latest = e
  end
end
redis.call('PEXPIREAT', KEYS[1], latest)
return expiry
`;

/**
 * Deletes one server's entry of a user if it still holds the value this
 * process last wrote (ARGV[2]; empty: whatever it holds). Another process
 * under the same server id (a restart, the old one still draining) may have
 * written it since: it is that process's route, not ours to delete.
 */
const REMOVE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v == false or (ARGV[2] ~= '' and tonumber(v) ~= tonumber(ARGV[2])) then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`;

type RoutesClient = Redis & {
  routeTouch(key: string, serverId: string, ttlMs: number): Promise<number>;
  routeRemove(key: string, serverId: string, written: string): Promise<number>;
};

/**
 * Session routes in Redis: one hash per user, `<prefix>route:<userId>`, whose
 * fields are the ids of the chat servers holding a session of that user and
 * whose values are the entries' expiry times (ms, Redis clock). Each entry
 * expires `ttlMs` after its server last added or refreshed it, independently
 * of the other servers' entries of the same user; lookups ignore expired
 * fields and run as one pipeline (TIME + HGETALL per user) per chunk.
 *
 * Every operation touches a single key, so the layout also works on Redis
 * Cluster (where the per-user commands of a pipeline would be split by slot).
 *
 * A remove deletes an entry only if this adapter (this process) wrote it
 * last: it remembers the value of each entry it wrote, and forgets it when a
 * write's answer was lost (then a remove deletes whatever the entry holds).
 */
export class RedisSessionRoutes implements SessionRoutes {
  readonly ttlMs: number;
  private readonly redis: RoutesClient;
  private readonly ownsClient: boolean;
  private readonly prefix: string;
  private readonly chunk: number;
  private lastError: Error | undefined;
  private readonly outage: OutageLog;
  private readonly resetListeners: (() => void)[] = [];
  private readies = 0;
  /** server id -> user -> the value this process last wrote to the entry. */
  private readonly written = new Map<string, Map<Id, number>>();

  constructor(private readonly options: RedisSessionRoutesOptions) {
    this.outage = new OutageLog({
      logger: options.logger,
      failed: "redis (session routes) connection error; retrying",
      failedAgain: "redis (session routes) connection error",
      recovered: "redis (session routes) answers again",
    });
    let client: Redis;
    if (options.redis) {
      client = options.redis;
      this.ownsClient = false;
    } else {
      if (!options.url) throw new Error("RedisSessionRoutes needs a client or a url");
      // maxRetriesPerRequest only counts reconnects: a Redis that keeps the
      // connection and stops answering (paused, a frozen VM, a partition)
      // would hold a session's start, a lookup or a health check for ever.
      // Its commands fail after the timeout instead, and a socket silent for
      // longer is dropped, so the reconnect (a reset: routes re-asserted,
      // sessions caught up) covers what failed meanwhile.
      const commandTimeout = options.commandTimeoutMs ?? 1_000;
      client = new Redis(options.url, {
        lazyConnect: true,
        enableAutoPipelining: true,
        maxRetriesPerRequest: 3,
        commandTimeout,
        socketTimeout: 3 * commandTimeout,
        connectTimeout: 3_000,
        retryStrategy: (times) => Math.min(times * 100, 2_000),
      });
      // ioredis reports every failed reconnect (up to one each 2 s through an outage).
      client.on("error", (err: Error) => {
        this.lastError = err;
        this.outage.failed(err);
      });
      this.ownsClient = true;
    }
    // Every "ready" after the first is a reconnect: the server may have
    // restarted empty, since routes are soft state.
    client.on("ready", () => {
      this.outage.succeeded();
      if (this.readies++ === 0) return;
      for (const l of this.resetListeners) l();
    });
    if (!(client as unknown as Partial<RoutesClient>).routeTouch) client.defineCommand("routeTouch", { numberOfKeys: 1, lua: TOUCH });
    if (!(client as unknown as Partial<RoutesClient>).routeRemove) client.defineCommand("routeRemove", { numberOfKeys: 1, lua: REMOVE });
    this.redis = client as RoutesClient;
    this.prefix = options.keyPrefix ?? "chat:";
    this.ttlMs = options.ttlMs ?? 60_000;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1) throw new RangeError(`ttlMs must be a positive integer, got ${this.ttlMs}`);
    this.chunk = options.chunkSize ?? 1000;
  }

  /** Connects an own client (lazy); rejects if Redis cannot be reached. Optional: commands connect on demand. */
  async connect(): Promise<void> {
    if (this.redis.status !== "wait") return;
    try {
      await this.redis.connect();
    } catch (err) {
      const why = this.lastError?.message ?? (err as Error).message;
      throw new Error(`cannot connect to Redis at ${shownRedisUrl(this.options.url ?? "")}: ${why}`);
    }
  }

  onReset(listener: () => void): void {
    this.resetListeners.push(listener);
  }

  /** The Redis key of a user's routes. */
  keyOf(userId: Id): string {
    return `${this.prefix}route:${userId.toString()}`;
  }

  async add(userId: Id, serverId: string): Promise<void> {
    validateRoute(userId, serverId);
    const written = this.writtenBy(serverId);
    try {
      written.set(userId, await this.redis.routeTouch(this.keyOf(userId), serverId, this.ttlMs));
    } catch (err) {
      written.delete(userId);
      throw err;
    }
  }

  async remove(userId: Id, serverId: string): Promise<void> {
    validateRoute(userId, serverId);
    const written = this.writtenBy(serverId);
    await this.redis.routeRemove(this.keyOf(userId), serverId, String(written.get(userId) ?? ""));
    written.delete(userId);
    if (written.size === 0) this.written.delete(serverId);
  }

  async refresh(serverId: string, userIds: readonly Id[]): Promise<void> {
    for (const u of userIds) validateRoute(u, serverId);
    const written = this.writtenBy(serverId);
    for (let i = 0; i < userIds.length; i += this.chunk) {
      const users = userIds.slice(i, i + this.chunk);
      const pipe = this.redis.pipeline() as ReturnType<Redis["pipeline"]> & {
        routeTouch(key: string, serverId: string, ttlMs: number): unknown;
      };
      for (const u of users) pipe.routeTouch(this.keyOf(u), serverId, this.ttlMs);
      let results: [Error | null, unknown][] | null;
      try {
        results = await pipe.exec();
      } catch (err) {
        for (const u of users) written.delete(u);
        throw err;
      }
      users.forEach((u, j) => {
        const [err, value] = results?.[j] ?? [new Error("discarded")];
        if (err) written.delete(u);
        else written.set(u, value as number);
      });
      throwFirst(results);
    }
  }

  async lookup(userIds: readonly Id[]): Promise<Map<Id, string[]>> {
    const out = new Map<Id, string[]>();
    const unique = [...new Set(userIds)];
    for (let i = 0; i < unique.length; i += this.chunk) {
      const users = unique.slice(i, i + this.chunk);
      const pipe = this.redis.pipeline().time();
      for (const u of users) pipe.hgetall(this.keyOf(u));
      const results = throwFirst(await pipe.exec());
      const [sec, usec] = results[0] as [string, string];
      const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      users.forEach((u, j) => {
        const fields = results[j + 1] as Record<string, string>;
        const live = Object.keys(fields).filter((s) => Number(fields[s]) > now);
        if (live.length > 0) out.set(u, live.sort());
      });
    }
    return out;
  }

  private writtenBy(serverId: string): Map<Id, number> {
    let written = this.written.get(serverId);
    if (!written) this.written.set(serverId, (written = new Map()));
    return written;
  }

  /** Resolves when Redis answers (health checks). */
  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    if (!this.ownsClient) return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

function throwFirst(results: [Error | null, unknown][] | null): unknown[] {
  if (!results) throw new Error("redis pipeline was discarded");
  for (const [err] of results) if (err) throw err;
  return results.map(([, v]) => v);
}
