// RedisSendClaims against a Redis that keeps the connection and stops answering (paused,
// a frozen VM, packets dropped): a fake on loopback, no engine needed.
import assert from "node:assert/strict";
import { outcomeAfter, silentRedis } from "../../test/support/silent-redis.js";
import { waitFor } from "../../test/support/wait.js";
import { RedisSendClaims } from "./redis.js";

describe("RedisSendClaims when Redis stops answering", function () {
  this.timeout(30_000);

  it("fails each claim within its timeout, then drops the silent socket and connects again", async () => {
    const redis = await silentRedis();
    const claims = new RedisSendClaims({ url: redis.url, ttlMs: 60_000 });
    try {
      await claims.connect();
      // The default timeout is 250 ms; the rest is slack for a loaded machine.
      assert.equal(await outcomeAfter(claims.claim("u/d/c/m1", 1n), 2_000), "rejected: Command timed out");
      // Claims time out one by one for as long as the connection stands: kept, a socket whose
      // peer is gone without a word (a dead host, a dropped route) stood until TCP gave up on
      // it, a quarter of an hour, and no claim went through meanwhile even with Redis back.
      await waitFor(() => redis.stats.connections >= 2, "a new connection once the socket stayed silent", 15_000);
    } finally {
      (claims as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });
});
