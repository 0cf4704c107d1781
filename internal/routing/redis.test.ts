// RedisSessionRoutes against the real Redis of scripts/engines.sh: the contract suite (its
// "store lost every entry" case deletes this run's keys, as a restart without persistence
// would), plus the key layout. Fails (never skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { connectRedis, engineConfig, uniqueName } from "../../test/support/engines.js";
import { sessionRoutesContract } from "./contract.js";
import { RedisSessionRoutes } from "./redis.js";

/** Deletes every key under `prefix` (SCAN, never FLUSHDB: the Redis is shared). */
async function wipe(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

sessionRoutesContract("redis", async (ttlMs) => {
  const admin = await connectRedis();
  const keyPrefix = `${uniqueName("test:routes")}:`;
  const routes = new RedisSessionRoutes({ url: engineConfig().redisUrl, keyPrefix, ttlMs });
  await routes.connect();
  return {
    routes,
    wipe: () => wipe(admin, keyPrefix),
    async dispose() {
      await routes.close();
      await wipe(admin, keyPrefix);
      await admin.quit();
    },
  };
});

describe("RedisSessionRoutes on a real Redis", function () {
  this.timeout(30_000);

  it("keeps one hash per user, server -> expiry, that expires with its last live entry", async () => {
    const admin = await connectRedis();
    const keyPrefix = `${uniqueName("test:routes")}:`;
    const routes = new RedisSessionRoutes({ redis: admin, keyPrefix, ttlMs: 5_000 });
    try {
      await routes.add(42n, "srv-a");
      await routes.add(42n, "srv-b");
      const key = `${keyPrefix}route:42`;
      assert.equal(routes.keyOf(42n), key);
      const fields = await admin.hgetall(key);
      assert.deepEqual(Object.keys(fields).sort(), ["srv-a", "srv-b"]);
      const [sec] = await admin.time();
      const expiry = Number(fields["srv-a"]);
      assert.ok(expiry > Number(sec) * 1000 && expiry <= Number(sec) * 1000 + 6_000, `expiry ${expiry}`);
      const pttl = await admin.pttl(key);
      assert.ok(pttl > 0 && pttl <= 5_000, `the key expires with its entries (pttl ${pttl})`);
      await routes.remove(42n, "srv-a");
      await routes.remove(42n, "srv-b");
      assert.equal(await admin.exists(key), 0, "no empty hash left behind");
    } finally {
      await routes.close(); // a shared client is not closed by the adapter
      assert.equal(admin.status, "ready");
      await wipe(admin, keyPrefix);
      await admin.quit();
    }
  });

  it("fails, and says so, when Redis cannot be reached", async () => {
    const routes = new RedisSessionRoutes({ url: "redis://127.0.0.1:1", keyPrefix: "x:" });
    await assert.rejects(routes.connect(), /ECONNREFUSED|connect/);
    await routes.close();
  });
});
