import assert from "node:assert/strict";
import type { PresenceStore } from "./port.js";

export interface PresenceStoreHandle {
  store: PresenceStore;
  dispose(): Promise<void>;
}

/**
 * The PresenceStore contract, run unchanged against every adapter. Ids are
 * random per test so a shared real Redis can be used.
 */
export function presenceStoreContract(name: string, make: () => Promise<PresenceStoreHandle>): void {
  describe(`PresenceStore contract: ${name}`, function () {
    this.timeout(20_000);
    let h: PresenceStoreHandle;
    let store: PresenceStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(async () => {
      await h?.dispose();
    });
    // Random 63-bit ids, including some above 2^53 (they must never pass through a number).
    const id = () => (BigInt(Math.floor(Math.random() * 2 ** 31)) << 32n) | BigInt(Math.floor(Math.random() * 2 ** 32));
    const T = 1_700_000_000_000;

    it("reports the flip to online once, for the first live device", async () => {
      const u = id();
      assert.equal((await store.touch(u, 1n, T, T + 1000))?.online, true);
      assert.equal(await store.touch(u, 1n, T + 10, T + 1010), undefined, "a heartbeat is not a flip");
      assert.equal(await store.touch(u, 2n, T + 20, T + 1020), undefined, "a second device is not a flip");
      assert.deepEqual(await store.get([u], T + 30), [{ userId: u, online: true }]);
    });

    it("reads unknown users as offline without last seen, in input order", async () => {
      const [a, b] = [id(), id()];
      await store.touch(b, 1n, T, T + 1000);
      assert.deepEqual(await store.get([a, b], T + 1), [
        { userId: a, online: false },
        { userId: b, online: true },
      ]);
      assert.deepEqual(await store.get([], T), []);
    });

    it("keeps a user online while any device is, and expires them once, with last seen = last alive", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 1000);
      await store.touch(u, 2n, T + 500, T + 1500);
      // Device 1 expired, device 2 still alive: online, no flip.
      assert.deepEqual(await store.get([u], T + 1200), [{ userId: u, online: true }]);
      assert.deepEqual((await store.expire(T + 1200, 1000)).filter((f) => f.userId === u), []);
      // Device 2 heartbeats once more, then both are gone.
      await store.touch(u, 2n, T + 1400, T + 2400);
      assert.deepEqual(await store.get([u], T + 2400), [{ userId: u, online: false, lastSeenAtMs: T + 1400 }]);
      const flips = (await store.expire(T + 2400, 1000)).filter((f) => f.userId === u);
      assert.deepEqual(
        flips.map(({ version: _, ...f }) => f),
        [{ userId: u, online: false, lastSeenAtMs: T + 1400 }],
      );
      assert.deepEqual((await store.expire(T + 2500, 1000)).filter((f) => f.userId === u), [], "a flip is reported once");
      assert.deepEqual(await store.get([u], T + 9999), [{ userId: u, online: false, lastSeenAtMs: T + 1400 }]);
      // Back again: a new flip.
      assert.equal((await store.touch(u, 1n, T + 5000, T + 6000))?.online, true);
      assert.deepEqual(await store.get([u], T + 5001), [{ userId: u, online: true }]);
    });

    it("drops a logged-out device at once; the last one flips the user offline", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 60_000);
      await store.touch(u, 2n, T, T + 60_000);
      assert.equal(await store.drop(u, 1n, T + 100), undefined, "device 2 is still online");
      assert.deepEqual(await store.get([u], T + 100), [{ userId: u, online: true }]);
      assert.equal((await store.drop(u, 2n, T + 200))?.lastSeenAtMs, T + 200);
      assert.deepEqual(await store.get([u], T + 201), [{ userId: u, online: false, lastSeenAtMs: T + 200 }]);
      assert.equal(await store.drop(u, 2n, T + 300), undefined, "dropping again is no flip");
      assert.deepEqual((await store.expire(T + 120_000, 1000)).filter((f) => f.userId === u), [], "nothing left to expire");
      assert.equal(await store.drop(id(), 1n, T), undefined, "unknown user");
    });

    it("counts a device dropped while another keeps the user online toward the last seen of the later expiry", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 1_000); // the phone
      await store.touch(u, 2n, T, T + 1_000); // the laptop
      await store.touch(u, 1n, T + 100, T + 1_100, { ifAlive: true }); // the phone's socket drops: its grace period
      await store.touch(u, 2n, T + 400, T + 1_400);
      assert.equal(await store.drop(u, 2n, T + 500), undefined, "online through the phone's grace period");
      const flips = (await store.expire(T + 1_200, 1000)).filter((f) => f.userId === u);
      assert.deepEqual(flips.map((f) => f.lastSeenAtMs), [T + 500], "the laptop was alive until its logout");
      assert.deepEqual(await store.get([u], T + 1_300), [{ userId: u, online: false, lastSeenAtMs: T + 500 }]);
    });

    it("never moves the last seen back for a logout told late (replayed once the store answers) after a later one of another device", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 60_000); // the phone, logged out at T + 100 on a chat server that could not say so then
      await store.touch(u, 2n, T, T + 60_000); // the laptop
      assert.equal(await store.drop(u, 2n, T + 300), undefined, "the phone is still online");
      const flip = await store.drop(u, 1n, T + 100);
      assert.equal(flip?.lastSeenAtMs, T + 300, "the laptop was alive until its logout");
      assert.deepEqual(await store.get([u], T + 400), [{ userId: u, online: false, lastSeenAtMs: T + 300 }]);
    });

    it("moves no last seen for a drop of a device it does not hold, even as another device's expiry is pruned by it", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 1_000); // a tablet that went quiet
      await store.touch(u, 2n, T + 500, T + 5_000); // the phone
      // A device with no presence (a revoked old laptop) is dropped after the tablet expired.
      assert.equal(await store.drop(u, 9n, T + 2_000), undefined);
      const flips = (await store.expire(T + 5_000, 1000)).filter((f) => f.userId === u);
      assert.deepEqual(flips.map((f) => f.lastSeenAtMs), [T + 500], "last alive was the phone's heartbeat");
      assert.deepEqual(await store.get([u], T + 6_000), [{ userId: u, online: false, lastSeenAtMs: T + 500 }]);
    });

    it("with ifAlive, extends a live device but never revives an expired one", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 1000);
      assert.equal(await store.touch(u, 1n, T + 900, T + 1900, { ifAlive: true }), undefined);
      assert.deepEqual(await store.get([u], T + 1500), [{ userId: u, online: true }], "extended");
      assert.equal(await store.touch(u, 1n, T + 2000, T + 3000, { ifAlive: true }), undefined);
      assert.deepEqual(await store.get([u], T + 2000), [{ userId: u, online: false, lastSeenAtMs: T + 900 }], "not revived");
      assert.equal(await store.touch(id(), 1n, T, T + 1000, { ifAlive: true }), undefined, "unknown device");
    });

    it("never takes back a later touch of the device (a silent session ended or touched again as of its last frame, after the device came back on another)", async () => {
      const u = id();
      await store.touch(u, 1n, T, T + 1000); // the old session's last frame
      await store.touch(u, 1n, T + 800, T + 1800); // the device's new session, on another server
      assert.equal(await store.touch(u, 1n, T, T + 1000), undefined); // the old one touched again after a store failure
      assert.equal(await store.touch(u, 1n, T, T + 1000, { ifAlive: true }), undefined); // the old one found silent
      assert.deepEqual((await store.expire(T + 1200, 1000)).filter((f) => f.userId === u), [], "online through its new session");
      assert.deepEqual(await store.get([u], T + 1200), [{ userId: u, online: true }]);
      // Its own end, as of now, still starts its grace period.
      await store.touch(u, 1n, T + 1500, T + 2500, { ifAlive: true });
      assert.deepEqual(await store.get([u], T + 2000), [{ userId: u, online: true }]);
      assert.deepEqual((await store.expire(T + 2500, 1000)).filter((f) => f.userId === u).map((f) => f.lastSeenAtMs), [T + 1500]);
    });

    it("with ifAlive and orUnknownUser, writes a device of a user it holds nothing of (lost data), but never revives a known user's device", async () => {
      const lost = id();
      // Redis restarted empty: the session that ends now was alive a moment ago.
      const flip = await store.touch(lost, 1n, T + 100, T + 1100, { ifAlive: true, orUnknownUser: true });
      assert.equal(flip?.online, true, "written, and the user is online again");
      assert.deepEqual((await store.expire(T + 1100, 1000)).filter((f) => f.userId === lost).map((f) => f.lastSeenAtMs), [T + 100], "the sweep ends its grace period");

      // A known user: the device expired (or was dropped at logout), and stays gone.
      const known = id();
      await store.touch(known, 1n, T, T + 1000);
      assert.equal(await store.touch(known, 1n, T + 2000, T + 3000, { ifAlive: true, orUnknownUser: true }), undefined);
      assert.equal((await store.get([known], T + 2000))[0]!.online, false, "expired: not revived");
      await store.touch(known, 2n, T + 2000, T + 3000);
      await store.drop(known, 2n, T + 2100);
      assert.equal(await store.touch(known, 2n, T + 2200, T + 3200, { ifAlive: true, orUnknownUser: true }), undefined);
      assert.equal((await store.get([known], T + 2200))[0]!.online, false, "logged out: not revived");
    });

    it("numbers every flip of a user with a higher version, and latest() answers the last one", async () => {
      const u = id();
      assert.deepEqual(await store.latest(u), { userId: u, online: false, version: 0 }, "never seen");
      const on = (await store.touch(u, 1n, T, T + 1000))!;
      assert.deepEqual(await store.latest(u), on);
      assert.equal(await store.touch(u, 1n, T + 10, T + 1010), undefined);
      assert.deepEqual(await store.latest(u), on, "a heartbeat is no flip and changes nothing");
      const off = (await store.drop(u, 1n, T + 20))!;
      assert.ok(off.version > on.version, `${off.version} > ${on.version}`);
      assert.deepEqual(await store.latest(u), off);
      const on2 = (await store.touch(u, 1n, T + 20, T + 1020))!;
      assert.ok(on2.version > off.version, "flips within one millisecond still go up");
      const [off2] = (await store.expire(T + 1020, 1000)).filter((f) => f.userId === u);
      assert.ok(off2!.version > on2.version);
      assert.deepEqual(await store.latest(u), { userId: u, online: false, lastSeenAtMs: T + 20, version: off2!.version });
      assert.ok(off2!.version >= T + 1020, "at least the flip's time, so versions never repeat after the store lost a record");
    });

    it("holds each flip untold until told, and hands an untold one to one claimer at a time, its latest state", async () => {
      const W = 10_000;
      const [quiet, told, later] = [id(), id(), id()];
      const byUser = (a: { userId: bigint }, b: { userId: bigint }) => (a.userId < b.userId ? -1 : 1);
      await store.touch(quiet, 1n, W, W + 100);
      const on = (await store.touch(told, 1n, W, W + 100))!;
      await store.told(told, on.version);
      const first = (await store.touch(later, 1n, W, W + 100))!;
      const off = (await store.drop(later, 1n, W + 5))!;
      await store.told(later, first.version); // an older flip's telling leaves the later one untold

      assert.deepEqual(await store.claimUntold(W + 50, 100, 1000), [], "not due yet");
      const claimed = (await store.claimUntold(W + 200, 100, 1000)).sort(byUser);
      assert.deepEqual(claimed, [await store.latest(quiet), off].sort(byUser));
      assert.deepEqual(await store.claimUntold(W + 250, 100, 1000), [], "claimed: nobody else gets them for a while");
      await store.told(later, off.version);
      assert.deepEqual((await store.claimUntold(W + 300, 100, 1000)).map((f) => f.userId), [quiet], "still untold a while after the claim");
      await store.touch(told, 2n, W + 400, W + 500); // no flip: still told
      const second = id();
      await store.touch(second, 1n, W + 400, W + 500);
      const one = await store.claimUntold(W + 1000, 100, 1);
      const other = await store.claimUntold(W + 1000, 100, 1);
      assert.equal(one.length + other.length, 2, "at most limit per call");
      assert.deepEqual([...one, ...other].map((f) => f.userId).sort(), [quiet, second].sort(), "told users never");
    });

    it("answers a ping", async () => {
      await store.ping();
    });

    it("reports each offline flip to one caller only when callers race", async () => {
      const users = [id(), id(), id(), id(), id()];
      for (const u of users) await store.touch(u, 7n, T, T + 100);
      const results = await Promise.all([store.expire(T + 200, 1000), store.expire(T + 200, 1000), store.expire(T + 200, 1000)]);
      const mine = results.flat().filter((f) => users.includes(f.userId));
      assert.equal(mine.length, users.length);
      assert.equal(new Set(mine.map((f) => f.userId)).size, users.length);
    });

    it("returns at most limit flips per call", async () => {
      const users = [id(), id(), id()];
      // Far in the past relative to other tests' times, so only these are due.
      for (const u of users) await store.touch(u, 1n, 1000, 2000);
      const first = await store.expire(2000, 2);
      assert.ok(first.length <= 2);
      const rest = await store.expire(2000, 1000);
      const mine = [...first, ...rest].filter((f) => users.includes(f.userId));
      assert.equal(mine.length, 3);
    });
  });
}
