import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import WebSocket from "ws";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { ChannelNoteKind, ErrorCode, type Message } from "../../gen/es/chat/v1/types_pb.js";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { addDevice, signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { metricIn } from "../support/metrics.js";
import { waitFor, waitOut } from "../support/wait.js";
import { join } from "node:path";
import { TokenSigner, loadOrCreateKeys } from "../../internal/auth/tokens.js";

/** Every device saw exactly these message ids in this order. */
function assertSameOrder(devices: TestDevice[], channelId: bigint, expectedCount: number): void {
  const reference = devices[0]!.messagesIn(channelId).map((m) => m.messageId);
  assert.equal(reference.length, expectedCount, "reference device count");
  assert.equal(new Set(reference).size, reference.length, "a device saw a message twice");
  const seqs = devices[0]!.messagesIn(channelId).map((m) => m.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), "channel seqs are gap-free from 1");
  for (const d of devices) {
    assert.deepEqual(d.messagesIn(channelId).map((m) => m.messageId), reference, "devices disagree on order");
  }
}

/** The reply is an Error frame with this code and a message that says so. */
function assertRefused(reply: ServerFrame, code: ErrorCode, message: RegExp): void {
  assert.ok(reply.kind.case === "error", `refused: ${message}`);
  assert.equal(reply.kind.value.code, code, reply.kind.value.message);
  assert.match(reply.kind.value.message, message);
}

describe("chatd system (real WebSocket clients against a running chatd)", function () {
  this.timeout(180_000);
  let chatd: ChatdProcess;
  const devices: TestDevice[] = [];
  const device = async (wsUrl: string, token: string, options?: ConstructorParameters<typeof TestDevice>[2]) => {
    const d = new TestDevice(wsUrl, token, options);
    devices.push(d);
    return d.connect();
  };

  before(async () => {
    // Catch-up sends 450 messages from one device as fast as acks come; the account's send rate has its own suite (chatd-send-rate).
    chatd = await startChatd({ env: { CHAT_SENDS_PER_SEC: "0" } });
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });
  after(async () => {
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("delivers 1:1 messages to every device of both users", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    await addDevice(chatd.httpUrl, alice);
    await addDevice(chatd.httpUrl, bob);
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const all = await Promise.all([...alice.devices, ...bob.devices].map((d) => device(chatd.wsUrl, d.token)));
    const [a1, , b1] = all;
    for (let i = 0; i < 5; i++) {
      const ack = await (i % 2 ? b1! : a1!).send(channel!.channelId, `hello ${i}`);
      assert.equal(ack.kind.case, "sendAck");
    }
    await Promise.all(all.map((d) => d.waitForMessages(5)));
    assertSameOrder(all, channel!.channelId, 5);
    assert.deepEqual(all[3]!.messages().map((m) => m.text), [0, 1, 2, 3, 4].map((i) => `hello ${i}`));
  });

  it("gives every device of a 100-member group every message once, in one order, with concurrent senders", async () => {
    const users: TestUser[] = [];
    for (let i = 0; i < 100; i++) users.push(await signUp(chatd.httpUrl, "g"));
    await addDevice(chatd.httpUrl, users[1]!);
    await addDevice(chatd.httpUrl, users[2]!);
    const owner = users[0]!;
    const { channel } = await owner.api.channels.createGroup({
      title: "hundred",
      memberUserIds: users.slice(1).map((u) => u.userId),
    });
    assert.equal(channel!.memberCount, 100);
    const all = await Promise.all(users.flatMap((u) => u.devices.map((d) => device(chatd.wsUrl, d.token))));
    assert.equal(all.length, 102);
    const senders = all.slice(0, 5);
    const perSender = 8;
    await Promise.all(
      senders.map(async (s, i) => {
        for (let n = 0; n < perSender; n++) {
          const ack = await s.send(channel!.channelId, `sender ${i} #${n}`);
          assert.equal(ack.kind.case, "sendAck", ack.kind.case === "error" ? ack.kind.value.message : "");
        }
      }),
    );
    const total = senders.length * perSender;
    await Promise.all(all.map((d) => d.waitForMessages(total, "all group messages", 60_000)));
    assertSameOrder(all, channel!.channelId, total);
    // Each sender's own messages keep the order it sent them in.
    for (let i = 0; i < senders.length; i++) {
      const mine = all[0]!.messages().filter((m) => m.text.startsWith(`sender ${i} `)).map((m) => m.text);
      assert.deepEqual(mine, [...Array(perSender).keys()].map((n) => `sender ${i} #${n}`));
    }
  });

  it("follows a group's roster: one removed gets nothing after and cannot send, one added gets what follows, each change a note in history", async () => {
    const [owner, x, y] = [await signUp(chatd.httpUrl, "own"), await signUp(chatd.httpUrl, "x"), await signUp(chatd.httpUrl, "y")];
    const { channel } = await owner.api.channels.createGroup({ title: "moving", memberUserIds: [x.userId] });
    const channelId = channel!.channelId;
    const [o, dx, dy] = await Promise.all([owner, x, y].map((u) => device(chatd.wsUrl, u.devices[0]!.token)));
    await o!.send(channelId, "first");
    await dx!.waitForMessages(1);
    await owner.api.channels.removeMember({ channelId, userId: x.userId });
    await o!.send(channelId, "after x left");
    const refused = await dx!.send(channelId, "still here?");
    assert.equal(refused.kind.case === "error" && refused.kind.value.code, ErrorCode.NOT_A_MEMBER);
    await owner.api.channels.addMembers({ channelId, userIds: [y.userId] });
    await o!.send(channelId, "y joined");
    await dy!.waitForMessages(2);
    await o!.waitForMessages(5);
    const shown = (m: Message) => (m.note ? `${ChannelNoteKind[m.note.kind]} ${m.note.userIds.join(",")} by ${m.senderUserId}` : m.text);
    const removed = `MEMBER_REMOVED ${x.userId} by ${owner.userId}`;
    const added = `MEMBERS_ADDED ${y.userId} by ${owner.userId}`;
    assert.deepEqual(o!.messagesIn(channelId).map(shown), ["first", removed, "after x left", added, "y joined"]);
    assert.deepEqual(o!.messagesIn(channelId).map((m) => m.seq), [1n, 2n, 3n, 4n, 5n], "notes take their seq in the channel's order");
    assert.deepEqual(dy!.messagesIn(channelId).map(shown), [added, "y joined"]);
    // y's copies were written after x's removal was: x would have them by now.
    assert.deepEqual(dx!.messagesIn(channelId).map(shown), ["first"]);
    // A note is nobody's to change or answer.
    const refusedChange = await o!.react(channelId, 2n, "👍");
    assert.equal(refusedChange.kind.case === "error" && refusedChange.kind.value.code, ErrorCode.INVALID_ARGUMENT);
  });

  it("refuses sends both ways in a direct chat once either blocks the other, keeps their group, and lets them talk after unblocking", async () => {
    const [alice, bob] = [await signUp(chatd.httpUrl, "blocker"), await signUp(chatd.httpUrl, "blocked")];
    const dm = (await bob.api.channels.openDirect({ userId: alice.userId })).channel!.channelId;
    const group = (await bob.api.channels.createGroup({ title: "both", memberUserIds: [alice.userId] })).channel!.channelId;
    const [a, b] = await Promise.all([alice, bob].map((u) => device(chatd.wsUrl, u.devices[0]!.token)));
    assert.equal((await b!.send(dm, "hi")).kind.case, "sendAck", "cached: no block between them");
    await a!.waitForMessages(1);
    const typingIn = (channelId: bigint) => a!.frames.filter((f) => f.kind.case === "typing" && f.kind.value.channelId === channelId).length;
    b!.sendFrame({ kind: { case: "typing", value: { channelId: dm } } });
    await waitFor(() => typingIn(dm) === 1, "bob typing, before the block");

    await alice.api.users.blockUser({ userId: bob.userId });
    const theirs = await b!.send(dm, "hello?");
    assert.ok(theirs.kind.case === "error", "the blocked send is refused at once, the cached answer forgotten");
    assert.equal(theirs.kind.value.code, ErrorCode.BLOCKED);
    assert.match(theirs.kind.value.message, /this user blocked you/);
    const mine = await a!.send(dm, "go away");
    assert.ok(mine.kind.case === "error" && mine.kind.value.code === ErrorCode.BLOCKED);
    assert.match(mine.kind.value.message, /you blocked this user/);
    // Typing into the blocked chat goes nowhere; the group message sent after it arrives (so would the typing have).
    b!.sendFrame({ kind: { case: "typing", value: { channelId: dm } } });
    assert.equal((await b!.send(group, "in the group")).kind.case, "sendAck", "a block does not split a group");
    await a!.waitForMessages(2);
    assert.equal(typingIn(dm), 1, "no typing from the blocked chat");
    assert.equal(b!.closeCode, undefined, "the session carries on");

    await alice.api.users.unblockUser({ userId: bob.userId });
    assert.equal((await b!.send(dm, "friends again?")).kind.case, "sendAck");
    await a!.waitForMessages(3);
    assert.deepEqual(a!.messagesIn(dm).map((m) => m.text), ["hi", "friends again?"], "nothing refused was stored");
    const history = await alice.api.messages.listMessages({ channelId: dm, limit: 10 });
    assert.deepEqual(history.messages.map((m) => m.text).sort(), ["friends again?", "hi"]);
    // The api's SendMessage asks the same submitter.
    await alice.api.users.blockUser({ userId: bob.userId });
    const viaApi = await bob.api.messages.sendMessage({ channelId: dm, clientMsgId: "api-1", text: "and here?" }).catch((e: unknown) => e);
    assert.ok(viaApi instanceof ConnectError && viaApi.code === Code.PermissionDenied, String(viaApi));
    // Taking one's own words back is never refused: the blocked deletes their message; editing or reacting stays refused.
    assert.equal((await b!.deleteMessage(dm, 1n)).kind.case, "sendAck", "the blocked deletes their own message");
    for (const refused of [await b!.edit(dm, 2n, "changed my mind"), await b!.react(dm, 2n, "👍"), await a!.react(dm, 2n, "👎")]) {
      assert.ok(refused.kind.case === "error" && refused.kind.value.code === ErrorCode.BLOCKED, refused.kind.case);
    }
    await waitFor(() => a!.messagesIn(dm).some((m) => m.targetSeq === 1n && m.deleted), "the delete at the blocker's device");
    const after = await alice.api.messages.listMessages({ channelId: dm, limit: 10 });
    assert.deepEqual(after.messages.map((m) => [m.seq, m.text, m.deleted]), [[2n, "friends again?", false], [1n, "", true]]);
  });

  it("refuses sends to a deleted account's direct chat, saying it is gone, and keeps the chat's history", async () => {
    const [alice, bob] = [await signUp(chatd.httpUrl, "stays"), await signUp(chatd.httpUrl, "leaves")];
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    const a = await device(chatd.wsUrl, alice.devices[0]!.token);
    assert.equal((await a.send(dm, "before")).kind.case, "sendAck");
    await bob.api.auth.deleteAccount({ password: bob.password });
    const refused = await a.send(dm, "after");
    assert.ok(refused.kind.case === "error", "refused");
    assert.deepEqual([refused.kind.value.code, refused.kind.value.message], [ErrorCode.NOT_FOUND, "this account was deleted"]);
    const history = await alice.api.messages.listMessages({ channelId: dm });
    assert.deepEqual(history.messages.map((m) => m.text), ["before"]);
  });

  it("edits and deletes reach every device of every member in order, history shows them, and only those allowed may make them", async () => {
    const [owner, bob, carol] = [await signUp(chatd.httpUrl, "owner"), await signUp(chatd.httpUrl, "writer"), await signUp(chatd.httpUrl, "reader")];
    await addDevice(chatd.httpUrl, owner);
    const group = (await owner.api.channels.createGroup({ title: "edits", memberUserIds: [bob.userId, carol.userId] })).channel!.channelId;
    const all = await Promise.all([...owner.devices, bob.devices[0]!, carol.devices[0]!].map((d) => device(chatd.wsUrl, d.token)));
    const [o1, , b, c] = all as [TestDevice, TestDevice, TestDevice, TestDevice];
    // Carol's second device is offline through the changes and catches up after.
    const offline = await addDevice(chatd.httpUrl, carol);

    for (const text of ["first", "second", "third"]) assert.equal((await b.send(group, text)).kind.case, "sendAck");
    const edit = await b.edit(group, 1n, "first, better", "edit-1");
    assert.ok(edit.kind.case === "sendAck", "the sender edits their own message");
    const again = await b.edit(group, 1n, "first, better", "edit-1");
    assert.ok(again.kind.case === "sendAck" && again.kind.value.duplicate, "a resend of the edit is the same edit");
    assert.equal(again.kind.value.messageId, edit.kind.value.messageId);
    assert.equal((await o1.deleteMessage(group, 2n)).kind.case, "sendAck", "the group's owner deletes another's message");

    const expected = [
      { seq: 1n, text: "first, better", edited: true, deleted: false },
      { seq: 2n, text: "", edited: false, deleted: true },
      { seq: 3n, text: "third", edited: false, deleted: false },
    ];
    await Promise.all(all.map((d) => d.waitForMessages(5, "3 messages and 2 changes")));
    for (const d of all) assert.deepEqual(d.shown(group), expected);
    const changes = c.messagesIn(group).filter((m) => m.targetSeq !== 0n);
    assert.deepEqual(changes.map((m) => [m.targetSeq, m.seq, m.deleted, m.text]), [[1n, 0n, false, "first, better"], [2n, 0n, true, ""]]);
    assert.deepEqual(changes.map((m) => m.senderUserId), [bob.userId, owner.userId], "a change names who made it");

    // Refused: nothing is stored or delivered for these.
    const refusals: [Promise<unknown>, ErrorCode, RegExp][] = [
      [c.edit(group, 1n, "not mine"), ErrorCode.PERMISSION_DENIED, /only its sender can edit/],
      [c.deleteMessage(group, 1n), ErrorCode.PERMISSION_DENIED, /only its sender, or an admin/],
      [b.edit(group, 2n, "undelete"), ErrorCode.NOT_FOUND, /was deleted/],
      [b.deleteMessage(group, 2n), ErrorCode.NOT_FOUND, /was deleted/],
      [b.edit(group, 99n, "nothing there"), ErrorCode.NOT_FOUND, /no message with seq 99/],
      [b.send(group, "with text", undefined, { deleteSeq: 3n }), ErrorCode.INVALID_ARGUMENT, /text must be empty/],
      [b.send(group, "both", undefined, { editSeq: 3n, deleteSeq: 3n }), ErrorCode.INVALID_ARGUMENT, /at most one/],
      [b.edit(group, 3n, "   "), ErrorCode.TEXT_EMPTY, /empty/],
    ];
    for (const [reply, code, message] of refusals) assertRefused((await reply) as ServerFrame, code, message);
    assert.equal((await b.send(group, "marker")).kind.case, "sendAck");
    await c.waitForMessages(6);
    assert.equal(c.messagesIn(group).length, 6, "no refused change reached anyone");

    // History is the messages as they now are; changes take no seq and are not unread.
    const history = await carol.api.messages.listMessages({ channelId: group, limit: 10 });
    assert.deepEqual(history.messages.map((m) => [m.seq, m.text, m.editedAt !== undefined, m.deleted]), [
      [4n, "marker", false, false], [3n, "third", false, false], [2n, "", false, true], [1n, "first, better", true, false],
    ]);
    const listed = (await carol.api.channels.listChannels({})).channels.find((ch) => ch.channelId === group)!;
    assert.equal(listed.unreadCount, 4n, "four messages, the changes not counted");
    const found = await carol.api.messages.searchMessages({ channelId: group, query: "second" });
    assert.equal(found.messages.length, 0, "a deleted text is not found");
    const synced = await carol.api.messages.syncInbox({ afterInboxSeq: 0n, limit: 100 });
    assert.deepEqual(synced.entries.map((e) => e.message!.text), ["first", "", "third", "first, better", "", "marker"],
      "the sync queue keeps every entry, but not the deleted text");

    // The device that was away gets the changes in order from its cursor.
    const late = await device(chatd.wsUrl, offline.token);
    await late.waitForMessages(6);
    assert.deepEqual(late.shown(group), [...expected, { seq: 4n, text: "marker", edited: false, deleted: false }]);

    // In a direct chat nobody administers: only the sender deletes.
    const dm = (await bob.api.channels.openDirect({ userId: owner.userId })).channel!.channelId;
    assert.equal((await b.send(dm, "private")).kind.case, "sendAck");
    const notYours = await o1.deleteMessage(dm, 1n);
    assert.ok(notYours.kind.case === "error" && notYours.kind.value.code === ErrorCode.PERMISSION_DENIED);
    // The api's SendMessage edits too, and the newest message's preview follows.
    await bob.api.messages.sendMessage({ channelId: dm, clientMsgId: "api-edit", text: "private, edited", editSeq: 1n });
    const preview = (await owner.api.channels.listChannels({})).channels.find((ch) => ch.channelId === dm)!;
    assert.deepEqual([preview.lastMessage?.text, preview.lastMessage?.editedAt !== undefined], ["private, edited", true]);
    await bob.api.messages.sendMessage({ channelId: dm, clientMsgId: "api-delete", text: "", deleteSeq: 1n });
    const gone = (await owner.api.channels.listChannels({})).channels.find((ch) => ch.channelId === dm)!;
    assert.deepEqual([gone.lastMessage?.text, gone.lastMessage?.deleted], ["", true]);
  });

  it("delivers a reply with the seq it answers, and refuses one to a missing or deleted message", async () => {
    const [alice, bob] = [await signUp(chatd.httpUrl, "asks"), await signUp(chatd.httpUrl, "answers")];
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    const [a, b] = await Promise.all([alice, bob].map((u) => device(chatd.wsUrl, u.devices[0]!.token)));
    assert.equal((await a!.send(dm, "lunch?")).kind.case, "sendAck");
    assert.equal((await a!.send(dm, "or dinner?")).kind.case, "sendAck");
    await b!.waitForMessages(2);
    assert.equal((await b!.send(dm, "lunch!", undefined, { replyToSeq: 1n })).kind.case, "sendAck");
    await a!.waitForMessages(3);
    assert.deepEqual(a!.messagesIn(dm).map((m) => [m.seq, m.replyToSeq, m.text]), [[1n, 0n, "lunch?"], [2n, 0n, "or dinner?"], [3n, 1n, "lunch!"]]);
    const history = await alice.api.messages.listMessages({ channelId: dm, limit: 10 });
    assert.deepEqual(history.messages.map((m) => m.replyToSeq), [1n, 0n, 0n]);
    await bob.api.messages.sendMessage({ channelId: dm, clientMsgId: "api-reply", text: "or both", replyToSeq: 2n });
    assert.equal((await alice.api.messages.listMessages({ channelId: dm, limit: 1 })).messages[0]!.replyToSeq, 2n, "the api's SendMessage replies too");

    assert.equal((await a!.deleteMessage(dm, 2n)).kind.case, "sendAck");
    const refusals: [Promise<ServerFrame>, ErrorCode, RegExp][] = [
      [b!.send(dm, "to nothing", undefined, { replyToSeq: 99n }), ErrorCode.NOT_FOUND, /no message with seq 99/],
      [b!.send(dm, "to a deleted one", undefined, { replyToSeq: 2n }), ErrorCode.NOT_FOUND, /was deleted/],
      [b!.send(dm, "edit and reply", undefined, { replyToSeq: 1n, editSeq: 3n }), ErrorCode.INVALID_ARGUMENT, /reply_to_seq is for a new message/],
    ];
    for (const [reply, code, message] of refusals) assertRefused(await reply, code, message);
  });

  it("reactions reach every device of every member in order, one per user; history shows them; bad ones are refused", async () => {
    const [owner, bob, carol] = [await signUp(chatd.httpUrl, "reacts"), await signUp(chatd.httpUrl, "liker"), await signUp(chatd.httpUrl, "lurker")];
    const group = (await owner.api.channels.createGroup({ title: "reactions", memberUserIds: [bob.userId, carol.userId] })).channel!.channelId;
    const all = await Promise.all([owner, bob, carol].map((u) => device(chatd.wsUrl, u.devices[0]!.token)));
    const [o, b, c] = all as [TestDevice, TestDevice, TestDevice];
    const offline = await addDevice(chatd.httpUrl, carol);

    for (const text of ["pizza?", "at 8"]) assert.equal((await o.send(group, text)).kind.case, "sendAck");
    const first = await b.react(group, 1n, "👍", "react-1");
    assert.ok(first.kind.case === "sendAck", "a member reacts");
    const again = await b.react(group, 1n, "👍", "react-1");
    assert.ok(again.kind.case === "sendAck" && again.kind.value.duplicate, "a resend of the reaction is the same reaction");
    assert.equal((await c.react(group, 1n, "👨‍👩‍👧‍👦")).kind.case, "sendAck");
    assert.equal((await b.react(group, 1n, "❤️")).kind.case, "sendAck", "a later reaction replaces the user's earlier one");
    assert.equal((await o.react(group, 2n, "😂")).kind.case, "sendAck", "the sender reacts to their own message");
    assert.equal((await o.react(group, 2n, "")).kind.case, "sendAck", "and takes it back");

    const expected = new Map([[1n, [`❤️:${bob.userId}`, `👨‍👩‍👧‍👦:${carol.userId}`].sort()]]);
    await Promise.all(all.map((d) => d.waitForMessages(7, "2 messages and 5 reactions")));
    for (const d of all) {
      assert.deepEqual(d.reactionsShown(group), expected);
      assert.deepEqual(d.shown(group).map((m) => m.text), ["pizza?", "at 8"], "a reaction is no edit");
    }
    const changes = c.messagesIn(group).filter((m) => m.reaction);
    assert.deepEqual(changes.map((m) => [m.targetSeq, m.seq, m.text, m.senderUserId]), [
      [1n, 0n, "👍", bob.userId], [1n, 0n, "👨‍👩‍👧‍👦", carol.userId], [1n, 0n, "❤️", bob.userId], [2n, 0n, "😂", owner.userId], [2n, 0n, "", owner.userId],
    ]);

    // History carries the reactions standing now, by user id; the changes are not unread.
    const history = await carol.api.messages.listMessages({ channelId: group, limit: 10 });
    assert.deepEqual(history.messages.map((m) => [m.seq, m.reactions.map((r) => [r.userId, r.emoji])]), [
      [2n, []], [1n, [[bob.userId, "❤️"], [carol.userId, "👨‍👩‍👧‍👦"]].sort((x, y) => (x[0]! < y[0]! ? -1 : 1))],
    ]);
    const listed = (await carol.api.channels.listChannels({})).channels.find((ch) => ch.channelId === group)!;
    assert.equal(listed.unreadCount, 2n, "two messages, the reactions not counted");

    // The device that was away gets them in order from its cursor.
    const late = await device(chatd.wsUrl, offline.token);
    await late.waitForMessages(7);
    assert.deepEqual(late.reactionsShown(group), expected);

    assert.equal((await o.deleteMessage(group, 1n)).kind.case, "sendAck");
    const stranger = await signUp(chatd.httpUrl, "outsider");
    const s = await device(chatd.wsUrl, stranger.devices[0]!.token);
    const refusals: [Promise<ServerFrame>, ErrorCode, RegExp][] = [
      [b.react(group, 1n, "😢"), ErrorCode.NOT_FOUND, /was deleted/],
      [b.react(group, 99n, "👍"), ErrorCode.NOT_FOUND, /no message with seq 99/],
      [b.react(group, 2n, "ok"), ErrorCode.INVALID_ARGUMENT, /one emoji/],
      [b.react(group, 2n, "👍👍"), ErrorCode.INVALID_ARGUMENT, /one emoji/],
      [b.send(group, "👍", undefined, { reactSeq: 2n, editSeq: 2n }), ErrorCode.INVALID_ARGUMENT, /at most one/],
      [s.react(group, 2n, "👍"), ErrorCode.NOT_A_MEMBER, /not a member/],
    ];
    for (const [reply, code, message] of refusals) assertRefused(await reply, code, message);
    assert.equal((await o.send(group, "marker")).kind.case, "sendAck");
    await c.waitForMessages(9);
    assert.deepEqual(c.messagesIn(group).slice(7).map((m) => [m.targetSeq, m.deleted, m.text]), [[1n, true, ""], [0n, false, "marker"]],
      "no refused reaction reached anyone");
    const after = await carol.api.messages.listMessages({ channelId: group, limit: 10 });
    assert.deepEqual(after.messages.map((m) => [m.seq, m.deleted, m.reactions.length]), [[3n, false, 0], [2n, false, 0], [1n, true, 0]],
      "a deleted message shows no reactions");
    // The api's SendMessage reacts too.
    await bob.api.messages.sendMessage({ channelId: group, clientMsgId: "api-react", text: "🙏", reactSeq: 3n });
    const reacted = (await bob.api.messages.listMessages({ channelId: group, limit: 1 })).messages[0]!;
    assert.deepEqual(reacted.reactions.map((r) => [r.userId, r.emoji]), [[bob.userId, "🙏"]]);
  });

  it("takes an emoji in either spelling as one reaction (❤ and ❤️): one chip live and in history; the other spelling again changes nothing", async () => {
    const [owner, bob, carol, dan] = await Promise.all(["spell", "heartfe0f", "heartbare", "heartapi"].map((n) => signUp(chatd.httpUrl, n))) as [TestUser, TestUser, TestUser, TestUser];
    const group = (await owner.api.channels.createGroup({ title: "hearts", memberUserIds: [bob.userId, carol.userId, dan.userId] })).channel!.channelId;
    const o = await device(chatd.wsUrl, owner.devices[0]!.token);
    const b = await device(chatd.wsUrl, bob.devices[0]!.token);
    const c = await device(chatd.wsUrl, carol.devices[0]!.token, { json: true });
    assert.equal((await o.send(group, "dinner?")).kind.case, "sendAck");
    // Bob's web palette sends U+2764 U+FE0F, Carol's keyboard (a JSON session) U+2764 alone, Dan's SendMessage U+2764 U+FE0E.
    assert.equal((await b.react(group, 1n, "\u2764\uFE0F")).kind.case, "sendAck");
    assert.equal((await c.react(group, 1n, "\u2764")).kind.case, "sendAck");
    await dan.api.messages.sendMessage({ channelId: group, clientMsgId: "api-heart", text: "\u2764\uFE0E", reactSeq: 1n });
    // An emoji with a joiner after it is that emoji.
    assert.equal((await o.react(group, 1n, "👍\u200D")).kind.case, "sendAck");

    const heart = "\u2764\uFE0F";
    const expected = [`${heart}:${bob.userId}`, `${heart}:${carol.userId}`, `${heart}:${dan.userId}`, `👍:${owner.userId}`].sort();
    const history = async () => (await carol.api.messages.listMessages({ channelId: group, limit: 10 })).messages.find((m) => m.seq === 1n)!.reactions.map((r) => `${r.emoji}:${r.userId}`).sort();
    for (const d of [o, b, c]) {
      await d.waitForMessages(5, "a message and 4 reactions");
      assert.deepEqual(d.reactionsShown(group), new Map([[1n, expected]]), "live: one heart chip, three of them");
    }
    assert.deepEqual(await history(), expected, "history: one heart chip, three of them");

    // The heart again in Bob's spelling is Carol's reaction as it stands: no entry for anyone. Taken back, it goes.
    assert.equal((await c.react(group, 1n, heart)).kind.case, "sendAck");
    assert.equal((await c.react(group, 1n, "")).kind.case, "sendAck");
    // And Bob's, in Carol's spelling, is his as it stands too.
    assert.equal((await b.react(group, 1n, "\u2764")).kind.case, "sendAck");
    assert.equal((await o.send(group, "marker")).kind.case, "sendAck");
    const after = expected.filter((r) => r !== `${heart}:${carol.userId}`);
    for (const d of [o, b, c]) {
      await d.waitForMessages(7, "a take-back and a marker");
      assert.deepEqual(d.messagesIn(group).slice(5).map((m) => [m.reaction, m.text, m.senderUserId]), [[true, "", carol.userId], [false, "marker", owner.userId]], "no entry for a reaction that stood");
      assert.deepEqual(d.reactionsShown(group), new Map([[1n, after]]));
    }
    assert.deepEqual(await history(), after);
  });

  it("brings an offline device up to date, in order, on reconnect", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await device(chatd.wsUrl, alice.devices[0]!.token);
    const b = await device(chatd.wsUrl, bob.devices[0]!.token);
    await a.send(channel!.channelId, "before");
    await b.waitForMessages(1);
    await b.close();
    for (let i = 0; i < 450; i++) {
      const ack = await a.send(channel!.channelId, `missed ${i}`);
      assert.equal(ack.kind.case, "sendAck");
    }
    await b.connect();
    await b.waitForMessages(451);
    assert.deepEqual(
      b.messages().map((m) => m.text),
      ["before", ...[...Array(450).keys()].map((i) => `missed ${i}`)],
    );
    // Catch-up came in pages (bounded round trips), not one frame per message.
    const batches = b.frames.filter((f) => f.kind.case === "syncBatch").length;
    assert.ok(batches <= 4, `catch-up took ${batches} batches`);
  });

  it("never turns a resend into a second message", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await device(chatd.wsUrl, alice.devices[0]!.token);
    const b = await device(chatd.wsUrl, bob.devices[0]!.token);
    // Two copies at once (a retry racing the original), then one more later.
    const [first, second] = await Promise.all([a.send(channel!.channelId, "once", "same-id"), a.send(channel!.channelId, "once", "same-id")]);
    await b.waitForMessages(1);
    const third = await a.send(channel!.channelId, "once", "same-id");
    await a.send(channel!.channelId, "marker");
    await b.waitForMessages(2);
    const ids = [first, second, third].map((f) => (f.kind.case === "sendAck" ? f.kind.value.messageId : -1n));
    assert.equal(new Set(ids).size, 1, "every copy is acked with the one message id");
    assert.deepEqual(b.messages().map((m) => m.text), ["once", "marker"]);
    const history = await bob.api.messages.listMessages({ channelId: channel!.channelId });
    assert.equal(history.messages.length, 2);
  });

  it("exposes Prometheus metrics for sessions, messages in and out, delivery latency and consumer lag", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await device(chatd.wsUrl, alice.devices[0]!.token);
    const b = await device(chatd.wsUrl, bob.devices[0]!.token);
    await a.send(channel!.channelId, "counted");
    await b.waitForMessages(1);
    await b.send(channel!.channelId, "a reply, counted", undefined, { replyToSeq: 1n });
    await a.edit(channel!.channelId, 1n, "counted, edited");
    await b.deleteMessage(channel!.channelId, 2n);
    const text = await (await fetch(`${chatd.httpUrl}/metrics`)).text();
    for (const kind of ["message", "reply", "edit", "delete"]) {
      assert.ok((metricIn(text, "chat_sends_total", `kind="${kind}"`) ?? 0) >= 1, `sends of kind ${kind}`);
    }
    const value = (name: string) => metricIn(text, name) ?? NaN;
    assert.ok(value("chat_sessions") >= 2, "sessions");
    assert.ok(value("chat_messages_in_total") >= 1, "messages in");
    assert.ok(value("chat_entries_out_total") >= 2, "entries out");
    assert.ok(value("chat_delivery_latency_seconds_count") >= 2, "delivery latency");
    assert.ok(value("chat_messages_sequenced_total") >= 1, "sequenced");
    assert.ok(value("chat_inbox_appends_total") >= 2, "inbox appends");
    assert.match(text, /^chat_queue_consumer_lag\{group="chat-notifier",topic="chat.notifications.v1"\} \d+$/m);
    const health = await fetch(`${chatd.httpUrl}/healthz`);
    assert.equal(health.status, 200);
  });

  it("speaks the JSON sub-protocol for debugging", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await device(chatd.wsUrl, alice.devices[0]!.token, { json: true });
    const b = await device(chatd.wsUrl, bob.devices[0]!.token, { json: true });
    assert.equal(a.ws!.protocol, "chat.v1.json");
    const ack = await a.send(channel!.channelId, "json works");
    assert.equal(ack.kind.case, "sendAck");
    await b.waitForMessages(1);
    assert.equal(b.messages()[0]!.text, "json works");
  });

  describe("limits and bad input", () => {
    let alice: TestUser;
    let bob: TestUser;
    let channelId: bigint;
    before(async () => {
      alice = await signUp(chatd.httpUrl, "alice");
      bob = await signUp(chatd.httpUrl, "bob");
      channelId = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    });

    it("refuses a text of 100,000 code points and accepts 99,999, and the session carries on", async () => {
      const a = await device(chatd.wsUrl, alice.devices[0]!.token);
      const tooLong = await a.send(channelId, "😀".repeat(100_000));
      assert.equal(tooLong.kind.case, "error");
      assert.equal(tooLong.kind.value.code, ErrorCode.TEXT_TOO_LONG);
      const fits = await a.send(channelId, "😀".repeat(99_999));
      assert.equal(fits.kind.case, "sendAck");
      const empty = await a.send(channelId, "   ");
      assert.equal(empty.kind.case === "error" && empty.kind.value.code, ErrorCode.TEXT_EMPTY);
      assert.equal(a.closeCode, undefined);
    });

    it("refuses a non-member and tells nothing about the channel", async () => {
      const eve = await signUp(chatd.httpUrl, "eve");
      const e = await device(chatd.wsUrl, eve.devices[0]!.token);
      const r = await e.send(channelId, "let me in");
      assert.equal(r.kind.case, "error");
      assert.equal(r.kind.value.code, ErrorCode.NOT_A_MEMBER);
      const missing = await e.send(987654321n, "nowhere");
      assert.equal(missing.kind.case === "error" && missing.kind.value.code, ErrorCode.NOT_A_MEMBER);
      assert.equal(e.entries.length, 0);
    });

    it("refuses ids and seqs past 2^63-1 with INVALID_ARGUMENT naming the field, not an internal error", async () => {
      const a = await device(chatd.wsUrl, alice.devices[0]!.token);
      const huge = (1n << 64n) - 1n;
      for (const [frame, field] of [
        [a.send(huge, "nowhere"), /channel_id must be at most/],
        [a.send(channelId, "", undefined, { deleteSeq: huge }), /delete_seq must be at most/],
        [a.send(channelId, "re", undefined, { replyToSeq: huge }), /reply_to_seq must be at most/],
      ] as const) {
        const r = await frame;
        assert.equal(r.kind.case, "error");
        assert.equal(r.kind.value.code, ErrorCode.INVALID_ARGUMENT);
        assert.match(r.kind.value.message, field);
      }
      const read = a.sendFrame({ kind: { case: "read", value: { channelId: huge, seq: 1n } } });
      const refused = await waitFor(() => a.frames.find((f) => f.ref === read && f.kind.case === "error"), "the read's refusal");
      assert.equal(refused.kind.case === "error" && refused.kind.value.code, ErrorCode.INVALID_ARGUMENT);
      // A read past every seq is a read of everything.
      assert.equal((await a.send(channelId, "read me")).kind.case, "sendAck");
      const b = await device(chatd.wsUrl, bob.devices[0]!.token);
      b.sendFrame({ kind: { case: "read", value: { channelId, seq: huge } } });
      await waitFor(async () => (await bob.api.channels.describeChannel({ channelId })).channel!.unreadCount === 0n, "bob has read everything");
      assert.equal(a.closeCode, undefined);
    });

    it("answers a malformed frame with INVALID_FRAME and closes after many in a row", async () => {
      const a = await device(chatd.wsUrl, alice.devices[0]!.token);
      a.sendRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]));
      await waitFor(() => a.errors().find((e) => e.code === ErrorCode.INVALID_FRAME), "INVALID_FRAME");
      const ok = await a.send(channelId, "still here");
      assert.equal(ok.kind.case, "sendAck");
      for (let i = 0; i < 10; i++) a.sendRaw("not protobuf");
      assert.equal(await a.waitClosed(), 4400);
    });

    it("closes with 1009 on a frame over the size limit", async () => {
      const a = await device(chatd.wsUrl, alice.devices[0]!.token);
      a.sendRaw(new Uint8Array(600 * 1024));
      assert.equal(await a.waitClosed(), 1009);
    });

    it("refuses an API request body over the size limit before reading it, signed in or not", async () => {
      const body = new Uint8Array(8 * 1024 * 1024);
      const res = await fetch(`${chatd.httpUrl}/chat.v1.AuthService/Login`, {
        method: "POST",
        headers: { "content-type": "application/proto", "content-length": String(body.byteLength) },
        body,
      });
      const answer = (await res.json()) as { code: string; message: string };
      assert.equal(answer.code, "resource_exhausted");
      assert.match(answer.message, /exceed|max|limit|large/i);
      const ack = await (await device(chatd.wsUrl, alice.devices[0]!.token)).send(channelId, "still serving");
      assert.equal(ack.kind.case, "sendAck");
    });

    it("rate-limits a flood with RATE_LIMITED, then closes it with 4008, and others carry on", async () => {
      const a = await device(chatd.wsUrl, alice.devices[0]!.token);
      const b = await device(chatd.wsUrl, bob.devices[0]!.token);
      for (let i = 0; i < 1000; i++) a.sendFrame({ kind: { case: "heartbeat", value: {} } });
      await waitFor(() => a.errors().find((e) => e.code === ErrorCode.RATE_LIMITED && e.retryAfterMs > 0), "RATE_LIMITED");
      assert.equal(await a.waitClosed(), 4008);
      const ack = await b.send(channelId, "unaffected");
      assert.equal(ack.kind.case, "sendAck");
    });

    it("closes a handshake with an expired token with 4002", async () => {
      const keys = await loadOrCreateKeys(join(chatd.dataDir, "keys"));
      const past = Date.now() - 3_600_000;
      const { token } = new TokenSigner(keys, { now: () => past }).sign({ userId: alice.userId, deviceId: alice.devices[0]!.deviceId });
      const d = new TestDevice(chatd.wsUrl, token);
      devices.push(d);
      await d.connect();
      assert.equal(await d.waitClosed(), 4002);
      assert.match(d.closeReason ?? "", /expired/);
    });

    it("ends a session with 4002 when its access token expires mid-session", async () => {
      const keys = await loadOrCreateKeys(join(chatd.dataDir, "keys"));
      const ttlMs = 60_000;
      const issuedAt = Date.now() - ttlMs + 1500; // expires 1.5 s from now
      const { token } = new TokenSigner(keys, { ttlMs, now: () => issuedAt }).sign({ userId: alice.userId, deviceId: alice.devices[0]!.deviceId });
      const d = await device(chatd.wsUrl, token);
      assert.ok(d.welcome(), "welcomed while the token was good");
      assert.equal(await d.waitClosed(), 4002);
    });

    it("keeps a session open past its token's expiry once handed a new token (Reauthenticate), proto and JSON", async () => {
      const keys = await loadOrCreateKeys(join(chatd.dataDir, "keys"));
      const ttlMs = 60_000;
      const who = { userId: alice.userId, deviceId: alice.devices[0]!.deviceId };
      const issuedAt = Date.now() - ttlMs + 2500; // expires 2.5 s from now
      const { token: ending } = new TokenSigner(keys, { ttlMs, now: () => issuedAt }).sign(who);
      const { token: fresh, claims } = new TokenSigner(keys, { ttlMs }).sign(who);
      // Sessions of one user are swept together: once this one is closed, the others' expiry was checked too.
      const control = await device(chatd.wsUrl, ending);
      const renewed = [await device(chatd.wsUrl, ending), await device(chatd.wsUrl, ending, { json: true })];
      for (const d of renewed) {
        const answer = await d.reauthenticate(fresh);
        assert.equal(answer.kind.case, "reauthenticated", answer.kind.case === "error" ? answer.kind.value.message : "");
        assert.equal(answer.kind.case === "reauthenticated" && Number(answer.kind.value.tokenExpiresAt!.seconds), Math.floor(claims.expiresAtMs / 1000));
      }
      assert.equal(await control.waitClosed(), 4002);
      for (const d of renewed) {
        assert.equal(d.closeCode, undefined);
        const ack = await d.send(channelId, "still here after the first token ran out");
        assert.equal(ack.kind.case, "sendAck");
      }
    });

    it("refuses a Reauthenticate with another device's, a forged or a second token within a second, and serves on", async () => {
      const d = await device(chatd.wsUrl, alice.devices[0]!.token);
      const refusal = async (token: string) => {
        const answer = await d.reauthenticate(token);
        assert.equal(answer.kind.case, "error");
        return answer.kind.case === "error" ? answer.kind.value : assert.fail();
      };
      const other = await refusal(bob.devices[0]!.token);
      assert.equal(other.code, ErrorCode.PERMISSION_DENIED);
      assert.equal(other.refusedKind, 8);
      const limited = await refusal(alice.devices[0]!.token);
      assert.equal(limited.code, ErrorCode.RATE_LIMITED);
      assert.ok(limited.retryAfterMs > 0 && limited.retryAfterMs <= 1000);
      await waitOut(limited.retryAfterMs);
      const forged = await refusal(`${alice.devices[0]!.token.split(".")[0]}.AAAA`);
      assert.equal(forged.code, ErrorCode.UNAUTHENTICATED);
      const ack = await d.send(channelId, "still served");
      assert.equal(ack.kind.case, "sendAck");
    });

    it("closes a device's sockets with 4003 when it logs out, and only that device's", async () => {
      const carol = await signUp(chatd.httpUrl, "carol");
      const second = await addDevice(chatd.httpUrl, carol);
      const d1 = await device(chatd.wsUrl, carol.devices[0]!.token);
      const d2 = await device(chatd.wsUrl, second.token);
      // The gRPC listener has just seen the device signed in...
      const native = createClient(UserService, createGrpcTransport({
        baseUrl: chatd.grpcUrl,
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${carol.devices[0]!.token}`), next(req))],
      }));
      await native.getMe({});
      await carol.api.auth.logout({});
      // ...and refuses it at once after a logout through the other listener.
      await assert.rejects(native.getMe({}), (e: ConnectError) => e.code === Code.Unauthenticated && /signed out/.test(e.rawMessage));
      assert.equal(await d1.waitClosed(), 4003);
      const ack = await d2.sendFrame({ kind: { case: "heartbeat", value: {} } });
      await waitFor(() => d2.frames.find((f) => f.ref === ack && f.kind.case === "heartbeatAck"), "the other device still served");
      assert.equal(d2.closeCode, undefined);

      // Its access token is still within its lifetime, but opens nothing any more.
      const again = new TestDevice(chatd.wsUrl, carol.devices[0]!.token);
      devices.push(again);
      await again.connect();
      assert.equal(await again.waitClosed(), 4003);
      assert.match(again.closeReason ?? "", /signed out/);
      assert.equal(again.welcome(), undefined, "no welcome, so nothing of the inbox was sent");
    });

    it("closes with 4003 the sockets of a device revoked and of those a password change signs out, and serves the device that asked", async () => {
      const dana = await signUp(chatd.httpUrl, "dana");
      const [tablet, phone] = [await addDevice(chatd.httpUrl, dana), await addDevice(chatd.httpUrl, dana)];
      const [main, onTablet, onPhone] = await Promise.all([dana.devices[0]!.token, tablet.token, phone.token].map((t) => device(chatd.wsUrl, t)));
      const served = async () => {
        const ref = main.sendFrame({ kind: { case: "heartbeat", value: {} } });
        await waitFor(() => main.frames.find((f) => f.ref === ref && f.kind.case === "heartbeatAck"), "the device that asked still served");
      };
      await dana.api.auth.revokeDevice({ deviceId: tablet.deviceId });
      assert.equal(await onTablet.waitClosed(), 4003);
      await served();
      const changed = await dana.api.auth.changePassword({ currentPassword: dana.password, newPassword: "a new password" });
      assert.equal(changed.devicesSignedOut, 1);
      assert.equal(await onPhone.waitClosed(), 4003);
      await served();
      assert.equal(main.closeCode, undefined);
      assert.deepEqual((await dana.api.auth.listDevices({})).devices.map((d) => [d.deviceId, d.current]), [[dana.devices[0]!.deviceId, true]]);
      for (const token of [tablet.token, phone.token]) {
        const again = await device(chatd.wsUrl, token);
        assert.equal(await again.waitClosed(), 4003);
        assert.equal(again.welcome(), undefined);
      }
    });

    it("closes a handshake with a bad token with 4001", async () => {
      const d = new TestDevice(chatd.wsUrl, "not-a-token");
      devices.push(d);
      await d.connect();
      assert.equal(await d.waitClosed(), 4001);
      const none = new WebSocket(chatd.wsUrl, ["chat.v1.proto"]);
      const code = await new Promise<number>((r) => none.on("close", (c) => r(c)));
      assert.equal(code, 4001);
    });
  });

  it("loses nothing that was acked when chatd is killed and restarted", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await device(chatd.wsUrl, alice.devices[0]!.token);
    const acked = new Set<bigint>();
    let sending = true;
    const sender = (async () => {
      for (let i = 0; sending; i++) {
        const ref = a.sendFrame({ kind: { case: "send", value: { channelId: channel!.channelId, text: `m${i}`, clientMsgId: `k${i}` } } });
        try {
          const r = await a.reply(ref, 5_000);
          if (r.kind.case === "sendAck") acked.add(r.kind.value.messageId);
        } catch {
          return; // the server is gone
        }
      }
    })();
    await waitFor(() => acked.size >= 50, "50 acks before the kill");
    await chatd.kill();
    sending = false;
    await sender;
    const ackedBefore = new Set(acked);

    chatd = await startChatd({ dataDir: chatd.dataDir });
    const b = await device(chatd.wsUrl, bob.devices[0]!.token);
    await waitFor(() => {
      const got = new Set(b.messages().map((m) => m.messageId));
      return [...ackedBefore].every((id) => got.has(id));
    }, "every acked message after the restart");
    const seen = b.messages().map((m) => m.messageId);
    assert.equal(new Set(seen).size, seen.length, "no duplicates after the restart");
    const seqs = b.messages().map((m) => m.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)));
  });
});

// The windows are off by default; with them set, chatd refuses a sender's
// late edit or delete, and a group's owner still deletes. The unit tests of
// checkNamedMessage pin the arithmetic; this pins the wiring.
describe("chatd system: CHAT_EDIT_WINDOW_S and CHAT_DELETE_WINDOW_S", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  const devices: TestDevice[] = [];
  before(async () => {
    chatd = await startChatd({ env: { CHAT_EDIT_WINDOW_S: "1", CHAT_DELETE_WINDOW_S: "1" } });
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("refuses the sender's edit and delete once the window has passed, and lets the group's owner delete", async () => {
    const [owner, bob] = [await signUp(chatd.httpUrl, "owner"), await signUp(chatd.httpUrl, "late")];
    const group = (await owner.api.channels.createGroup({ title: "windows", memberUserIds: [bob.userId] })).channel!.channelId;
    const [o, b] = await Promise.all([owner, bob].map((u) => new TestDevice(chatd.wsUrl, u.devices[0]!.token).connect()));
    devices.push(o!, b!);
    assert.equal((await b!.send(group, "one")).kind.case, "sendAck");
    // Polled, not slept: the edits are accepted until the second has passed.
    const late = await waitFor(async () => {
      const r = await b!.edit(group, 1n, "one, again");
      return r.kind.case === "error" ? r.kind.value : undefined;
    }, "the edit window to pass", 30_000, 100);
    assert.deepEqual([late.code, late.message], [ErrorCode.PERMISSION_DENIED, "a message can only be edited within 1 second of sending it"]);
    // Past its edit window, the message is past its delete window of the same length too.
    assertRefused(await b!.deleteMessage(group, 1n), ErrorCode.PERMISSION_DENIED, /can only be deleted for everyone within 1 second/);
    assert.equal((await b!.react(group, 1n, "👍")).kind.case, "sendAck", "reactions know no window");
    assert.equal((await o!.deleteMessage(group, 1n)).kind.case, "sendAck", "moderation knows no window");
  });
});

describe("chatd start-up", function () {
  this.timeout(90_000);

  it("exits 1 with one line naming the variable when its port is taken, not a stack trace", async () => {
    const taken = net.createServer();
    taken.listen(0, "127.0.0.1");
    await once(taken, "listening");
    const port = (taken.address() as net.AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), "chatd-port-taken-"));
    try {
      await assert.rejects(startChatd({ dataDir, env: { CHAT_HTTP_PORT: String(port) } }), (err: Error) => {
        assert.match(err.message, /exited with 1 before listening/);
        assert.match(err.message, new RegExp(`chatd: cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_HTTP_PORT\\): the port is in use`));
        assert.doesNotMatch(err.message, /\n\s+at /, "no stack trace");
        return true;
      });
    } finally {
      taken.close();
      removeDataDir(dataDir);
    }
  });
});
