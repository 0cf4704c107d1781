import assert from "node:assert/strict";
import type { SessionDirectory } from "../delivery/port.js";
import type { Inbox } from "../messages/inbox.js";
import type { Id, InboxEntry, StoredMessage } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { until } from "../queue/contract.js";
import { partitionFor } from "../queue/port.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { pino } from "pino";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { InboxWriter } from "./inbox-writer.js";
import { pipelineMetrics } from "./metrics.js";
import { encodeInboxAppends } from "./records.js";
import { stallTimedOnTheMonotonicClock } from "./stage-health-clock.test-support.js";
import { ConsumerGroups, Topics } from "./topics.js";

const message: StoredMessage = {
  messageId: 900n,
  channelId: 7n,
  seq: 1n,
  senderUserId: 1n,
  senderDeviceId: 11n,
  clientMsgId: "c1",
  text: "hello",
  sentAtMs: Date.now(),
};

/** An inbox in memory whose append for `failFor` throws the first time, after the others were stored. */
function flakyInbox(failFor: Id): Inbox {
  const entries = new Map<Id, InboxEntry[]>();
  let failed = false;
  return {
    async append(userId, m) {
      if (userId === failFor && !failed) {
        failed = true;
        throw new Error("storage hiccup");
      }
      const list = entries.get(userId) ?? [];
      entries.set(userId, list);
      const stored = list.find((e) => e.message.messageId === m.messageId);
      if (stored) return { entry: stored, duplicate: true };
      const entry = { inboxSeq: BigInt(list.length + 1), message: m };
      list.push(entry);
      return { entry, duplicate: false };
    },
    async readAfter(userId, afterSeq, limit) {
      return (entries.get(userId) ?? []).filter((e) => e.inboxSeq > afterSeq).slice(0, limit);
    },
    async head(userId) {
      return BigInt(entries.get(userId)?.length ?? 0);
    },
    async getCursor() {
      return 0n;
    },
    async advanceCursor() {},
    async dropCursor() {},
    async emptyTexts(userId, ids, deletedIds = []) {
      for (const e of entries.get(userId) ?? []) {
        if (deletedIds.includes(e.message.messageId)) e.message = { ...e.message, text: "", deleted: true };
        else if (ids.includes(e.message.messageId)) e.message = { ...e.message, text: "" };
      }
    },
  };
}

describe("InboxWriter", () => {
  it("delivers every member's entry when a batch that failed half-way is done again", async () => {
    // Users 1, 2 and 3 are stored before 4's append fails; on the retry theirs come back
    // as duplicates, and used to be neither pushed live nor notified.
    const online: Id[] = [1n, 2n, 4n];
    const pushed: Id[] = [];
    const sessions: SessionDirectory = {
      async pushToUsers(userIds) {
        for (const u of userIds) if (online.includes(u)) pushed.push(u);
      },
      async closeDevice() {},
      async onlineUsers(userIds) {
        return new Set(userIds.filter((u) => online.includes(u)));
      },
    };
    const notified: Id[] = [];
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const writer = new InboxWriter({ queue, inbox: flakyInbox(4n), sessions, onOffline: async (u) => void notified.push(u) });
    try {
      await writer.start();
      const members = [1n, 2n, 3n, 4n];
      const values = encodeInboxAppends(members, message);
      await queue.publish(Topics.inbox, members.map((u, i) => ({ key: String(u), value: values[i]! })));
      await until(() => online.every((u) => pushed.includes(u)) && notified.includes(3n), "every member's entry", 5_000);
      assert.deepEqual([...new Set(pushed)].sort(), [1n, 2n, 4n]);
      assert.deepEqual([...new Set(notified)], [3n]);
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  it("does the batch again when a push notification could not be queued, rather than drop the notification", async () => {
    const sessions: SessionDirectory = {
      async pushToUsers() {},
      async closeDevice() {},
      async onlineUsers() {
        return new Set();
      },
    };
    let attempts = 0;
    const notified: Id[] = [];
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const onOffline = async (u: Id) => {
      if (++attempts === 1) throw new Error("publish to the notifications topic: no ack from Kafka");
      notified.push(u);
    };
    const writer = new InboxWriter({ queue, inbox: flakyInbox(0n), sessions, onOffline });
    try {
      await writer.start();
      await queue.publish(Topics.inbox, encodeInboxAppends([2n], message).map((value) => ({ key: "2", value })));
      await until(() => notified.length > 0, "the notification, on the batch's second go", 5_000);
      assert.deepEqual(notified, [2n]);
      await waitFor(async () => (await queue.consumerLag(ConsumerGroups.inboxWriter, Topics.inbox)) === 0, "the batch committed once done");
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  it("empties the copies a delete names before its devices hear of the delete", async () => {
    const inbox = flakyInbox(0n);
    const textWhenPushed: string[] = [];
    const sessions: SessionDirectory = {
      async pushToUsers(userIds, frame) {
        const m = frame.kind.case === "message" ? frame.kind.value.entry?.message : undefined;
        if (m?.deleted) textWhenPushed.push((await inbox.readAfter(userIds[0]!, 0n, 10))[0]!.message.text);
      },
      async closeDevice() {},
      onlineUsers: async (userIds) => new Set(userIds),
    };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const writer = new InboxWriter({ queue, inbox, sessions });
    try {
      await writer.start();
      const del: StoredMessage = { ...message, messageId: 901n, seq: 0n, targetSeq: 1n, deleted: true, text: "" };
      await queue.publish(Topics.inbox, [
        { key: "1", value: encodeInboxAppends([1n], message)[0]! },
        { key: "1", value: encodeInboxAppends([1n], del, [message.messageId, 12345n])[0]! },
      ]);
      await until(() => textWhenPushed.length > 0, "the delete pushed", 5_000);
      assert.deepEqual(textWhenPushed, [""]);
      assert.deepEqual((await inbox.readAfter(1n, 0n, 10)).map((e) => [e.message.messageId, e.message.text]), [[900n, ""], [901n, ""]]);
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  it("marks the deleted message's copy deleted as it empties it, and only empties the copies of a record from an older pipeline", async () => {
    const inbox = flakyInbox(0n);
    const sessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const writer = new InboxWriter({ queue, inbox, sessions });
    try {
      await writer.start();
      const edit: StoredMessage = { ...message, messageId: 902n, seq: 0n, targetSeq: 1n, text: "hello!" };
      const del: StoredMessage = { ...message, messageId: 903n, seq: 0n, targetSeq: 1n, deleted: true, text: "" };
      const put = (u: Id, m: StoredMessage, empties: Id[] = [], deleted?: Id) =>
        ({ key: String(u), value: encodeInboxAppends([u], m, empties, undefined, deleted)[0]! });
      await queue.publish(Topics.inbox, [
        ...[1n, 2n].flatMap((u) => [put(u, message), put(u, edit)]),
        put(1n, del, [message.messageId, edit.messageId], message.messageId),
        // Without deleted_message_id, as a Sequencer built before it wrote the record.
        put(2n, del, [message.messageId, edit.messageId]),
      ]);
      const seen = (u: Id) => waitFor(async () => {
        const es = await inbox.readAfter(u, 0n, 10);
        return es.length === 3 && es.every((e) => e.message.text === "") ? es.map((e) => [e.message.messageId, e.message.deleted ?? false]) : undefined;
      }, `user ${u}'s copies emptied`, 5_000);
      assert.deepEqual(await seen(1n), [[900n, true], [902n, false], [903n, true]]);
      assert.deepEqual(await seen(2n), [[900n, false], [902n, false], [903n, true]]);
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  stallTimedOnTheMonotonicClock(async (stallMs) => {
    const inbox = flakyInbox(0n);
    let failures = 0;
    const failing: Inbox = { ...inbox, append: () => (failures++, Promise.reject(new Error("storage down"))) };
    const sessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    return {
      stage: new InboxWriter({ queue, inbox: failing, sessions, stallMs }),
      failures: () => failures,
      publishOne: () => queue.publish(Topics.inbox, [{ key: "1", value: encodeInboxAppends([1n], message)[0]! }]),
      close: () => queue.close(),
    };
  });

  it("reports itself stalled while every batch fails, and healthy once they go through, counting each failed batch", async () => {
    let down = true;
    const registry = new Registry();
    const inbox = flakyInbox(0n);
    const failing: Inbox = { ...inbox, append: (u, m) => (down ? Promise.reject(new Error("storage down")) : inbox.append(u, m)) };
    const sessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const writer = new InboxWriter({ queue, inbox: failing, sessions, stallMs: 200, metrics: pipelineMetrics(registry) });
    const failedBatches = async () => metricIn(await registry.metrics(), "chat_pipeline_batches_failed_total", 'stage="inbox-writer"');
    try {
      await writer.start();
      await writer.health.check();
      assert.equal(await failedBatches(), 0, "counted from 0");
      const values = encodeInboxAppends([1n], message);
      await queue.publish(Topics.inbox, [{ key: "1", value: values[0]! }]);
      await waitFor(
        () => writer.health.check().then(() => false, (e: Error) => /inbox-writer: every batch has failed .*storage down/.test(e.message)),
        "the stage to report a stall",
        10_000,
      );
      assert.ok((await failedBatches())! >= 2, `${await failedBatches()} failed batches counted`);
      down = false;
      await waitFor(() => writer.health.check().then(() => true, () => false), "the stage healthy again", 10_000);
      assert.equal(await inbox.head(1n), 1n);
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  it("skips a record it cannot decode, logging it and counting it, and goes on with the partition", async () => {
    // Retried, an unreadable record fails the same way for ever: every later entry of its
    // partition's users waited behind it.
    const registry = new Registry();
    const lines: { msg: string; offset?: string }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const inbox = flakyInbox(0n);
    const sessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 1 }]);
    const writer = new InboxWriter({ queue, inbox, sessions, logger, stallMs: 60_000, metrics: pipelineMetrics(registry) });
    try {
      await writer.start();
      await queue.publish(Topics.inbox, [
        { key: "1", value: new Uint8Array([0xff, 0xff]) },
        { key: "1", value: encodeInboxAppends([1n], message)[0]! },
      ]);
      await waitFor(async () => (await inbox.head(1n)) === 1n, "the entry after the unreadable record", 10_000);
      assert.equal(await metricIn(await registry.metrics(), "chat_pipeline_records_skipped_total", 'stage="inbox-writer"'), 1);
      assert.ok(lines.some((l) => /undecodable/.test(l.msg) && l.offset === "0"), JSON.stringify(lines));
    } finally {
      await writer.stop();
      await queue.close();
    }
  });

  it("reports itself stalled while one partition's every batch fails, though the other partitions' batches go through", async () => {
    // A record its store refuses stalls its partition for good (never skipped), its
    // users' messages with it; the rest of the stage working must not hide that.
    const [stuck, fine] = [1n, 2n];
    assert.notEqual(partitionFor(String(stuck), 2), partitionFor(String(fine), 2), "the two users on two partitions");
    const inbox = flakyInbox(0n);
    const failing: Inbox = { ...inbox, append: (u, m) => (u === stuck ? Promise.reject(new Error("row refused")) : inbox.append(u, m)) };
    const sessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.inbox, partitions: 2 }]);
    const writer = new InboxWriter({ queue, inbox: failing, sessions, stallMs: 200 });
    let flowing = true;
    try {
      await writer.start();
      const append = (userId: bigint, messageId: bigint) =>
        queue.publish(Topics.inbox, [{ key: String(userId), value: encodeInboxAppends([userId], { ...message, messageId })[0]! }]);
      await append(stuck, 1n);
      // The other partition keeps going through the whole time: each record in turn, once the one before is written.
      const others = (async () => {
        for (let id = 2n; flowing; id++) {
          await append(fine, id);
          await waitFor(async () => !flowing || (await inbox.head(fine)) >= id - 1n, `the other partition's record ${id} written`, 10_000);
        }
      })();
      await waitFor(
        () => writer.health.check().then(() => false, (e: Error) => /inbox-writer: .*partition \d+.* failed .*row refused/.test(e.message)),
        "the stage to report its stalled partition",
        10_000,
      );
      assert.ok((await inbox.head(fine)) > 1n, "the other partition went through meanwhile");
      flowing = false;
      await others;
    } finally {
      flowing = false;
      await writer.stop();
      await queue.close();
    }
  });
});
