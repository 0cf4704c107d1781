import type { Logger } from "pino";

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

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/**
 * Two of them fit in a process's stop bound (DEFAULT_STOP_TIMEOUT_MS, 25 s): a pipeline
 * stops its subscriptions, then closes the queue.
 */
export const DEFAULT_CLOSE_TIMEOUT_MS = 8_000;
