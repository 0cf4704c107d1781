import assert from "node:assert/strict";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id, InboxEntry, StoredMessage } from "../model/types.js";
import { deliverLive } from "./live-delivery.js";

const message: StoredMessage = {
  messageId: 900n,
  channelId: 7n,
  seq: 3n,
  senderUserId: 1n,
  senderDeviceId: 11n,
  clientMsgId: "c1",
  text: "hello",
  sentAtMs: 1_000,
};
const entry = (inboxSeq: bigint): InboxEntry => ({ inboxSeq, message });

/** A directory whose sessions are those of `online`, counting its lookups. */
function directory(online: Id[], withPushMany: boolean) {
  const pushed: { userId: Id; frame: ServerFrame }[] = [];
  const calls = { onlineUsers: 0 };
  const dir: SessionDirectory = {
    async pushToUsers(userIds, frame) {
      for (const userId of userIds) if (online.includes(userId)) pushed.push({ userId, frame });
    },
    async closeDevice() {},
    async onlineUsers(userIds) {
      calls.onlineUsers++;
      return new Set(userIds.filter((u) => online.includes(u)));
    },
  };
  if (withPushMany) {
    dir.pushMany = async (items) => {
      const reached = new Set<Id>();
      for (const i of items) if (online.includes(i.userId)) (pushed.push(i), reached.add(i.userId));
      return reached;
    };
  }
  return { dir, pushed, calls };
}

describe("deliverLive", () => {
  const fresh = [
    { userId: 1n, entry: entry(5n) },
    { userId: 2n, entry: entry(8n) },
    { userId: 3n, entry: entry(2n) },
  ];

  it("pushes to the users online and notifies the others, telling them apart from the push's own lookup", async () => {
    const { dir, pushed, calls } = directory([1n, 3n], true);
    const offline: Id[] = [];
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, fresh);
    assert.deepEqual(pushed.map((p) => p.userId), [1n, 3n]);
    assert.deepEqual(pushed.map((p) => (p.frame.kind.case === "message" ? p.frame.kind.value.entry?.inboxSeq : undefined)), [5n, 2n]);
    assert.deepEqual(offline, [2n]);
    assert.equal(calls.onlineUsers, 0, "no second lookup of who is online");
  });

  it("hands a directory that takes stored entries the entries themselves, and notifies those it did not reach", async () => {
    const { dir, pushed, calls } = directory([1n, 3n], true);
    const handed: { userId: Id; entry: InboxEntry }[] = [];
    dir.pushEntries = (items) => {
      handed.push(...items);
      return new Set([2n]);
    };
    const offline: Id[] = [];
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, fresh);
    assert.deepEqual(handed.map((h) => [h.userId, h.entry]), fresh.map((f) => [f.userId, f.entry]));
    assert.deepEqual(pushed, [], "no frames made for pushMany");
    assert.deepEqual(offline, [2n]);
    assert.equal(calls.onlineUsers, 0);
  });

  it("asks who is online when the directory can only push one frame at a time", async () => {
    const { dir, calls } = directory([2n], false);
    const offline: Id[] = [];
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, fresh);
    assert.deepEqual(offline, [1n, 3n]);
    assert.equal(calls.onlineUsers, 1);
  });

  it("hands an edit to the notifier hook for every offline member (their push of the message may still be held), not for the online ones", async () => {
    const { dir, pushed } = directory([1n], true);
    const offline: [Id, InboxEntry][] = [];
    const edit: InboxEntry = { inboxSeq: 9n, message: { ...message, messageId: 901n, seq: 0n, targetSeq: 3n, text: "edited" } };
    await deliverLive({ sessions: dir, onOffline: async (u, e) => void offline.push([u, e]) }, [1n, 2n].map((userId) => ({ userId, entry: edit })));
    assert.deepEqual(pushed.map((p) => p.userId), [1n]);
    assert.deepEqual(offline, [[2n, edit]]);
  });

  it("hands a delete to the notifier hook for every offline member (their push of the message may still be held), not for the online ones", async () => {
    const { dir, pushed } = directory([1n], true);
    const offline: [Id, InboxEntry][] = [];
    const del: InboxEntry = { inboxSeq: 9n, message: { ...message, messageId: 904n, seq: 0n, targetSeq: 3n, text: "", deleted: true } };
    await deliverLive({ sessions: dir, onOffline: async (u, e) => void offline.push([u, e]) }, [1n, 2n, 3n].map((userId) => ({ userId, entry: del })));
    assert.deepEqual(pushed.map((p) => p.userId), [1n]);
    assert.deepEqual(offline, [[2n, del], [3n, del]]);
  });

  it("pushes a note about the chat to live sessions but never notifies it", async () => {
    const { dir, pushed } = directory([1n], true);
    const offline: Id[] = [];
    const note: InboxEntry = { inboxSeq: 9n, message: { ...message, messageId: 903n, seq: 6n, text: "", note: { kind: "members_added", userIds: [2n] } } };
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, [{ userId: 1n, entry: note }, { userId: 2n, entry: note }]);
    assert.deepEqual(pushed.map((p) => p.userId), [1n]);
    assert.deepEqual(offline, [], "no notification for a note");
  });

  it("notifies a change marked notify (a reaction, to its author) when the user is offline", async () => {
    const { dir } = directory([1n], true);
    const offline: Id[] = [];
    const reaction: InboxEntry = { inboxSeq: 9n, message: { ...message, messageId: 902n, seq: 0n, targetSeq: 3n, text: "👍", reaction: true } };
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, [
      { userId: 1n, entry: reaction, notify: true },
      { userId: 2n, entry: reaction, notify: true },
      { userId: 3n, entry: reaction },
    ]);
    assert.deepEqual(offline, [2n], "the offline author, not the online one nor an offline member");
  });

  it("notifies every recipient when who is online cannot be told (Redis away), and still resolves", async () => {
    const away = new Error("redis: connection refused");
    let lookups = 0;
    const dir: SessionDirectory = {
      pushToUsers: async () => Promise.reject(away),
      pushMany: async () => (lookups++, Promise.reject(away)),
      closeDevice: async () => {},
      onlineUsers: async () => (lookups++, Promise.reject(away)),
    };
    const offline: Id[] = [];
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, fresh);
    assert.deepEqual(offline, [1n, 2n, 3n]);
    // The push's failed lookup is the answer: asking who is online again waited on the same outage twice per batch.
    assert.equal(lookups, 1);
  });

  it("asks who is online when a directory in this process fails to take the entries, and still resolves", async () => {
    const { dir, calls } = directory([1n], true);
    dir.pushEntries = () => {
      throw new Error("a session's socket threw");
    };
    const offline: Id[] = [];
    await deliverLive({ sessions: dir, onOffline: async (u) => void offline.push(u) }, fresh);
    assert.deepEqual(offline, [2n, 3n]);
    assert.equal(calls.onlineUsers, 1);
  });

  it("rejects when a notification cannot be queued, so the batch comes again; a failed live push alone does not", async () => {
    const { dir } = directory([1n], true);
    await assert.rejects(
      deliverLive({ sessions: dir, onOffline: async () => Promise.reject(new Error("no ack from Kafka")) }, fresh),
      /no ack from Kafka/,
    );
    const broken: SessionDirectory = { ...dir, pushMany: async () => Promise.reject(new Error("deliver failed")) };
    await deliverLive({ sessions: broken }, fresh);
  });
});
