import assert from "node:assert/strict";
import { loginAttemptsContract, windowCountsContract } from "./contract.js";
import { MemoryLoginAttempts, MemoryWindowCounts } from "./memory.js";

loginAttemptsContract("memory", async (windowMs) => {
  const attempts = new MemoryLoginAttempts(windowMs);
  return { attempts, dispose: () => attempts.close() };
});

windowCountsContract("memory", async (windowMs) => {
  const counts = new MemoryWindowCounts(windowMs);
  return { counts, dispose: () => counts.close() };
});

describe("MemoryLoginAttempts", () => {
  it("holds at most `capacity` keys, forgetting the least recently failed", async () => {
    const a = new MemoryLoginAttempts(60_000, { capacity: 2 });
    await a.fail("a");
    await a.fail("b");
    await a.fail("a");
    await a.fail("c");
    assert.equal((await a.get("a")).failures, 2);
    assert.equal((await a.get("b")).failures, 0);
    assert.equal((await a.get("c")).failures, 1);
  });

  it("times its windows on the monotonic clock: a wall clock stepped back neither stretches a lockout nor brings back a success", async () => {
    const wallNow = Date.now;
    let stepMs = 0;
    Date.now = () => wallNow() + stepMs; // the system clock, as NTP or a restored VM sets it
    try {
      const a = new MemoryLoginAttempts(60_000);
      await a.fail("pair");
      await a.rememberSuccess("known", 1_000);
      stepMs = -2 * 3600_000; // stepped back two hours: no time passed
      const counted = await a.fail("pair");
      assert.equal(counted.failures, 2);
      assert.ok(counted.resetInMs <= 60_000, `the window ends in ${counted.resetInMs} ms, not two hours later`);
      stepMs = 2 * 3600_000;
      assert.equal((await a.get("pair")).failures, 2, "a clock stepped forward does not end the window early");
      assert.equal(await a.succeededBefore("known"), true, "nor forget a success");
    } finally {
      Date.now = wallNow;
    }
  });
});
