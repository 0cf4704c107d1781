import assert from "node:assert/strict";
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

  it("refuses a worker number out of range", () => {
    assert.throws(() => new Snowflake(1024), /worker id/);
  });
});
