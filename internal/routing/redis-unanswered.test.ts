// RedisSessionRoutes against a Redis that keeps the connection and stops answering (paused,
// a frozen VM, packets dropped): a fake on loopback, no engine needed.
import assert from "node:assert/strict";
import { waitFor } from "../../test/support/wait.js";
import { RedisSessionRoutes } from "./redis.js";
import { outcomeAfter, silentRedis } from "../../test/support/silent-redis.js";

describe("RedisSessionRoutes when Redis stops answering", function () {
  this.timeout(30_000);

  it("fails every call within a bound instead of waiting for ever, then drops the silent socket and reconnects (a reset)", async () => {
    const redis = await silentRedis();
    const routes = new RedisSessionRoutes({ url: redis.url });
    let resets = 0;
    routes.onReset(() => resets++);
    try {
      await routes.connect();
      const calls = {
        add: routes.add(1n, "s1"),
        remove: routes.remove(1n, "s1"),
        refresh: routes.refresh("s1", [1n, 2n, 3n]),
        lookup: routes.lookup([1n, 2n]),
        ping: routes.ping(),
      };
      // The default timeout is 1 s; the rest is slack for a loaded machine.
      const outcomes = await Promise.all(Object.values(calls).map((p) => outcomeAfter(p, 3_000)));
      assert.deepStrictEqual(Object.fromEntries(Object.keys(calls).map((k, i) => [k, outcomes[i]])), {
        add: "rejected: Command timed out",
        remove: "rejected: Command timed out",
        refresh: "rejected: Command timed out",
        lookup: "rejected: Command timed out",
        ping: "rejected: Command timed out",
      });
      await waitFor(() => resets > 0, "a reconnect once the socket stayed silent", 15_000);
      assert.ok(redis.stats.connections >= 2, `${redis.stats.connections} connections`);
    } finally {
      (routes as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });
});
