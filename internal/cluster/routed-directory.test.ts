import assert from "node:assert/strict";
import type { UserDelivery } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { chunksOf } from "./routed-directory.js";

const delivery = (userId: number, text: string): UserDelivery => ({
  userId: BigInt(userId),
  deviceIds: [],
  frame: { ref: 0n, kind: { $case: "message", value: { entry: { inboxSeq: 1n, message: { text } as never } } } } as never,
});

describe("Deliver calls split by size", () => {
  it("keeps a group message of long texts to a hundred members under the budget per call, in order", () => {
    const text = "x".repeat(99_999);
    const all = Array.from({ length: 100 }, (_, i) => delivery(i, text));
    const chunks = chunksOf(all, 2 * 1024 * 1024);
    assert.ok(chunks.length >= 15, `${chunks.length} calls`);
    for (const c of chunks) assert.ok(c.length >= 1 && c.length * 300_000 <= 2 * 1024 * 1024 + 300_064);
    assert.deepStrictEqual(chunks.flat(), all);
  });

  it("sends small deliveries in one call, and a single oversized one alone", () => {
    const small = Array.from({ length: 500 }, (_, i) => delivery(i, "hi"));
    assert.equal(chunksOf(small, 2 * 1024 * 1024).length, 1);
    const huge = [delivery(1, "y".repeat(1_000_000)), delivery(2, "hi")];
    assert.deepStrictEqual(chunksOf(huge, 1024).map((c) => c.length), [1, 1]);
  });
});
