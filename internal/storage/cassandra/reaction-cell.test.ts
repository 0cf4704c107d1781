import assert from "node:assert/strict";
import { decodeReaction, decodeReactions, encodeReaction, withReactions } from "./reaction-cell.js";
import type { StoredMessage } from "../../model/types.js";

const message: StoredMessage = {
  messageId: 1n, channelId: 2n, seq: 3n, senderUserId: 4n, senderDeviceId: 5n, clientMsgId: "c", text: "t", sentAtMs: 6,
};

describe("reaction cell (Cassandra's messages.reactions)", () => {
  it("round-trips the change id and the emoji, taken back as no emoji", () => {
    for (const c of [{ changeId: 7n, emoji: "👨‍👩‍👧‍👦" }, { changeId: 2n ** 64n - 1n, emoji: "" }]) {
      assert.deepStrictEqual(decodeReaction(encodeReaction(c)), c);
    }
    assert.throws(() => encodeReaction({ changeId: -1n, emoji: "👍" }), RangeError);
  });

  it("orders cells by change id as Cassandra's tie-break does (unsigned bytes): the later reaction is the greater value", () => {
    const older = encodeReaction({ changeId: 0x00ffn, emoji: "😂" });
    const later = encodeReaction({ changeId: 0x0100n, emoji: "" });
    const high = encodeReaction({ changeId: 2n ** 63n, emoji: "👍" });
    assert.equal(Buffer.compare(older, later), -1, "taken back later wins over a reaction before it");
    assert.equal(Buffer.compare(later, high), -1);
  });

  it("reads the column as the driver gives it, an object keyed by decimal id or a Map, and shows only standing reactions, by user", () => {
    const cells = { "20": encodeReaction({ changeId: 1n, emoji: "❤️" }), "3": encodeReaction({ changeId: 2n, emoji: "👍" }), "9": encodeReaction({ changeId: 3n, emoji: "" }) };
    const fromObject = decodeReactions(cells);
    assert.deepStrictEqual(decodeReactions(new Map(Object.entries(cells).map(([k, v]) => [BigInt(k), v]))), fromObject);
    assert.deepStrictEqual(withReactions(message, fromObject).reactions, [{ userId: 3n, emoji: "👍" }, { userId: 20n, emoji: "❤️" }]);
    assert.deepStrictEqual(withReactions({ ...message, deleted: true, text: "" }, fromObject), { ...message, deleted: true, text: "" });
    assert.equal("reactions" in withReactions(message, decodeReactions(null)), false);
    assert.equal("reactions" in withReactions(message, decodeReactions({ "9": cells["9"] })), false);
  });
});
