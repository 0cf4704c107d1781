import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { waitFor } from "../../test/support/wait.js";
import type { LoginAttempts, WindowCounts } from "./port.js";

export interface AttemptsFixture {
  attempts: LoginAttempts;
  dispose(): Promise<void>;
}

/**
 * The LoginAttempts contract. Every adapter runs it unchanged; keys are random
 * per test, so a shared real Redis can be used. `makeFixture(windowMs)` must
 * honour the window it is given.
 */
export function loginAttemptsContract(name: string, makeFixture: (windowMs: number) => Promise<AttemptsFixture>): void {
  describe(`LoginAttempts contract: ${name}`, function () {
    this.timeout(20_000);
    const fixtures: AttemptsFixture[] = [];
    const open = async (windowMs = 60_000) => {
      const fx = await makeFixture(windowMs);
      fixtures.push(fx);
      return fx.attempts;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
    });
    const key = () => `k-${randomUUID()}`;

    it("counts failures per key inside the window", async () => {
      const a = await open(60_000);
      const [k1, k2] = [key(), key()];
      assert.deepEqual(await a.get(k1), { failures: 0, resetInMs: 0 });
      assert.equal((await a.fail(k1)).failures, 1);
      assert.equal((await a.fail(k1)).failures, 2);
      const third = await a.fail(k1);
      assert.equal(third.failures, 3);
      assert.ok(third.resetInMs > 50_000 && third.resetInMs <= 60_000, `resetInMs ${third.resetInMs}`);
      assert.equal((await a.get(k1)).failures, 3);
      assert.equal((await a.get(k2)).failures, 0);
    });

    it("forgets a key's failures on clear", async () => {
      const a = await open();
      const k = key();
      await a.fail(k);
      await a.fail(k);
      await a.clear(k);
      assert.deepEqual(await a.get(k), { failures: 0, resetInMs: 0 });
      assert.equal((await a.fail(k)).failures, 1);
    });

    it("remembers a key's successful sign-in for the time given, apart from its failures", async () => {
      const a = await open();
      const [k, other] = [key(), key()];
      assert.equal(await a.succeededBefore(k), false);
      await a.rememberSuccess(k, 300);
      assert.equal(await a.succeededBefore(k), true);
      assert.equal(await a.succeededBefore(other), false);
      await a.clear(k); // forgetting failures keeps the success
      assert.equal(await a.succeededBefore(k), true);
      await waitFor(async () => !(await a.succeededBefore(k)), "the success to be forgotten", 10_000, 25);
    });

    it("starts over when the window closes, and later failures do not stretch it", async () => {
      const windowMs = 1_000;
      const a = await open(windowMs);
      const k = key();
      const opened = Date.now();
      await a.fail(k);
      // Failures after the first must not push the end of the window out.
      let last = await a.fail(k);
      while (Date.now() - opened < 600) last = await a.fail(k);
      assert.ok(last.resetInMs <= windowMs - (Date.now() - opened) + 150, `window stretched: ${last.resetInMs} ms left`);
      await waitFor(async () => (await a.get(k)).failures === 0, "the window to close", 10_000, 25);
      assert.equal((await a.fail(k)).failures, 1);
    });
  });
}

export interface CountsFixture {
  counts: WindowCounts;
  dispose(): Promise<void>;
}

/** The WindowCounts contract, on the same terms as the LoginAttempts one. */
export function windowCountsContract(name: string, makeFixture: (windowMs: number) => Promise<CountsFixture>): void {
  describe(`WindowCounts contract: ${name}`, function () {
    this.timeout(20_000);
    const fixtures: CountsFixture[] = [];
    const open = async (windowMs = 60_000) => {
      const fx = await makeFixture(windowMs);
      fixtures.push(fx);
      return fx.counts;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
    });
    const key = () => `k-${randomUUID()}`;

    it("counts per key inside the window, and clear forgets", async () => {
      const c = await open(60_000);
      const [k1, k2] = [key(), key()];
      assert.deepEqual(await c.get(k1), { count: 0, resetInMs: 0 });
      assert.equal((await c.add(k1)).count, 1);
      const second = await c.add(k1);
      assert.equal(second.count, 2);
      assert.ok(second.resetInMs > 50_000 && second.resetInMs <= 60_000, `resetInMs ${second.resetInMs}`);
      assert.equal((await c.get(k2)).count, 0);
      await c.clear(k1);
      assert.deepEqual(await c.get(k1), { count: 0, resetInMs: 0 });
    });

    it("gives each of many adds at the same moment its own count", async () => {
      const c = await open();
      const k = key();
      const counts = (await Promise.all(Array.from({ length: 50 }, () => c.add(k)))).map((r) => r.count);
      assert.deepEqual(counts.sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
    });

    it("takes back one counted, inside the window, never below zero, and keeps the window's end", async () => {
      const c = await open(60_000);
      const k = key();
      await c.add(k);
      const before = await c.add(k);
      await c.takeBack(k, before);
      const after = await c.get(k);
      assert.equal(after.count, 1);
      assert.ok(after.resetInMs > 0 && after.resetInMs <= before.resetInMs, `resetInMs ${after.resetInMs} after ${before.resetInMs}`);
      await c.takeBack(k, before);
      await c.takeBack(k, before);
      assert.equal((await c.get(k)).count, 0);
      assert.equal((await c.add(k)).count, 1);
      const none = key();
      await c.takeBack(none, before);
      assert.equal((await c.add(none)).count, 1, "a take-back with no window open leaves nothing to count from");
    });

    it("starts over when the window closes, and a late take-back leaves no count behind", async () => {
      const c = await open(300);
      const k = key();
      await c.add(k);
      const counted = await c.add(k);
      await waitFor(async () => (await c.get(k)).count === 0, "the window to close", 10_000, 25);
      await c.takeBack(k, counted);
      const fresh = await c.add(k);
      assert.equal(fresh.count, 1);
      assert.ok(fresh.resetInMs > 0 && fresh.resetInMs <= 300, `resetInMs ${fresh.resetInMs}`);
    });

    it("takes nothing from a window opened after the one the add counted in (a refusal at a window's end)", async () => {
      const c = await open(300);
      const k = key();
      const counted = await c.add(k);
      await waitFor(async () => (await c.get(k)).count === 0, "the window to close", 10_000, 25);
      // Another's add opens the next window; the late take-back is of the closed one.
      assert.equal((await c.add(k)).count, 1);
      await c.takeBack(k, counted);
      assert.equal((await c.get(k)).count, 1, "the next window's count lost one it never counted");
    });
  });
}
