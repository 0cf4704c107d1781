// The quota of new direct chats with its counts in the real Redis of scripts/engines.sh,
// shared by two api processes (each its own limiter), as in the cluster. Fails (never
// skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { ApiLimiter, NEW_DIRECT_WINDOW_MS } from "../../internal/api/limits.js";
import { rpcError, TestApi } from "../../internal/api/testkit.js";
import type { ApiLimitsConfig } from "../../internal/throttle/config.js";
import { MemoryLoginAttempts } from "../../internal/throttle/memory.js";
import { RedisWindowCounts } from "../../internal/throttle/redis.js";
import { connectRedis, uniqueName } from "../support/engines.js";

const MAX = 4;
const CONFIG: ApiLimitsConfig = {
  authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 0, loginWindowMs: 60_000, maxDevicesPerAccount: 100, maxNewDirectPerDay: MAX,
};

describe("system: new direct chats counted in Redis", () => {
  it("starts no more new chats than the quota when opens at the same moment are spread over two api processes", async () => {
    const redis = await connectRedis();
    const keyPrefix = `${uniqueName("test:direct")}:`;
    const limiter = () =>
      new ApiLimiter(CONFIG, new MemoryLoginAttempts(60_000), { newDirects: new RedisWindowCounts({ redis, keyPrefix, name: "direct-new", windowMs: NEW_DIRECT_WINDOW_MS }) });
    const first = await TestApi.start({ limits: limiter() });
    // The same stores and keys behind a second process with a limiter of its own.
    const second = await TestApi.start({ ...first.deps, limits: limiter() });
    try {
      const me = await first.signUp();
      const peers = await Promise.all(Array.from({ length: 20 }, () => first.signUp()));
      const via = [first.clients(me.accessToken), second.clients(me.accessToken)];
      const opens = await Promise.allSettled(peers.map((p, i) => via[i % 2]!.channels.openDirect({ userId: p.userId })));
      const refused = opens.flatMap((o) => (o.status === "rejected" ? [String(o.reason)] : []));
      for (const r of refused) assert.match(r, /new direct chats today/);
      assert.equal(opens.length - refused.length, MAX);
      assert.equal((await me.c.channels.listChannels({})).channels.length, MAX);

      const key = `${keyPrefix}direct-new:${me.userId}`;
      assert.equal(await redis.get(key), String(MAX), "refusals are not counted");
      const ttl = await redis.pttl(key);
      assert.ok(ttl > NEW_DIRECT_WINDOW_MS - 60_000 && ttl <= NEW_DIRECT_WINDOW_MS, `pttl ${ttl}`);

      // Full on both processes; a chat already open still opens on either.
      const opened = peers.filter((_, i) => opens[i]!.status === "fulfilled");
      for (const api of via) await api.channels.openDirect({ userId: opened[0]!.userId });
      await rpcError(() => via[1]!.channels.openDirect({ userId: peers.find((p) => !opened.includes(p))!.userId }));
    } finally {
      await Promise.all([first.close(), second.close()]);
      redis.disconnect();
    }
  });
});
