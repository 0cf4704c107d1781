import assert from "node:assert/strict";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id, NewMessage } from "../model/types.js";
import { pino } from "pino";
import { Registry } from "prom-client";
import type { QueueRecord } from "../queue/port.js";
import { metricIn } from "../../test/support/metrics.js";
import { pipelineMetrics } from "./metrics.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import { waitFor } from "../../test/support/wait.js";
import { InboxWriter } from "./inbox-writer.js";
import { decodeInboxAppend, encodeSubmitted, MAX_EMPTIED_PER_APPEND, type DecodedInboxAppend } from "./records.js";
import { Sequencer, type SequencerDeps } from "./sequencer.js";
import { stallTimedOnTheMonotonicClock } from "./stage-health-clock.test-support.js";
import { Topics } from "./topics.js";

const GROUP = 10n;
const [ALICE, BOB, CAROL] = [1n, 2n, 3n];
const noSessions: SessionDirectory = { async pushToUsers() {}, async closeDevice() {}, onlineUsers: async () => new Set() };

/** The Sequencer on SQLite storage and an in-memory queue, with what it publishes to the inbox topic as it hands it on. */
async function sequencerOn(storage: SqliteStorage, channels = storage.channels, more: Pick<SequencerDeps, "logger" | "metrics"> = {}) {
  const queue = new SqliteQueue({ path: ":memory:" });
  await queue.ensureTopics([{ topic: Topics.submitted, partitions: 1 }, { topic: Topics.inbox, partitions: 1 }]);
  const published: QueueRecord[] = [];
  const sub = await queue.subscribe("test-inbox-reader", Topics.inbox, async (rs) => void published.push(...rs));
  const sequencer = new Sequencer({ queue, log: storage.messages, channels, ...more });
  await sequencer.start();
  return {
    queue,
    published,
    appends: (): DecodedInboxAppend[] => published.map((r) => decodeInboxAppend(r.value)),
    publishRaw: (value: Uint8Array) => queue.publish(Topics.submitted, [{ key: String(GROUP), value }]),
    submit: (...ms: NewMessage[]) => queue.publish(Topics.submitted, ms.map((m) => ({ key: String(m.channelId), value: encodeSubmitted(m) }))),
    async stop() {
      await sequencer.stop();
      await sub.stop();
      await queue.close();
    },
  };
}

let nextId = 7_000_000_000_000_000n;
const message = (over: Partial<NewMessage> = {}): NewMessage => {
  const messageId = nextId++;
  return { messageId, channelId: GROUP, senderUserId: ALICE, senderDeviceId: 11n, clientMsgId: `c${messageId}`, text: "hello", sentAtMs: Date.now(), ...over };
};

describe("Sequencer", function () {
  this.timeout(60_000);
  let storage: SqliteStorage;
  beforeEach(async () => {
    storage = openSqliteStorage(":memory:");
    await storage.channels.createGroup({ channelId: GROUP, kind: "group", title: "g", createdAtMs: 1, createdBy: ALICE }, [
      { channelId: GROUP, userId: ALICE, role: "owner", joinedAtMs: 1, readSeq: 0n },
      { channelId: GROUP, userId: BOB, role: "member", joinedAtMs: 1, readSeq: 0n },
    ]);
  });
  afterEach(() => storage.close());

  stallTimedOnTheMonotonicClock(async (stallMs) => {
    let failures = 0;
    const log = Object.create(storage.messages) as typeof storage.messages;
    log.append = () => (failures++, Promise.reject(new Error("storage down")));
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.submitted, partitions: 1 }, { topic: Topics.inbox, partitions: 1 }]);
    return {
      stage: new Sequencer({ queue, log, channels: storage.channels, stallMs }),
      failures: () => failures,
      publishOne: () => queue.publish(Topics.submitted, [{ key: String(GROUP), value: encodeSubmitted(message()) }]),
      close: () => queue.close(),
    };
  });

  it("reads a group's roster once per batch, after its appends: a member added meanwhile gets all of the batch or none of it", async () => {
    // Bob's reaction to an earlier message rides in the batch with two messages.
    const { message: m0 } = await storage.messages.append(message({ text: "earlier" }));
    // The first roster read of the batch comes back last (a slow replica), and Carol joins while it is out.
    let calls = 0;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const channels = Object.create(storage.channels) as typeof storage.channels;
    channels.listMembers = async (channelId) => {
      if (++calls === 1) await held;
      return storage.channels.listMembers(channelId);
    };
    const p = await sequencerOn(storage, channels);
    try {
      const batch = [message({ text: "one" }), message({ senderUserId: BOB, text: "👍", targetSeq: m0.seq, reaction: true }), message({ text: "two" })];
      await p.submit(...batch);
      await waitFor(async () => calls >= 1 && (await storage.messages.get(GROUP, 3n)) !== undefined, "the batch stored, its roster read out");
      await storage.channels.addMembers(GROUP, [{ channelId: GROUP, userId: CAROL, role: "member", joinedAtMs: Date.now(), readSeq: 0n }], 100);
      release();
      const got = (u: Id) => p.appends().filter((a) => a.userId === u).map((a) => a.message.messageId);
      await waitFor(() => got(ALICE).length === batch.length, "the batch's fan-out");
      // Its roster reads came before its one publish: a second read, whenever it went out, is counted by now.
      assert.equal(calls, 1, "one roster read for the channel's three sends");
      // The next batch reads the roster again: Carol, removed, gets nothing of it.
      await storage.channels.removeMember(GROUP, CAROL);
      const after = message({ text: "three" });
      await p.submit(after);
      // Its entries follow the first batch's on the one inbox partition: once they are all in, every entry of the first is.
      await waitFor(() => got(ALICE).length === batch.length + 1 && got(BOB).length === batch.length + 1, "the next batch's fan-out");
      const ids = batch.map((m) => m.messageId);
      for (const u of [ALICE, BOB]) assert.deepEqual(got(u), [...ids, after.messageId], `user ${u} gets every entry of both batches, in order`);
      assert.deepEqual(got(CAROL), ids, "Carol every entry of the first batch, in order, and none of the next");
      assert.equal(calls, 2);
    } finally {
      await p.stop();
    }
  });

  it("keeps a delete's records small however often the message was edited, and they still empty every copy", async () => {
    // More edits than the limit allows now: a message edited before there was
    // one (or by edits racing past it). At ~466,000 edits one record per member
    // naming them all passed the topic's 4 MiB, which Kafka refuses for good.
    const EDITS = 2 * MAX_EMPTIED_PER_APPEND + 500;
    const { message: m1 } = await storage.messages.append(message({ text: "secret" }));
    await storage.inbox.append(BOB, m1);
    const edits = Array.from({ length: EDITS }, (_, i) => message({ text: `secret ${i}`, targetSeq: 1n }));
    for (const e of edits) {
      assert.ok(await storage.messages.amend(e));
      await storage.inbox.append(BOB, { ...e, seq: 0n });
    }
    const p = await sequencerOn(storage);
    const writer = new InboxWriter({ queue: p.queue, inbox: storage.inbox, sessions: noSessions });
    await writer.start();
    try {
      const del = message({ text: "", targetSeq: 1n, deleted: true });
      await p.submit(del);
      const named = (u: Id) => p.appends().filter((a) => a.userId === u).flatMap((a) => a.emptyMessageIds ?? []);
      await waitFor(() => named(BOB).length >= EDITS + 1 && named(ALICE).length >= EDITS + 1, "the delete's records");
      // Each record names at most MAX_EMPTIED_PER_APPEND ids (~10 kB), far under any topic's max.message.bytes.
      for (const r of p.published) assert.ok(r.value.length <= MAX_EMPTIED_PER_APPEND * 10 + 1024, `a record of ${r.value.length} bytes`);
      for (const a of p.appends()) assert.equal(a.message.messageId, del.messageId);
      for (const u of [ALICE, BOB]) assert.deepEqual(named(u), [m1.messageId, ...edits.map((e) => e.messageId)], `user ${u}: each copy named once, in order`);
      // The first part, which names the message itself, says it is the deleted one; the parts naming edits only do not.
      for (const u of [ALICE, BOB]) {
        assert.deepEqual(p.appends().filter((a) => a.userId === u).map((a) => a.deletedMessageId), [m1.messageId, undefined, undefined]);
      }
      // Bob's inbox: the message, its edits, and the delete once, with no text left.
      await waitFor(async () => (await storage.inbox.readAfter(BOB, 0n, EDITS + 10)).every((e) => e.message.text === ""), "every copy emptied");
      const inbox = await storage.inbox.readAfter(BOB, 0n, EDITS + 10);
      assert.equal(inbox.length, EDITS + 2);
      // The message's copy says deleted, as chatd's delete leaves it; its edits' copies are only emptied.
      assert.deepEqual(inbox.filter((e) => e.message.deleted).map((e) => e.message.messageId), [m1.messageId, del.messageId]);
      assert.equal(inbox.filter((e) => e.message.messageId === del.messageId).length, 1);
    } finally {
      await writer.stop();
      await p.stop();
    }
  });

  it("skips a record it cannot decode, logging it and counting it, and sequences the channel's next one", async () => {
    // Retried, an unreadable record fails the same way for ever: every later message of its
    // partition's channels waited behind it.
    const registry = new Registry();
    const lines: { msg: string; offset?: string }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const p = await sequencerOn(storage, storage.channels, { logger, metrics: pipelineMetrics(registry) });
    try {
      await p.publishRaw(new Uint8Array([0xff, 0xff]));
      const next = message({ text: "after" });
      await p.submit(next);
      await waitFor(() => p.appends().some((a) => a.message.messageId === next.messageId), "the message after the unreadable record", 10_000);
      assert.equal(await metricIn(await registry.metrics(), "chat_pipeline_records_skipped_total", 'stage="sequencer"'), 1);
      assert.ok(lines.some((l) => /undecodable/.test(l.msg) && l.offset === "0"), JSON.stringify(lines));
    } finally {
      await p.stop();
    }
  });

  it("stores nothing for a channel that does not exist, or a direct chat that is not its pair's, and sequences the batch's others", async () => {
    // A direct chat's candidate whose creation race was lost: as Cassandra leaves one readable
    // (its rows written before the pair's claim), here a pair whose claim names another channel.
    const [dave, erin] = [40n, 41n];
    const candidate = 20n;
    await storage.channels.getOrCreateDirect({ channelId: candidate, kind: "direct", title: "", createdAtMs: 1, createdBy: dave }, dave, erin);
    const channels = Object.create(storage.channels) as typeof storage.channels;
    channels.directChannelOf = async () => 21n;
    const lines: { msg: string }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const p = await sequencerOn(storage, channels, { logger });
    try {
      const gone = message({ channelId: 30n });
      const lost = message({ channelId: candidate, senderUserId: dave });
      const next = message({ text: "after" });
      await p.submit(gone, lost, next);
      await waitFor(() => p.appends().some((a) => a.message.messageId === next.messageId), "the group's message", 10_000);
      assert.deepEqual(p.appends().map((a) => a.message.messageId), [next.messageId, next.messageId]);
      assert.deepEqual([...(await storage.messages.latest([30n, candidate])).keys()], []);
      assert.equal(lines.filter((l) => /dropping a record/.test(l.msg)).length, 2, JSON.stringify(lines));
    } finally {
      await p.stop();
    }
  });

  it("counts a message handed again (a retried batch) as sequenced once: its fan-out is done again, its seq is not given again", async () => {
    const registry = new Registry();
    const p = await sequencerOn(storage, storage.channels, { metrics: pipelineMetrics(registry) });
    try {
      const m = message();
      await p.submit(m);
      await waitFor(() => p.appends().filter((a) => a.message.messageId === m.messageId).length === 2, "the first fan-out", 10_000);
      await p.submit(m);
      await waitFor(() => p.appends().filter((a) => a.message.messageId === m.messageId).length === 4, "the fan-out done again", 10_000);
      assert.equal(await metricIn(await registry.metrics(), "chat_messages_sequenced_total"), 1);
    } finally {
      await p.stop();
    }
  });

  // A batch retried after its publish to the inbox topic failed hands every change again: its fan-out is
  // done again, as a message's is, but it was applied (and counted) the first time.
  it("counts an edit, a reaction and a delete handed again (a retried batch) once each, as a message", async () => {
    const registry = new Registry();
    const p = await sequencerOn(storage, storage.channels, { metrics: pipelineMetrics(registry) });
    const fannedOut = (m: NewMessage, times: number) =>
      waitFor(() => p.appends().filter((a) => a.message.messageId === m.messageId).length === 2 * times, `${m.clientMsgId} fanned out ${times} times`);
    try {
      const first = message();
      await p.submit(first);
      await fannedOut(first, 1);
      const changes = [
        message({ targetSeq: 1n, text: "edited" }),
        message({ targetSeq: 1n, text: "👍", reaction: true, senderUserId: BOB, senderDeviceId: 21n }),
        message({ targetSeq: 1n, text: "", deleted: true }),
      ];
      for (const c of changes) {
        await p.submit(c);
        await fannedOut(c, 1);
        await p.submit(c);
        await fannedOut(c, 2);
      }
      assert.equal(metricIn(await registry.metrics(), "chat_messages_sequenced_total"), 4, "a message and three changes");
    } finally {
      await p.stop();
    }
  });

  describe("changes that change nothing", () => {
    const change = (sender: Id, text: string, over: Partial<NewMessage> = {}) => message({ senderUserId: sender, text, targetSeq: 1n, ...over });
    const ids = (p: Awaited<ReturnType<typeof sequencerOn>>, u: Id) => p.appends().filter((a) => a.userId === u).map((a) => a.message.messageId);

    it("copies to no inbox an edit to the same text, a reaction its sender has, taking back one they do not have", async () => {
      await storage.messages.append(message({ text: "hi" }));
      await storage.messages.amend(change(BOB, "👍", { reaction: true }));
      const p = await sequencerOn(storage);
      try {
        const noops = [change(ALICE, "hi"), change(BOB, "👍", { reaction: true }), change(ALICE, "", { reaction: true })];
        const fence = message({ text: "after" });
        await p.submit(...noops, fence);
        await waitFor(() => ids(p, BOB).length > 0, "the fence's fan-out");
        for (const u of [ALICE, BOB]) assert.deepEqual(ids(p, u), [fence.messageId], `user ${u}: the fence only`);
        // The reactions are stored for their keys; the edit nowhere (it would mark the message edited).
        const keys = await Promise.all(noops.map((m) => storage.messages.findChange(GROUP, m.senderUserId, m.senderDeviceId, m.clientMsgId)));
        assert.deepEqual(keys, [undefined, noops[1]!.messageId, noops[2]!.messageId]);
        const m1 = (await storage.messages.get(GROUP, 1n))!;
        assert.deepEqual([m1.editedAtMs, m1.reactions], [undefined, [{ userId: BOB, emoji: "👍" }]]);
      } finally {
        await p.stop();
      }
    });

    it("tells it after the changes before it in the batch applied, and fans out again the same record of a retried batch", async () => {
      await storage.messages.append(message({ text: "hi" }));
      await storage.messages.amend(change(BOB, "👍", { reaction: true }));
      const p = await sequencerOn(storage);
      try {
        // Taken back and given again, in one batch: the second reads the first applied, so it changes something.
        const batch = [change(BOB, "", { reaction: true }), change(BOB, "👍", { reaction: true }), change(ALICE, "hi?"), change(ALICE, "hi")];
        await p.submit(...batch);
        await waitFor(() => ids(p, BOB).length >= batch.length, "the batch's fan-out");
        assert.deepEqual(ids(p, BOB), batch.map((m) => m.messageId));
        const m1 = (await storage.messages.get(GROUP, 1n))!;
        assert.deepEqual([m1.text, m1.reactions], ["hi", [{ userId: BOB, emoji: "👍" }]]);
        // The last two records again, as a batch retried after its publish failed: the state they find is their own.
        await p.submit(batch[1]!, batch[3]!);
        await waitFor(() => ids(p, BOB).length >= batch.length + 2, "the retried records' fan-out");
        assert.deepEqual(ids(p, BOB).slice(batch.length), [batch[1]!.messageId, batch[3]!.messageId]);
      } finally {
        await p.stop();
      }
    });
  });
});
