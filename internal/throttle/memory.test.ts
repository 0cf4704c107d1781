import assert from "node:assert/strict";
import { loginAttemptsContract } from "./contract.js";
import { MemoryLoginAttempts } from "./memory.js";

loginAttemptsContract("memory", async (windowMs) => {
  const attempts = new MemoryLoginAttempts(windowMs);
  return { attempts, dispose: () => attempts.close() };
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
});
