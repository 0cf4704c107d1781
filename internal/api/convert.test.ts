import assert from "node:assert/strict";
import type { ChannelRecord, MemberRecord, StoredMessage } from "../model/types.js";
import { channelToProto } from "./convert.js";

describe("api: a channel as its member's list shows it", () => {
  const channel: ChannelRecord = { channelId: 10n, kind: "group", title: "g", createdAtMs: 1, createdBy: 1n };
  const me: MemberRecord = { channelId: 10n, userId: 3n, role: "member", joinedAtMs: 2, readSeq: 0n, joinedSeq: 4n };
  const note = (seq: bigint, senderUserId: bigint, n: StoredMessage["note"]): StoredMessage => ({
    messageId: 100n + seq, channelId: 10n, seq, senderUserId, senderDeviceId: 0n, clientMsgId: `n${seq}`, text: "", sentAtMs: 5, note: n,
  });
  const view = (last: StoredMessage) => channelToProto({ channel, memberCount: 3, last, me });

  it("counts the newest message, when it is the note of the caller's add or join by link, and all before it as read", () => {
    // The stored join point (4) is the api's read; the note (6) is stored, the Sequencer's move of the point not yet.
    for (const last of [note(6n, 1n, { kind: "members_added", userIds: [3n] }), note(6n, 3n, { kind: "joined_by_invite", userIds: [] })]) {
      const ch = view(last);
      assert.deepEqual([ch.unreadCount, ch.readSeq], [0n, 6n]);
    }
  });

  it("counts the note of another's add or join by link as unread", () => {
    for (const last of [note(6n, 1n, { kind: "members_added", userIds: [5n] }), note(6n, 5n, { kind: "joined_by_invite", userIds: [] })]) {
      const ch = view(last);
      assert.deepEqual([ch.unreadCount, ch.readSeq], [2n, 4n]);
    }
  });
});
