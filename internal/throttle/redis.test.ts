// RedisLoginAttempts against the real Redis of scripts/engines.sh: the contract
// suite plus the key layout. Fails (never skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { connectRedis, uniqueName } from "../../test/support/engines.js";
import { loginAttemptsContract, windowCountsContract } from "./contract.js";
import { RedisLoginAttempts, RedisWindowCounts } from "./redis.js";

loginAttemptsContract("redis", async (windowMs) => {
  const redis = await connectRedis();
  const attempts = new RedisLoginAttempts({ redis, keyPrefix: `${uniqueName("test:login")}:`, windowMs });
  return {
    attempts,
    async dispose() {
      await attempts.close();
      redis.disconnect();
    },
  };
});

windowCountsContract("redis", async (windowMs) => {
  const redis = await connectRedis();
  const counts = new RedisWindowCounts({ redis, keyPrefix: `${uniqueName("test:counts")}:`, name: "direct-new", windowMs });
  return {
    counts,
    async dispose() {
      await counts.close();
      redis.disconnect();
    },
  };
});

describe("RedisLoginAttempts", () => {
  it("keeps one expiring counter per key under the prefix", async () => {
    const redis = await connectRedis();
    try {
      const keyPrefix = `${uniqueName("test:login")}:`;
      const attempts = new RedisLoginAttempts({ redis, keyPrefix, windowMs: 60_000 });
      await attempts.fail("alice|127.0.0.1");
      const k = `${keyPrefix}login-fail:alice|127.0.0.1`;
      assert.equal(await redis.get(k), "1");
      const ttl = await redis.pttl(k);
      assert.ok(ttl > 50_000 && ttl <= 60_000, `pttl ${ttl}`);
      await attempts.clear("alice|127.0.0.1");
      assert.equal(await redis.exists(k), 0);
    } finally {
      redis.disconnect();
    }
  });
});

describe("RedisWindowCounts", () => {
  // Redis answers PTTL 0 for a key in the millisecond before it is gone; an add
  // there was counted in the closing window and reported as no count at all.
  it("counts every add, one made in a window's last millisecond too", async () => {
    const redis = await connectRedis();
    const counts = new RedisWindowCounts({ redis, keyPrefix: `${uniqueName("test:counts")}:`, name: "edge", windowMs: 2 });
    try {
      // 2 ms windows: a third of back-to-back adds land in a last millisecond.
      for (let i = 0; i < 1_000; i++) {
        const counted = await counts.add("k");
        assert.ok(counted.count >= 1 && counted.resetInMs > 0, `add ${i}: ${JSON.stringify(counted)}`);
      }
    } finally {
      await counts.close();
      redis.disconnect();
    }
  });
});
