import assert from "node:assert/strict";
import { forEachByKey } from "./by-key.js";

describe("forEachByKey", () => {
  it("keeps order within a key and overlaps different keys", async () => {
    const log: string[] = [];
    let running = 0;
    let peak = 0;
    const items = ["a1", "b1", "a2", "b2", "a3", "c1"];
    const out = await forEachByKey(items, (s) => s[0]!, async (s) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setImmediate(r));
      log.push(s);
      running--;
      return s.toUpperCase();
    });
    assert.deepEqual(out, items.map((s) => s.toUpperCase()));
    assert.deepEqual(log.filter((s) => s[0] === "a"), ["a1", "a2", "a3"]);
    assert.ok(peak > 1, "different keys ran at the same time");
  });

  it("rejects with the first failure and starts nothing after it", async () => {
    const seen: number[] = [];
    await assert.rejects(
      forEachByKey([1, 2, 3], () => "k", async (n) => {
        seen.push(n);
        if (n === 2) throw new Error("boom");
      }),
      /boom/,
    );
    assert.deepEqual(seen, [1, 2]);
  });
});
