import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { countingDb, scratchCassandra } from "../../test/support/cassandra.js";
import { connectRedis, uniqueName } from "../../test/support/engines.js";
import { storeAudience } from "./audience.js";
import { CassandraLastSeenLog } from "./cassandra.js";
import { MemoryPresenceStore } from "./memory.js";
import { RedisPresenceStore } from "./redis.js";
import { PresenceTracker, type PresenceEngineOp } from "./tracker.js";

const DAY = 24 * 3600 * 1000;
const id = () => BigInt(`0x${randomBytes(7).toString("hex")}`);

// The local Cassandra node (scripts/engines.sh up cassandra), a keyspace of this suite's own.
describe("CassandraLastSeenLog", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const T = Date.now();

  it("keeps each user's latest last seen whatever order the writes land in, and reads those of the users asked for", async () => {
    const log = new CassandraLastSeenLog(storage().db);
    const [a, b, c] = [id(), id(), id()];
    await log.record([{ userId: a, atMs: T + 20 }, { userId: b, atMs: T + 5 }], T - 90 * DAY);
    await log.record([{ userId: a, atMs: T + 10 }], T - 90 * DAY); // a late write of an older time takes nothing back
    await log.record([{ userId: b, atMs: T + 30 }], T - 90 * DAY);
    assert.deepEqual(await log.read([a, b, c], 0), new Map([[a, T + 20], [b, T + 30]]));
    assert.deepEqual(await log.read([a, b], T + 20), new Map([[b, T + 30]]), "only times later than the cutoff");
  });

  it("reads the last seens of a hundred users at a time", async () => {
    const users = Array.from({ length: 150 }, () => id());
    await new CassandraLastSeenLog(storage().db).record(users.map((userId, i) => ({ userId, atMs: T + i })), T - 90 * DAY);
    const { db, count } = countingDb(storage().db);
    assert.deepEqual(await new CassandraLastSeenLog(db).read([id(), ...users], 0), new Map(users.map((u, i) => [u, T + i])));
    // A read per user before.
    assert.equal(count.reads, 2);
  });

  it("ends a row at the retention (its TTL), and writes none already past it", async () => {
    const log = new CassandraLastSeenLog(storage().db);
    const [a, b] = [id(), id()];
    await log.record([{ userId: a, atMs: T }, { userId: b, atMs: T - 91 * DAY }], T - 90 * DAY);
    const ttl = (await storage().db.one(`SELECT TTL(at_ms) AS ttl FROM ${storage().db.t("presence_last_seen")} WHERE user_id = ?`, [a]))?.get("ttl");
    assert.ok(Math.abs(Number(ttl) - 90 * 86_400) <= 60, `TTL ${ttl} s: 90 days`);
    assert.deepEqual(await log.read([b], 0), new Map());
  });

  it("keeps every last seen of a sweep that flipped thousands offline at once (no more writes in flight than the driver takes)", async () => {
    // RedisPresenceStore hands each expire()'s flips (500 a round) to the log without waiting:
    // a chat server that died took its 10,000 users offline in rounds a few ms apart.
    const log = new CassandraLastSeenLog(storage().db);
    const users = Array.from({ length: 10_000 }, () => id());
    const rounds = Array.from({ length: 20 }, (_, r) =>
      log.record(users.slice(r * 500, (r + 1) * 500).map((userId) => ({ userId, atMs: T })), T - 90 * DAY),
    );
    const failed = (await Promise.allSettled(rounds)).filter((r) => r.status === "rejected");
    assert.deepEqual(failed.map((r) => String((r as PromiseRejectedResult).reason).slice(0, 120)), []);
    assert.equal((await log.read(users, 0)).size, users.length);
  });

  it("announces a sweep's thousands of flips (a chat server died) without reading their audiences all at once", async () => {
    let t = T;
    const failed: PresenceEngineOp[] = [];
    const tracker = new PresenceTracker({
      store: new MemoryPresenceStore(),
      audience: storeAudience(storage()),
      directory: { pushToUsers: async () => {} },
      graceMs: 1_000,
      sweepIntervalMs: 0,
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 1 }, // a failed announcement is counted and given up
      now: () => t,
      onEngineError: (op) => failed.push(op),
    });
    try {
      const users = Array.from({ length: 1_000 }, () => id());
      // Five reads each (visibility, friends, chats, blocks both ways): 5,000 at once, past the driver's 2,048.
      for (const u of users) tracker.deviceConnected(u, 1n); // its sessions back on another chat server
      await tracker.idle();
      assert.equal(failed.length, 0, "online told");
      t += 2_000;
      assert.equal(await tracker.sweep(), users.length);
      await tracker.idle();
      assert.equal(failed.length, 0, "offline told");
    } finally {
      await tracker.stop();
    }
  });

  it("under RedisPresenceStore: a user's last seen outlives the loss of their Redis hash", async () => {
    const redis = await connectRedis();
    const prefix = `${uniqueName("test:presence-log")}:`;
    const store = new RedisPresenceStore({ redis, prefix, shards: 2, lastSeenLog: new CassandraLastSeenLog(storage().db) });
    const u = id();
    try {
      await store.touch(u, 1n, T, T + 60_000);
      await store.expire(T + 60_000, 100);
      await store.close(); // waits for the log's writes
      // Redis restarted without persistence: this cluster's keys are gone (only this test's prefix).
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      const after = new RedisPresenceStore({ redis, prefix, shards: 2, lastSeenLog: new CassandraLastSeenLog(storage().db) });
      assert.deepEqual(await after.get([u], T + 120_000), [{ userId: u, online: false, lastSeenAtMs: T }]);
    } finally {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
  });
});
