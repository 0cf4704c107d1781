// A consumer group down or behind for longer than a topic's retention, on the real Kafka of
// scripts/engines.sh: kafkajs finds the group's position deleted and resets it to the
// partition's first record without a word, so acked records are gone unseen. The queue must
// say so (an error line, chat_queue_records_lost_total) and go on from the log start.
// deleteTopicRecords moves the log start offset as a retention pass does, without its wait.
// Topics and groups made here are deleted afterwards.
import assert from "node:assert/strict";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { Registry } from "prom-client";
import { engineConfig, uniqueName } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import { KafkaQueue, TOPIC_RETENTION_MS } from "./kafka.js";
import { recordsLostCounter } from "./metrics.js";
import type { QueueRecord, RecordsLost, Subscription } from "./port.js";

const enc = (s: string) => new TextEncoder().encode(s);
const LOST_LINE = /deleted records this consumer group had not read/;
/** Said as kafkajs resets the partition, before the count: a process dying before the count leaves this. */
const RESET_LINE = /no records from this consumer group's position on/;

describe("KafkaQueue past a topic's retention", function () {
  this.timeout(90_000);
  let queue: KafkaQueue;
  let admin: kafkajs.Admin;
  let lines: Record<string, unknown>[];
  let losses: RecordsLost[];
  let registry: Registry;
  const subs: Subscription[] = [];
  const made = { topics: [] as string[], groups: [] as string[] };

  beforeEach(async () => {
    lines = [];
    losses = [];
    queue = new KafkaQueue({
      brokers: engineConfig().kafkaBrokers,
      clientId: "retention-test",
      logger: pino({ level: "info" }, { write: (l: string) => void lines.push(JSON.parse(l)) }),
    });
    await queue.connect();
    queue.onRecordsLost((loss) => losses.push(loss));
    admin = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
  });

  afterEach(async () => {
    await Promise.all(subs.splice(0).map((s) => s.stop()));
    await queue.close();
    if (made.groups.length) await admin.deleteGroups(made.groups.splice(0)).catch(() => {});
    if (made.topics.length) await admin.deleteTopics({ topics: made.topics.splice(0) }).catch(() => {});
    await admin.disconnect();
  });

  async function topicWithRecords(n: number): Promise<{ topic: string; group: string }> {
    const topic = uniqueName("retention");
    const group = uniqueName("g");
    made.topics.push(topic);
    made.groups.push(group);
    await queue.ensureTopics([{ topic, partitions: 1 }]);
    registry = new Registry();
    recordsLostCounter(registry, queue, [topic]);
    await publish(topic, 0, n);
    return { topic, group };
  }

  const publish = (topic: string, from: number, to: number) =>
    queue.publish(topic, [...Array(to - from).keys()].map((i) => ({ key: "k", value: enc(`r${from + i}`) })));

  async function deleteBelow(topic: string, offset: number): Promise<void> {
    // kafkajs' deleteTopicRecords finds the leaders in metadata it does not load itself.
    await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: String(offset) }] });
    assert.equal((await admin.fetchTopicOffsets(topic))[0]!.low, String(offset));
  }

  /**
   * A group that handled and committed offsets 0-2 of a new topic, then was away while the topic
   * went on to `upTo` and everything below 6 went past the retention.
   */
  async function groupAwayPastRetention(upTo: number): Promise<{ topic: string; group: string }> {
    const { topic, group } = await topicWithRecords(3);
    await assertCounted(topic, 0);
    const first: QueueRecord[] = [];
    subs.push(await queue.subscribe(group, topic, async (batch) => void first.push(...batch)));
    await waitFor(async () => first.length === 3 && (await queue.consumerLag(group, topic)) === 0, "the group to handle and commit offsets 0-2");
    await subs.pop()!.stop();
    await publish(topic, 3, upTo);
    await deleteBelow(topic, 6);
    return { topic, group };
  }

  function assertLost(topic: string, committed: number, logStart: number): void {
    assert.deepEqual(losses, [{ topic, partition: 0, committedOffset: BigInt(committed), logStartOffset: BigInt(logStart), records: logStart - committed }]);
    const said = lines.filter((l) => LOST_LINE.test(String(l.msg)));
    assert.equal(said.length, 1, `lines: ${JSON.stringify(lines.map((l) => l.msg))}`);
    assert.equal(said[0]!.level, 50, "logged at error");
    const reset = lines.filter((l) => RESET_LINE.test(String(l.msg)));
    assert.deepEqual(reset.map((l) => [l.level, l.partition, l.committedOffset]), [[50, 0, String(committed)]], "the reset logged at error once, where the group was");
    assert.ok(lines.indexOf(reset[0]!) < lines.indexOf(said[0]!), "the reset logged before the count");
    assert.deepEqual(
      [said[0]!.topic, said[0]!.partition, said[0]!.committedOffset, said[0]!.logStartOffset, said[0]!.records],
      [topic, 0, String(committed), String(logStart), logStart - committed],
    );
  }

  /**
   * Holds the queue's admin reads of offsets (a slow or unreachable admin connection) until
   * `release`; `settled` counts those that answered since.
   */
  function holdAdminOffsetReads(): { release: () => void; calls: () => number; settled: () => number } {
    const held = (queue as unknown as { admin: kafkajs.Admin }).admin;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    let settled = 0;
    for (const name of ["fetchOffsets", "fetchTopicOffsets"] as const) {
      const original = held[name].bind(held) as (...args: unknown[]) => Promise<unknown>;
      (held as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
        calls++;
        try {
          await released;
          return await original(...args);
        } finally {
          settled++;
        }
      };
    }
    return { release, calls: () => calls, settled: () => settled };
  }

  async function assertCounted(topic: string, records: number): Promise<void> {
    assert.match(await registry.metrics(), new RegExp(`^chat_queue_records_lost_total\\{topic="${topic}"\\} ${records}$`, "m"));
  }

  it("creates its topics with the retention it documents, not the broker's", async () => {
    const { topic } = await topicWithRecords(0);
    const described = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configNames: ["retention.ms"] }] });
    const entry = described.resources[0]!.configEntries.find((e) => e.configName === "retention.ms")!;
    assert.equal(entry.configValue, String(TOPIC_RETENTION_MS));
    assert.equal(entry.isDefault, false);
    assert.ok(TOPIC_RETENTION_MS >= 7 * 86_400_000, "a week at least");
  });

  it("says so when records a group committed up to were deleted while it was away, and goes on from the log start", async () => {
    // Away: 7 more records come, and the first 6 of all go past the retention.
    const { topic, group } = await groupAwayPastRetention(10);

    const again: QueueRecord[] = [];
    subs.push(await queue.subscribe(group, topic, async (batch) => void again.push(...batch)));
    await waitFor(() => again.length >= 4, "the group to read what is left");
    assert.deepEqual(again.map((r) => Number(r.offset)), [6, 7, 8, 9], "from the log start, nothing twice");
    assertLost(topic, 3, 6);
    await assertCounted(topic, 3);
  });

  it("says so, once, when a group falls behind by more than the retention while it runs, and goes on from the log start", async () => {
    const { topic, group } = await topicWithRecords(3);
    const got: QueueRecord[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inHand = false;
    let failed = false;
    subs.push(
      await queue.subscribe(group, topic, async (batch) => {
        inHand = true;
        // The first batch (offsets 0-2) takes long: meanwhile the records after it are deleted.
        await held;
        // The first batch after the gap fails once: delivered again, it is no second loss.
        if (batch[0]!.offset === 6n && !failed) {
          failed = true;
          throw new Error("failing once");
        }
        got.push(...batch);
      }),
    );
    await waitFor(() => inHand, "the first batch in hand");
    await publish(topic, 3, 10);
    await deleteBelow(topic, 6);
    release();
    await waitFor(() => got.length >= 7, "the group to read what is left");
    assert.deepEqual(got.map((r) => Number(r.offset)), [0, 1, 2, 6, 7, 8, 9]);
    assert.ok(failed);
    assertLost(topic, 3, 6);
    await assertCounted(topic, 3);
  });

  // Each join paused its partitions until the group's commits and the partitions' first offsets
  // were read: kafkajs, all its partitions paused, slept a whole long poll (500 ms) before its
  // first fetch, so every join held its records ~510 ms (12 joins: 507-555 ms, against 4-62 ms
  // since), and with the admin reads slow, until they answered or 5 s passed.
  it("hands the first record after each join at once, though the admin's offset reads do not answer", async () => {
    const { topic, group } = await topicWithRecords(0);
    const admin = holdAdminOffsetReads();
    try {
      for (let i = 0; i < 3; i++) {
        await publish(topic, i, i + 1);
        let handledAt: number | undefined;
        const sub = await queue.subscribe(group, topic, async () => void (handledAt ??= performance.now()));
        subs.push(sub);
        const joinedAt = performance.now();
        await waitFor(() => handledAt !== undefined, `the first record after join ${i + 1}`);
        // The admin never answers here: a join that waited on it would hand nothing until its 5 s gave up.
        // Under that, and far over the 4-62 ms seen, for a loaded machine's stalls.
        assert.ok(handledAt! - joinedAt < 4_000, `join ${i + 1}: first record ${Math.round(handledAt! - joinedAt)} ms after the join`);
        await subs.pop()!.stop();
      }
    } finally {
      admin.release();
    }
    assert.deepEqual(losses, []);
  });

  it("hands the records after a loss at once, though the admin does not answer, and tells the loss once", async () => {
    const { topic, group } = await groupAwayPastRetention(10);

    const admin = holdAdminOffsetReads();
    const again: QueueRecord[] = [];
    subs.push(await queue.subscribe(group, topic, async (batch) => void again.push(...batch)));
    await waitFor(() => again.length >= 4, "the group to read what is left");
    assert.deepEqual(again.map((r) => Number(r.offset)), [6, 7, 8, 9]);
    assertLost(topic, 3, 6);
    // The read of the first offset (for a partition no record may come to) answers after the batch told it: not told again.
    assert.ok(admin.calls() > 0, "the log start was asked");
    admin.release();
    await waitFor(() => admin.settled() === admin.calls(), "the admin reads to answer");
    await new Promise((r) => setImmediate(r));
    assertLost(topic, 3, 6);
    await assertCounted(topic, 3);
  });

  it("says so when every record after the group's commit was deleted while it was away and none came since", async () => {
    const { topic, group } = await groupAwayPastRetention(6);

    const again: QueueRecord[] = [];
    subs.push(await queue.subscribe(group, topic, async (batch) => void again.push(...batch)));
    await waitFor(() => losses.length > 0, "the loss to be told");
    assertLost(topic, 3, 6);
    await assertCounted(topic, 3);
    // Records after it are read, and are no second loss.
    await publish(topic, 6, 8);
    await waitFor(() => again.length >= 2, "the records published after the loss");
    assert.deepEqual(again.map((r) => Number(r.offset)), [6, 7]);
    assertLost(topic, 3, 6);
  });

  it("says nothing of a new group, which starts at the log start by design", async () => {
    const { topic, group } = await topicWithRecords(6);
    await deleteBelow(topic, 4);
    const got: QueueRecord[] = [];
    subs.push(await queue.subscribe(group, topic, async (batch) => void got.push(...batch)));
    await waitFor(() => got.length >= 2, "the group to read what is left");
    assert.deepEqual(got.map((r) => Number(r.offset)), [4, 5]);
    assert.deepEqual(losses, []);
    await assertCounted(topic, 0);
  });
});
