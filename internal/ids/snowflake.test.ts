import assert from "node:assert/strict";
import { RETRY_AFTER_HEADER, toConnectError } from "../api/errors.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { Snowflake, snowflakeTimeMs, EPOCH_MS } from "./snowflake.js";

describe("Snowflake", () => {
  it("is strictly increasing within and across milliseconds", () => {
    let t = EPOCH_MS + 1000;
    const g = new Snowflake(7, () => t);
    const ids: bigint[] = [];
    for (let i = 0; i < 10_000; i++) {
      if (i % 3000 === 0) t++;
      ids.push(g.next());
    }
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `id ${i} not increasing`);
  });

  it("does not repeat when the clock steps back", () => {
    let t = EPOCH_MS + 5000;
    const g = new Snowflake(1, () => t);
    const a = g.next();
    t -= 2000;
    const b = g.next();
    assert.ok(b > a);
  });

  it("started after an id of a run whose clock was ahead, mints only ids above it", () => {
    const before = new Snowflake(0, () => EPOCH_MS + 10_000);
    let last = 0n;
    for (let i = 0; i < 5000; i++) last = before.next(); // into the next millisecond's sequence
    const after = new Snowflake(0, () => EPOCH_MS + 1_000);
    after.notBefore(snowflakeTimeMs(last));
    const again = Array.from({ length: 5000 }, () => after.next());
    assert.ok(again[0]! > last);
    for (let i = 1; i < again.length; i++) assert.ok(again[i]! > again[i - 1]!);
    // Once the clock is past, it is the clock again.
    const later = new Snowflake(0, () => EPOCH_MS + 20_000);
    later.notBefore(snowflakeTimeMs(last));
    assert.equal(snowflakeTimeMs(later.next()), EPOCH_MS + 20_000);
  });

  it("mints positive, increasing ids though the clock reads before the epoch (a host up before its clock was set)", () => {
    let t = 0; // 1970
    const g = new Snowflake(0, () => t);
    const ids = Array.from({ length: 5000 }, () => g.next());
    assert.ok(ids[0]! > 0n, `first id ${ids[0]}`);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!);
    t = EPOCH_MS + 60_000; // set at last
    assert.equal(snowflakeTimeMs(g.next()), t);
  });

  it("resumes under a new worker number after a retire, never going back on its own ids", () => {
    let t = EPOCH_MS + 5_000;
    const g = new Snowflake(3, () => t);
    const a = g.next();
    g.retire();
    t -= 1_000;
    g.resume(4);
    const b = g.next();
    assert.ok(b > a);
    assert.equal(Number((b >> 12n) & 0x3ffn), 4);
    assert.throws(() => g.resume(1024), RangeError);
  });

  it("mints nothing at or past its ceiling, and a refusal changes nothing: raised, it mints what it would have", () => {
    let t = EPOCH_MS + 1_000;
    const g = new Snowflake(2, () => t);
    g.limitTo(EPOCH_MS + 1_001);
    const a = g.next();
    t++;
    assert.throws(() => g.next(), (e: Error & { code?: string }) => e.code === "unavailable");
    assert.throws(() => g.next(), (e: Error & { code?: string }) => e.code === "unavailable");
    g.limitTo(EPOCH_MS + 2_000);
    const b = g.next();
    assert.equal(snowflakeTimeMs(b), t);
    assert.equal(b & 0xfffn, 0n, "the first id of its millisecond");
    assert.ok(b > a);
    g.notBefore(EPOCH_MS + 1_500);
    assert.equal(snowflakeTimeMs(g.next()), EPOCH_MS + 1_501, "above a predecessor's mark, whatever the clock");
  });

  it("keeps the worker number apart", () => {
    const t = EPOCH_MS + 42;
    const a = new Snowflake(1, () => t).next();
    const b = new Snowflake(2, () => t).next();
    assert.notEqual(a, b);
    assert.equal(snowflakeTimeMs(a), t);
  });

  it("mints nothing once retired (its worker number's lease lost or given back): unavailable, to be retried elsewhere", () => {
    const g = new Snowflake(3, () => EPOCH_MS + 1);
    g.next();
    g.retire();
    assert.throws(() => g.next(), (e: Error & { code?: string }) => e.code === "unavailable");
  });

  // Both were refused with no retry time: the api answered no chat-retry-after-ms, a session's Error frame a retry of 0.
  it("refuses paused or retired with an engine outage's retry time, as etcd ends either", () => {
    const retryOnApi = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return toConnectError(e).metadata.get(RETRY_AFTER_HEADER);
      }
      assert.fail("minted");
    };
    const g = new Snowflake(3, () => EPOCH_MS + 10);
    g.limitTo(EPOCH_MS + 10);
    assert.equal(retryOnApi(() => g.next()), String(ENGINE_RETRY_AFTER_MS), "paused at the mark");
    g.limitTo(Number.POSITIVE_INFINITY);
    g.retire("this server lost its worker id and is leasing another");
    assert.equal(retryOnApi(() => g.next()), String(ENGINE_RETRY_AFTER_MS), "retired");
  });

  it("refuses a worker number out of range", () => {
    assert.throws(() => new Snowflake(1024), /worker id/);
  });
});
