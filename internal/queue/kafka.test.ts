// KafkaQueue against the real Kafka of scripts/engines.sh: the MessageQueue contract suite,
// unchanged, then what only a real broker shows (long polls, merged publishes, a failing
// partition not holding up the others, handing partitions over in a group). Fails (never
// skips) when Kafka is unreachable. Topics and groups made here are deleted afterwards.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { engineConfig, uniqueName } from "../../test/support/engines.js";
import { groupMembers, joinForeign } from "../../test/support/kafka-groups.js";
import { waitFor } from "../../test/support/wait.js";
import { messageQueueContract } from "./contract.js";
import { isPermanentConsumerError, KafkaQueue, minInsyncReplicas, TOPIC_MAX_MESSAGE_BYTES, type KafkaQueueOptions } from "./kafka.js";
import type { BatchHandler, QueueRecord, SubscribeOptions, Subscription, TopicSpec } from "./port.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Remembers the topics and groups a test used, so they can be deleted from the shared broker. */
const made = { topics: new Set<string>(), groups: new Set<string>() };

class TrackedKafkaQueue extends KafkaQueue {
  override async ensureTopics(topics: readonly TopicSpec[]): Promise<void> {
    for (const t of topics) made.topics.add(t.topic);
    return super.ensureTopics(topics);
  }
  override async subscribe(group: string, topic: string, handler: BatchHandler, options?: SubscribeOptions): Promise<Subscription> {
    made.groups.add(group);
    return super.subscribe(group, topic, handler, options);
  }
}

function openQueue(extra: Partial<KafkaQueueOptions> = {}): KafkaQueue {
  return new TrackedKafkaQueue({ brokers: engineConfig().kafkaBrokers, clientId: "chat-test", ...extra });
}

async function deleteWhatWasMade(): Promise<void> {
  const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const groups = [...made.groups];
    const topics = [...made.topics];
    made.groups.clear();
    made.topics.clear();
    if (groups.length) await admin.deleteGroups(groups).catch(() => {});
    if (topics.length) await admin.deleteTopics({ topics }).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

describe("KafkaQueue", function () {
  this.timeout(90_000);
  after(deleteWhatWasMade);

  messageQueueContract("kafka", async () => {
    let queue = openQueue();
    await queue.connect(); // fails here, with the broker address, if Kafka is down
    return {
      queue,
      async reopen() {
        await queue.close();
        queue = openQueue();
        return queue;
      },
      async dispose() {
        await queue.close();
      },
    };
  });

  describe("on a real broker", () => {
    let queue: KafkaQueue;
    const subs: Subscription[] = [];
    beforeEach(async () => {
      queue = openQueue();
      await queue.connect();
    });
    afterEach(async () => {
      await Promise.all(subs.splice(0).map((s) => s.stop()));
      await queue.close();
    });

    it("starts beside a broker that has not yet heard of a topic just created (UNKNOWN_TOPIC_OR_PARTITION), rather than failing", async () => {
      const topic = uniqueName("fresh");
      const admin = (queue as unknown as { admin: kafkajs.Admin }).admin;
      const real = admin.fetchTopicMetadata.bind(admin);
      let refused = 0;
      admin.fetchTopicMetadata = async (...args) => {
        if (refused++ < 2) throw Object.assign(new Error("This server does not host this topic-partition"), { type: "UNKNOWN_TOPIC_OR_PARTITION", code: 3 });
        return real(...args);
      };
      await queue.ensureTopics([{ topic, partitions: 2 }]);
      assert.equal(refused, 3);
    });

    it("hands a record to its subscriber when it arrives, not when the long poll ends", async () => {
      // A long poll of 5 s: a fetch that waited it out would put each record seconds late.
      // Speed itself is the benchmark's to measure (bench/), not a test's.
      const longPollMs = 5_000;
      const own = openQueue({ maxWaitTimeInMs: longPollMs });
      try {
        await own.connect();
        const topic = uniqueName("arrive");
        await own.ensureTopics([{ topic, partitions: 4 }]);
        const sentAt = new Map<string, number>();
        const e2e: number[] = [];
        let warm = false;
        const sub = await own.subscribe(uniqueName("g"), topic, async (rs) => {
          const now = performance.now();
          for (const r of rs) {
            if (dec(r.value) === "warm") warm = true;
            const t = sentAt.get(dec(r.value));
            if (t !== undefined) e2e.push(now - t);
          }
        });
        try {
          // Warm up: the group has joined and the producer knows the partition leaders.
          await own.publish(topic, [{ key: "warm", value: enc("warm") }]);
          await waitFor(() => warm, "the warm-up message");
          const n = 20;
          for (let i = 0; i < n; i++) {
            const v = `m${i}`;
            sentAt.set(v, performance.now());
            await own.publish(topic, [{ key: `u${i % 16}`, value: enc(v) }]);
            // One message at a time, as a 1:1 chat does: each finds the fetch already waiting.
            await waitFor(() => e2e.length === i + 1, `message ${i} delivered`, 3 * longPollMs);
          }
          assert.ok(pct(e2e, 0.5) < longPollMs / 5, `publish-to-handler p50 ${pct(e2e, 0.5).toFixed(0)} ms with a ${longPollMs} ms long poll`);
        } finally {
          // The stop waits for the fetch in flight: a record ends it rather than the long poll.
          const stopped = sub.stop();
          await own.publish(topic, [{ key: "wake", value: enc("wake") }]);
          await stopped;
        }
      } finally {
        await own.close();
      }
    });

    it("long-polls while idle: a subscription with nothing to read asks twice a second, not fifty times", async () => {
      // kafkajs logs every request it sends at debug level: count the fetches.
      const fetchesAt: number[] = [];
      const logger = pino({ level: "debug" }, { write: (line: string) => void (line.includes("Request Fetch(") && fetchesAt.push(performance.now())) });
      const own = openQueue({ logger, kafkaLogLevel: "debug" });
      try {
        await own.connect();
        const topic = uniqueName("idle");
        await own.ensureTopics([{ topic, partitions: 2 }]);
        const sub = await own.subscribe(uniqueName("g"), topic, async () => {});
        await waitFor(() => fetchesAt.length >= 5, "five fetches of an idle subscription", 30_000);
        await sub.stop();
        // The first fetch may end early (the fetch session starts); the next ones wait for data.
        const gaps = fetchesAt.slice(2, 5).map((t, i) => t - fetchesAt[i + 1]!);
        assert.ok(Math.min(...gaps) >= 400, `idle fetches ${gaps.map((g) => g.toFixed(0)).join(", ")} ms apart`);
      } finally {
        await own.close();
      }
    });

    it("commits the offsets of many batches together, and what it handled when it stops", async () => {
      // kafkajs logs every request it sends at debug level: count the commits.
      let commits = 0;
      const logger = pino({ level: "debug" }, { write: (line: string) => void (line.includes("Request OffsetCommit(") && commits++) });
      const own = openQueue({ logger, kafkaLogLevel: "debug", commitIntervalMs: 60_000 });
      try {
        await own.connect();
        const topic = uniqueName("commits");
        const group = uniqueName("g");
        await own.ensureTopics([{ topic, partitions: 3 }]);
        const n = 30;
        await Promise.all(Array.from({ length: n }, (_, i) => own.publish(topic, [{ key: `k${i}`, value: enc(`v${i}`) }])));
        let handled = 0;
        // One record per batch: thirty batches, each of which used to be a commit.
        const sub = await own.subscribe(group, topic, async (rs) => void (handled += rs.length), { maxBatch: 1 });
        await waitFor(() => handled === n, `${n} records handled`, 30_000);
        assert.equal(commits, 0, "committed before the interval was up");
        await sub.stop();
        assert.equal(commits, 1, "one commit for all of it on stop");
        let again = 0;
        const next = await own.subscribe(group, topic, async (rs) => void (again += rs.length));
        await own.publish(topic, [{ key: "k", value: enc("after") }]);
        await waitFor(() => again >= 1, "the record published after the stop", 30_000);
        await next.stop();
        assert.equal(again, 1, "records committed on stop came again");
      } finally {
        await own.close();
      }
    });

    it("commits again after a commit that failed, though no further record comes to the partition", async () => {
      const own = openQueue({ commitIntervalMs: 20 });
      try {
        await own.connect();
        const topic = uniqueName("recommit");
        const group = uniqueName("g");
        await own.ensureTopics([{ topic, partitions: 1 }]);
        let handled = 0;
        const sub = await own.subscribe(group, topic, async (rs) => void (handled += rs.length));
        // The coordinator away for one commit (a broker restarting): the next try goes through.
        const consumer = (sub as unknown as { consumer: kafkajs.Consumer }).consumer;
        const real = consumer.commitOffsets.bind(consumer);
        let refused = 0;
        consumer.commitOffsets = async (offsets) => {
          if (refused++ === 0) throw Object.assign(new Error("The coordinator is not available"), { type: "COORDINATOR_NOT_AVAILABLE" });
          return real(offsets);
        };
        subs.push(sub);
        await own.publish(topic, [{ key: "k", value: enc("only") }]);
        await waitFor(() => handled === 1 && refused >= 1, "the record handled and its first commit refused", 30_000);
        // Idle from here: the handled offset stayed uncommitted (lag 1, done again after a crash) until a record came.
        await waitFor(async () => (await own.consumerLag(group, topic)) === 0, "the handled offset committed", 10_000);
      } finally {
        await Promise.all(subs.splice(0).map((s) => s.stop()));
        await own.close();
      }
    });

    it("counts lag from the partition's first record when the group's committed offset is older (records expired while it was away)", async () => {
      const topic = uniqueName("expired");
      const group = uniqueName("g");
      made.groups.add(group);
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      await queue.publish(topic, [...Array(8).keys()].map((i) => ({ key: "k", value: enc(`r${i}`) })));
      const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      try {
        // The group handled 3 records and left; then the first 6 went, as retention takes them
        // (deleteTopicRecords moves the log start offset as a retention pass does, without its wait).
        // A member commits and leaves: admin.setOffsets waited out a 5 s fetch of kafkajs' own.
        const member = kafka.consumer({ groupId: group, maxWaitTimeInMs: 100 });
        try {
          let joined = false;
          member.on(member.events.GROUP_JOIN, () => (joined = true));
          await member.connect();
          await member.subscribe({ topics: [topic] });
          await member.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
          await waitFor(() => joined, "the member in the group");
          await member.commitOffsets([{ topic, partition: 0, offset: "3" }]);
        } finally {
          await member.disconnect();
        }
        assert.deepEqual(await admin.fetchOffsets({ groupId: group, topics: [topic] }), [{ topic, partitions: [{ partition: 0, offset: "3", metadata: null }] }]);
        await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "6" }] });
        assert.equal((await admin.fetchTopicOffsets(topic))[0]!.low, "6");
      } finally {
        await admin.disconnect();
      }
      // What the group would read on return: the 2 records left, not the 3 gone as well.
      assert.equal(await queue.consumerLag(group, topic), 2);
    });

    it("splits a publish of several MB so no partition's batch exceeds what Kafka takes, keeping each key's order", async () => {
      // A 99,999-emoji text is ~400 kB; fanned out to a group it is one publish of
      // megabytes. Sent as one request, each partition's record batch was over the
      // topic's max.message.bytes: MESSAGE_TOO_LARGE, refused forever. Two partitions,
      // so each one's share (~6 MB) is over even the topic limit ensureTopics sets.
      const topic = uniqueName("big");
      await queue.ensureTopics([{ topic, partitions: 2 }]);
      const keys = 10;
      const per = 3;
      const text = "x".repeat(400_000);
      const records = [];
      for (let i = 0; i < per; i++) for (let k = 0; k < keys; k++) records.push({ key: `u${k}`, value: enc(`u${k}:${i}:${text}`) });
      // A publish made while the big one is going out, in parts, comes after all of it.
      await Promise.all([queue.publish(topic, records), queue.publish(topic, [{ key: "u0", value: enc(`u0:${per}:`) }])]);
      const seen = new Map<string, number[]>();
      const sizes: number[] = [];
      subs.push(
        await queue.subscribe(uniqueName("g"), topic, async (rs) => {
          for (const r of rs) {
            const [k, i] = dec(r.value.subarray(0, 16)).split(":");
            seen.set(`${r.key}/${k}`, [...(seen.get(`${r.key}/${k}`) ?? []), Number(i)]);
            sizes.push(r.value.length);
          }
        }),
      );
      await waitFor(() => sizes.length >= keys * per + 1, "every record", 60_000);
      assert.equal(sizes.length, keys * per + 1, "no duplicates");
      assert.equal(sizes.filter((n) => n > text.length).length, keys * per, "the large records whole");
      for (let k = 0; k < keys; k++) {
        assert.deepEqual(seen.get(`u${k}/u${k}`), [...Array(k === 0 ? per + 1 : per).keys()], `order of u${k}`);
      }
    });

    it("creates a topic whose leader the broker does not know yet when asked (UNKNOWN_TOPIC_OR_PARTITION: a broker just restarted), rather than failing", async () => {
      const topic = uniqueName("lagging");
      const admin = (queue as unknown as { admin: kafkajs.Admin }).admin;
      const [create, list] = [admin.createTopics.bind(admin), admin.listTopics.bind(admin)];
      // Created, then the wait for its leader answered as a broker that has not caught up does.
      admin.createTopics = async (o) => {
        await create({ ...o, waitForLeaders: false });
        throw Object.assign(new Error("This server does not host this topic-partition"), { type: "UNKNOWN_TOPIC_OR_PARTITION", code: 3 });
      };
      admin.listTopics = async () => (await list()).filter((t) => t !== topic);
      try {
        await queue.ensureTopics([{ topic, partitions: 2 }]);
      } finally {
        [admin.createTopics, admin.listTopics] = [create, list];
      }
      await queue.publish(topic, [{ key: "k", value: enc("v") }]);
    });

    it("says it created only the topics it did: one another process created meanwhile is not among them", async () => {
      const [theirs, mine] = [uniqueName("theirs"), uniqueName("mine")];
      await queue.ensureTopics([{ topic: theirs, partitions: 1 }]);
      const logged: { msg: string; topics?: string[] }[] = [];
      const own = openQueue({ logger: pino({ level: "debug" }, { write: (line: string) => void logged.push(JSON.parse(line)) }) });
      try {
        await own.connect();
        // Both still missing when it looked: the other process created `theirs` between its look and its request.
        const admin = (own as unknown as { admin: kafkajs.Admin }).admin;
        const real = admin.listTopics.bind(admin);
        let looked = false;
        admin.listTopics = async () => ((looked = !looked) ? (await real()).filter((t) => t !== theirs) : real());
        await own.ensureTopics([{ topic: theirs, partitions: 1 }, { topic: mine, partitions: 1 }]);
        const created = logged.filter((l) => l.msg === "kafka topics created").flatMap((l) => l.topics ?? []);
        assert.deepEqual(created, [mine]);
      } finally {
        await own.close();
      }
    });

    it("keeps each key on its partition when partitions are added to a topic, and warns of the count it does not use", async () => {
      const [topic, other] = [uniqueName("grown"), uniqueName("grown-other")];
      await queue.ensureTopics([{ topic, partitions: 2 }, { topic: other, partitions: 1 }]);
      const keys = Array.from({ length: 20 }, (_, i) => `channel-${i}`);
      const publishAll = (q: KafkaQueue) => q.publish(topic, keys.map((key) => ({ key, value: enc(key) })));
      await publishAll(queue);
      const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      const logged: { level: number; msg: string; topic?: string }[] = [];
      const restarted = openQueue({ logger: pino({ level: "debug" }, { write: (line: string) => void logged.push(JSON.parse(line)) }) });
      try {
        // An operator adds partitions while the processes run (and the next ones start with them).
        await admin.createPartitions({ topicPartitions: [{ topic, count: 8 }] });
        // The producer's first record to another topic refreshes its metadata: it now knows 8 partitions.
        await queue.publish(other, [{ key: "k", value: enc("v") }]);
        await publishAll(queue);
        await restarted.ensureTopics([{ topic, partitions: 2 }]);
        await publishAll(restarted);
        // The added partitions' leaders are elected a moment after createPartitions answers: until the
        // admin's metadata names them, a read of their offsets is refused (NOT_LEADER_FOR_PARTITION).
        const ends = await waitFor(
          async () => {
            try {
              const offsets = await admin.fetchTopicOffsets(topic);
              return offsets.length === 8 && offsets;
            } catch (err) {
              if (!(err as { retriable?: boolean }).retriable) throw err;
              await admin.fetchTopicMetadata({ topics: [topic] });
              return undefined;
            }
          },
          "the offsets of the topic's 8 partitions",
          30_000,
          100,
        );
        const moved = ends.filter((p) => p.partition >= 2 && p.high !== "0");
        assert.deepEqual(moved, [], "records of keys that lived on partitions 0-1 went to the added ones: their order is lost");
        assert.equal(ends.filter((p) => p.partition < 2).reduce((n, p) => n + Number(p.high), 0), 3 * keys.length);
        assert.ok(
          logged.some((l) => l.level === 40 && l.topic === topic && /partitions/.test(l.msg)),
          "no warning that the topic has partitions the processes do not use",
        );
      } finally {
        await restarted.close();
        await admin.disconnect();
      }
    });

    it("keeps publishing to a partition past 2^31 records: the producer is renewed before kafkajs wraps its sequence numbers wrongly", async () => {
      // kafkajs' producer must be wrapped before kafkajs loads, so this runs in a process of its own.
      const { stdout } = await promisify(execFile)("node", ["--import", "tsx", "internal/queue/testdata/kafka-sequence-wrap.ts"], { timeout: 60_000 });
      assert.deepEqual(JSON.parse(stdout), { sent: 10 }, "kafkajs wrapped to 0 where Kafka expected 2^31 - 1: OUT_OF_ORDER_SEQUENCE_NUMBER, for good");
    });

    it("creates topics that take record batches larger than the broker's default, as a backstop", async () => {
      const topic = uniqueName("limits");
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      try {
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configNames: ["max.message.bytes"] }],
        });
        assert.equal(resources[0]!.configEntries[0]!.configValue, String(TOPIC_MAX_MESSAGE_BYTES));
      } finally {
        await admin.disconnect();
      }
    });

    it("creates topics with the replication asked for and min.insync.replicas a majority of it, or refuses one more than the brokers, saying so", async () => {
      assert.deepEqual([1, 2, 3, 4, 5].map(minInsyncReplicas), [1, 2, 2, 3, 3]);
      const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      const replicated = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, replicationFactor: 1 });
      const tooMany = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, replicationFactor: 2 });
      try {
        const topic = uniqueName("replicated");
        await replicated.ensureTopics([{ topic, partitions: 1 }]);
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configNames: ["min.insync.replicas"] }],
        });
        const entry = resources[0]!.configEntries[0]!;
        // Set on the topic, not the broker's default standing in: a broker set to 2 would refuse a one-replica topic's writes.
        assert.deepEqual([entry.configValue, entry.isDefault], ["1", false]);
        await assert.rejects(tooMany.ensureTopics([{ topic: uniqueName("replicated"), partitions: 1 }]), /replication 2\) not created: .*more replicas than the cluster has brokers/);
      } finally {
        await Promise.all([replicated.close(), tooMany.close(), admin.disconnect()]);
      }
    });

    /**
     * Publishes "first" and "second", stops the subscription while its handler
     * holds `held` (the runner no longer runs when it finishes), and returns
     * what a new member of the group gets: only what came after, if what was
     * handled during the stop was committed.
     */
    async function afterAStopInHand(commitIntervalMs: number, held: "the batch" | "the second chunk"): Promise<string[]> {
      const own = openQueue({ commitIntervalMs });
      try {
        await own.connect();
        const topic = uniqueName("stopinhand");
        const group = uniqueName("g");
        await own.ensureTopics([{ topic, partitions: 1 }]);
        await own.publish(topic, [{ key: "k", value: enc("first") }, { key: "k", value: enc("second") }]);
        let release!: () => void;
        const released = new Promise<void>((r) => (release = r));
        let entered = false;
        const chunked = held === "the second chunk";
        const sub = await own.subscribe(
          group,
          topic,
          async (rs) => {
            if (chunked && dec(rs[0]!.value) !== "second") return;
            entered = true;
            await released;
          },
          chunked ? { maxBatch: 1 } : {},
        );
        await waitFor(() => entered, `${held} in hand`, 30_000);
        // The batch is released once stop is under way: kafkajs' runner is stopped as the disconnect
        // starts (consumer.commitOffsets does nothing from then on), which stop() reaches with the batch in hand.
        const consumer = (sub as unknown as { consumer: { disconnect(): Promise<void> } }).consumer;
        const disconnect = consumer.disconnect;
        let disconnecting = false;
        consumer.disconnect = () => ((disconnecting = true), disconnect());
        const stopped = sub.stop();
        await waitFor(() => disconnecting, "stop() to disconnect the consumer", 30_000);
        release();
        await stopped;
        const again: string[] = [];
        const next = await own.subscribe(group, topic, async (rs) => void again.push(...rs.map((r) => dec(r.value))));
        await own.publish(topic, [{ key: "k", value: enc("after") }]);
        await waitFor(() => again.includes("after"), "the record published after the stop", 30_000);
        await next.stop();
        return again;
      } finally {
        await own.close();
      }
    }

    it("commits a batch that was in hand when stop was called", async () => {
      assert.deepEqual(await afterAStopInHand(60_000, "the batch"), ["after"], "the batch handled during stop came again");
    });

    it("commits a chunk finished while stopping, when every chunk is committed at once", async () => {
      assert.deepEqual(await afterAStopInHand(0, "the second chunk"), ["after"], "the chunk handled during stop came again");
    });

    it("merges concurrent publishes into few requests and keeps each key's order", async () => {
      const topic = uniqueName("merge");
      await queue.ensureTopics([{ topic, partitions: 4 }]);
      const keys = 20;
      const per = 100;
      const t0 = performance.now();
      const publishes: Promise<void>[] = [];
      for (let i = 0; i < per; i++) {
        for (let k = 0; k < keys; k++) publishes.push(queue.publish(topic, [{ key: `k${k}`, value: enc(`k${k}:${i}`) }]));
      }
      await Promise.all(publishes);
      const ms = performance.now() - t0;
      console.log(`      ${keys * per} concurrent single-record publishes acked in ${ms.toFixed(0)} ms (${Math.round((keys * per) / (ms / 1000))}/s)`);
      const seen = new Map<string, number[]>();
      let total = 0;
      subs.push(
        await queue.subscribe(uniqueName("g"), topic, async (rs) => {
          for (const r of rs) {
            const [k, i] = dec(r.value).split(":");
            const list = seen.get(k!) ?? [];
            list.push(Number(i));
            seen.set(k!, list);
            total++;
          }
        }),
      );
      await waitFor(() => total >= keys * per, "every record");
      for (const [k, list] of seen) assert.deepEqual(list, [...Array(per).keys()], `order of ${k}`);
      assert.equal(total, keys * per, "no duplicates");
    });

    it("keeps delivering other partitions while one partition's batch keeps failing", async () => {
      const topic = uniqueName("fail");
      await queue.ensureTopics([{ topic, partitions: 2 }]);
      let healed = false;
      const got: QueueRecord[] = [];
      let failures = 0;
      subs.push(
        await queue.subscribe(uniqueName("g"), topic, async (rs) => {
          if (rs[0]!.partition === 0 && !healed) {
            failures++;
            throw new Error("partition 0 is failing");
          }
          got.push(...rs);
        }),
      );
      const keys = [...Array(10).keys()].map((i) => `key${i}`);
      for (let n = 0; n < 5; n++) await queue.publish(topic, keys.map((k) => ({ key: k, value: enc(`${k}:${n}`) })));
      const onP1 = () => got.filter((r) => r.partition === 1).length;
      await waitFor(() => onP1() > 0 && failures >= 2, "partition 1 delivered while partition 0 fails");
      assert.equal(got.filter((r) => r.partition === 0).length, 0);
      healed = true;
      await waitFor(() => got.length >= 50, "everything after healing", 20_000);
      for (const k of keys) {
        const mine = got.filter((r) => r.key === k).map((r) => Number(dec(r.value).split(":")[1]));
        assert.deepEqual(mine, [0, 1, 2, 3, 4], `key ${k}: in order, nothing skipped`);
      }
    });

    it("hands partitions over between members of a group without losing records", async () => {
      const topic = uniqueName("group");
      const group = uniqueName("g");
      await queue.ensureTopics([{ topic, partitions: 4 }]);
      const seenBy = [new Map<string, number>(), new Map<string, number>()];
      const handler = (i: number) => async (rs: QueueRecord[]) => {
        for (const r of rs) seenBy[i]!.set(dec(r.value), (seenBy[i]!.get(dec(r.value)) ?? 0) + 1);
      };
      const seen = () => new Set([...seenBy[0]!.keys(), ...seenBy[1]!.keys()]);
      const publish = async (from: number, to: number) => {
        for (let i = from; i < to; i++) await queue.publish(topic, [{ key: `u${i % 13}`, value: enc(String(i)) }]);
      };
      const first = await queue.subscribe(group, topic, handler(0));
      await publish(0, 100);
      await waitFor(() => seen().size === 100, "100 by the first member");

      const second = await queue.subscribe(group, topic, handler(1));
      subs.push(second);
      await publish(100, 200);
      await waitFor(() => seen().size === 200, "200 by the two members");

      await first.stop();
      const before = seenBy[1]!.size;
      await publish(200, 300);
      await waitFor(() => seen().size === 300, "300 after the first member left");
      assert.ok(seenBy[1]!.size - before >= 100, "the second member took every partition over");
      const dup = [...seenBy[0]!.values(), ...seenBy[1]!.values()].reduce((n, c) => n + c, 0) - 300;
      console.log(`      group hand-over: ${seenBy[0]!.size} + ${seenBy[1]!.size} records by the two members, ${dup} delivered twice`);
    });

    it("tells each member at every join of its group the partitions it holds from then on", async () => {
      const topic = uniqueName("assigned");
      const group = uniqueName("g");
      await queue.ensureTopics([{ topic, partitions: 4 }]);
      const told: number[][][] = [[], []];
      const member = (i: number) => queue.subscribe(group, topic, async () => {}, { onAssigned: (ps) => void told[i]!.push([...ps].sort()) });
      subs.push(await member(0));
      await waitFor(() => told[0]!.length === 1, "the first member's join");
      assert.deepEqual(told[0], [[0, 1, 2, 3]]);
      subs.push(await member(1));
      // Both rejoin; between them they hold each partition once.
      const last = (i: number) => told[i]!.at(-1) ?? [];
      await waitFor(() => told[0]!.length >= 2 && last(0).length > 0 && last(1).length > 0 && last(0).length + last(1).length === 4, "both members' joins");
      assert.deepEqual([...last(0), ...last(1)].sort(), [0, 1, 2, 3], JSON.stringify(told));
    });

    it("tells a handler when a rebalance begins, and commits what it finishes then before rejoining, so the next owner does not redo it", async () => {
      // The commit interval outlasts the test: only the commit made on the rebalance can land.
      // kafkajs rejoins only once the batch in hand is done; offsets handled in the old
      // generation were dropped at the rejoin, and the partition's next owner redid them.
      // Kafka names a member after its client id, and round robin gives the one partition to
      // the member named first: the second.
      const [own, other] = [openQueue({ clientId: "z-first", commitIntervalMs: 60_000 }), openQueue({ clientId: "a-second" })];
      const members: Subscription[] = [];
      let release = () => {};
      const released = new Promise<void>((r) => (release = r));
      try {
        const [topic, group] = [uniqueName("rebalance"), uniqueName("g")];
        await own.ensureTopics([{ topic, partitions: 1 }]);
        let revoked: AbortSignal | undefined;
        members.push(
          await own.subscribe(group, topic, async (_rs, batch) => {
            revoked = batch!.revoked;
            await released;
          }),
        );
        const values = ["v0", "v1", "v2"];
        await own.publish(topic, values.map((v) => ({ key: "k", value: enc(v) })));
        await waitFor(() => revoked, "the first member's batch in hand");
        assert.equal(revoked!.aborted, false);
        const redone: string[] = [];
        const joining = other.subscribe(group, topic, async (rs) => void redone.push(...rs.map((r) => dec(r.value))));
        await waitFor(() => revoked!.aborted, "the batch's signal once the second member's join began a rebalance", 30_000);
        release(); // finished within the old generation: committed now
        members.push(await joining);
        await own.publish(topic, [{ key: "k", value: enc("after") }]);
        await waitFor(() => redone.includes("after"), "the second member to read on", 30_000);
        assert.deepEqual(redone, ["after"], "records the first member finished, done again");
      } finally {
        release();
        await Promise.all(members.map((s) => s.stop()));
        await Promise.all([own.close(), other.close()]);
      }
    });

    /**
     * A member with `commitIntervalMs` handles v0..v2 at once (no batch in hand when a second member
     * joins the group and takes the partition); `check` gets the batch's `lost` signal once the second
     * member reads on, and what that one read, before either stops.
     */
    async function handOverAtARebalance(commitIntervalMs: number, check: (lost: AbortSignal, redone: string[]) => Promise<void>): Promise<void> {
      // Round robin gives the one partition to the member named first: the second.
      const [own, other] = [openQueue({ clientId: "z-first", commitIntervalMs }), openQueue({ clientId: "a-second" })];
      const members: Subscription[] = [];
      try {
        const [topic, group] = [uniqueName("lost"), uniqueName("g")];
        await own.ensureTopics([{ topic, partitions: 1 }]);
        let lost: AbortSignal | undefined;
        members.push(await own.subscribe(group, topic, async (_rs, batch) => void (lost ??= batch!.lost)));
        await own.publish(topic, ["v0", "v1", "v2"].map((v) => ({ key: "k", value: enc(v) })));
        await waitFor(() => lost, "the first member's batch handled");
        assert.equal(lost!.aborted, false, "not lost while its commit may come");
        const redone: string[] = [];
        members.push(await other.subscribe(group, topic, async (rs) => void redone.push(...rs.map((r) => dec(r.value)))));
        await own.publish(topic, [{ key: "k", value: enc("after") }]);
        await waitFor(() => redone.includes("after"), "the second member to read on", 30_000);
        await check(lost!, redone);
      } finally {
        await Promise.all(members.map((s) => s.stop()));
        await Promise.all([own.close(), other.close()]);
      }
    }

    it("tells a handler that finished a batch when its commit will not come (dropped at a rebalance), and the next owner reads it again", async () => {
      // The commit interval outlasts the test: the rejoin drops the handled offsets.
      await handOverAtARebalance(60_000, async (lost, redone) => {
        assert.deepEqual(redone, ["v0", "v1", "v2", "after"]);
        await waitFor(() => lost.aborted, "the handler told the batch goes to the next owner");
      });
    });

    it("never tells a handler a committed batch is lost", async () => {
      await handOverAtARebalance(0, async (lost, redone) => {
        assert.deepEqual(redone, ["after"]);
        assert.equal(lost.aborted, false);
      });
    });

    it("stopped while its consumer joins the group, it leaves the group once joined rather than stay in it until the session timeout", async () => {
      // A member holding a batch keeps the group rebalancing (kafkajs rejoins once the batch is done),
      // and so the second member joining, until the test lets the batch go.
      const [own, other] = [openQueue({ clientId: "a-holder" }), openQueue({ clientId: "b-joining" })];
      let release = () => {};
      const released = new Promise<void>((r) => (release = r));
      const [topic, group] = [uniqueName("joinstop"), uniqueName("g")];
      try {
        await own.ensureTopics([{ topic, partitions: 1 }]);
        let revoked: AbortSignal | undefined;
        let joins = 0;
        subs.push(
          await own.subscribe(
            group,
            topic,
            async (_rs, batch) => {
              revoked = batch!.revoked;
              await released;
            },
            { onConsumerTrouble: (err) => void (err || joins++) },
          ),
        );
        await own.publish(topic, [{ key: "k", value: enc("v") }]);
        await waitFor(() => revoked, "the first member's batch in hand");
        const joining = other.subscribe(group, topic, async () => {});
        await waitFor(() => revoked!.aborted, "the second member's join under way", 30_000);
        const joinsBefore = joins;
        const closed = other.close();
        release();
        await closed;
        await joining.catch(() => {});
        await waitFor(() => joins > joinsBefore, "the first member back in the group");
        assert.deepEqual(await groupMembers([group]), { [group]: 1 }, "the stopped member left behind in the group");
      } finally {
        release();
        await other.close();
        await own.close();
      }
    });

    it("keeps deployments with different namespaces apart on one broker: own topics, own groups", async () => {
      const [topic, group] = [uniqueName("ns"), uniqueName("g")];
      const spaces = [uniqueName("a"), uniqueName("b")];
      const queues = spaces.map((namespace) => openQueue({ namespace }));
      try {
        for (const ns of spaces) {
          made.topics.add(`${ns}.${topic}`);
          made.groups.add(`${ns}.${group}`);
        }
        const got: QueueRecord[][] = [[], []];
        for (const [i, q] of queues.entries()) {
          await q.ensureTopics([{ topic, partitions: 2 }]);
          // Same plain topic and group names on both sides.
          subs.push(await q.subscribe(group, topic, async (rs) => void got[i]!.push(...rs)));
        }
        await queues[0]!.publish(topic, [{ key: "k", value: enc("for a") }]);
        await queues[1]!.publish(topic, [{ key: "k", value: enc("for b") }]);
        await waitFor(() => got[0]!.length > 0 && got[1]!.length > 0, "each namespace's record");
        assert.deepStrictEqual(got.map((rs) => rs.map((r) => dec(r.value))), [["for a"], ["for b"]]);
        // Handlers see the plain topic name.
        assert.equal(got[0]![0]!.topic, topic);
      } finally {
        await Promise.all(subs.splice(0).map((s) => s.stop()));
        await Promise.all(queues.map((q) => q.close()));
      }
    });

    it("refuses to subscribe, saying why, when Kafka will not let the consumer into its group", async () => {
      const [topic, group] = [uniqueName("foreign"), uniqueName("g")];
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      made.groups.add(group);
      const foreign = await joinForeign(group, topic);
      assert.ok(foreign, "the foreign member took the empty group");
      try {
        await assert.rejects(
          queue.subscribe(group, topic, async () => {}),
          (e: Error) => /stopped for good/.test(e.message) && /protocol/i.test(e.message),
        );
      } finally {
        await foreign.disconnect();
      }
    });

    it("keeps its partitions while one handler call outlasts the session timeout, rather than another member redoing the records", async () => {
      // kafkajs heartbeats only between batches, and one call can take longer than the
      // session (a publish waits up to 30 s on a slow broker): the member was evicted and
      // the other member redid the records it still held. 6 s is the broker's smallest
      // session timeout (group.min.session.timeout.ms).
      const sessionTimeoutMs = 6_000;
      const holdMs = sessionTimeoutMs + 4_000; // long enough for an evicted member's partition to reach the other
      const own = openQueue({ sessionTimeoutMs });
      const members: Subscription[] = [];
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      try {
        await own.connect();
        const [topic, group] = [uniqueName("slow"), uniqueName("g")];
        await own.ensureTopics([{ topic, partitions: 2 }]);
        let held: { values: Set<string>; startedAt: number; running: boolean } | undefined;
        const redone: string[] = [];
        const handled = new Map<string, number>();
        const handler = (): BatchHandler => async (rs) => {
          const values = rs.map((r) => dec(r.value));
          if (held?.running) redone.push(...values.filter((v) => held!.values.has(v)));
          if (!held) {
            held = { values: new Set(values), startedAt: performance.now(), running: true };
            await released;
            held.running = false;
          }
          for (const v of values) handled.set(v, (handled.get(v) ?? 0) + 1);
        };
        // The second subscribe returns once the group holds both members, one partition each.
        members.push(await own.subscribe(group, topic, handler()));
        members.push(await own.subscribe(group, topic, handler()));
        const values = [...Array(20).keys()].map((i) => `v${i}`);
        await own.publish(topic, values.map((v, i) => ({ key: `k${i % 10}`, value: enc(v) })));
        await waitFor(() => held && performance.now() - held.startedAt >= holdMs, "a handler call held past the session timeout", 30_000, 100);
        assert.deepEqual(redone, [], "records handed to another member while the call holding them still ran");
        release();
        await waitFor(() => values.every((v) => handled.has(v)), "every record once the held call finished");
        assert.deepEqual([...handled].filter(([, n]) => n > 1), [], "records handled twice");
      } finally {
        release(); // a stop waits for the call in hand
        await Promise.all(members.map((s) => s.stop()));
        await own.close();
      }
    });

    it("replaces a consumer kafkajs stopped for good while running, and consumes again once the group takes it back", async () => {
      // kafkajs stops a consumer for good after some passing faults (after a broker
      // restart the group coordinator search fails: tulios/kafkajs#1445, #1630);
      // the process then consumed nothing until restarted. The fault here: the
      // member's session expires while its handler stalls the event loop, and a
      // member of another protocol takes the emptied group, so the rejoin is
      // refused, until that member leaves.
      const [topic, group] = [uniqueName("replace"), uniqueName("g")];
      const sessionTimeoutMs = 6_000;
      const own = openQueue({ sessionTimeoutMs });
      let foreign: kafkajs.Consumer | undefined;
      // Set once the test is over: a handler still waiting for the foreign member then lets go of the
      // one it finds, or it stays in the group, connected, and mocha never exits.
      let over = false;
      try {
        await own.connect();
        await own.ensureTopics([{ topic, partitions: 1 }]);
        let gaveUp: Error | undefined;
        const troubles: (Error | undefined)[] = [];
        const handled: string[] = [];
        let stalled = false;
        const sub = await own.subscribe(
          group,
          topic,
          async (rs) => {
            if (!stalled) {
              stalled = true;
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, sessionTimeoutMs + 2_000);
              foreign = await waitFor(() => (over ? Promise.reject(new Error("the test is over")) : joinForeign(group, topic)), "the session to expire and the foreign member to take the group", 60_000, 500);
              if (over) await foreign.disconnect();
            }
            handled.push(...rs.map((r) => dec(r.value)));
          },
          { onGiveUp: (err) => (gaveUp = err), onConsumerTrouble: (err) => troubles.push(err) },
        );
        subs.push(sub);
        await own.publish(topic, [{ key: "k", value: enc("held") }]);
        await waitFor(() => troubles.some((t) => t && /stopped for good/.test(t.message)), "the refused rejoin reported as trouble", 60_000);
        await foreign!.disconnect();
        foreign = undefined;
        await own.publish(topic, [{ key: "k", value: enc("after") }]);
        await waitFor(() => handled.includes("after"), "the record published after the foreign member left", 60_000);
        assert.equal(troubles.at(-1), undefined, "trouble cleared once the fresh consumer joined");
        assert.equal(gaveUp, undefined);
      } finally {
        over = true;
        await foreign?.disconnect();
        await Promise.all(subs.splice(0).map((s) => s.stop()));
        await own.close();
      }
    });

    it("tells permanent consumer errors from passing ones", () => {
      const wrapped = (inner: object) => Object.assign(new Error("outer"), { name: "KafkaJSNonRetriableError", cause: inner });
      assert.ok(isPermanentConsumerError(wrapped({ name: "KafkaJSProtocolError", type: "GROUP_AUTHORIZATION_FAILED" })));
      assert.ok(isPermanentConsumerError({ name: "KafkaJSSASLAuthenticationError" }));
      assert.ok(!isPermanentConsumerError(wrapped({ name: "KafkaJSGroupCoordinatorNotFound" })));
      assert.ok(!isPermanentConsumerError(wrapped({ name: "KafkaJSProtocolError", type: "INCONSISTENT_GROUP_PROTOCOL" })));
      assert.ok(!isPermanentConsumerError(new Error("boom")));
    });

    it("fails clearly when no broker answers", async () => {
      const dead = openQueue({ brokers: ["127.0.0.1:1"], retry: { retries: 1, initialRetryTime: 50 } });
      await assert.rejects(dead.connect(), /cannot connect to Kafka at 127\.0\.0\.1:1/);
      await dead.close();
    });
  });
});
