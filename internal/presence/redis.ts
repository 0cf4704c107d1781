import { Redis, type Cluster, type RedisOptions } from "ioredis";
import type { Id } from "../model/types.js";
import type { LastSeen, LastSeenLog } from "./last-seen.js";
import type { PresenceFlip, PresenceStore, TouchOptions, UserPresence } from "./port.js";

/**
 * PresenceStore on Redis (distributed mode). State is soft: losing it (a
 * Redis restart without persistence) costs at most the heartbeats it takes
 * to rebuild it, and every key lives in one hash slot per shard so the
 * scripts also run on Redis Cluster. Last-seen times are not soft to the
 * people who read them: each offline flip is also written to `lastSeenLog`
 * (Cassandra), read for a user Redis holds nothing of.
 *
 * Keys (S = user id mod `shards`, in braces as the cluster hash tag):
 *   <prefix>{S}:u:<userId>  hash
 *       d:<deviceId> = "<lastAliveMs>:<expiresAtMs>"  one field per device
 *       on           = "1" while the user's aggregate is online
 *       seen         = last-seen ms, written when the user goes offline
 *       v            = the version of the user's latest flip
 *     No TTL while online; PEXPIRE lastSeenTtlMs once offline.
 *   <prefix>{S}:exp         sorted set: member userId, score = the latest
 *                           expiry among the user's devices (the sweep index)
 *   <prefix>{S}:untold      sorted set: member userId, score = when the
 *                           user's latest flip was made (or last claimed),
 *                           until a caller says it was told
 */
export interface RedisPresenceOptions {
  /** A connected client (shared), or a URL to open one of its own. */
  redis: Redis | Cluster | string;
  prefix?: string;
  /** Number of expiry indexes; fixed for the life of the data. Default 16. */
  shards?: number;
  /** How long an offline user's last-seen time is kept. Default 90 days. */
  lastSeenTtlMs?: number;
  /**
   * Keeps last-seen times beyond Redis: written at each offline flip this
   * store makes (in the background: a flip never waits for it, and a failed
   * write, handed to `onLastSeenLogError`, costs only that last seen if Redis
   * then loses it), read for a user whose hash Redis does not hold (a failed
   * read answers no last seen). Users
   * online need no copy: their chat servers touch them again after a restart.
   */
  lastSeenLog?: LastSeenLog;
  onLastSeenLogError?: (err: unknown) => void;
}

// Shared Lua: parse a device value and prune expired devices; sets maxe
// (latest live expiry) and lasta (latest lastAlive among pruned devices).
// flipped() counts a flip: the version goes one up, or to the flip's time if
// that is more, so it never repeats even after Redis lost the hash; the flip
// is untold (in the untold index u) until its maker says otherwise.
const PRUNE = `
local function prune(h, now)
  local all = redis.call('HGETALL', h)
  local maxe, lasta = 0, 0
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'd:' then
      local a, e = string.match(all[i + 1], '^(%d+):(%d+)$')
      a, e = tonumber(a), tonumber(e)
      if e <= now then
        redis.call('HDEL', h, f)
        if a > lasta then lasta = a end
      elseif e > maxe then
        maxe = e
      end
    end
  end
  return maxe, lasta
end
local function flipped(h, now, u, user)
  local v = tonumber(redis.call('HGET', h, 'v') or '0') + 1
  if v < now then v = now end
  redis.call('HSET', h, 'v', string.format('%.0f', v))
  redis.call('ZADD', u, now, user)
  return v
end
`;

// KEYS: hash, zset, untold. ARGV: deviceField, now, expiresAt, ifAlive ('0',
// '1', or '2' = unless the user is unknown), userId. Returns the flip's
// version or 0.
const TOUCH =
  PRUNE +
  `
local h, z = KEYS[1], KEYS[2]
local now = tonumber(ARGV[2])
local cur = redis.call('HGET', h, ARGV[1])
if ARGV[4] == '1' or (ARGV[4] == '2' and redis.call('EXISTS', h) == 1) then
  if not cur then return 0 end
  local e = tonumber(string.match(cur, ':(%d+)$'))
  if e <= now then return 0 end
end
-- As of an earlier time than the device's last touch (a session's last frame, the device back on another session since): nothing to change.
if cur and tonumber(string.match(cur, '^(%d+):')) > now then return 0 end
redis.call('HSET', h, ARGV[1], ARGV[2] .. ':' .. ARGV[3])
local maxe = prune(h, now)
redis.call('ZADD', z, maxe, ARGV[5])
redis.call('PERSIST', h)
if redis.call('HGET', h, 'on') then return 0 end
redis.call('HSET', h, 'on', '1')
return flipped(h, now, KEYS[3], ARGV[5])
`;

// KEYS: hash, zset, untold. ARGV: deviceField, now, userId, ttlMs. Returns {last seen, version} or -1.
const DROP =
  PRUNE +
  `
local h, z = KEYS[1], KEYS[2]
local now = tonumber(ARGV[2])
local dropped = redis.call('HDEL', h, ARGV[1])
local maxe = prune(h, now)
if maxe > 0 then
  redis.call('ZADD', z, maxe, ARGV[3])
  -- The dropped device was alive until now: the last seen of a later expiry is no earlier.
  if dropped == 1 and tonumber(redis.call('HGET', h, 'seen') or '0') < now then redis.call('HSET', h, 'seen', ARGV[2]) end
  return -1
end
redis.call('ZREM', z, ARGV[3])
if not redis.call('HGET', h, 'on') then return -1 end
redis.call('HDEL', h, 'on')
-- A drop told late (replayed once the store answered) may come after a later one of another device.
local seen = tonumber(redis.call('HGET', h, 'seen') or '0')
if now > seen then seen = now end
redis.call('HSET', h, 'seen', string.format('%.0f', seen))
local v = flipped(h, now, KEYS[3], ARGV[3])
redis.call('PEXPIRE', h, ARGV[4])
return {seen, v}
`;

// KEYS: hash, zset, untold. ARGV: now, userId, ttlMs. Returns {last seen, version} or -1.
const EXPIRE =
  PRUNE +
  `
local h, z = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local maxe, lasta = prune(h, now)
if maxe > 0 then
  redis.call('ZADD', z, maxe, ARGV[2])
  return -1
end
redis.call('ZREM', z, ARGV[2])
if not redis.call('HGET', h, 'on') then return -1 end
redis.call('HDEL', h, 'on')
local seen = tonumber(redis.call('HGET', h, 'seen') or '0')
if lasta > seen then seen = lasta end
if seen == 0 then seen = now end
redis.call('HSET', h, 'seen', seen)
local v = flipped(h, now, KEYS[3], ARGV[2])
redis.call('PEXPIRE', h, ARGV[3])
return {seen, v}
`;

// KEYS: hash, untold. ARGV: version, userId. The flip of that version or a
// later one was told (a missing hash: there is nothing left to tell).
const TOLD = `
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v <= tonumber(ARGV[1]) then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 0
`;

// KEYS: untold. ARGV: made at or before, now, limit. Claims the due members
// (due again afterMs from now) and returns them.
const CLAIM_UNTOLD = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, user in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], user) end
return due
`;

/** A flip to offline ([last seen, version]) or -1 (none). */
type OfflineReply = [number, number] | number;

type ScriptClient = {
  chatPresenceTouch(h: string, z: string, u: string, field: string, now: number, exp: number, ifAlive: string, user: string): Promise<number>;
  chatPresenceDrop(h: string, z: string, u: string, field: string, now: number, user: string, ttl: number): Promise<OfflineReply>;
  chatPresenceExpire(h: string, z: string, u: string, now: number, user: string, ttl: number): Promise<OfflineReply>;
  chatPresenceTold(h: string, u: string, version: number, user: string): Promise<number>;
  chatPresenceClaimUntold(u: string, madeBy: number, now: number, limit: number): Promise<string[]>;
};

function offlineFlip(userId: Id, reply: OfflineReply): PresenceFlip | undefined {
  if (!Array.isArray(reply)) return undefined;
  return { userId, online: false, lastSeenAtMs: Number(reply[0]), version: Number(reply[1]) };
}

export class RedisPresenceStore implements PresenceStore {
  private readonly redis: Redis | Cluster;
  private readonly owned: boolean;
  private readonly prefix: string;
  private readonly shards: number;
  /** 0 to shards - 1: what a sweep asks, every shard at once. */
  private readonly shardIds: readonly number[];
  private readonly ttlMs: number;
  private readonly resetListeners: (() => void)[] = [];
  private readonly log?: LastSeenLog;
  private readonly onLogError: (err: unknown) => void;
  /** Writes to the log under way: close() waits for them. */
  private readonly logging = new Set<Promise<void>>();
  /** The latest time a caller passed: the log's retention is counted from it (latest() is passed none). */
  private nowMs = 0;

  constructor(options: RedisPresenceOptions) {
    this.owned = typeof options.redis === "string";
    this.redis = typeof options.redis === "string" ? new Redis(options.redis, defaultRedisOptions()) : options.redis;
    if (this.owned) this.redis.on("error", () => {}); // failures surface on the commands
    this.prefix = options.prefix ?? "chat:presence:";
    this.shards = options.shards ?? 16;
    this.shardIds = Array.from({ length: this.shards }, (_, shard) => shard);
    this.ttlMs = options.lastSeenTtlMs ?? 90 * 24 * 3600 * 1000;
    this.log = options.lastSeenLog;
    this.onLogError = options.onLastSeenLogError ?? (() => {});
    this.redis.defineCommand("chatPresenceTouch", { lua: TOUCH, numberOfKeys: 3 });
    this.redis.defineCommand("chatPresenceDrop", { lua: DROP, numberOfKeys: 3 });
    this.redis.defineCommand("chatPresenceExpire", { lua: EXPIRE, numberOfKeys: 3 });
    this.redis.defineCommand("chatPresenceTold", { lua: TOLD, numberOfKeys: 2 });
    this.redis.defineCommand("chatPresenceClaimUntold", { lua: CLAIM_UNTOLD, numberOfKeys: 1 });
    // Every "ready" after the first is a reconnect: Redis may have restarted
    // empty (presence is soft state) after an outage.
    let readies = this.redis.status === "ready" ? 1 : 0;
    this.redis.on("ready", () => {
      if (readies++ > 0) for (const l of this.resetListeners) l();
    });
  }

  onReset(listener: () => void): void {
    this.resetListeners.push(listener);
  }

  private get scripts(): ScriptClient {
    return this.redis as unknown as ScriptClient;
  }

  private shardOf(userId: Id): number {
    return Number(userId % BigInt(this.shards));
  }

  private userKey(userId: Id): string {
    return `${this.prefix}{${this.shardOf(userId)}}:u:${userId}`;
  }

  private indexKey(shard: number): string {
    return `${this.prefix}{${shard}}:exp`;
  }

  private untoldKey(shard: number): string {
    return `${this.prefix}{${shard}}:untold`;
  }

  async touch(
    userId: Id,
    deviceId: Id,
    nowMs: number,
    expiresAtMs: number,
    options: TouchOptions = {},
  ): Promise<PresenceFlip | undefined> {
    const version = await this.scripts.chatPresenceTouch(
      this.userKey(userId),
      this.indexKey(this.shardOf(userId)),
      this.untoldKey(this.shardOf(userId)),
      `d:${deviceId}`,
      Math.floor(nowMs),
      Math.floor(expiresAtMs),
      options.ifAlive ? (options.orUnknownUser ? "2" : "1") : "0",
      String(userId),
    );
    return Number(version) > 0 ? { userId, online: true, version: Number(version) } : undefined;
  }

  async drop(userId: Id, deviceId: Id, nowMs: number): Promise<PresenceFlip | undefined> {
    const reply = await this.scripts.chatPresenceDrop(
      this.userKey(userId),
      this.indexKey(this.shardOf(userId)),
      this.untoldKey(this.shardOf(userId)),
      `d:${deviceId}`,
      Math.floor(nowMs),
      String(userId),
      this.ttlMs,
    );
    const flip = offlineFlip(userId, reply);
    if (flip) this.keep([{ userId, atMs: flip.lastSeenAtMs! }], nowMs);
    return flip;
  }

  /**
   * Each round asks every shard's index at once and expires the due users at
   * once: two round trips (pipelined on one connection) whatever the shard
   * count, where a shard at a time cost one each second on every sweeper.
   * Every user the script looks at leaves the due range (rescored or
   * removed), so the rounds end.
   */
  async expire(nowMs: number, limit: number): Promise<PresenceFlip[]> {
    const now = Math.floor(nowMs);
    const flips: PresenceFlip[] = [];
    while (flips.length < limit) {
      const wanted = limit - flips.length;
      const dues = await Promise.all(
        this.shardIds.map((shard) => this.redis.zrangebyscore(this.indexKey(shard), "-inf", now, "LIMIT", 0, wanted)),
      );
      const chosen = dues.flatMap((members, shard) => members.map((member) => ({ shard, member }))).slice(0, wanted);
      if (chosen.length === 0) break;
      const replies = await Promise.all(
        chosen.map(({ shard, member }) =>
          this.scripts.chatPresenceExpire(this.userKey(BigInt(member)), this.indexKey(shard), this.untoldKey(shard), now, member, this.ttlMs),
        ),
      );
      replies.forEach((reply, i) => {
        const flip = offlineFlip(BigInt(chosen[i]!.member), reply);
        if (flip) flips.push(flip);
      });
      if (chosen.length < wanted) break;
    }
    this.keep(flips.map((f) => ({ userId: f.userId, atMs: f.lastSeenAtMs! })), nowMs);
    return flips;
  }

  async latest(userId: Id): Promise<PresenceFlip> {
    // One command, so the three fields are of one moment.
    const [on, seen, v] = await this.redis.hmget(this.userKey(userId), "on", "seen", "v");
    const version = Number(v ?? 0);
    if (on === null && seen === null && v === null) {
      // Nothing held (lost in a restart, or past its retention): version 0 still says so, with the kept last seen.
      const logged = (await this.logged([userId], this.nowMs)).get(userId);
      return logged === undefined ? { userId, online: false, version: 0 } : { userId, online: false, lastSeenAtMs: logged, version: 0 };
    }
    if (on || seen === null) return { userId, online: on !== null, version };
    return { userId, online: false, lastSeenAtMs: Number(seen), version };
  }

  async told(userId: Id, version: number): Promise<void> {
    await this.scripts.chatPresenceTold(this.userKey(userId), this.untoldKey(this.shardOf(userId)), version, String(userId));
  }

  /**
   * Counts every shard's due flips at once (read only; nearly always none),
   * then claims in the shards that have some, at once, no more than `limit`
   * in all: a claim cannot be handed back, so none is made beyond it.
   */
  async claimUntold(nowMs: number, afterMs: number, limit: number): Promise<PresenceFlip[]> {
    const madeBy = Math.floor(nowMs - afterMs);
    const counts = await Promise.all(this.shardIds.map((shard) => this.redis.zcount(this.untoldKey(shard), "-inf", madeBy)));
    let left = limit;
    const shares = counts.map((count) => {
      const share = Math.min(count, left);
      left -= share;
      return share;
    });
    const claimed = await Promise.all(
      shares.map((share, shard) =>
        share > 0 ? this.scripts.chatPresenceClaimUntold(this.untoldKey(shard), madeBy, Math.floor(nowMs), share) : [],
      ),
    );
    const flips = await Promise.all(claimed.flat().map((member) => this.latest(BigInt(member))));
    // Their maker may have died before its write to the log, too (a sweeper killed with -9 mid-sweep).
    this.keep(flips.flatMap((f) => (f.online || f.lastSeenAtMs === undefined ? [] : [{ userId: f.userId, atMs: f.lastSeenAtMs }])), nowMs);
    return flips;
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async get(userIds: readonly Id[], nowMs: number): Promise<UserPresence[]> {
    if (userIds.length === 0) return [];
    const hashes = await Promise.all(userIds.map((id) => this.redis.hgetall(this.userKey(id))));
    const unknown = userIds.filter((_, i) => Object.keys(hashes[i] ?? {}).length === 0);
    const logged = unknown.length > 0 ? await this.logged(unknown, nowMs) : new Map<Id, number>();
    return userIds.map((userId, i) => {
      const h = hashes[i] ?? {};
      let online = false;
      let lastSeen = Number(h.seen ?? logged.get(userId) ?? 0);
      for (const [f, v] of Object.entries(h)) {
        if (!f.startsWith("d:")) continue;
        const [a, e] = v.split(":").map(Number) as [number, number];
        if (e > nowMs) online = true;
        else lastSeen = Math.max(lastSeen, a);
      }
      if (online) return { userId, online: true };
      return lastSeen > 0 ? { userId, online: false, lastSeenAtMs: lastSeen } : { userId, online: false };
    });
  }

  /**
   * Last seens the log kept of users Redis holds nothing of, within the
   * retention. A failed read answers none (handed to `onLastSeenLogError`):
   * presence still answers from Redis while Cassandra is away.
   */
  private async logged(userIds: readonly Id[], nowMs: number): Promise<Map<Id, number>> {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (!this.log) return new Map();
    try {
      return await this.log.read(userIds, this.nowMs - this.ttlMs);
    } catch (err) {
      this.onLogError(err);
      return new Map();
    }
  }

  /** Writes last seens to the log, in the background: a flip never waits for (nor fails by) it. */
  private keep(entries: LastSeen[], nowMs: number): void {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (!this.log || entries.length === 0) return;
    const p = this.log.record(entries, this.nowMs - this.ttlMs).catch(this.onLogError);
    this.logging.add(p);
    void p.finally(() => this.logging.delete(p));
  }

  async close(): Promise<void> {
    await Promise.all(this.logging);
    if (!this.owned) return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * Client options for soft state: commands fail fast while Redis is away
 * (the caller logs and goes on) and the client reconnects forever, so the
 * state rebuilds from heartbeats once Redis is back.
 */
export function defaultRedisOptions(): RedisOptions {
  return {
    maxRetriesPerRequest: 1,
    // maxRetriesPerRequest only counts reconnects: a Redis that keeps the
    // connection and stops answering would hold heartbeats, sweeps and
    // GetPresence for ever. 2 s, not less: a reconnect re-touches every
    // session of a chat server at once. A socket silent longer is dropped,
    // and the reconnect re-touches what failed meanwhile.
    commandTimeout: 2_000,
    socketTimeout: 6_000,
    connectTimeout: 3_000,
    retryStrategy: (times) => Math.min(100 * times, 2_000),
  };
}
