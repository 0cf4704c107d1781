import assert from "node:assert/strict";
import { decodeInboxAppend, decodeSubmitted, encodeInboxAppend, encodeInboxAppends, encodeSubmitted } from "./records.js";
import { awkwardMessage } from "../wire/testdata.js";

describe("pipeline records", () => {
  const m = awkwardMessage;

  it("encodes the message once for all members, byte for byte what encodeInboxAppend writes for each", () => {
    const users = [1n, 300n, 2n ** 63n + 5n, 18_446_744_073_709_551_615n];
    const many = encodeInboxAppends(users, m);
    users.forEach((u, i) => {
      assert.deepEqual(many[i], encodeInboxAppend(u, m));
      assert.deepEqual(decodeInboxAppend(many[i]!), { userId: u, message: m });
    });
  });

  it("carries a message, an edit, a delete, a reaction, reactions and notes through the submitted topic and the inbox's, optional fields only when set", () => {
    const { seq: _, ...plain } = m;
    const edit = { ...plain, targetSeq: 12n };
    const del = { ...plain, text: "", targetSeq: 12n, deleted: true };
    const reply = { ...plain, replyToSeq: 9n };
    const reaction = { ...plain, text: "👍", targetSeq: 12n, reaction: true };
    const takenBack = { ...reaction, text: "" };
    const note = { ...plain, text: "", note: { kind: "member_left" as const, userIds: [2n ** 64n - 1n] } };
    const roleNote = { ...plain, text: "", note: { kind: "role_changed" as const, userIds: [4n, 5n], role: "admin" as const } };
    const titleNote = { ...plain, text: "", note: { kind: "title_changed" as const, userIds: [], title: "Ünïcode ✨" } };
    for (const sent of [plain, edit, del, reply, reaction, takenBack, note, roleNote, titleNote]) assert.deepStrictEqual(decodeSubmitted(encodeSubmitted(sent)), sent);
    for (const stored of [{ ...edit, seq: 0n }, { ...del, seq: 0n }, { ...m, editedAtMs: 1_767_225_660_123 }, { ...m, text: "", deleted: true }, { ...m, replyToSeq: 9n },
      { ...reaction, seq: 0n }, { ...takenBack, seq: 0n }, { ...m, reactions: [{ userId: 3n, emoji: "❤️" }, { userId: 2n ** 64n - 1n, emoji: "👍🏽" }] },
      { ...note, seq: 7n }, { ...roleNote, seq: 8n }, { ...titleNote, seq: 9n }]) {
      assert.deepStrictEqual(decodeInboxAppend(encodeInboxAppend(5n, stored)), { userId: 5n, message: stored });
      assert.deepStrictEqual(decodeInboxAppend(encodeInboxAppends([5n], stored)[0]!), { userId: 5n, message: stored });
    }
    // A delete's entry names the copies to empty, written as toBinary packs them.
    const ids = [1n, 300n, 2n ** 64n - 1n];
    const withEmpties = encodeInboxAppends([5n, 6n], { ...del, seq: 0n }, ids);
    assert.deepEqual(withEmpties[1], encodeInboxAppend(6n, { ...del, seq: 0n }, ids));
    assert.deepStrictEqual(decodeInboxAppend(withEmpties[0]!), { userId: 5n, message: { ...del, seq: 0n }, emptyMessageIds: ids });
    // The part naming the deleted message says which it is, as toBinary writes the field; a record without it
    // (a Sequencer built before it, as withEmpties) decodes without it.
    const naming = encodeInboxAppends([5n, 6n], { ...del, seq: 0n }, ids, 6n, 2n ** 64n - 1n);
    assert.deepEqual(naming[1], encodeInboxAppend(6n, { ...del, seq: 0n }, ids, true, 2n ** 64n - 1n));
    assert.deepEqual(naming[0], encodeInboxAppend(5n, { ...del, seq: 0n }, ids, false, 2n ** 64n - 1n));
    assert.deepStrictEqual(decodeInboxAppend(naming[0]!), { userId: 5n, message: { ...del, seq: 0n }, emptyMessageIds: ids, deletedMessageId: 2n ** 64n - 1n });
    // A reaction's entry is marked for its author alone, as toBinary writes the flag.
    const marked = encodeInboxAppends([5n, 6n, 7n], { ...reaction, seq: 0n }, [], 6n);
    assert.deepEqual(marked[1], encodeInboxAppend(6n, { ...reaction, seq: 0n }, [], true));
    assert.deepEqual(marked[0], encodeInboxAppend(5n, { ...reaction, seq: 0n }));
    assert.deepStrictEqual(marked.map((b) => decodeInboxAppend(b).notify), [undefined, true, undefined]);
  });
});
