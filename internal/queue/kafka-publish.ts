import kafkajs from "kafkajs";
import type { Kafka, Message, Producer, TopicMessages } from "kafkajs";
import type { OutgoingRecord } from "./port.js";

const { Partitioners } = kafkajs;

/** A publish() waiting for Kafka's ack, sent in one request or in several (a part of one can share a request with others). */
export interface PendingPublish {
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

/** A produce request's share of a pending publish: its messages from `p.sent` up to `end`. */
export interface RequestPart {
  p: PendingPublish;
  end: number;
}

/** Kafka's sequence numbers (per producer and partition) are int32: a producer is renewed before any could wrap. */
export const PRODUCER_SEQUENCE_LIMIT = 2 ** 31 - 1;

/** A record's share of a produce request besides key and value: record and batch framing, generously. */
const RECORD_OVERHEAD_BYTES = 70;

/** The queue's one producer: idempotent, one request in flight, keys on the partitions of `partitions` (the counts ensureTopics settled on). */
export function newProducer(kafka: Kafka, partitions: ReadonlyMap<string, number>): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: () => {
      const murmur2 = Partitioners.DefaultPartitioner();
      // A key's partition is taken over the count of partitions this process started with, not
      // over partitions added since: otherwise a key's later records land on another partition,
      // whose consumer may handle them before the earlier ones (a channel's messages reordered).
      return ({ topic, partitionMetadata, message }) => {
        const n = partitions.get(topic);
        const used = n !== undefined && n < partitionMetadata.length ? partitionMetadata.filter((p) => p.partitionId < n) : partitionMetadata;
        return murmur2({ topic, partitionMetadata: used, message });
      };
    },
    // Idempotence needs unlimited retries (kafkajs' default for it); publishTimeoutMs bounds the caller's wait.
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 50, maxRetryTime: 2_000 },
  });
}

/** A publish's records as Kafka messages, and each one's estimated share of a request. */
export function toMessages(records: readonly OutgoingRecord[]): { messages: Message[]; sizes: number[] } {
  const messages = records.map((r) => ({ key: r.key, value: toBuffer(r.value) }));
  const sizes = messages.map((m) => m.value.length + Buffer.byteLength(m.key) + RECORD_OVERHEAD_BYTES);
  return { messages, sizes };
}

/**
 * The next request: the waiting records from the front up to `maxBytes` (at
 * least one), by topic, and how many they are.
 */
export function nextRequest(pending: readonly PendingPublish[], maxBytes: number): { parts: RequestPart[]; topicMessages: TopicMessages[]; count: number } {
  const parts: RequestPart[] = [];
  let size = 0;
  for (const p of pending) {
    let end = p.sent;
    while (end < p.messages.length && (size === 0 || size + p.sizes[end]! <= maxBytes)) size += p.sizes[end++]!;
    if (end > p.sent) parts.push({ p, end });
    if (end < p.messages.length) break; // a prefix only: a key's records stay in order
  }
  const byTopic = new Map<string, Message[]>();
  for (const { p, end } of parts) {
    let list = byTopic.get(p.topic);
    if (!list) byTopic.set(p.topic, (list = []));
    for (let i = p.sent; i < end; i++) list.push(p.messages[i]!);
  }
  return {
    parts,
    topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    count: parts.reduce((n, { p, end }) => n + end - p.sent, 0),
  };
}

export function settle(p: PendingPublish, err?: unknown): void {
  if (p.settled) return;
  p.settled = true;
  clearTimeout(p.timer);
  if (err === undefined) p.resolve();
  else p.reject(err);
}

function toBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}
