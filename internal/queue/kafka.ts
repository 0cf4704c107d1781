import kafkajs from "kafkajs";
import type { Admin, Consumer, EachBatchPayload, Message, Producer } from "kafkajs";
import type { Logger } from "pino";
import type {
  BatchHandler,
  MessageQueue,
  OutgoingRecord,
  QueueRecord,
  RecordsLost,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from "./port.js";
import { mendKafkajsRequestQueue } from "./kafkajs-request-queue.js";
import { pinoLogCreator } from "./kafkajs-log.js";
import { onOffsetReset, watchKafkajsOffsetResets, type OffsetReset } from "./kafkajs-offset-reset.js";

const { Kafka, Partitioners, logLevel: KafkaLogLevel } = kafkajs;
mendKafkajsRequestQueue();
watchKafkajsOffsetResets();

/**
 * max.message.bytes of the topics ensureTopics creates: the largest record
 * batch (one partition's share of a produce request) Kafka takes. publish()
 * already keeps requests under maxRequestBytes, so this is a backstop for an
 * estimate that falls short, well above the largest record (a 99,999-emoji
 * text is ~400 kB). The broker's default (message.max.bytes, 1,048,588) is
 * only a default for topics without their own; followers (replica.fetch.max.bytes)
 * and consumers fetch a batch larger than their fetch size whole (KIP-74),
 * so the broker needs no setting of its own for it.
 */
export const TOPIC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * retention.ms of the topics ensureTopics creates: how long an acked record
 * waits for a consumer group that is down or behind before Kafka deletes it
 * unread. Set here rather than left to the broker's log.retention.hours, so a
 * broker configured for shorter-lived topics cannot shorten it. What bounds it
 * is disk: every broker holding a replica keeps a week of the topic's writes.
 * retention.bytes stays unset (-1): a size cap would delete unread records
 * during a burst, when a stage is most likely to be behind.
 */
export const TOPIC_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/** The pause before the first offsets of a reset partition are asked again, doubling while Kafka does not answer. */
const LOG_START_RETRY_MS = { initial: 1_000, max: 30_000 };

/**
 * A majority of a topic's replicas: with acks from all in-sync replicas, an acked record then
 * outlives any minority of brokers, and a partition refuses writes (rather than ack them on one
 * broker) once a majority is out of sync.
 */
export function minInsyncReplicas(replicationFactor: number): number {
  return Math.floor(replicationFactor / 2) + 1;
}

/** Kafka's sequence numbers (per producer and partition) are int32: a producer is renewed before any could wrap. */
const PRODUCER_SEQUENCE_LIMIT = 2 ** 31 - 1;

/** A record's share of a produce request besides key and value: record and batch framing, generously. */
const RECORD_OVERHEAD_BYTES = 70;

const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/**
 * Two of them fit in a process's stop bound (DEFAULT_STOP_TIMEOUT_MS, 25 s): a pipeline
 * stops its subscriptions, then closes the queue.
 */
const DEFAULT_CLOSE_TIMEOUT_MS = 8_000;

export interface KafkaQueueOptions {
  /** Bootstrap brokers, "host:port". */
  brokers: readonly string[];
  /** Client id in broker logs and quotas (default "chat"). */
  clientId?: string;
  /**
   * Prefix of every topic and consumer group ("<namespace>.<name>"), so that
   * several deployments can share one Kafka (default none: the names as
   * they are). Callers keep using the plain names.
   */
  namespace?: string;
  /** kafkajs logs go here (as child logger {component: "kafkajs"}); without one kafkajs is silent. */
  logger?: Logger;
  /** Lowest kafkajs level passed on to the logger (default "warn"). */
  kafkaLogLevel?: "error" | "warn" | "info" | "debug";
  /**
   * Replication factor of topics that ensureTopics creates, each with min.insync.replicas a
   * majority of it, so a record acked by all in-sync replicas is on more than one broker whenever
   * there are several (default: the broker's default.replication.factor and min.insync.replicas).
   */
  replicationFactor?: number;
  /** Longest a publish waits for Kafka's ack before it is rejected (default 30 s). */
  publishTimeoutMs?: number;
  /**
   * Largest produce request (default 900 kB): publishes waiting while one is
   * in flight are merged up to it, and a larger publish is split into several.
   * Each partition's share of a request is one record batch, which Kafka
   * refuses whole above the topic's max.message.bytes (by default 1,048,588)
   * with an error no retry mends; a record larger than this goes alone.
   */
  maxRequestBytes?: number;
  /**
   * Consumer fetch long-poll: the broker answers as soon as there is data, or
   * after this (default 500 ms, Kafka's own `fetch.max.wait.ms`). It costs no
   * latency (a fetch ends when a record arrives), only how often an idle
   * consumer asks: at 20 ms each idle pipeline process asked 100 times a
   * second, most of its CPU and a good part of the broker's at low load.
   */
  maxWaitTimeInMs?: number;
  /** A consumer that stops heartbeating loses its partitions after this (default 10 s). */
  sessionTimeoutMs?: number;
  /** Consumer heartbeat period (default 1 s). */
  heartbeatIntervalMs?: number;
  /**
   * Handled offsets are committed together at most this often (default
   * 100 ms; 0 commits after every batch). A commit is a request and a write
   * to `__consumer_offsets`: after every batch it was the pipeline's most
   * frequent Kafka request. Every step after a commit is idempotent, so the
   * price of a longer interval is only more records done again after a crash.
   */
  commitIntervalMs?: number;
  /** Partitions of one subscription handled at the same time (default 4; each partition stays in order). */
  partitionsConsumedConcurrently?: number;
  /** Backoff before a failed batch is delivered again: doubles from `initial` up to `max` (default 50 ms .. 5 s). */
  retryBackoffMs?: { initial: number; max: number };
  /** TCP connect timeout (default 3 s). */
  connectionTimeoutMs?: number;
  /** Retries of admin and consumer requests, connecting included (default 8 retries, 100 ms doubling up to 5 s). */
  retry?: { retries?: number; initialRetryTime?: number; maxRetryTime?: number };
  /**
   * Longest close() waits on Kafka, and a subscription's stop (default 8 s):
   * for the publishes pending to be acked, for a consumer to leave its group.
   * With Kafka away the producer retries without limit and the consumer's
   * leave and reconnects for a minute and more, past a process's stop bound.
   * Past it, publishes still pending fail (their callers were never acked) and
   * the consumer is given up: its uncommitted batches are read again by the
   * group's next member, after the session timeout.
   */
  closeTimeoutMs?: number;
}

interface PendingPublish {
  topic: string;
  messages: Message[];
  /** Each message's estimated share of a request. */
  sizes: number[];
  /** Messages Kafka acked already (a publish larger than a request goes in parts). */
  sent: number;
  settled: boolean;
  timer: NodeJS.Timeout | undefined;
  resolve: () => void;
  reject: (e: unknown) => void;
}

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
    this.producer = this.newProducer();
  }

  private newProducer(): Producer {
    return this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: () => {
        const murmur2 = Partitioners.DefaultPartitioner();
        // A key's partition is taken over the count of partitions this process started with, not
        // over partitions added since: otherwise a key's later records land on another partition,
        // whose consumer may handle them before the earlier ones (a channel's messages reordered).
        return ({ topic, partitionMetadata, message }) => {
          const n = this.partitions.get(topic);
          const used = n !== undefined && n < partitionMetadata.length ? partitionMetadata.filter((p) => p.partitionId < n) : partitionMetadata;
          return murmur2({ topic, partitionMetadata: used, message });
        };
      },
      // Idempotence needs unlimited retries (kafkajs' default for it); publishTimeoutMs bounds the caller's wait.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 50, maxRetryTime: 2_000 },
    });
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
    this.producer = this.newProducer();
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
      const created = await Promise.all(missing.map((t) => this.createTopic(t)));
      const mine = missing.filter((_, i) => created[i]).map((t) => t.topic);
      const theirs = missing.filter((_, i) => !created[i]).map((t) => t.topic);
      if (mine.length > 0) this.options.logger?.info({ topics: mine }, "kafka topics created");
      if (theirs.length > 0) this.options.logger?.debug({ topics: theirs }, "kafka topics created meanwhile by another process");
    }
    const meta = await this.topicMetadata(topics.map((t) => t.topic));
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

  /** Creates one topic: true if this call created it, false if it exists already (another process was first). */
  private async createTopic(t: TopicSpec): Promise<boolean> {
    try {
      return await this.admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic: t.topic,
            numPartitions: t.partitions,
            replicationFactor: this.options.replicationFactor ?? -1,
            configEntries: [
              { name: "max.message.bytes", value: String(TOPIC_MAX_MESSAGE_BYTES) },
              { name: "retention.ms", value: String(TOPIC_RETENTION_MS) },
              ...(this.options.replicationFactor === undefined ? [] : [{ name: "min.insync.replicas", value: String(minInsyncReplicas(this.options.replicationFactor)) }]),
            ],
          },
        ],
      });
    } catch (err) {
      // Created, and waiting for its leader the broker answered it knows no such topic (a broker
      // just started or restarted): topicMetadata waits that out.
      if ((err as { type?: string }).type === "UNKNOWN_TOPIC_OR_PARTITION") return true;
      // A refusal other than "exists" (kafkajs answers that one with false), for a topic that exists
      // by now all the same: another process created it while this one asked.
      if ((await this.admin.listTopics()).includes(t.topic)) return false;
      // kafkajs says only "Topic creation errors"; the broker's reason (more replicas than brokers,
      // a partition count refused) is what the operator needs to read.
      const reasons = ((err as { errors?: unknown[] }).errors ?? []).map((e) =>
        (e as { type?: string }).type === "INVALID_REPLICATION_FACTOR"
          ? `${(e as Error).message} (more replicas than the cluster has brokers?)`
          : e instanceof Error ? e.message : String(e),
      );
      if (reasons.length > 0) throw new Error(`kafka topic ${t.topic} (${t.partitions} partitions, replication ${this.options.replicationFactor ?? "the broker's default"}) not created: ${reasons.join("; ")}`, { cause: err });
      throw err;
    }
  }

  /**
   * The topics' metadata once the broker answered it: just after creating a
   * topic, a broker may not have heard of it yet (UNKNOWN_TOPIC_OR_PARTITION,
   * which kafkajs does not retry), and a process starting beside another that
   * created it would otherwise fail to start.
   */
  private async topicMetadata(topics: string[]): Promise<Awaited<ReturnType<Admin["fetchTopicMetadata"]>>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.admin.fetchTopicMetadata({ topics });
      } catch (err) {
        if (attempt >= 20 || (err as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw err;
        await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 500)));
      }
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
    const messages = records.map((r) => ({ key: r.key, value: toBuffer(r.value) }));
    const sizes = messages.map((m) => m.value.length + Buffer.byteLength(m.key) + RECORD_OVERHEAD_BYTES);
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
          const max = this.options.maxRequestBytes ?? 900_000;
          const parts: { p: PendingPublish; end: number }[] = [];
          let size = 0;
          for (const p of this.pending) {
            let end = p.sent;
            while (end < p.messages.length && (size === 0 || size + p.sizes[end]! <= max)) size += p.sizes[end++]!;
            if (end > p.sent) parts.push({ p, end });
            if (end < p.messages.length) break; // a prefix only: a key's records stay in order
          }
          const byTopic = new Map<string, Message[]>();
          for (const { p, end } of parts) {
            let list = byTopic.get(p.topic);
            if (!list) byTopic.set(p.topic, (list = []));
            for (let i = p.sent; i < end; i++) list.push(p.messages[i]!);
          }
          try {
            await this.connect();
            const count = parts.reduce((n, { p, end }) => n + end - p.sent, 0);
            if (this.producerRecords + count >= PRODUCER_SEQUENCE_LIMIT) await this.renewProducer();
            // Counted before it is sent: one that fails may still have taken its sequence numbers.
            this.producerRecords += count;
            await this.producer.sendBatch({
              acks: -1,
              timeout: 30_000,
              topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
            });
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

/**
 * Errors after which no fresh consumer can join the group either (a setting
 * or a permission the broker refuses): retrying only repeats them, so the
 * subscriber is told (onGiveUp) instead. Everything else is tried again with
 * a fresh consumer, a group taken by members of another protocol included
 * (a console consumer run with the group's name leaves again).
 */
const PERMANENT_CONSUMER_ERRORS = new Set([
  "GROUP_AUTHORIZATION_FAILED",
  "TOPIC_AUTHORIZATION_FAILED",
  "INVALID_SESSION_TIMEOUT",
  "UNSUPPORTED_VERSION",
  "KafkaJSSASLAuthenticationError",
  "KafkaJSServerDoesNotSupportApiKey",
  "KafkaJSNotImplemented",
]);

/** Whether `err` or one of its causes is a permanent consumer error (by kafkajs' protocol `type` or class name). */
export function isPermanentConsumerError(err: unknown): boolean {
  for (let e = err as { name?: string; type?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (PERMANENT_CONSUMER_ERRORS.has(e.type ?? "") || PERMANENT_CONSUMER_ERRORS.has(e.name ?? "")) return true;
  }
  return false;
}

const CONSUMER_RESTART_BACKOFF_MS = { initial: 1_000, max: 30_000 };

/** The pause before an offset commit that failed is tried again (unless a batch's commit comes first). */
const COMMIT_RETRY_MS = 1_000;

/**
 * Heartbeat answers after which this member's partitions may go to another:
 * a rebalance began (kafkajs rejoins only once the batches in hand are done),
 * the coordinator moved, or the group no longer knows this member.
 */
const REVOKING_ERRORS = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "NOT_COORDINATOR_FOR_GROUP", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"]);

class KafkaSubscription implements Subscription {
  /** Counts group joins, to notice a rebalance that happened while a batch was in hand. */
  private joins = 0;
  private assigned = new Set<number>();
  private readonly backoff = new Map<number, number>();
  private readonly resumeTimers = new Set<NodeJS.Timeout>();
  private stopping: Promise<void> | undefined;
  /** Handled, not yet committed: the next offset of each partition, the join it was handled in, and the chunks' `lost` signals. */
  private readonly uncommitted = new Map<number, Handled>();
  private commitTimer: NodeJS.Timeout | undefined;
  private commits: Promise<void> = Promise.resolve();
  private batchesInHand = 0;
  /** Why kafkajs stopped this consumer for good while it was starting. */
  private failedToStart: Error | undefined;
  private readonly maxBatch: number;
  private readonly heartbeatIntervalMs: number;
  private consumer: Consumer;
  /** Set while a consumer kafkajs gave up on is being replaced. */
  private restarting: Promise<void> | undefined;
  /** Ends the pause before the next replacement early (on stop). */
  private wakeRestart: (() => void) | undefined;
  /** While run() waits for a consumer to join: kafkajs reports a failed start only through CRASH. */
  private starting = false;
  /** Aborted once a heartbeat says the partitions of this join may move (BatchContext.revoked); one per join. */
  private generation = new AbortController();
  /**
   * The offset each partition's next record should have (past each chunk handled this join,
   * or where kafkajs was when it reset the partition): a batch that starts later had records
   * deleted before they were read.
   */
  private readonly expected = new Map<number, bigint>();
  /**
   * Partitions kafkajs reset whose loss is not told yet, by the offset it reset from: told by
   * the first batch after it, or once the partition's first offset is read (no record may
   * come). Kept across joins: the reset overwrote the group's commit, so no one else can.
   */
  private readonly untold = new Map<number, bigint>();
  /** Stops listening for kafkajs' resets of this member (replaced at each join). */
  private unwatchResets: (() => void) | undefined;

  constructor(
    private readonly newConsumer: () => Consumer,
    private readonly group: string,
    private readonly topic: string,
    /** The topic as the caller named it (without the namespace), for the records. */
    private readonly recordTopic: string,
    private readonly handler: BatchHandler,
    private readonly subscribeOptions: SubscribeOptions,
    private readonly options: KafkaQueueOptions,
    private readonly onStopped: () => void,
    /** Each partition's first offset. */
    private readonly readLogStarts: () => Promise<Map<number, bigint>>,
    private readonly onRecordsLost: (loss: RecordsLost) => void,
  ) {
    this.maxBatch = subscribeOptions.maxBatch ?? 256;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.consumer = newConsumer();
  }

  /** Settles once the first consumer has joined its group (or failed to). */
  private started: Promise<void> | undefined;

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  start(): Promise<void> {
    this.started = this.run(this.consumer);
    return this.started;
  }

  /** Connects `consumer`, joins the group and starts fetching; rejects if kafkajs gave up on it meanwhile. */
  private async run(consumer: Consumer): Promise<void> {
    const log = this.options.logger;
    this.failedToStart = undefined;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joins++;
      this.generation = new AbortController();
      this.assigned = new Set(e.payload.memberAssignment[this.topic] ?? []);
      // Where a partition of the last join was says nothing of where it is now (another member
      // may have had it since); a reset of this join tells its own (watchResets).
      this.expected.clear();
      this.watchResets(consumer, e.payload.groupId, e.payload.memberId);
      // Offsets of the previous join can no longer be committed: their handlers learn it now
      // (`lost`), not at the next commit, which waits for a record that may not come.
      if (this.uncommitted.size > 0) void this.commit();
      this.subscribeOptions.onAssigned?.([...this.assigned]);
      this.subscribeOptions.onConsumerTrouble?.(undefined);
      log?.debug({ group: this.group, topic: this.topic, partitions: [...this.assigned] }, "kafka group joined");
    });
    consumer.on(consumer.events.CRASH, (e) => {
      const { error, restart } = e.payload;
      log?.error(
        { err: error, group: this.group, topic: this.topic, restart },
        restart ? "kafka consumer crashed; restarting" : "kafka consumer crashed and stopped",
      );
      // kafkajs restarts after retriable errors; after any other it has left the
      // group and disconnected, and this member consumes nothing from then on.
      if (this.stopping || consumer !== this.consumer) return;
      if (restart) return this.subscribeOptions.onConsumerTrouble?.(error);
      const err = new Error(`Kafka consumer of group ${this.group} on ${this.topic} stopped for good: ${error.message}`, { cause: error });
      if (this.starting) this.failedToStart = err;
      else if (isPermanentConsumerError(error)) this.subscribeOptions.onGiveUp?.(err);
      else if (!this.restarting) {
        // kafkajs counts some passing faults as final: a broker restart fails the
        // search for the group coordinator (KafkaJSGroupCoordinatorNotFound) and
        // the consumer stops for good (tulios/kafkajs#1445, #1630). A fresh one joins.
        this.subscribeOptions.onConsumerTrouble?.(error);
        this.restarting = this.replaceConsumer().finally(() => (this.restarting = undefined));
      }
    });
    this.starting = true;
    try {
      await consumer.connect().catch((err: Error) => {
        throw new Error(`cannot connect to Kafka at ${this.options.brokers.join(",")}: ${err.message}`, { cause: err });
      });
      // A new group starts from the beginning of what Kafka still holds; a known one from its commits.
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 4,
        eachBatch: (payload) => this.eachBatch(payload),
      });
    } finally {
      this.starting = false;
    }
    // kafkajs reports a failed start only through the CRASH event, before run() resolves.
    if (this.failedToStart) throw this.failedToStart;
  }

  /**
   * Replaces a consumer kafkajs stopped for good with a fresh one, again and
   * again with a growing pause while Kafka is away, until one runs or the
   * subscription stops. What was handled and not committed is read again.
   */
  private async replaceConsumer(): Promise<void> {
    const log = this.options.logger;
    const { initial, max } = CONSUMER_RESTART_BACKOFF_MS;
    for (let wait = initial, next = Math.min(initial * 2, max); !this.stopping; wait = next, next = Math.min(next * 2, max)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wakeRestart = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeRestart = undefined;
      if (this.stopping) return;
      await this.consumer.disconnect().catch(() => {});
      const consumer = this.newConsumer();
      this.consumer = consumer;
      try {
        log?.warn({ group: this.group, topic: this.topic }, "starting a fresh kafka consumer");
        await this.run(consumer);
        log?.info({ group: this.group, topic: this.topic }, "fresh kafka consumer running");
        return;
      } catch (err) {
        this.subscribeOptions.onConsumerTrouble?.(err as Error);
        if (isPermanentConsumerError(err)) {
          await consumer.disconnect().catch(() => {});
          if (!this.stopping) this.subscribeOptions.onGiveUp?.(err as Error);
          return;
        }
        log?.warn({ err, group: this.group, topic: this.topic, retryInMs: next }, "fresh kafka consumer failed to start");
      }
    }
  }

  /**
   * Tells records Kafka deleted before this group read them (it was down or
   * behind for longer than the topic's retention): kafkajs, finding the
   * committed offset out of range, resets it to the partition's first record
   * without a word, and acked messages are gone unseen. Its reset says where
   * the partition was; nothing is held meanwhile (a consumer joining its
   * group paused its partitions until it had read the group's commits, and
   * kafkajs, with all of them paused, slept a whole long poll: every join
   * held its records ~500 ms).
   */
  private watchResets(consumer: Consumer, groupId: string, memberId: string): void {
    this.unwatchResets?.();
    this.unwatchResets = onOffsetReset(groupId, memberId, (reset) => {
      if (consumer === this.consumer && reset.topic === this.topic) this.offsetReset(reset);
    });
  }

  private offsetReset({ partition, offset }: OffsetReset): void {
    // Logged at once, before how many is known: kafkajs has overwritten the group's commit, so a
    // process that died before a batch or the first-offset read told the count left no trace else.
    this.options.logger?.error(
      { group: this.group, topic: this.topic, partition, committedOffset: offset.toString() },
      "kafka has no records from this consumer group's position on (deleted unread after the topic's retention): acked messages lost; kafkajs goes on from the partition's first record, how many were lost is told next",
    );
    this.expected.set(partition, offset);
    const already = this.untold.has(partition);
    this.untold.set(partition, offset);
    if (!already) void this.tellWithoutRecords(partition);
  }

  /**
   * Tells the loss of a reset partition from its first offset, should no batch
   * tell it first: one may never come (everything after the group's commit
   * deleted, nothing new since).
   */
  private async tellWithoutRecords(partition: number): Promise<void> {
    // Once at least, stopping or not: the reset overwrote the group's commit, so no later member can tell it.
    for (let wait = LOG_START_RETRY_MS.initial; this.untold.has(partition); wait = Math.min(wait * 2, LOG_START_RETRY_MS.max)) {
      try {
        const low = (await this.readLogStarts()).get(partition);
        const from = this.untold.get(partition);
        if (from === undefined) return; // a batch told it meanwhile
        this.untold.delete(partition);
        if (low === undefined || low <= from) return; // reset past its end (a topic made afresh): nothing deleted
        this.recordsLost(partition, from, low);
        if (this.expected.get(partition) === from) this.expected.set(partition, low);
        return;
      } catch (err) {
        this.options.logger?.warn(
          { err, group: this.group, topic: this.topic, partition, retryInMs: wait },
          "could not read a reset partition's first offset to tell the records deleted unread; trying again",
        );
        if (this.stopping) return;
        await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  }

  /** Logs and counts records of `partition` from `committed` up to `logStart` that Kafka deleted unread. */
  private recordsLost(partition: number, committed: bigint, logStart: bigint): void {
    const records = Number(logStart - committed);
    this.options.logger?.error(
      {
        group: this.group,
        topic: this.topic,
        partition,
        committedOffset: committed.toString(),
        logStartOffset: logStart.toString(),
        records,
      },
      "kafka deleted records this consumer group had not read (down or behind for longer than the topic's retention): acked messages lost; going on from the partition's first record",
    );
    this.onRecordsLost({ topic: this.recordTopic, partition, committedOffset: committed, logStartOffset: logStart, records });
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    this.batchesInHand++;
    try {
      await this.handleBatch(payload);
    } finally {
      this.batchesInHand--;
      // Stopping: the group is left once the batches in hand are done, so commit now,
      // through the batch's own commit: consumer.commitOffsets does nothing once the
      // runner stopped (and stop() stops it while this batch is still in hand).
      if (this.stopping) await this.commit(payload.commitOffsetsIfNecessary);
    }
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale, pause } = payload;
    const { topic, partition } = batch;
    const joinsAtStart = this.joins;
    const generation = this.generation;
    const heard = (err: unknown) => {
      if (REVOKING_ERRORS.has((err as { type?: string }).type ?? "")) generation.abort(err);
    };
    const records: QueueRecord[] = batch.messages.map((m) => ({
      topic: this.recordTopic,
      partition,
      offset: BigInt(m.offset),
      key: m.key?.toString() ?? "",
      value: m.value ? new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength) : new Uint8Array(0),
    }));
    // Offsets run without gaps here (no transactions, no compaction): a first record past the one
    // expected means kafkajs found its position deleted meanwhile (a consumer behind by more than
    // the retention) and reset it to the partition's first record, which this batch starts at.
    const expected = this.expected.get(partition);
    if (expected !== undefined && records.length > 0 && records[0]!.offset > expected) {
      this.untold.delete(partition);
      this.recordsLost(partition, expected, records[0]!.offset);
      // Once told: a chunk of this batch that fails is fetched again from here.
      this.expected.set(partition, records[0]!.offset);
    }
    for (let i = 0; i < records.length; i += this.maxBatch) {
      // Stopping, or the partition moved: leave the rest unresolved, it is fetched again (here or by the new owner).
      if (!isRunning() || isStale() || this.stopping) return;
      if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
      const chunk = records.slice(i, i + this.maxBatch);
      // kafkajs heartbeats only between batches, and fetches no further batch while
      // this one is in hand: a handler call longer than the session timeout (a publish
      // waiting on a slow broker, a Cassandra read timing out) got the member evicted
      // and its partitions redone elsewhere while it still worked on them. Errors are
      // left to the heartbeat after the call, which reports a rebalance to kafkajs.
      // A heartbeat that tells of a rebalance is what the handler learns through `revoked`.
      const beating = setInterval(() => void heartbeat().catch(heard), this.heartbeatIntervalMs);
      beating.unref();
      const lost = new AbortController();
      try {
        await this.handler(chunk, { revoked: generation.signal, lost: lost.signal });
      } catch (err) {
        lost.abort(err);
        // Given up for a rebalance (or failed during one): no failure to back off from.
        if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
        // Never skip: this chunk stays unresolved and uncommitted. Pause the partition for a
        // backoff; the next fetch after resume starts again at the chunk's first offset.
        const wait = this.nextBackoff(partition);
        this.options.logger?.warn(
          { err, group: this.group, topic, partition, offset: chunk[0]!.offset.toString(), retryInMs: wait },
          "batch handler failed; will deliver the batch again",
        );
        if (!this.stopping) {
          const resume = pause();
          const t = setTimeout(() => {
            this.resumeTimers.delete(t);
            resume();
          }, wait);
          this.resumeTimers.add(t);
        }
        return;
      } finally {
        clearInterval(beating);
      }
      this.backoff.delete(partition);
      const last = chunk[chunk.length - 1]!.offset;
      resolveOffset(last.toString());
      this.expected.set(partition, last + 1n);
      if (this.joins !== joinsAtStart || !this.assigned.has(partition)) {
        // Rebalanced while the handler ran: the partition may be someone else's now. Do not
        // commit for them; whoever owns it re-reads from the last commit (at least once).
        this.options.logger?.info({ group: this.group, topic, partition }, "partition reassigned mid-batch; not committing");
        lost.abort(new Error(`partition ${partition} reassigned before its commit`));
        return;
      }
      this.keep(partition, { offset: (last + 1n).toString(), joins: this.joins, lost: [lost] });
      if ((this.options.commitIntervalMs ?? 100) <= 0) await this.commit();
      // (Stopping, eachBatch commits when the batch is done.)
      else if (!this.stopping) this.scheduleCommit();
      if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
      try {
        await heartbeat();
      } catch (err) {
        heard(err);
        if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
        throw err;
      }
    }
  }

  /**
   * A rebalance began with this batch in hand: commits what was handled now,
   * while the group still takes this join's commits (once rejoined they are
   * dropped, and the partition's next owner did them again), leaves the rest
   * uncommitted for that owner, and hands kafkajs the heartbeat's error, on
   * which it rejoins at once rather than fetching the same batch again.
   */
  private async rejoinNow(payload: EachBatchPayload, revoked: AbortSignal): Promise<never> {
    await this.commit(payload.commitOffsetsIfNecessary);
    this.options.logger?.info({ group: this.group, topic: this.topic, partition: payload.batch.partition }, "kafka group rebalancing; rejoining");
    throw revoked.reason;
  }

  /**
   * Keeps a partition's handled offset for the next commit. A newer one takes the place of one
   * of the same join, and its commit commits both; one of an earlier join is not committed
   * any more (whoever owns the partition now reads it again): its chunks are lost.
   */
  private keep(partition: number, handled: Handled): void {
    const prev = this.uncommitted.get(partition);
    if (prev && prev.joins === handled.joins) handled = { ...handled, lost: [...prev.lost, ...handled.lost] };
    else if (prev) abortAll(prev, `partition ${partition} rebalanced before its commit`);
    this.uncommitted.set(partition, handled);
  }

  /**
   * Commits what was handled since the last commit, in one request. Offsets
   * handled before the latest rebalance, or of partitions this member no
   * longer owns, are dropped: their owner re-reads from the last commit
   * (their chunks' `lost` signals abort).
   */
  private commit(viaBatch?: EachBatchPayload["commitOffsetsIfNecessary"]): Promise<void> {
    this.commits = this.commits.then(async () => {
      // Stopping with a batch in hand, the runner has stopped and its
      // commitOffsets returns without committing: leave the offsets for that
      // batch's own commit, or they are lost and done again by the next owner.
      if (!viaBatch && this.stopping && this.batchesInHand > 0) return;
      const due: [number, Handled][] = [];
      for (const [p, c] of this.uncommitted) {
        if (c.joins === this.joins && this.assigned.has(p)) due.push([p, c]);
        else abortAll(c, `partition ${p} rebalanced before its commit`);
      }
      this.uncommitted.clear();
      if (due.length === 0) return;
      try {
        if (viaBatch) await viaBatch({ topics: [{ topic: this.topic, partitions: due.map(([partition, c]) => ({ partition, offset: c.offset })) }] });
        else await this.consumer.commitOffsets(due.map(([partition, c]) => ({ topic: this.topic, partition, offset: c.offset })));
      } catch (err) {
        // Kept for the next commit (unless a newer offset of the partition came meanwhile).
        for (const [p, c] of due) {
          const newer = this.uncommitted.get(p);
          if (!newer) this.uncommitted.set(p, c);
          else if (newer.joins === c.joins) newer.lost.unshift(...c.lost);
          else abortAll(c, `partition ${p} rebalanced before its commit`);
        }
        this.options.logger?.info({ err, group: this.group, topic: this.topic }, "offset commit failed; trying again");
        // Not only with the next batch's commit: on a partition that gets no further record the
        // offsets stayed uncommitted (its lag never 0, its records done again after a crash).
        // At most once a second: a commit that fails at once would otherwise be a loop of requests.
        if (!this.stopping) this.scheduleCommit(COMMIT_RETRY_MS);
      }
    });
    return this.commits;
  }

  /** Commits what was handled within the commit interval (or `atLeastMs`), unless a commit is due already. */
  private scheduleCommit(atLeastMs = 0): void {
    this.commitTimer ??= setTimeout(() => {
      this.commitTimer = undefined;
      void this.commit();
    }, Math.max(this.options.commitIntervalMs ?? 100, atLeastMs));
  }

  private nextBackoff(partition: number): number {
    const { initial, max } = this.options.retryBackoffMs ?? { initial: 50, max: 5_000 };
    const prev = this.backoff.get(partition);
    const next = prev === undefined ? initial : Math.min(max, prev * 2);
    this.backoff.set(partition, next);
    return next;
  }

  /**
   * Finishes (and commits) the batch in hand, leaves the group, disconnects;
   * gives up after closeTimeoutMs (Kafka away: the leave and the reconnects of
   * a consumer being replaced are retried for a minute and more), leaving what
   * was not committed to the group's next member.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      const timeoutMs = this.options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
      const left = this.leave();
      this.stopping = settlesWithin(left, timeoutMs).then((settled) => {
        if (settled) return left;
        this.options.logger?.warn({ group: this.group, topic: this.topic, timeoutMs }, "kafka consumer did not leave its group in time; giving it up");
        this.forgetUncommitted("stopped before its commit");
        this.unwatchResets?.();
        this.onStopped();
      });
    }
    return this.stopping;
  }

  private forgetUncommitted(why: string): void {
    for (const c of this.uncommitted.values()) abortAll(c, why);
    this.uncommitted.clear();
  }

  /** stop()'s work, unbounded. Runs synchronously until its first wait, before `stopping` is set. */
  private async leave(): Promise<void> {
    for (const t of this.resumeTimers) clearTimeout(t);
    this.resumeTimers.clear();
    clearTimeout(this.commitTimer);
    // A consumer still joining its group (a SIGTERM at start-up), or a replacement half
    // started: let it settle, then disconnect whichever is current. Disconnected while it
    // joins, kafkajs does not leave the group (it is not running yet), and the member
    // Kafka made of it kept its partitions, messages stalled, until the session timeout.
    this.wakeRestart?.();
    await this.started?.catch(() => {});
    await this.restarting;
    // With a batch in hand, it commits when it is done (eachBatch).
    if (this.batchesInHand === 0) await this.commit();
    try {
      await this.consumer.disconnect();
    } finally {
      // What a failed last commit left: the next member of the group reads it again.
      this.forgetUncommitted("stopped before its commit");
      this.unwatchResets?.();
      this.onStopped();
    }
  }
}

/** A group's committed offset of each partition it committed, and each partition's first (`low`) and next (`high`) offset. */
interface GroupOffsets {
  partitions: { partition: number; low: bigint; high: bigint }[];
  committed: Map<number, bigint>;
}

/** A handled offset not yet committed: the next offset of a partition, the join it was handled in, and the `lost` signals of the chunks it commits. */
interface Handled {
  offset: string;
  joins: number;
  lost: AbortController[];
}

function abortAll(handled: Handled, why: string): void {
  const reason = new Error(why);
  for (const c of handled.lost) c.abort(reason);
}

/** Whether `p` settled (either way) within `ms`; it goes on after a false. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

function settle(p: PendingPublish, err?: unknown): void {
  if (p.settled) return;
  p.settled = true;
  clearTimeout(p.timer);
  if (err === undefined) p.resolve();
  else p.reject(err);
}

function toBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function kafkaLevel(level: "error" | "warn" | "info" | "debug"): number {
  return { error: KafkaLogLevel.ERROR, warn: KafkaLogLevel.WARN, info: KafkaLogLevel.INFO, debug: KafkaLogLevel.DEBUG }[level];
}
