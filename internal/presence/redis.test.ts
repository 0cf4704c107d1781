import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { connectRedis, engineConfig, uniqueName } from "../../test/support/engines.js";
import { TcpProxy } from "../../test/support/tcp-proxy.js";
import { isChatError } from "../model/errors.js";
import { waitFor } from "../../test/support/wait.js";
import { presenceStoreContract } from "./contract.js";
import type { LastSeenLog } from "./last-seen.js";
import { defaultRedisOptions, RedisPresenceStore } from "./redis.js";
import { PresenceTracker } from "./tracker.js";
import { outcomeAfter, silentRedis } from "../../test/support/silent-redis.js";
import { freePort } from "../../test/support/ports.js";
import { OwnRedis } from "../../test/support/own-redis.js";

async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

// The shared local Redis (scripts/engines.sh up redis), one key prefix per test.
presenceStoreContract("redis", async () => {
  const redis = await connectRedis();
  const prefix = `${uniqueName("test:presence")}:`;
  const store = new RedisPresenceStore({ redis, prefix, shards: 4 });
  return {
    store,
    async dispose() {
      await deleteByPrefix(redis, prefix);
      await store.close();
      await redis.quit();
    },
  };
});

describe("RedisPresenceStore: the last-seen log when a sweeper dies mid-sweep", function () {
  it("writes the last seen of a flip whose maker died before writing it when a sweep claims the flip untold", async () => {
    const T = 1_700_000_000_000;
    const redis = await connectRedis();
    const prefix = `${uniqueName("test:presence-claim")}:`;
    const kept = new Map<bigint, number>();
    const log: LastSeenLog = {
      record: async (entries) => {
        for (const e of entries) kept.set(e.userId, e.atMs);
      },
      read: async () => new Map(),
    };
    // The dead sweeper's writes never land (killed with -9 right after its expire script).
    const dead = new RedisPresenceStore({ redis, prefix, shards: 2, lastSeenLog: { record: () => new Promise(() => {}), read: async () => new Map() } });
    const survivor = new RedisPresenceStore({ redis, prefix, shards: 2, lastSeenLog: log });
    try {
      await dead.touch(5n, 1n, T, T + 1_000);
      const [flip] = await dead.expire(T + 1_000, 10);
      assert.equal(flip?.lastSeenAtMs, T);
      const claimed = await survivor.claimUntold(T + 20_000, 15_000, 10);
      assert.deepEqual(claimed.map((f) => f.userId), [5n]);
      await survivor.close();
      assert.deepEqual([...kept], [[5n, T]]);
    } finally {
      await deleteByPrefix(redis, prefix);
      await redis.quit();
    }
  });
});

describe("RedisPresenceStore: recovery after a Redis restart", function () {
  this.timeout(60_000);
  let own: OwnRedis;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "presence-redis-"));
    own = new OwnRedis(await freePort(), dir);
    await own.start();
  });
  after(async () => {
    await own.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("rebuilds presence from heartbeats within two intervals, surviving the outage", async () => {
    const HEARTBEAT = 200;
    const redis = new Redis({ port: own.port, host: "127.0.0.1", ...defaultRedisOptions() });
    redis.on("error", () => {});
    const store = new RedisPresenceStore({ redis, prefix: "p:", shards: 2 });
    const changes: boolean[] = [];
    const tracker = new PresenceTracker({
      store,
      audience: async () => [],
      directory: { pushToUsers: async () => {} },
      graceMs: 3 * HEARTBEAT,
      sweepIntervalMs: 50,
      onChange: (c) => changes.push(c.online),
    });
    tracker.start();
    // A device heartbeating at its interval, as a client does.
    let beats = 0;
    const beat = setInterval(() => {
      beats++;
      tracker.deviceAlive(42n, 1n);
    }, HEARTBEAT);
    try {
      tracker.deviceConnected(42n, 1n);
      await waitFor(async () => (await tracker.getPresence([42n]))[0]!.online, "online");

      await own.kill(); // state gone, connection broken
      await assert.rejects(tracker.getPresence([42n]), "queries fail while Redis is away");
      const beatsAtKill = beats;
      await waitFor(() => beats >= beatsAtKill + 2, "two heartbeats while Redis is away"); // they fail, nothing crashes
      await own.start(); // an empty Redis on the same address
      await waitFor(() => redis.status === "ready", "the client to reconnect", 10_000);
      // Counted in heartbeats, not milliseconds: the machine's noise stretches both alike.
      const beatsAtReconnect = beats;
      await waitFor(async () => (await tracker.getPresence([42n]).catch(() => []))[0]?.online === true, "presence rebuilt from heartbeats", 10_000);
      const took = beats - beatsAtReconnect;
      assert.ok(took <= 2, `rebuilt after ${took} heartbeats once Redis was back (at most two)`);
      assert.equal(changes[0], true);
    } finally {
      clearInterval(beat);
      await tracker.stop();
      redis.disconnect();
    }
  });

  it("after a restart that lost the data, touches live sessions at once and announces a session that ends before its next heartbeat offline", async () => {
    const GRACE = 600;
    const redis = new Redis({ port: own.port, host: "127.0.0.1", ...defaultRedisOptions() });
    redis.on("error", () => {});
    const store = new RedisPresenceStore({ redis, prefix: "p2:", shards: 2 });
    const heard: { userId: bigint; online: boolean }[] = [];
    const tracker = new PresenceTracker({
      store,
      audience: async () => [99n],
      directory: {
        pushToUsers: async (_to, frame) => {
          if (frame.kind.case === "presence") heard.push({ userId: frame.kind.value.presence!.userId, online: frame.kind.value.presence!.status === PresenceStatus.ONLINE });
        },
      },
      graceMs: GRACE,
      sweepIntervalMs: 50,
    });
    // The chat server: user 7's session lives on, user 8's ends right after the restart.
    let resets = 0;
    tracker.onStoreRecovered(() => {
      resets++;
      tracker.deviceAlive(7n, 1n, Date.now());
    });
    tracker.start();
    try {
      tracker.deviceConnected(7n, 1n);
      tracker.deviceConnected(8n, 1n);
      await waitFor(async () => (await tracker.getPresence([7n, 8n])).every((p) => p.online), "both online");
      await own.kill();
      await own.start(); // empty
      await waitFor(() => resets > 0, "the store to report the reconnect", 10_000);
      await waitFor(async () => (await tracker.getPresence([7n]).catch(() => []))[0]?.online === true, "the live session touched again, no heartbeat needed", 5_000);
      tracker.deviceDisconnected(8n, 1n, Date.now()); // its last frame was just now
      await waitFor(() => heard.some((h) => h.userId === 8n && !h.online), "user 8 announced offline once the grace period ran out", 10_000);
      assert.equal(heard.filter((h) => h.userId === 8n).at(-1)?.online, false);
    } finally {
      await tracker.stop();
      redis.disconnect();
    }
  });

  it("after a restart that lost the data mid-grace, keeps the ended session's last seen and grace period as of its end, not of the restart", async () => {
    const GRACE = 60_000;
    const T = 1_700_000_000_000;
    let t = T;
    const redis = new Redis({ port: own.port, host: "127.0.0.1", ...defaultRedisOptions() });
    redis.on("error", () => {});
    const store = new RedisPresenceStore({ redis, prefix: "p4:", shards: 2 });
    const tracker = new PresenceTracker({ store, audience: async () => [], directory: { pushToUsers: async () => {} }, graceMs: GRACE, sweepIntervalMs: 0, now: () => t });
    let resets = 0;
    tracker.onStoreRecovered(() => resets++);
    try {
      tracker.deviceConnected(9n, 1n);
      await tracker.idle();
      t += 1_000;
      const ended = t;
      tracker.deviceDisconnected(9n, 1n, ended);
      await tracker.idle();
      t += GRACE / 2;
      await own.kill();
      await own.start(); // empty
      await waitFor(() => resets > 0, "the store to report the reconnect", 10_000);
      await tracker.idle();
      t = ended + GRACE;
      assert.deepEqual(await tracker.getPresence([9n]), [{ userId: 9n, online: false, lastSeenAtMs: ended }]);
    } finally {
      await tracker.stop();
      redis.disconnect();
    }
  });

  it("keeps the last seen of users offline across a restart that lost the data: each flip to offline also goes to the log", async () => {
    const T = 1_700_000_000_000;
    const GRACE = 60_000;
    const redis = new Redis({ port: own.port, host: "127.0.0.1", ...defaultRedisOptions() });
    redis.on("error", () => {});
    // The log as Cassandra keeps it: the latest time per user.
    const kept = new Map<bigint, number>();
    const log: LastSeenLog = {
      record: async (entries) => {
        for (const e of entries) kept.set(e.userId, Math.max(kept.get(e.userId) ?? 0, e.atMs));
      },
      read: async (userIds, sinceMs) => new Map(userIds.flatMap((u) => (kept.get(u) ?? 0) > sinceMs ? [[u, kept.get(u)!] as const] : [])),
    };
    const store = new RedisPresenceStore({ redis, prefix: "p3:", shards: 2, lastSeenLog: log });
    try {
      // User 1's device went quiet (its chat server killed): swept a grace period on, last seen as last heard.
      await store.touch(1n, 10n, T, T + GRACE);
      await store.touch(1n, 10n, T + 25_000, T + 25_000 + GRACE);
      assert.equal((await store.expire(T + 25_000 + GRACE + 5_000, 100)).length, 1);
      // User 2 logged out; user 3 is still online.
      await store.touch(2n, 20n, T, T + GRACE);
      await store.drop(2n, 20n, T + 1_000);
      await store.touch(3n, 30n, T + 90_000, T + 90_000 + GRACE);
      const before = await store.get([1n, 2n, 3n, 4n], T + 100_000);
      assert.deepEqual(before, [
        { userId: 1n, online: false, lastSeenAtMs: T + 25_000 },
        { userId: 2n, online: false, lastSeenAtMs: T + 1_000 },
        { userId: 3n, online: true },
        { userId: 4n, online: false },
      ]);

      await own.kill();
      await own.start(); // empty: no persistence
      await waitFor(() => redis.status === "ready", "the client to reconnect", 10_000);
      // User 3's chat server touches them again (onReset); users 1 and 2 have nobody to.
      await store.touch(3n, 30n, T + 101_000, T + 101_000 + GRACE);
      assert.deepEqual(await store.get([1n, 2n, 3n, 4n], T + 102_000), before);
      // What tellLatest pushes to a new friend: the kept last seen; version 0 still says the store lost the user.
      assert.deepEqual(await store.latest(1n), { userId: 1n, online: false, lastSeenAtMs: T + 25_000, version: 0 });
      assert.deepEqual(await store.latest(4n), { userId: 4n, online: false, version: 0 });
      // The log away (Cassandra down): presence still answers from Redis, without that last seen.
      const failures: unknown[] = [];
      const away = new RedisPresenceStore({
        redis,
        prefix: "p3:",
        shards: 2,
        lastSeenLog: { record: async () => {}, read: async () => Promise.reject(new Error("cassandra away")) },
        onLastSeenLogError: (err) => failures.push(err),
      });
      assert.deepEqual(await away.get([1n, 3n], T + 102_000), [{ userId: 1n, online: false }, { userId: 3n, online: true }]);
      assert.equal(failures.length, 1);
    } finally {
      await store.close();
      redis.disconnect();
    }
  });
});


// No engine: a fake on loopback that keeps the connection and stops answering (Redis
// paused, a frozen VM, packets dropped).
describe("defaultRedisOptions when Redis stops answering", function () {
  this.timeout(30_000);

  it("fail the presence store's calls within a bound instead of waiting for ever", async () => {
    const silent = await silentRedis();
    const redis = new Redis(silent.url, defaultRedisOptions());
    redis.on("error", () => {});
    const store = new RedisPresenceStore({ redis, prefix: "p3:", shards: 2 });
    try {
      await waitFor(() => redis.status === "ready", "the handshake");
      const now = Date.now();
      const calls = {
        touch: store.touch(1n, 1n, now, now + 60_000),
        get: store.get([1n, 2n], now),
        expire: store.expire(now, 100),
        ping: store.ping(),
      };
      // The timeout is 2 s; the rest is slack for a loaded machine.
      const outcomes = await Promise.all(Object.values(calls).map((p) => outcomeAfter(p, 4_000)));
      for (const [i, name] of Object.keys(calls).entries()) assert.match(outcomes[i]!, /^rejected/, name);
    } finally {
      redis.disconnect();
      silent.close();
    }
  });
});

describe("RedisPresenceStore sweeps", function () {
  /**
   * Counts the round trips of the client's commands since a mark: a command
   * sent after an answer arrived is the first of a new round trip.
   */
  function roundTrips(redis: Redis) {
    const log: ("send" | "answer")[] = [];
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((command, stream) => {
      log.push("send");
      const settled = () => void log.push("answer");
      command.promise.then(settled, settled);
      return send(command, stream);
    }) as typeof redis.sendCommand;
    return {
      since(mark: number): number {
        const part = log.slice(mark);
        return part.filter((e, i) => e === "send" && (i === 0 || part[i - 1] === "answer")).length;
      },
      mark: () => log.length,
    };
  }

  it("asks all shards at once: a sweep takes the same few round trips whatever the shard count", async () => {
    const redis = await connectRedis();
    const prefix = `${uniqueName("test:presence-rounds")}:`;
    const store = new RedisPresenceStore({ redis, prefix, shards: 16 });
    const rounds = roundTrips(redis);
    try {
      // Users in five different shards, each with a device that expired long ago.
      const users = [1n, 2n, 3n, 4n, 5n].map((n) => 1_000_000n + n);
      const expireAll = async (at: number) => {
        for (const u of users) await store.touch(u, 1n, at, at + 100);
        return store.expire(at + 1_000, 500);
      };
      await expireAll(1_000); // loads the scripts: the first call of one may take a round trip more
      await store.claimUntold(1_000_000, 100, 500);

      let mark = rounds.mark();
      const flips = await expireAll(10_000);
      assert.equal(flips.length, users.length);
      // One touch a user, then the sixteen indexes at once and the five expiries at once.
      assert.equal(rounds.since(mark) - users.length, 2, "round trips of expire()");

      mark = rounds.mark();
      assert.deepEqual(await store.claimUntold(10_000, 100_000, 500), [], "nothing due yet");
      assert.equal(rounds.since(mark), 1, "round trips of claimUntold() with nothing due");

      mark = rounds.mark();
      const claimed = await store.claimUntold(1_000_000, 100, 500);
      assert.deepEqual(claimed.map((f) => f.userId).sort(), [...users].sort(), "every untold flip, each of its own shard");
      assert.equal(rounds.since(mark), 3, "round trips of claimUntold(): count, claim, latest");
    } finally {
      await deleteByPrefix(redis, prefix);
      await store.close();
      await redis.quit();
    }
  });
});

// The shared real Redis behind a proxy the test cuts: the tracker's client loses it, nothing else does.
describe("PresenceTracker when it loses Redis", function () {
  this.timeout(30_000);

  it("answers its callers UNAVAILABLE, counts every failed heartbeat and sweep but logs them once a while, and goes on once Redis answers", async () => {
    const proxy = await TcpProxy.start(engineConfig().redisUrl);
    const prefix = `${uniqueName("test:presence-lost")}:`;
    const store = new RedisPresenceStore({ redis: `redis://${proxy.address}`, prefix, shards: 2 });
    const errors: string[] = [];
    const logs: { msg: string; op?: string; unlogged?: number }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    let skewMs = 0;
    const tracker = new PresenceTracker({
      store,
      audience: async () => [99n],
      directory: { pushToUsers: async () => {} },
      graceMs: 60_000,
      heartbeatIntervalMs: 10_000,
      sweepIntervalMs: 0,
      // Moved past the hold-off from the store's first answer (20 s), inside the grace period, so that the sweep below calls the store.
      now: () => Date.now() + skewMs,
      logger,
      onEngineError: (op) => errors.push(op),
    });
    const redis = await connectRedis();
    try {
      tracker.deviceConnected(1n, 1n);
      await tracker.idle();
      assert.equal((await tracker.getPresence([1n]))[0]!.online, true);

      skewMs = 30_000;
      proxy.cut("reset");
      const unavailable = (err: unknown) => isChatError(err, "unavailable");
      // Heartbeats of five sessions: nobody answers them, nothing is thrown. All at once, as each waits out the client's reconnect.
      for (let i = 1n; i <= 5n; i++) tracker.deviceAlive(i, 1n);
      const [swept] = await Promise.all([
        tracker.sweep(),
        assert.rejects(tracker.getPresence([1n]), unavailable, "GetPresence: a retry, not an internal error"),
        assert.rejects(tracker.tellLatest(1n, [2n]), unavailable),
        tracker.idle(),
      ]);
      assert.equal(swept, 0, "a failing sweep is survived");
      assert.equal(errors.filter((op) => op === "update").length, 5, "each failed heartbeat counted");
      assert.deepEqual([...new Set(errors)].sort(), ["get", "sweep", "tell", "update"]);
      assert.equal(logs.filter((l) => l.op === "update").length, 1, `logged once, not per heartbeat: ${JSON.stringify(logs)}`);

      proxy.restore();
      await waitFor(async () => (await tracker.getPresence([1n]).catch(() => undefined))?.[0]?.online === true, "presence read again once Redis answers", 10_000);
    } finally {
      await tracker.stop();
      await deleteByPrefix(redis, prefix);
      await redis.quit();
      await store.close();
      await proxy.close();
    }
  });
});
