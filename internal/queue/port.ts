/**
 * MessageQueue is the message-sync queue: topics split into partitions by
 * key, each partition an ordered log. Adapters: sqlite (the embedded,
 * in-process, durable log of chatd) and kafka (distributed mode). One
 * contract suite (internal/queue/contract.ts) runs against both.
 */
export interface QueueRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string;
  value: Uint8Array;
}

export interface OutgoingRecord {
  /** Records with the same key land in the same partition, in publish order. */
  key: string;
  value: Uint8Array;
}

/**
 * Receives records of one partition, in offset order. Resolving commits the
 * batch; rejecting leaves it uncommitted, so it comes again (at least once).
 */
export type BatchHandler = (records: QueueRecord[], batch?: BatchContext) => Promise<void>;

export interface BatchContext {
  /**
   * Aborted once the batch's partition may go to another consumer of the
   * group (a rebalance began, or this one was dropped from the group): the
   * group waits for this batch before it can move it, and what the handler
   * finishes from then on may be done again by the next owner. A handler that
   * waits on something of its own (room) should reject then, taking none of
   * the batch: it stays uncommitted and whoever holds the partition after the
   * rebalance reads it again. Adapters that never move a partition while a
   * batch is in hand (sqlite) pass none.
   */
  revoked: AbortSignal;
  /**
   * Aborted once the records of this call are known not to be committed by
   * this consumer (its partition moved, or this one was dropped from the
   * group, before their commit; the handler rejected): whoever holds the
   * partition now, maybe this consumer again, reads them again. Work the
   * handler left running on them once it resolved (a push sent later) is done
   * twice unless it is given up then. Never aborted once they are committed.
   */
  lost: AbortSignal;
}

/** Records Kafka deleted (past the topic's retention) before the consumer group read them. */
export interface RecordsLost {
  /** The topic as the caller names it. */
  topic: string;
  partition: number;
  /** Where the group was: its commit, or the record after the last one it handled. */
  committedOffset: bigint;
  /** The partition's first record still there, where the group goes on. */
  logStartOffset: bigint;
  records: number;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
}

export interface SubscribeOptions {
  /** Largest batch handed to the handler at once. */
  maxBatch?: number;
  /**
   * Called once if the queue stops consuming for good after the subscription
   * started (an error no retry mends, such as a permission the broker
   * refuses; passing faults are retried, with onConsumerTrouble); never
   * after stop(). Nothing is lost (what was not committed is read again by
   * the next consumer), but nothing moves either: the caller should end the
   * process so that its supervisor starts a fresh one. A subscription that
   * cannot start at all makes subscribe() reject.
   */
  onGiveUp?: (err: Error) => void;
  /**
   * Called with the error each time the consumer fails and retries by itself
   * (a broker away), and with undefined once it consumes again (it rejoined
   * its group): with no batch arriving, failed batches alone cannot tell a
   * queue that is away from one that is idle.
   */
  onConsumerTrouble?: (err: Error | undefined) => void;
  /**
   * Called at each join of the consumer group with the partitions this
   * consumer holds from then on (a rebalance may move any of them away, or
   * leave them here). Adapters that never move a partition (sqlite) never call it.
   */
  onAssigned?: (partitions: readonly number[]) => void;
}

export interface Subscription {
  /** Finishes the batch in hand, commits it, and stops. */
  stop(): Promise<void>;
}

export interface MessageQueue {
  /** Creates missing topics; existing ones are left as they are. */
  ensureTopics(topics: readonly TopicSpec[]): Promise<void>;
  /** Resolves once every record is durable: the moment a sender may be acked. */
  publish(topic: string, records: readonly OutgoingRecord[]): Promise<void>;
  /**
   * Consumes a topic as a member of a consumer group. Within a group each
   * partition has one consumer at a time; every group sees every record.
   * A new group starts from the beginning of what the queue still holds.
   */
  subscribe(group: string, topic: string, handler: BatchHandler, options?: SubscribeOptions): Promise<Subscription>;
  /** Records of the topic the group has not committed yet (for the consumer-lag metric). */
  consumerLag?(group: string, topic: string): Promise<number>;
  /**
   * Calls `listener` each time a subscription finds records it never read
   * deleted (its group was down or behind for longer than the retention), as
   * it goes on from the partition's first record. Queues that delete nothing
   * unread (sqlite) have none.
   */
  onRecordsLost?(listener: (loss: RecordsLost) => void): void;
  close(): Promise<void>;
}

/** Stable key-to-partition mapping (FNV-1a), the same in every adapter that needs its own. */
export function partitionFor(key: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}
