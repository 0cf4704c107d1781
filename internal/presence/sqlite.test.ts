import assert from "node:assert/strict";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { SqliteAccountStore } from "../storage/sqlite/account-store.js";
import { MemoryPresenceStore } from "./memory.js";
import type { LastSeenLog } from "./last-seen.js";
import { SqliteLastSeenLog } from "./sqlite.js";

const T = 1_700_000_000_000;
const DAY = 24 * 3600 * 1000;

describe("SqliteLastSeenLog", () => {
  let db: SqliteDatabase;
  let accounts: SqliteAccountStore;
  let log: SqliteLastSeenLog;

  const signUp = async (...userIds: bigint[]) => {
    for (const userId of userIds) {
      await accounts.createUser({ userId, username: `u${userId}`, displayName: "u", passwordHash: "h", createdAtMs: T });
    }
  };
  const rows = () => Number(db.prepare("SELECT count(*) FROM presence_last_seen").pluck().get());

  beforeEach(() => {
    db = openDatabase(":memory:");
    accounts = new SqliteAccountStore(db);
    log = new SqliteLastSeenLog(db);
  });
  afterEach(() => db.close());

  it("keeps each user's latest last seen, and reads those of the users asked for", async () => {
    await signUp(1n, 2n, 3n);
    await log.record([{ userId: 1n, atMs: T + 10 }, { userId: 2n, atMs: T + 20 }], T - DAY);
    await log.record([{ userId: 1n, atMs: T + 5 }], T - DAY); // an older time (a late write) takes no later one back
    await log.record([{ userId: 2n, atMs: T + 30 }], T - DAY);
    assert.deepEqual(await log.read([1n, 2n, 3n, 4n], T - DAY), new Map([[1n, T + 10], [2n, T + 30]]));
  });

  it("answers nothing past the retention, and takes such rows away as it writes", async () => {
    await signUp(...Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    await log.record(Array.from({ length: 39 }, (_, i) => ({ userId: BigInt(i + 1), atMs: T + i })), T - DAY);
    assert.equal(rows(), 39);
    assert.deepEqual(await log.read([1n, 39n], T + 37), new Map([[39n, T + 38]]), "only times later than the cutoff");
    // Each write takes away more expired rows than it adds: the table holds the users seen within the retention.
    await log.record([{ userId: 40n, atMs: T + 100 * DAY }], T + 50);
    assert.equal(rows(), 39 + 1 - 17);
    await log.record([{ userId: 40n, atMs: T + 100 * DAY + 1 }], T + 50);
    assert.equal(rows(), 39 + 1 - 2 * 17);
    await log.record([{ userId: 40n, atMs: T + 100 * DAY + 2 }], T + 50);
    assert.equal(rows(), 1, "only the user seen within the retention");
    assert.deepEqual(await log.read([1n, 40n], 0), new Map([[40n, T + 100 * DAY + 2]]));
  });

  it("keeps no last seen of a deleted account: its deletion takes it away, and a later flip writes none", async () => {
    await signUp(1n, 2n);
    await log.record([{ userId: 1n, atMs: T }, { userId: 2n, atMs: T }], T - DAY);
    await accounts.deleteUser(1n);
    assert.deepEqual(await log.read([1n, 2n], 0), new Map([[2n, T]]));
    // Its devices' grace period may end after the deletion: that flip to offline is written nowhere.
    await log.record([{ userId: 1n, atMs: T + 1 }], T - DAY);
    await log.record([{ userId: 9n, atMs: T + 1 }], T - DAY); // never an account
    assert.deepEqual(await log.read([1n, 9n], 0), new Map());
    assert.equal(rows(), 1);
  });

  describe("under MemoryPresenceStore, across a restart", () => {
    const GRACE = 1_000;
    const restarted = () => new MemoryPresenceStore({ lastSeenLog: new SqliteLastSeenLog(db) });

    it("answers a user it holds nothing of with the last seen kept before the restart, still offline", async () => {
      await signUp(1n, 2n, 3n);
      const before = restarted();
      await before.touch(1n, 10n, T, T + GRACE);
      await before.touch(2n, 20n, T, T + 2 * GRACE);
      const [off] = await before.expire(T + GRACE, 10);
      assert.deepEqual(off && { ...off, version: 0 }, { userId: 1n, online: false, lastSeenAtMs: T, version: 0 });
      await before.drop(2n, 20n, T + GRACE + 500);
      await before.close();

      const after = restarted();
      assert.deepEqual(await after.get([1n, 2n, 3n], T + 2 * GRACE), [
        { userId: 1n, online: false, lastSeenAtMs: T },
        { userId: 2n, online: false, lastSeenAtMs: T + GRACE + 500 },
        { userId: 3n, online: false },
      ]);
      // What tellLatest pushes (a new friend after the restart): the kept last seen, with it as version (as a settled user).
      assert.deepEqual(await after.latest(1n), { userId: 1n, online: false, lastSeenAtMs: T, version: T });
      assert.deepEqual(await after.latest(3n), { userId: 3n, online: false, version: 0 });
      // Back online: a flip above every version the user had.
      const back = await after.touch(1n, 11n, T + 3 * GRACE, T + 4 * GRACE);
      assert.ok(back?.online && back.version > off!.version, `${back?.version} > ${off!.version}`);
      await after.close();
    });

    it("keeps the last seen of users still online when it closes (a restart drains their sessions)", async () => {
      await signUp(1n);
      const before = restarted();
      await before.touch(1n, 10n, T, T + GRACE);
      await before.touch(1n, 10n, T + 700, T + 700 + GRACE); // the session's end, drained
      await before.close();
      assert.deepEqual(await restarted().get([1n], T + 800), [{ userId: 1n, online: false, lastSeenAtMs: T + 700 }]);
    });

    it("writes the last seen of users still online through at most once per interval, so a crash leaves them no older one", async () => {
      await signUp(1n, 2n);
      const WRITE_EVERY = 60_000;
      const HEARTBEAT = 25_000;
      const LONG_GRACE = 2 * HEARTBEAT + 10_000;
      const inner = new SqliteLastSeenLog(db);
      /** Entries written per user, and the writes under way (a crash test reads what they committed). */
      const written = new Map<bigint, number>();
      const writing: Promise<void>[] = [];
      const log: LastSeenLog = {
        record(entries, forgetBeforeMs) {
          for (const e of entries) written.set(e.userId, (written.get(e.userId) ?? 0) + 1);
          const p = inner.record(entries, forgetBeforeMs);
          writing.push(p);
          return p;
        },
        read: (userIds, sinceMs) => inner.read(userIds, sinceMs),
      };
      // Days ago both went offline; now both come back, user 1 for good, user 2 for a moment.
      await inner.record([{ userId: 1n, atMs: T - 3 * DAY }, { userId: 2n, atMs: T - 3 * DAY }], T - 90 * DAY);
      const before = new MemoryPresenceStore({ lastSeenLog: log, lastSeenWriteMs: WRITE_EVERY });
      await before.touch(1n, 10n, T, T + LONG_GRACE);
      await before.touch(2n, 20n, T, T + LONG_GRACE);
      // Ten minutes of heartbeats of user 1 (user 2's last at T + 1 s), and a sweep every second.
      let last = T;
      for (let now = T + 1_000; now <= T + 10 * 60_000; now += 1_000) {
        if ((now - T) % HEARTBEAT === 0) await before.touch(1n, 10n, (last = now), now + LONG_GRACE);
        if (now === T + 1_000) await before.touch(2n, 20n, now, now + LONG_GRACE);
        await before.expire(now, 500);
      }
      await Promise.all(writing);
      // Killed here (no close()): what chat.db holds is what a restart shows.
      const crashedAt = T + 10 * 60_000;
      const [one, two] = await restarted().get([1n, 2n], crashedAt + 1_000);
      assert.equal(one!.online, false);
      assert.ok(one!.lastSeenAtMs! >= crashedAt - WRITE_EVERY - HEARTBEAT && one!.lastSeenAtMs! <= last, `user 1 last seen ${one!.lastSeenAtMs! - T} ms after T, last heard ${last - T}`);
      assert.deepEqual(two, { userId: 2n, online: false, lastSeenAtMs: T + 1_000 }, "user 2: went offline by a sweep, as last heard");
      // Once soon after coming online, then once a minute: ten minutes, eleven writes at most.
      assert.ok(written.get(1n)! <= 11, `user 1 written ${written.get(1n)} times`);
    });

    it("forgets a kept last seen past the store's retention", async () => {
      await signUp(1n);
      const before = restarted();
      await before.touch(1n, 10n, T, T + GRACE);
      await before.drop(1n, 10n, T + 1);
      await before.close();
      const after = new MemoryPresenceStore({ lastSeenLog: new SqliteLastSeenLog(db), lastSeenTtlMs: DAY });
      assert.deepEqual(await after.get([1n], T + DAY), [{ userId: 1n, online: false, lastSeenAtMs: T + 1 }]);
      assert.deepEqual(await after.get([1n], T + DAY + 1), [{ userId: 1n, online: false }]);
    });
  });
});
