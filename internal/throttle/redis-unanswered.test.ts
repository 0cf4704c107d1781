// RedisLoginAttempts against a Redis that keeps the connection and stops answering (paused,
// a frozen VM, packets dropped): a fake on loopback, no engine needed.
import assert from "node:assert/strict";
import { RedisLoginAttempts, RedisWindowCounts } from "./redis.js";
import { outcomeAfter, silentRedis } from "../../test/support/silent-redis.js";

describe("RedisLoginAttempts when Redis stops answering", function () {
  this.timeout(30_000);

  it("fails every call within a bound, so a login goes on uncounted instead of waiting for ever", async () => {
    const redis = await silentRedis();
    const attempts = new RedisLoginAttempts({ url: redis.url, windowMs: 60_000 });
    try {
      const calls = {
        get: attempts.get("alice|10.0.0.1"),
        fail: attempts.fail("alice|10.0.0.1"),
        clear: attempts.clear("alice|10.0.0.1"),
        rememberSuccess: attempts.rememberSuccess("alice|10.0.0.1", 60_000),
        succeededBefore: attempts.succeededBefore("alice|10.0.0.1"),
      };
      // The default timeout is 1 s; the rest is slack for a loaded machine.
      const outcomes = await Promise.all(Object.values(calls).map((p) => outcomeAfter(p, 3_000)));
      for (const [i, name] of Object.keys(calls).entries()) assert.match(outcomes[i]!, /^rejected/, name);
    } finally {
      (attempts as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });

  it("fails every call of the window counts within a bound too, so a new direct chat goes on uncounted", async () => {
    const redis = await silentRedis();
    const counts = new RedisWindowCounts({ url: redis.url, name: "direct-new", windowMs: 60_000 });
    try {
      const calls = [counts.get("1"), counts.add("1"), counts.takeBack("1", { count: 1, resetInMs: 60_000, windowEndsAt: 1 }), counts.clear("1")];
      const outcomes = await Promise.all(calls.map((p) => outcomeAfter(p, 3_000)));
      for (const o of outcomes) assert.match(o, /^rejected/);
    } finally {
      (counts as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });
});
