import assert from "node:assert/strict";
import { awkwardMessage } from "../wire/testdata.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { Id, StoredMessage } from "../model/types.js";
import type { MessageQueue, OutgoingRecord } from "../queue/port.js";
import {
  decodeNotificationRecord,
  decodeNotificationRequested,
  encodeNotificationRequested,
  encodeNotificationChange,
  mentions,
  publishOfflineNotifications,
  publishReadMarks,
} from "./records.js";

describe("push records", () => {
  it("tells a mention of a username from a longer name, an address and a sentence's end", () => {
    const yes = ["@bob", "hi @bob!", "@BOB, look", "(@bob)", "ask @bob.", "@bob: now", "x\n@bob"];
    const no = ["bob", "@bobby", "@bob_2", "mail a@bob.example", "x@bob", "@bob.smith", "@ bob", "@bo", ""];
    for (const t of yes) assert.equal(mentions(t, "bob"), true, t);
    for (const t of no) assert.equal(mentions(t, "bob"), false, t);
    assert.equal(mentions("ping @bob.smith", "bob.smith"), true);
    assert.equal(mentions("ping @bob.smith", "bob"), false);
    assert.equal(mentions("@bob @bobby", "bobby"), true, "a later occurrence counts");
    assert.equal(mentions("@", ""), false, "a deleted account (no username) is never mentioned");
  });

  it("reads a letter outside the BMP, or an accent, beside the name as part of a word, as a letter of the BMP is", () => {
    // "x@bob" is an address and "@bobé" another name: so are these, a letter of U+1D4xx or a combining mark written there.
    const no = ["𝓍@bob", "@bob𝓍", "@bob\u0301", "e\u0301@bob", "@bob.𝓍"];
    for (const t of no) assert.equal(mentions(t, "bob"), false, JSON.stringify(t));
    for (const t of ["😀@bob", "@bob😀", "hi @bob 𝓍", "❤️@bob", "1️⃣@bob", "@bob❤️"]) assert.equal(mentions(t, "bob"), true, JSON.stringify(t));
  });

  it("carries the mention flag only when set", () => {
    const base = { userId: 5n, message: awkwardMessage, senderName: "Alice", channelTitle: "" };
    assert.deepStrictEqual(decodeNotificationRequested(encodeNotificationRequested(base)), base);
    const mentioned = { ...base, mentioned: true };
    assert.deepStrictEqual(decodeNotificationRequested(encodeNotificationRequested(mentioned)), mentioned);
  });

  it("reads a group message's sender and channel once for all its offline members, and again for the next message", async () => {
    const reads = { users: 0, channels: 0 };
    let title = "Climbing";
    const accounts = {
      getUser: async (id: Id) => {
        reads.users++;
        await Promise.resolve();
        return { id, username: `u${id}`, displayName: "Alice" };
      },
    } as unknown as AccountStore;
    const channels = {
      getChannel: async (id: Id) => {
        reads.channels++;
        await Promise.resolve();
        return { id, kind: "group", title };
      },
    } as unknown as ChannelStore;
    const published: OutgoingRecord[] = [];
    const queue = { publish: async (_topic: string, records: readonly OutgoingRecord[]) => void published.push(...records) } as unknown as MessageQueue;
    const hook = publishOfflineNotifications({ queue, accounts, channels });
    const message = { ...awkwardMessage, senderUserId: 1n, text: "no mention here" };
    const members = Array.from({ length: 99 }, (_, i) => BigInt(i + 2));
    await Promise.all(members.map((u) => hook(u, { inboxSeq: 1n, message })));
    assert.deepEqual(reads, { users: 1, channels: 1 });
    assert.equal(published.length, 99);
    for (const r of published) {
      const n = decodeNotificationRequested(r.value);
      assert.equal(r.key, String(n.userId));
      assert.equal(n.senderName, "Alice");
      assert.equal(n.channelTitle, "Climbing");
    }
    title = "Bouldering";
    await hook(2n, { inboxSeq: 2n, message });
    assert.deepEqual(reads, { users: 2, channels: 2 }, "nothing kept once answered");
    assert.equal(decodeNotificationRequested(published.at(-1)!.value).channelTitle, "Bouldering");
  });

  it("carries a withdrawal (a delete, a reaction taken back) apart from a request", () => {
    const withdrawal: StoredMessage = { ...awkwardMessage, seq: 0n, text: "", targetSeq: 4n, deleted: true };
    assert.deepStrictEqual(decodeNotificationRecord(encodeNotificationChange({ userId: 5n, withdrawal })), { userId: 5n, withdrawal });
    const base = { userId: 5n, message: awkwardMessage, senderName: "Alice", channelTitle: "" };
    assert.deepStrictEqual(decodeNotificationRecord(encodeNotificationRequested(base)), base);
    assert.throws(() => decodeNotificationRequested(encodeNotificationChange({ userId: 5n, withdrawal })), /without a message/, "what a notifier built before withdrawals skips");
  });

  it("publishes a delete or a reaction taken back as a withdrawal, with no read, after the user's notifications still reading", async () => {
    let release!: () => void;
    const slowRead = new Promise<void>((r) => (release = r));
    let reads = 0;
    const accounts = {
      getUser: async (id: Id) => {
        reads++;
        await slowRead;
        return { id, username: `u${id}`, displayName: "Alice" };
      },
    } as unknown as AccountStore;
    const channels = { getChannel: async (id: Id) => ({ id, kind: "direct" }) } as unknown as ChannelStore;
    const published: OutgoingRecord[] = [];
    const queue = { publish: async (_topic: string, records: readonly OutgoingRecord[]) => void published.push(...records) } as unknown as MessageQueue;
    const hook = publishOfflineNotifications({ queue, accounts, channels });
    const message = { ...awkwardMessage, senderUserId: 1n, seq: 4n, text: "oops" };
    const del: StoredMessage = { ...message, messageId: message.messageId + 1n, seq: 0n, text: "", targetSeq: 4n, deleted: true };
    const { deleted: _, ...change } = del;
    const takeBack: StoredMessage = { ...change, reaction: true, targetSeq: 3n };
    const sent = hook(2n, { inboxSeq: 1n, message });
    const withdrawn = hook(2n, { inboxSeq: 2n, message: del });
    // Another user's withdrawal waits for nothing of user 2's.
    await hook(3n, { inboxSeq: 1n, message: takeBack });
    assert.deepEqual(published.map((r) => r.key), ["3"]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(published.map((r) => r.key), ["3"], "user 2's withdrawal waits for the notification it withdraws");
    release();
    await Promise.all([sent, withdrawn]);
    const records = published.map((r) => [r.key, decodeNotificationRecord(r.value)] as const);
    assert.deepEqual(records, [
      ["3", { userId: 3n, withdrawal: takeBack }],
      ["2", { userId: 2n, message, senderName: "Alice", channelTitle: "" }],
      ["2", { userId: 2n, withdrawal: del }],
    ]);
    assert.equal(reads, 1, "the sender's, for the message alone");
    // A user's own delete is withdrawn too: they may hold the push of a message they deleted as an admin.
    await hook(1n, { inboxSeq: 3n, message: del });
    assert.equal(published.length, 4);
  });

  it("publishes an edit as an edit record, reading the user only for a text with an '@', after the user's notifications still reading, and none to its author", async () => {
    let release!: () => void;
    const slowRead = new Promise<void>((r) => (release = r));
    let reads = 0;
    const accounts = {
      getUser: async (id: Id) => {
        reads++;
        await slowRead;
        return { id, username: `u${id}`, displayName: "Alice" };
      },
    } as unknown as AccountStore;
    const channels = { getChannel: async (id: Id) => ({ id, kind: "direct" }) } as unknown as ChannelStore;
    const published: OutgoingRecord[] = [];
    const queue = { publish: async (_topic: string, records: readonly OutgoingRecord[]) => void published.push(...records) } as unknown as MessageQueue;
    const hook = publishOfflineNotifications({ queue, accounts, channels });
    const message = { ...awkwardMessage, senderUserId: 1n, seq: 4n, text: "teh text" };
    const edit: StoredMessage = { ...message, messageId: message.messageId + 1n, seq: 0n, text: "the text", targetSeq: 4n };
    const sent = hook(2n, { inboxSeq: 1n, message });
    const edited = hook(2n, { inboxSeq: 2n, message: edit });
    await new Promise((r) => setImmediate(r));
    assert.equal(published.length, 0, "the edit waits for the notification it edits");
    release();
    await Promise.all([sent, edited]);
    assert.deepEqual(
      published.map((r) => [r.key, decodeNotificationRecord(r.value)]),
      [
        ["2", { userId: 2n, message, senderName: "Alice", channelTitle: "" }],
        ["2", { userId: 2n, edit, mentioned: false }],
      ],
    );
    assert.equal(reads, 1, "the sender's, for the message alone");
    await hook(1n, { inboxSeq: 3n, message: edit });
    assert.equal(published.length, 2, "the author holds no push of their own message");
    // Whether the push still held names the user follows the edited text: told, at a read of the user for a text with an '@'.
    const named = { ...edit, messageId: edit.messageId + 1n, text: "the text, @u2" };
    const other = { ...edit, messageId: edit.messageId + 2n, text: "the text, @u3" };
    await hook(2n, { inboxSeq: 4n, message: named });
    await hook(2n, { inboxSeq: 5n, message: other });
    assert.deepEqual(
      published.slice(2).map((r) => decodeNotificationRecord(r.value)),
      [
        { userId: 2n, edit: named, mentioned: true },
        { userId: 2n, edit: other, mentioned: false },
      ],
    );
    assert.equal(reads, 3, "the recipient's, for each edit with an '@'");
    const untold = decodeNotificationRecord(encodeNotificationChange({ userId: 5n, edit }));
    assert.deepStrictEqual(untold, { userId: 5n, edit }, "an edit that does not tell (an older pipeline's) leaves the push as the message first said");
    assert.throws(() => decodeNotificationRequested(encodeNotificationChange({ userId: 5n, edit })), /without a message/, "what a notifier built before edit records skips");
  });

  it("publishes a read mark as a read record on the user's key", async () => {
    const published: OutgoingRecord[] = [];
    const queue = { publish: async (_topic: string, records: OutgoingRecord[]) => void published.push(...records) } as unknown as MessageQueue;
    await publishReadMarks(queue)(7n, 500n, 42n);
    assert.deepEqual(
      published.map((r) => [r.key, decodeNotificationRecord(r.value)]),
      [["7", { userId: 7n, read: { channelId: 500n, seq: 42n } }]],
    );
    assert.throws(() => decodeNotificationRequested(published[0]!.value), /without a message/, "what a notifier built before read records skips");
  });
});
