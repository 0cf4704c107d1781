import assert from "node:assert/strict";
import type { InboxEntry } from "../model/types.js";
import { expiredThrough } from "./inbox.js";

const entries = (...seqs: bigint[]) => seqs.map((inboxSeq) => ({ inboxSeq }) as InboxEntry);

describe("expiredThrough", () => {
  it("names the last seq a read skipped after the cursor, and nothing when it skipped none", () => {
    assert.equal(expiredThrough(0n, entries(4n, 5n)), 3n);
    assert.equal(expiredThrough(2n, entries(4n)), 3n);
    assert.equal(expiredThrough(3n, entries(4n, 5n)), 0n);
    assert.equal(expiredThrough(0n, entries(1n)), 0n);
    // An empty read skipped nothing it can name; a negative cursor counts from 0.
    assert.equal(expiredThrough(7n, entries()), 0n);
    assert.equal(expiredThrough(-5n, entries(1n)), 0n);
  });
});
