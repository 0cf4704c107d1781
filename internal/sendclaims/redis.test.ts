// RedisSendClaims against the real Redis of scripts/engines.sh: the contract suite, the
// key layout, and failing fast (never queueing a send) when Redis is away. Fails (never
// skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { connectRedis, engineConfig, uniqueName } from "../../test/support/engines.js";
import { sendClaimsContract } from "./contract.js";
import { sendKey } from "./port.js";
import { RedisSendClaims } from "./redis.js";

async function openClaims(keyPrefix: string, ttlMs: number, url = engineConfig().redisUrl) {
  const claims = new RedisSendClaims({ url, keyPrefix, ttlMs });
  if (!url.endsWith(":1")) await claims.connect();
  return claims;
}

sendClaimsContract("redis", async (ttlMs) => {
  const claims = await openClaims(`${uniqueName("test:claims")}:`, ttlMs);
  return { claims, dispose: () => claims.close() };
});

describe("RedisSendClaims on a real Redis", function () {
  this.timeout(30_000);

  it("keeps one key per send, holding the id and expiring with the claim", async () => {
    const admin = await connectRedis();
    const keyPrefix = `${uniqueName("test:claims")}:`;
    const claims = await openClaims(keyPrefix, 60_000);
    try {
      await claims.claim(sendKey(1n, 2n, 3n, "c-1"), 77n);
      const key = `${keyPrefix}send:1/2/3/c-1`;
      assert.equal(await admin.get(key), "77");
      const ttl = await admin.pttl(key);
      assert.ok(ttl > 55_000 && ttl <= 60_000, `pttl ${ttl}`);
    } finally {
      await claims.close();
      await admin.quit();
    }
  });

  it("claims on after Redis forgot its scripts (a restart, SCRIPT FLUSH)", async () => {
    const admin = await connectRedis();
    const claims = await openClaims(`${uniqueName("test:claims")}:`, 60_000);
    try {
      assert.equal(await claims.claim(sendKey(1n, 2n, 3n, "before"), 5n), 5n);
      await admin.script("FLUSH");
      assert.equal(await claims.claim(sendKey(1n, 2n, 3n, "after"), 6n), 6n);
      assert.equal(await claims.claim(sendKey(1n, 2n, 3n, "after"), 7n), 6n, "the first claim still holds the key");
    } finally {
      await claims.close();
      await admin.quit();
    }
  });

  it("fails a claim at once, instead of holding the send, while Redis cannot be reached", async () => {
    const claims = await openClaims("test:", 60_000, "redis://127.0.0.1:1");
    try {
      await assert.rejects(claims.connect(), /cannot connect to Redis at redis:\/\/127\.0\.0\.1:1 \(send claims\)/);
      const started = performance.now();
      await assert.rejects(claims.claim("k", 1n));
      // Not a timing assertion of speed: a queued command would wait for reconnects (seconds).
      assert.ok(performance.now() - started < 2_000, "the claim waited for Redis to come back");
    } finally {
      await claims.close();
    }
  });
});
