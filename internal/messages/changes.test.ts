import assert from "node:assert/strict";
import type { ChannelStore } from "../channels/store.js";
import type { MemberRole, StoredMessage } from "../model/types.js";
import { changesNothing, checkNamedMessage, MAX_EDITS_PER_MESSAGE, notifiedOfChange, type ChangeWindows } from "./changes.js";
import type { MessageLog } from "./log.js";

const SENT = 1_767_225_600_000;
const message: StoredMessage = {
  messageId: 50n, channelId: 10n, seq: 4n, senderUserId: 1n, senderDeviceId: 11n, clientMsgId: "x", text: "hi", sentAtMs: SENT,
};
const log = { get: async () => message, editsOf: async () => [] } as unknown as MessageLog;
const channels = (role: MemberRole) => ({ getMember: async () => ({ role }) }) as unknown as ChannelStore;
const windows: ChangeWindows = { editMs: 15 * 60_000, deleteMs: 2 * 86_400_000 };
const ALICE = { userId: 1n, deviceId: 11n };
const BOB = { userId: 2n, deviceId: 21n };
const cmd = { clientMsgId: "c", channelId: 10n, text: "" };

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
  return "accepted";
}

describe("checkNamedMessage's windows (CHAT_EDIT_WINDOW_S, CHAT_DELETE_WINDOW_S)", () => {
  it("lets the sender edit within the edit window and delete within the delete window, and not after", async () => {
    const edit = { ...cmd, text: "new", editSeq: 4n };
    const del = { ...cmd, deleteSeq: 4n };
    const at = (ms: number) => SENT + ms;
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), ALICE, edit, windows, at(15 * 60_000))), "accepted");
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), ALICE, edit, windows, at(15 * 60_000 + 1))),
      "permission_denied: a message can only be edited within 15 minutes of sending it");
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), ALICE, del, windows, at(86_400_000))), "accepted");
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), ALICE, del, windows, at(3 * 86_400_000))),
      "permission_denied: a message can only be deleted for everyone within 2 days of sending it");
  });

  it("knows no window without one, for a group's admins deleting, nor for replies and reactions", async () => {
    const years = SENT + 3 * 365 * 86_400_000;
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), ALICE, { ...cmd, text: "new", editSeq: 4n }, undefined, years)), "accepted");
    for (const role of ["admin", "owner"] as const) {
      assert.equal(await refusal(checkNamedMessage(log, channels(role), ALICE, { ...cmd, deleteSeq: 4n }, windows, years)), "accepted", `own, ${role}`);
      assert.equal(await refusal(checkNamedMessage(log, channels(role), BOB, { ...cmd, deleteSeq: 4n }, windows, years)), "accepted", `another's, ${role}`);
    }
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), BOB, { ...cmd, text: "re", replyToSeq: 4n }, windows, years)), "accepted");
    assert.equal(await refusal(checkNamedMessage(log, channels("member"), BOB, { ...cmd, text: "👍", reactSeq: 4n }, windows, years)), "accepted");
  });

  it("refuses an edit, a delete, a reply or a reaction to a note about the chat, even by its sender or an admin", async () => {
    const note: StoredMessage = { ...message, text: "", note: { kind: "title_changed", userIds: [], title: "t" } };
    const noteLog = { get: async () => note, editsOf: async () => [] } as unknown as MessageLog;
    const refused = "invalid_argument: message 4 is a note about the chat: it cannot be edited, deleted, answered or reacted to";
    for (const c of [{ ...cmd, text: "x", editSeq: 4n }, { ...cmd, deleteSeq: 4n }, { ...cmd, text: "re", replyToSeq: 4n }, { ...cmd, text: "👍", reactSeq: 4n }]) {
      assert.equal(await refusal(checkNamedMessage(noteLog, channels("owner"), ALICE, c)), refused);
    }
  });

  it(`refuses the sender's edit of a message edited ${MAX_EDITS_PER_MESSAGE} times (limit_reached), counting no further, and not a delete, a reply or a reaction`, async () => {
    const asked: (number | undefined)[] = [];
    const edited = (n: number) => ({
      get: async () => message,
      editsOf: async (_c: bigint, _s: bigint, limit?: number) => {
        asked.push(limit);
        return Array.from({ length: Math.min(n, limit ?? n) }, (_, i) => 100n + BigInt(i));
      },
    }) as unknown as MessageLog;
    const edit = { ...cmd, text: "again", editSeq: 4n };
    assert.equal(await refusal(checkNamedMessage(edited(MAX_EDITS_PER_MESSAGE - 1), channels("member"), ALICE, edit)), "accepted");
    assert.equal(await refusal(checkNamedMessage(edited(MAX_EDITS_PER_MESSAGE), channels("member"), ALICE, edit, windows, SENT)),
      `limit_reached: message 4 was edited ${MAX_EDITS_PER_MESSAGE} times, the most a message can be: send a new one`);
    assert.equal(await refusal(checkNamedMessage(edited(466_000), channels("member"), ALICE, edit)), `limit_reached: message 4 was edited ${MAX_EDITS_PER_MESSAGE} times, the most a message can be: send a new one`);
    assert.deepEqual(asked, [MAX_EDITS_PER_MESSAGE, MAX_EDITS_PER_MESSAGE, MAX_EDITS_PER_MESSAGE], "never every edit of a message edited before the limit");
    for (const c of [{ ...cmd, deleteSeq: 4n }, { ...cmd, text: "re", replyToSeq: 4n }, { ...cmd, text: "👍", reactSeq: 4n }]) {
      assert.equal(await refusal(checkNamedMessage(edited(466_000), channels("member"), ALICE, c)), "accepted");
    }
    assert.equal(asked.length, 3, "only an edit counts the edits");
    // Someone else's edit is refused for that, whatever the count.
    assert.match(await refusal(checkNamedMessage(edited(466_000), channels("member"), BOB, edit)), /^permission_denied: only its sender can edit/);
  });

  it("names the window in its largest whole unit", async () => {
    const past = SENT + 10 * 86_400_000;
    const said = async (editMs: number) => refusal(checkNamedMessage(log, channels("member"), ALICE, { ...cmd, text: "n", editSeq: 4n }, { editMs, deleteMs: 0 }, past));
    assert.match(await said(1_000), /within 1 second of/);
    assert.match(await said(90_000), /within 90 seconds of/);
    assert.match(await said(3_600_000), /within 1 hour of/);
    assert.match(await said(2 * 86_400_000), /within 2 days of/);
  });
});

describe("changes that change nothing", () => {
  const liked: StoredMessage = { ...message, reactions: [{ userId: 2n, emoji: "👍" }] };
  const deleted: StoredMessage = { ...message, text: "", deleted: true };
  const logOf = (m: StoredMessage, edits = 0) =>
    ({ get: async () => m, editsOf: async () => Array.from({ length: edits }, (_, i) => 100n + BigInt(i)) }) as unknown as MessageLog;
  const verdict = (p: Promise<boolean>) => p.then((unchanged) => (unchanged ? "unchanged" : "changes"), (e: Error & { code?: string }) => `${e.code}: ${e.message}`);

  it("are an edit to the text the message has, a reaction its sender has, taking back one they do not have", () => {
    const change = { senderUserId: 2n, text: "👍", reaction: true };
    assert.equal(changesNothing(change, liked), true);
    assert.equal(changesNothing({ ...change, text: "❤️" }, liked), false, "another emoji");
    assert.equal(changesNothing({ ...change, senderUserId: 3n }, liked), false, "another user's same emoji");
    assert.equal(changesNothing({ ...change, text: "" }, message), true, "taking back what is not there");
    assert.equal(changesNothing({ ...change, text: "" }, liked), false, "taking back what is");
    assert.equal(changesNothing({ senderUserId: 1n, text: "hi" }, message), true, "the same text");
    assert.equal(changesNothing({ senderUserId: 1n, text: "hi!" }, message), false);
    assert.equal(changesNothing({ senderUserId: 1n, text: "", deleted: true }, message), false);
    // Nothing applies to a deleted message: refused, or dropped by the log, rather than changing nothing.
    assert.equal(changesNothing({ senderUserId: 1n, text: "", deleted: true }, deleted), false);
    assert.equal(changesNothing({ senderUserId: 1n, text: "" }, deleted), false);
  });

  it("are told by checkNamedMessage, which still refuses what the sender may not do", async () => {
    const c = channels("member");
    assert.equal(await verdict(checkNamedMessage(logOf(message), c, ALICE, { ...cmd, text: "hi", editSeq: 4n })), "unchanged");
    assert.equal(await verdict(checkNamedMessage(logOf(message), c, ALICE, { ...cmd, text: "hi, edited", editSeq: 4n })), "changes");
    assert.equal(await verdict(checkNamedMessage(logOf(liked), c, BOB, { ...cmd, text: "👍", reactSeq: 4n })), "unchanged");
    assert.equal(await verdict(checkNamedMessage(logOf(liked), c, ALICE, { ...cmd, text: "", reactSeq: 4n })), "unchanged");
    assert.equal(await verdict(checkNamedMessage(logOf(liked), c, BOB, { ...cmd, text: "", reactSeq: 4n })), "changes");
    assert.equal(await verdict(checkNamedMessage(logOf(message), c, BOB, { ...cmd, text: "hi", replyToSeq: 4n })), "changes", "a reply is a message");
    // Someone else's message with its own text: still not theirs to edit.
    assert.match(await verdict(checkNamedMessage(logOf(message), c, BOB, { ...cmd, text: "hi", editSeq: 4n })), /^permission_denied: only its sender can edit/);
  });

  it("are no delete: one of a deleted message is still refused, as anything else on it", async () => {
    for (const c of [{ ...cmd, deleteSeq: 4n }, { ...cmd, text: "x", editSeq: 4n }, { ...cmd, text: "👍", reactSeq: 4n }, { ...cmd, text: "", reactSeq: 4n }, { ...cmd, text: "re", replyToSeq: 4n }]) {
      assert.equal(await verdict(checkNamedMessage(logOf(deleted), channels("owner"), ALICE, c)), "not_found: message 4 was deleted");
    }
  });

  it(`let an edit to the text a message edited ${MAX_EDITS_PER_MESSAGE} times has through: it would add no edit`, async () => {
    const full = logOf(message, MAX_EDITS_PER_MESSAGE);
    assert.equal(await verdict(checkNamedMessage(full, channels("member"), ALICE, { ...cmd, text: "hi", editSeq: 4n })), "unchanged");
    assert.match(await verdict(checkNamedMessage(full, channels("member"), ALICE, { ...cmd, text: "hi?", editSeq: 4n })), /^limit_reached/);
  });
});

describe("notifiedOfChange", () => {
  it("names the author of a message someone else reacted to or took a reaction back from, and nobody otherwise", () => {
    const change = { ...message, messageId: 60n, senderUserId: 2n, text: "👍", targetSeq: 4n, reaction: true };
    assert.equal(notifiedOfChange(change, message), 1n);
    assert.equal(notifiedOfChange({ ...change, text: "" }, message), 1n, "taken back: its push withdrawn");
    assert.equal(notifiedOfChange({ ...change, senderUserId: 1n }, message), undefined, "to one's own message");
    assert.equal(notifiedOfChange({ ...change, reaction: undefined, text: "edit" }, message), undefined, "an edit");
  });
});
