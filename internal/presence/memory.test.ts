import assert from "node:assert/strict";
import { presenceStoreContract } from "./contract.js";
import { MemoryPresenceStore } from "./memory.js";

presenceStoreContract("memory", async () => {
  const store = new MemoryPresenceStore();
  return { store, dispose: () => store.close() };
});

describe("MemoryPresenceStore: what it keeps of users who went offline", () => {
  const T = 1_700_000_000_000;
  const SETTLE = 60_000;
  const GRACE = 1_000;

  /** `n` users online at T, offline by a sweep at T + GRACE, their flips told; returns their ids. */
  async function cameAndWent(store: MemoryPresenceStore, n: number, from = 1n): Promise<bigint[]> {
    const users = Array.from({ length: n }, (_, i) => from + BigInt(i));
    for (const u of users) await store.touch(u, 1n, T, T + GRACE);
    for (const f of await store.expire(T + GRACE, n)) await store.told(f.userId, f.version);
    for (const u of users) await store.told(u, (await store.latest(u)).version);
    return users;
  }

  it("keeps only a last seen of a user offline for a while, answering as before", async () => {
    const store = new MemoryPresenceStore({ settleMs: SETTLE });
    const users = await cameAndWent(store, 1_000);
    const before = await store.get(users, T + 2 * GRACE);
    assert.deepEqual(before[0], { userId: 1n, online: false, lastSeenAtMs: T });
    const versionBefore = (await store.latest(1n)).version;
    assert.deepEqual(store.retained, { whole: 1_000, lastSeen: 0 });

    await store.expire(T + GRACE + SETTLE, 500);
    assert.deepEqual(store.retained, { whole: 0, lastSeen: 1_000 }, "every user that went offline a settle period ago is held compactly");
    assert.deepEqual(await store.get(users, T + GRACE + SETTLE), before, "the same last-seen answers");
    assert.equal((await store.latest(1n)).lastSeenAtMs, T);

    // Known, not lost: a late disconnect (ifAlive, even orUnknownUser) brings nothing back.
    assert.equal(await store.touch(1n, 1n, T + GRACE + SETTLE, T + 2 * GRACE + SETTLE, { ifAlive: true, orUnknownUser: true }), undefined);
    assert.deepEqual(store.retained, { whole: 0, lastSeen: 1_000 });
    // Back online: a flip with a version above every one the user had.
    const back = await store.touch(1n, 2n, T + 2 * SETTLE, T + 2 * SETTLE + GRACE);
    assert.ok(back && back.version > versionBefore, `${back?.version} > ${versionBefore}`);
    assert.deepEqual(store.retained, { whole: 1, lastSeen: 999 });
    const off = (await store.drop(1n, 2n, T + 2 * SETTLE + 10))!;
    assert.ok(off.version > back.version);
    assert.deepEqual(await store.get([1n], T + 2 * SETTLE + 20), [{ userId: 1n, online: false, lastSeenAtMs: T + 2 * SETTLE + 10 }]);
  });

  it("keeps a user whose flip is still untold whole until it was told", async () => {
    const store = new MemoryPresenceStore({ settleMs: SETTLE });
    await store.touch(7n, 1n, T, T + GRACE);
    const [off] = await store.expire(T + GRACE, 10);
    await store.expire(T + GRACE + SETTLE, 10);
    assert.deepEqual(store.retained, { whole: 1, lastSeen: 0 }, "its flip is not told: a sweep will claim and tell it");
    assert.deepEqual(await store.claimUntold(T + GRACE + SETTLE, 1, 10), [off]);
    await store.told(7n, off!.version);
    await store.expire(T + GRACE + 2 * SETTLE, 10);
    assert.deepEqual(store.retained, { whole: 0, lastSeen: 1 });
  });

  it("forgets last seens past their retention, and the oldest beyond its cap", async () => {
    const store = new MemoryPresenceStore({ settleMs: SETTLE, lastSeenTtlMs: 10 * SETTLE, maxLastSeen: 100 });
    const users = await cameAndWent(store, 150);
    await store.expire(T + GRACE + SETTLE, 10);
    assert.deepEqual(store.retained, { whole: 0, lastSeen: 100 });
    assert.deepEqual(await store.get([users[0]!, users[149]!], T + GRACE + SETTLE), [
      { userId: users[0]!, online: false },
      { userId: users[149]!, online: false, lastSeenAtMs: T },
    ]);
    assert.deepEqual(await store.latest(users[0]!), { userId: users[0]!, online: false, version: 0 }, "forgotten: as never seen");
    await store.expire(T + 10 * SETTLE + 1, 10);
    assert.deepEqual(store.retained, { whole: 0, lastSeen: 0 }, "past the retention");
    assert.deepEqual(await store.get([users[149]!], T + 10 * SETTLE + 1), [{ userId: users[149]!, online: false }]);
  });
});

describe("MemoryPresenceStore: last seens of users online, written through", () => {
  const T = 1_700_000_000_000;
  const GRACE = 60_000;

  it("writes at most 1,000 a sweep: a crowd that came online together is spread over the next sweeps, and stays spread", async () => {
    const perSweep: number[] = [];
    const store = new MemoryPresenceStore({
      lastSeenWriteMs: 10_000,
      lastSeenLog: { record: async (entries) => void perSweep.push(entries.length), read: async () => new Map() },
    });
    for (let u = 1n; u <= 2_500n; u++) await store.touch(u, 1n, T, T + 10 * GRACE);
    for (let now = T + 1_000; now <= T + 15_000; now += 1_000) {
      const before = perSweep.length;
      await store.expire(now, 500);
      if (perSweep.length === before) perSweep.push(0);
    }
    // Soon after coming online, 1,000 a sweep; then each again an interval after its first write.
    assert.deepEqual(perSweep, [1_000, 1_000, 500, 0, 0, 0, 0, 0, 0, 0, 1_000, 1_000, 500, 0, 0]);
  });
});

describe("MemoryPresenceStore: its log unreadable (chat.db failing)", () => {
  const T = 1_700_000_000_000;

  it("answers from memory without the kept last seen, and hands the failure on, rather than failing", async () => {
    const failures: unknown[] = [];
    const store = new MemoryPresenceStore({
      lastSeenLog: { record: async () => {}, read: async () => Promise.reject(new Error("disk I/O error")) },
      onLastSeenLogError: (err) => failures.push(err),
    });
    await store.touch(1n, 1n, T, T + 1_000);
    assert.deepEqual(await store.get([1n, 2n], T + 500), [{ userId: 1n, online: true }, { userId: 2n, online: false }]);
    assert.deepEqual(await store.latest(2n), { userId: 2n, online: false, version: 0 });
    assert.equal(failures.length, 2);
    await store.close();
  });
});
