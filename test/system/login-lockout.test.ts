// The failed-login allowance with its counts in the real Redis of scripts/engines.sh,
// shared by two api processes (each its own limiter), as in the cluster. Fails (never
// skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { LIGHT_PASSWORD_PARAMS } from "../../internal/auth/passwords.js";
import { ApiLimiter } from "../../internal/api/limits.js";
import { rpcError, TestApi } from "../../internal/api/testkit.js";
import type { ApiLimitsConfig } from "../../internal/throttle/config.js";
import { RedisLoginAttempts } from "../../internal/throttle/redis.js";
import { connectRedis, uniqueName } from "../support/engines.js";
import { HeldPasswords } from "../support/held-passwords.js";

const CONFIG: ApiLimitsConfig = { authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 10, loginWindowMs: 60_000, maxDevicesPerAccount: 100 };

describe("system: failed logins counted in Redis", () => {
  it("checks no more concurrent wrong logins than the allowance, spread over two api processes", async () => {
    const redis = await connectRedis();
    const keyPrefix = `${uniqueName("test:lockout")}:`;
    // Every guess under way before the first check is done.
    const passwords = new HeldPasswords(LIGHT_PASSWORD_PARAMS, 30);
    const apis = await Promise.all(
      [1, 2].map(() => TestApi.start({ passwords, limits: new ApiLimiter(CONFIG, new RedisLoginAttempts({ redis, keyPrefix, windowMs: CONFIG.loginWindowMs })) })),
    );
    try {
      // A name neither has: unknown names are counted like known ones.
      const guesses = Array.from({ length: 30 }, (_, i) =>
        rpcError(() => apis[i % 2].clients(undefined, "10.0.0.1").auth.login({ username: "nobody", password: `guess ${i}` })).then((e) => (passwords.answered(), e.code)),
      );
      const codes = await Promise.all(guesses);
      assert.equal(passwords.verified, 10);
      assert.equal(codes.filter((c) => c === Code.Unauthenticated).length, 10, "checked");
      assert.equal(codes.filter((c) => c === Code.ResourceExhausted).length, 20, "refused");
      assert.equal(await redis.get(`${keyPrefix}login-fail:account:nobody`), "10", "refused guesses are not counted for the account");
    } finally {
      await Promise.all(apis.map((a) => a.close()));
      redis.disconnect();
    }
  });
});
