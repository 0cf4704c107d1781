import assert from "node:assert/strict";
import type { StoredMessage } from "../model/types.js";
import { TextBudget, throughTextBytes, withinTextBytes } from "./page-bytes.js";

const message = (text: string): StoredMessage => ({
  messageId: 1n, channelId: 2n, seq: 3n, senderUserId: 4n, senderDeviceId: 5n, clientMsgId: "c", text, sentAtMs: 0,
});
const self = (m: StoredMessage) => m;

describe("page text budget", () => {
  it("a read stopped by TextBudget holds what withinTextBytes keeps and the one item after it, whatever the sizes", () => {
    // A fixed sequence of sizes, from empty to past the budget on its own: deterministic, and every case met.
    let seed = 7;
    const next = (n: number) => (seed = (seed * 48_271) % 2_147_483_647) % n;
    for (let round = 0; round < 500; round++) {
      const items = Array.from({ length: next(12) }, () => message("x".repeat(next(5) === 0 ? 400 : next(60))));
      const budget = next(4) === 0 ? undefined : next(600);
      const read = throughTextBytes(items, self, budget);
      if (budget === undefined) {
        assert.equal(read, items);
        continue;
      }
      const kept = withinTextBytes(items, self, budget);
      assert.deepStrictEqual(read, items.slice(0, Math.min(items.length, kept.length + 1)), `round ${round}`);
      assert.deepStrictEqual(withinTextBytes(read, self, budget), kept, "the caller keeps the same page from the shorter read");
    }
  });

  it("counts a text by utf8BytesAtMost, and never stops at the first item", () => {
    const b = new TextBudget(6);
    assert.equal(b.add("abcdefgh"), false, "the first is kept whatever its size");
    assert.equal(b.add(""), true, "past the budget already: the next item ends the read");
    const c = new TextBudget(6);
    assert.deepEqual([c.add("a"), c.add("b"), c.add("c")], [false, false, true]);
    assert.equal(new TextBudget(undefined).add("x".repeat(1 << 20)), false);
  });
});
