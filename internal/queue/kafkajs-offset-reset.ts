import { createRequire } from "node:module";

/** kafkajs moved a consumer group's position of a partition to its first record: `offset`, where it was, is gone. */
export interface OffsetReset {
  topic: string;
  partition: number;
  /** The offset kafkajs fetched from (the group's commit, or the record after the last one handled). */
  offset: bigint;
}

/** The fields of kafkajs's ConsumerGroup that its out-of-range recovery reads. */
interface ConsumerGroupState {
  groupId: string;
  memberId: string | null;
  offsetManager: { nextOffset(topic: string, partition: number): { toString(): string } };
  preferredReadReplicasPerTopicPartition: Record<string, Record<number, unknown> | undefined>;
}

type Recover = (this: ConsumerGroupState, e: { topic: string; partition: number }) => Promise<void>;

const listeners = new Map<string, (reset: OffsetReset) => void>();
const key = (groupId: string, memberId: string) => `${groupId}\u0000${memberId}`;

/**
 * Tells `listener` of each reset kafkajs makes for this member of the group,
 * until the returned function is called. kafkajs answers OFFSET_OUT_OF_RANGE
 * (retention deleted records before the group read them) by committing the
 * partition's default offset and fetching from its first record, and says
 * nothing of where it was: afterwards the group's commit no longer tells it
 * either. Reading the commit beside kafkajs' first fetch races that reset,
 * and holding the partitions until it is read held every join ~500 ms
 * (kafkajs sleeps a whole long poll when all its partitions are paused).
 */
export function onOffsetReset(groupId: string, memberId: string, listener: (reset: OffsetReset) => void): () => void {
  const k = key(groupId, memberId);
  listeners.set(k, listener);
  return () => {
    if (listeners.get(k) === listener) listeners.delete(k);
  };
}

/** kafkajs's ConsumerGroup class (CommonJS, the same module instance kafkajs itself uses). */
function kafkajsConsumerGroup(): { prototype: { recoverFromOffsetOutOfRange: Recover } } {
  return createRequire(import.meta.url)("kafkajs/src/consumer/consumerGroup.js");
}

let mended = false;

/** Wraps kafkajs's out-of-range recovery to tell where a reset partition was (again: a no-op). */
export function watchKafkajsOffsetResets(): void {
  if (mended) return;
  const { prototype } = kafkajsConsumerGroup();
  const original = prototype.recoverFromOffsetOutOfRange;
  if (typeof original !== "function") {
    throw new Error("kafkajs ConsumerGroup has no recoverFromOffsetOutOfRange: the records-lost watch no longer fits this kafkajs version");
  }
  mended = true;
  prototype.recoverFromOffsetOutOfRange = async function (this: ConsumerGroupState, e) {
    // As kafkajs decides: fetching from a follower it tries the leader first and resets nothing.
    const fromFollower = typeof this.preferredReadReplicasPerTopicPartition[e.topic]?.[e.partition] === "number";
    const listener = this.memberId === null ? undefined : listeners.get(key(this.groupId, this.memberId));
    // Read before the reset, which forgets it.
    const offset = fromFollower || !listener ? undefined : BigInt(this.offsetManager.nextOffset(e.topic, e.partition).toString());
    await original.call(this, e);
    // Only once the reset is committed: one that failed (a rebalance) leaves the commit where it
    // was, and whoever fetches the partition next meets the same gap and tells it.
    if (offset !== undefined) listener!({ topic: e.topic, partition: e.partition, offset });
  };
}
