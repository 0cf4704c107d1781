import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { LIGHT_PASSWORD_PARAMS, PasswordHasher } from "../auth/passwords.js";
import type { ApiLimitsConfig } from "../throttle/config.js";
import { MemoryLoginAttempts } from "../throttle/memory.js";
import { RETRY_AFTER_HEADER } from "./errors.js";
import { ApiLimiter } from "./limits.js";
import { rpcError, TestApi } from "./testkit.js";

const LIMITS: ApiLimitsConfig = { authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 3, loginWindowMs: 60_000, maxDevicesPerAccount: 100 };

/**
 * A login storm (every device of a region signing in again at once): argon2id takes a thread for
 * tens of milliseconds per password, and what the threads cannot take yet waits. Past a few, a
 * sign-in is refused at once with UNAVAILABLE and a retry time, not left to wait out its client.
 */
describe("api: a login storm", () => {
  let api: TestApi;
  afterEach(async () => api?.close());

  it("refuses sign-ins past the hashes it may have waiting, UNAVAILABLE with a retry time, counting none as a failed login", async () => {
    const passwords = new PasswordHasher(LIGHT_PASSWORD_PARAMS, 2);
    api = await TestApi.start({ passwords, limits: new ApiLimiter(LIMITS, new MemoryLoginAttempts(LIMITS.loginWindowMs)) });
    await api.signUp("ona", "right password");
    // The hashes in hand: what a storm keeps busy.
    const held = [passwords.reserve(), passwords.reserve()];
    // Past the loginMaxFailures of 3, had they counted.
    for (let i = 0; i < 4; i++) {
      const err = await rpcError(() => api.anon.auth.login({ username: "ona", password: "right password" }));
      // Each waited its turn behind every login before it: the queue grew with the storm, and clients gave up on it.
      assert.equal(err.code, Code.Unavailable, err.message);
      assert.ok(Number(err.metadata.get(RETRY_AFTER_HEADER)) > 0, `a retry time: ${err.metadata.get(RETRY_AFTER_HEADER)}`);
    }
    const signUp = await rpcError(() => api.anon.auth.signUp({ username: "pia", password: "right password" }));
    assert.equal(signUp.code, Code.Unavailable, signUp.message);
    for (const release of held) release();
    await api.anon.auth.login({ username: "ona", password: "right password" });
    await api.anon.auth.signUp({ username: "pia", password: "right password" });
  });

  it("refuses a password confirmation (ChangePassword, DeleteAccount) past them before it is counted as a failed login", async () => {
    const passwords = new PasswordHasher(LIGHT_PASSWORD_PARAMS, 1);
    api = await TestApi.start({ passwords, limits: new ApiLimiter(LIMITS, new MemoryLoginAttempts(LIMITS.loginWindowMs)) });
    const me = await api.signUp("ona", "right password");
    const release = passwords.reserve();
    // Past the loginMaxFailures of 3, had they counted.
    for (let i = 0; i < 4; i++) {
      const err = await rpcError(() => me.c.auth.changePassword({ currentPassword: "right password", newPassword: "new password", keepOtherDevices: true }));
      // Counted before: each refused for the load took one of the owner's failures, and the fourth was RESOURCE_EXHAUSTED.
      assert.equal(err.code, Code.Unavailable, err.message);
    }
    release();
    await me.c.auth.changePassword({ currentPassword: "right password", newPassword: "new password", keepOtherDevices: true });
    await api.anon.auth.login({ username: "ona", password: "new password" });
  });
});
