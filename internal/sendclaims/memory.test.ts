import assert from "node:assert/strict";
import { sendClaimsContract } from "./contract.js";
import { MemorySendClaims } from "./memory.js";

sendClaimsContract("memory", async (ttlMs) => {
  const claims = new MemorySendClaims(ttlMs);
  return { claims, dispose: () => claims.close() };
});

describe("MemorySendClaims", () => {
  it("forgets lapsed claims as new ones are made, so it holds only the last ttl's sends", async () => {
    const clock = { ms: 0 };
    const claims = new MemorySendClaims(1_000, () => clock.ms);
    for (let i = 0; i < 100; i++) await claims.claim(`k${i}`, BigInt(i));
    clock.ms = 1_000;
    await claims.claim("fresh", 1n);
    assert.equal((claims as unknown as { claims: Map<string, unknown> }).claims.size, 1);
  });
});
