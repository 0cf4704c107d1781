// RedisSessionRoutes against the real Redis of scripts/engines.sh: the contract suite (its
// "store lost every entry" case deletes this run's keys, as a restart without persistence
// would), plus the key layout. Fails (never skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import pino from "pino";
import { TcpProxy } from "../../test/support/tcp-proxy.js";
import { waitFor } from "../../test/support/wait.js";
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
  const open = async () => {
    const routes = new RedisSessionRoutes({ url: engineConfig().redisUrl, keyPrefix, ttlMs });
    await routes.connect();
    return routes;
  };
  const opened = [await open()];
  return {
    routes: opened[0]!,
    wipe: () => wipe(admin, keyPrefix),
    another: async () => opened[opened.push(await open()) - 1]!,
    async dispose() {
      await Promise.all(opened.map((r) => r.close()));
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

  it("never leaves an entry the value an earlier write left, so a remove can tell a later write (another process's, in the same ms) from its own", async () => {
    const admin = await connectRedis();
    const keyPrefix = `${uniqueName("test:routes")}:`;
    const routes = new RedisSessionRoutes({ redis: admin, keyPrefix, ttlMs: 5_000 });
    try {
      const key = routes.keyOf(7n);
      // An earlier write in the same ms computed the same expiry; one already past this
      // write's stands for it here, as Redis's clock cannot be held still.
      const [sec] = await admin.time();
      const ahead = Number(sec) * 1000 + 60_000;
      await admin.hset(key, "srv", ahead);
      await routes.add(7n, "srv");
      assert.equal(Number(await admin.hget(key, "srv")), ahead + 1);
      await routes.refresh("srv", [7n]);
      assert.equal(Number(await admin.hget(key, "srv")), ahead + 2);
      await routes.remove(7n, "srv");
      assert.equal(await admin.exists(key), 0, "its own write, removed");
    } finally {
      await wipe(admin, keyPrefix);
      await admin.quit();
    }
  });

  it("removes whatever the entry holds once a write's answer was lost (the value it left unknown), not leaving it to expire", async () => {
    const admin = await connectRedis();
    const keyPrefix = `${uniqueName("test:routes")}:`;
    const routes = new RedisSessionRoutes({ redis: admin, keyPrefix, ttlMs: 5_000 });
    const client = admin as unknown as { routeTouch(...args: unknown[]): Promise<number> };
    const touch = client.routeTouch;
    try {
      await routes.add(8n, "srv");
      // The next write lands, and its answer times out.
      client.routeTouch = async (...args) => {
        await touch.apply(admin, args);
        throw new Error("Command timed out");
      };
      await assert.rejects(routes.add(8n, "srv"), /timed out/);
      client.routeTouch = touch;
      await routes.remove(8n, "srv");
      assert.equal(await admin.exists(routes.keyOf(8n)), 0);
    } finally {
      client.routeTouch = touch;
      await wipe(admin, keyPrefix);
      await admin.quit();
    }
  });

  it("warns once when Redis goes away, not at every reconnect, and says when it answers again", async () => {
    const lines: Array<{ level: number; msg: string; failures?: number }> = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const proxy = await TcpProxy.start(new URL(engineConfig().redisUrl).host);
    const routes = new RedisSessionRoutes({ url: `redis://${proxy.address}`, keyPrefix: `${uniqueName("test:routes")}:`, logger });
    try {
      await routes.connect();
      proxy.cut("refuse");
      const errors = () => lines.filter((l) => l.msg.startsWith("redis (session routes) connection error"));
      await waitFor(() => errors().length >= 3, "three failed reconnects", 20_000);
      assert.deepEqual(
        errors().map((l) => l.level),
        [40, ...errors().slice(1).map(() => 20)],
        "one warning, the rest debug",
      );
      await proxy.restore();
      await waitFor(() => lines.some((l) => l.msg === "redis (session routes) answers again"), "the line saying Redis answers again", 20_000);
      const back = lines.find((l) => l.msg === "redis (session routes) answers again")!;
      assert.ok(back.failures! >= 3, `failures ${back.failures}`);
      assert.equal(lines.filter((l) => l.level >= 40).length, 1);
    } finally {
      await routes.close();
      await proxy.close();
    }
  });

  it("fails, and says so, when Redis cannot be reached", async () => {
    const routes = new RedisSessionRoutes({ url: "redis://127.0.0.1:1", keyPrefix: "x:" });
    await assert.rejects(routes.connect(), /ECONNREFUSED|connect/);
    await routes.close();
  });

  it("names the address it cannot reach without the password in it (the message is logged)", async () => {
    const routes = new RedisSessionRoutes({ url: "redis://chat:s3cret@127.0.0.1:1", keyPrefix: "x:" });
    await assert.rejects(routes.connect(), (err: Error) => {
      assert.match(err.message, /127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
    await routes.close();
  });
});
