import kafkajs from "kafkajs";
import type { Admin, Producer } from "kafkajs";
import type {
  BatchHandler,
  MessageQueue,
  OutgoingRecord,
  RecordsLost,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from "./port.js";
import { mendKafkajsRequestQueue } from "./kafkajs-request-queue.js";
import { kafkaLevel, pinoLogCreator } from "./kafkajs-log.js";
import { watchKafkajsOffsetResets } from "./kafkajs-offset-reset.js";
import { DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, type KafkaQueueOptions } from "./kafka-options.js";
import { createTopic, topicMetadata } from "./kafka-topics.js";
import { newProducer, nextRequest, PRODUCER_SEQUENCE_LIMIT, settle, toMessages, type PendingPublish } from "./kafka-publish.js";
import { KafkaSubscription } from "./kafka-subscription.js";
import { settlesWithin } from "../model/settles-within.js";

// What callers import from here.
export type { KafkaQueueOptions } from "./kafka-options.js";
export { minInsyncReplicas, TOPIC_MAX_MESSAGE_BYTES, TOPIC_RETENTION_MS } from "./kafka-topics.js";
export { isPermanentConsumerError } from "./kafka-consumer-errors.js";

/** A group's committed offset of each partition it committed, and each partition's first (`low`) and next (`high`) offset. */
interface GroupOffsets {
  partitions: { partition: number; low: bigint; high: bigint }[];
  committed: Map<number, bigint>;
}

const { Kafka, logLevel: KafkaLogLevel } = kafkajs;
mendKafkajsRequestQueue();
watchKafkajsOffsetResets();

/**
 * The message-sync queue on Kafka (distributed mode).
 *
 * Producing: one idempotent producer (acks from all in-sync replicas, one
 * request in flight). publish() resolves only once Kafka acked every record
 * of it. Publishes that arrive while a request is in flight wait and go out
 * together in the next request (no linger: an idle queue sends at once), so
 * order is kept and throughput does not hinge on one round trip per publish.
 * A request takes the waiting records in order up to maxRequestBytes, so a
 * large publish (a long text fanned out to a group) goes in consecutive
 * requests; a part that fails ends its publish there, so a key's later
 * records never land before earlier ones the caller will publish again.
 * Keys go to partitions with Kafka's default (murmur2) partitioner, so Java
 * and other clients agree on where a key lives.
 *
 * Consuming: one kafkajs consumer per subscription, eachBatch with manual
 * commits. A batch's offsets are committed after the handler resolves (those
 * of all partitions together, every `commitIntervalMs`, and on stop); a
 * handler that rejects leaves its batch unresolved and uncommitted, the
 * partition is paused for a backoff, and the next fetch starts again at the
 * batch's first offset (never skipped). A batch whose partition was
 * reassigned meanwhile is not committed (the new owner re-reads it), and
 * its `lost` signal aborts, as does that of any handled batch whose offsets
 * a rebalance dropped before their commit. A
 * rebalance that begins with a batch in hand aborts its `revoked` signal,
 * and what was handled is committed before the consumer rejoins.
 */
export class KafkaQueue implements MessageQueue {
  private readonly kafka: InstanceType<typeof Kafka>;
  private readonly admin: Admin;
  private producer: Producer;
  /** Records handed to `producer` so far: none of its partitions' sequence numbers is higher. */
  private producerRecords = 0;
  private connecting: Promise<void> | undefined;
  private readonly partitions = new Map<string, number>();
  private pending: PendingPublish[] = [];
  private pumping: Promise<void> | undefined;
  private readonly subscriptions = new Set<KafkaSubscription>();
  private readonly lostListeners = new Set<(loss: RecordsLost) => void>();
  private closed = false;

  constructor(private readonly options: KafkaQueueOptions) {
    const logger = options.logger;
    this.kafka = new Kafka({
      clientId: options.clientId ?? "chat",
      brokers: [...options.brokers],
      connectionTimeout: options.connectionTimeoutMs ?? 3_000,
      requestTimeout: 30_000,
      retry: { initialRetryTime: 100, maxRetryTime: 5_000, retries: 8, ...options.retry },
      logLevel: logger ? kafkaLevel(options.kafkaLogLevel ?? "warn") : KafkaLogLevel.NOTHING,
      logCreator: logger ? pinoLogCreator(logger.child({ component: "kafkajs" })) : () => () => {},
    });
    this.admin = this.kafka.admin();
    this.producer = newProducer(this.kafka, this.partitions);
  }

  /**
   * A fresh producer (a new producer id, its sequence numbers from 0) in place of one that sent
   * nearly 2^31 records: kafkajs 2.2.4 wraps a partition's sequence number to 0 where Kafka
   * expects it to go on modulo 2^31, and the broker then refused every later record of that
   * partition (OUT_OF_ORDER_SEQUENCE_NUMBER, not retried) until the process restarted: days
   * of a busy partition. Between requests, so no record is in flight.
   */
  private async renewProducer(): Promise<void> {
    this.options.logger?.info({ records: this.producerRecords }, "renewing the kafka producer before its sequence numbers wrap");
    await this.producer.disconnect().catch(() => {});
    this.producer = newProducer(this.kafka, this.partitions);
    await this.producer.connect();
    this.producerRecords = 0;
  }

  /** Connects the admin client and the producer (done on first use; call it to fail fast at start-up). */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("queue is closed"));
    if (!this.connecting) {
      this.connecting = Promise.all([this.admin.connect(), this.producer.connect()]).then(
        () => undefined,
        (err) => {
          this.connecting = undefined;
          throw new Error(`cannot connect to Kafka at ${this.options.brokers.join(",")}: ${(err as Error).message}`, {
            cause: err,
          });
        },
      );
    }
    return this.connecting;
  }

  /** The Kafka name of a topic or consumer group. */
  private named(name: string): string {
    return this.options.namespace ? `${this.options.namespace}.${name}` : name;
  }

  async ensureTopics(specs: readonly TopicSpec[]): Promise<void> {
    const topics = specs.map((t) => ({ ...t, topic: this.named(t.topic) }));
    for (const t of topics) {
      if (!Number.isInteger(t.partitions) || t.partitions < 1) {
        throw new RangeError(`topic ${t.topic}: partitions must be a positive integer`);
      }
    }
    await this.connect();
    const existing = new Set(await this.admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      // One request per topic: kafkajs answers a CreateTopics in which some topics existed already
      // with a bare `false`, not saying which, and a process starting beside another (the api and
      // a pipeline at once) would say it created the topics the other did.
      const created = await Promise.all(missing.map((t) => createTopic(this.admin, t, this.options.replicationFactor)));
      const mine = missing.filter((_, i) => created[i]).map((t) => t.topic);
      const theirs = missing.filter((_, i) => !created[i]).map((t) => t.topic);
      if (mine.length > 0) this.options.logger?.info({ topics: mine }, "kafka topics created");
      if (theirs.length > 0) this.options.logger?.debug({ topics: theirs }, "kafka topics created meanwhile by another process");
    }
    const meta = await topicMetadata(this.admin, topics.map((t) => t.topic));
    const wanted = new Map(topics.map((t) => [t.topic, t.partitions]));
    for (const t of meta.topics) {
      const want = wanted.get(t.name) ?? t.partitions.length;
      // Partitions added to a topic (by hand, or a larger count configured since) are left
      // unused: keys move only if every producer moves them at the same moment, with nothing
      // of theirs still unread on the old partitions.
      if (t.partitions.length !== want) {
        this.options.logger?.warn(
          { topic: t.name, partitions: t.partitions.length, configured: want, used: Math.min(want, t.partitions.length) },
          "kafka topic has another partition count than configured; keys stay on the partitions of the smaller count",
        );
      }
      this.partitions.set(t.name, Math.min(want, t.partitions.length));
    }
  }

  async consumerLag(groupName: string, topicName: string): Promise<number> {
    const { partitions, committed } = await this.groupOffsets(this.named(groupName), this.named(topicName));
    let lag = 0n;
    for (const { partition, low, high } of partitions) {
      const c = committed.get(partition) ?? -1n;
      // From the first record still there: -1 (nothing committed yet) or an offset retention has
      // since passed (the group was away) resumes there, and what expired is no longer to be read.
      lag += high - (c > low ? c : low);
    }
    return Number(lag);
  }

  onRecordsLost(listener: (loss: RecordsLost) => void): void {
    this.lostListeners.add(listener);
  }

  /** A group's committed offsets of a topic (Kafka names), and each partition's first and next offset. */
  private async groupOffsets(group: string, topic: string): Promise<GroupOffsets> {
    await this.connect();
    const [ends, committed] = await Promise.all([
      this.admin.fetchTopicOffsets(topic),
      this.admin.fetchOffsets({ groupId: group, topics: [topic] }),
    ]);
    return {
      partitions: ends.map((p) => ({ partition: p.partition, low: BigInt(p.low), high: BigInt(p.high) })),
      committed: new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)])),
    };
  }

  /** Partition count of a topic, from the cache or the cluster; rejects for a topic that does not exist. */
  private async partitionsOf(topic: string): Promise<number> {
    const known = this.partitions.get(topic);
    if (known !== undefined) return known;
    await this.connect();
    if (!(await this.admin.listTopics()).includes(topic)) {
      throw new Error(`unknown topic ${topic}: call ensureTopics first`);
    }
    const meta = await this.admin.fetchTopicMetadata({ topics: [topic] });
    const n = meta.topics[0]!.partitions.length;
    this.partitions.set(topic, n);
    return n;
  }

  async publish(topicName: string, records: readonly OutgoingRecord[]): Promise<void> {
    const topic = this.named(topicName);
    if (this.closed) throw new Error("queue is closed");
    await this.partitionsOf(topic);
    if (records.length === 0) return;
    const { messages, sizes } = toMessages(records);
    await new Promise<void>((resolve, reject) => {
      const p: PendingPublish = { topic, messages, sizes, sent: 0, settled: false, timer: undefined, resolve, reject };
      const timeout = this.options.publishTimeoutMs ?? 30_000;
      p.timer = setTimeout(() => {
        // What was not sent yet never is; a part in flight may still land (the caller publishes again).
        this.dequeue(p);
        settle(p, new Error(`publish to ${topic}: no ack from Kafka within ${timeout} ms`));
      }, timeout);
      p.timer.unref();
      this.pending.push(p);
      this.pump();
    });
  }

  /**
   * Sends pending publishes one request at a time, in order: each request
   * takes the waiting records from the front up to maxRequestBytes (at least
   * one), merging small publishes and splitting a large one. A partition's
   * records in a request are a part of it, so no record batch is larger.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = (async () => {
      try {
        while (this.pending.length > 0) {
          const { parts, topicMessages, count } = nextRequest(this.pending, this.options.maxRequestBytes ?? 900_000);
          try {
            await this.connect();
            if (this.producerRecords + count >= PRODUCER_SEQUENCE_LIMIT) await this.renewProducer();
            // Counted before it is sent: one that fails may still have taken its sequence numbers.
            this.producerRecords += count;
            await this.producer.sendBatch({ acks: -1, timeout: 30_000, topicMessages });
            for (const { p, end } of parts) {
              p.sent = end;
              if (end === p.messages.length) {
                this.dequeue(p);
                settle(p);
              }
            }
          } catch (err) {
            this.options.logger?.warn({ err, publishes: parts.length }, "kafka publish failed");
            // The rest of a publish cut short is not sent: its caller publishes all of it again.
            for (const { p } of parts) {
              this.dequeue(p);
              settle(p, err);
            }
          }
        }
      } finally {
        this.pumping = undefined;
      }
    })();
  }

  private dequeue(p: PendingPublish): void {
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }

  async subscribe(groupName: string, topicName: string, handler: BatchHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    if (this.closed) throw new Error("queue is closed");
    const [group, topic] = [this.named(groupName), this.named(topicName)];
    await this.partitionsOf(topic);
    const newConsumer = () =>
      this.kafka.consumer({
        groupId: group,
        allowAutoTopicCreation: false,
        maxWaitTimeInMs: this.options.maxWaitTimeInMs ?? 500,
        minBytes: 1,
        sessionTimeout: this.options.sessionTimeoutMs ?? 10_000,
        heartbeatInterval: this.options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
        retry: {
          initialRetryTime: 100,
          maxRetryTime: 5_000,
          retries: 8,
          ...this.options.retry,
          // kafkajs restarts a crashed consumer for good: one given up at stop, Kafka away, went on
          // reconnecting (and kept the process alive) after its subscription was long stopped.
          restartOnFailure: async () => !sub.isStopping,
        },
      });
    const sub: KafkaSubscription = new KafkaSubscription(
      newConsumer,
      group,
      topic,
      topicName,
      handler,
      options,
      this.options,
      () => this.subscriptions.delete(sub),
      async () => {
        await this.connect();
        return new Map((await this.admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.low)]));
      },
      (loss) => {
        for (const listener of this.lostListeners) listener(loss);
      },
    );
    this.subscriptions.add(sub);
    try {
      await sub.start();
    } catch (err) {
      await sub.stop().catch(() => {});
      throw err;
    }
    return sub;
  }

  /**
   * Stops the subscriptions, waits for the pending publishes to be acked and
   * disconnects, all within closeTimeoutMs: publishes still pending then fail.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const timeoutMs = this.options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const until = performance.now() + timeoutMs;
    // Side by side: a batch in hand may wait on a publish, which fails at the deadline at the latest.
    await Promise.all([
      ...[...this.subscriptions].map((s) => s.stop()),
      (async () => {
        if (this.pumping && !(await settlesWithin(this.pumping, until - performance.now()))) {
          // Never acked, so never acked on: their callers answer a failure, and a sender sends again.
          const left = this.pending.splice(0);
          this.options.logger?.warn({ publishes: left.length, timeoutMs }, "kafka did not ack publishes before the queue closed; failing them");
          for (const p of left) settle(p, new Error(`publish to ${p.topic}: the queue closed before Kafka acked it`));
        }
      })(),
    ]);
    if (this.connecting) {
      const disconnected = this.connecting.catch(() => {}).then(() => Promise.all([this.producer.disconnect(), this.admin.disconnect()]));
      if (!(await settlesWithin(disconnected, Math.max(until - performance.now(), 1_000)))) {
        this.options.logger?.warn({ timeoutMs }, "kafka producer did not disconnect before the queue's close timeout; leaving it");
      }
    }
  }
}
