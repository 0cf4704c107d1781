import { FAILURE_FORGOTTEN_MS, StageHealth } from "../observability/stage-health.js";
import type { QueueRecord } from "../queue/port.js";

/**
 * A pipeline stage's health, its batches also told apart by partition.
 * StageHealth takes any batch that goes through as the stage working, but a
 * stage handles several partitions side by side: one whose batch failed
 * again and again (a record its store refuses, never skipped) stalled the
 * channels or users of that partition for good while the other partitions'
 * batches kept /healthz passing, and only the lag told. Here each partition
 * also keeps its own clock, and the check fails once any one has failed
 * every batch for `stallMs`.
 *
 * A partition's run lasts however long each of its batches takes to fail (a
 * Cassandra read timing out, retried): it is over at a success, at a rejoin
 * of the group that moved the partition to another worker, or once no batch
 * of it has been in hand for FAILURE_FORGOTTEN_MS since its last failure (no
 * rejoin told of the move, or the next batch came long after: past the
 * queue's backoff, it may wait behind other partitions' batches failing as
 * slowly, a few handled at once). A rejoin that leaves it here goes on with
 * its run: forgotten at every rejoin, a partition whose batches kept failing
 * through rebalances every few seconds never stalled. Timed from failure to failure over 30 s,
 * a partition whose batch took 40 s to fail started a fresh run at each and
 * never stalled, /healthz passing while it made no progress.
 */
export class PartitionedStageHealth {
  private readonly whole: StageHealth;
  private readonly partitions = new Map<number, { since: number; last: number; err: unknown }>();
  /** Batches being worked on, by partition: one in hand is still this worker's, however long it takes. */
  private readonly inHand = new Map<number, number>();
  readonly stage: string;
  /** As StageHealth's: settles once the stage's consumer stopped for good. */
  readonly stopped: Promise<Error>;
  readonly consumerStopped: StageHealth["consumerStopped"];
  readonly consumerTrouble: StageHealth["consumerTrouble"];

  constructor(
    stage: string,
    private readonly stallMs = 30_000,
    private readonly now: () => number = Date.now,
    /** Told of each batch that fails (the failed-batches counter). */
    private readonly onFailed?: () => void,
  ) {
    this.whole = new StageHealth(stage, stallMs, now);
    this.stage = stage;
    this.stopped = this.whole.stopped;
    this.consumerStopped = this.whole.consumerStopped;
    this.consumerTrouble = this.whole.consumerTrouble;
  }

  /**
   * The partitions this worker holds after a join of its group (port.ts: `onAssigned`): a
   * partition moved away sends no success to end its run, and may well go through where it
   * went. One still here keeps its run, however often the group rebalances.
   */
  readonly assigned = (partitions: readonly number[]): void => {
    const held = new Set(partitions);
    for (const p of this.partitions.keys()) if (!held.has(p)) this.partitions.delete(p);
  };

  /** A health check (`/healthz`): throws while the stage, or one of its partitions, is stalled. */
  readonly check = async (): Promise<void> => {
    await this.whole.check();
    this.checkPartitions();
  };

  /** Runs one batch's work (records of one partition), noting whether it failed, for the stage and for its partition. */
  async runBatch<T>(records: readonly QueueRecord[], work: () => Promise<T>): Promise<T> {
    const partition = records[0]?.partition ?? 0;
    const before = this.partitions.get(partition);
    // The run before is over, though no check came to forget it: a failure of this batch starts a clock of its own.
    if (before !== undefined && this.now() - before.last > FAILURE_FORGOTTEN_MS) this.partitions.delete(partition);
    this.inHand.set(partition, (this.inHand.get(partition) ?? 0) + 1);
    try {
      const result = await this.whole.run(work);
      this.partitions.delete(partition);
      return result;
    } catch (err) {
      this.onFailed?.();
      const t = this.now();
      this.partitions.set(partition, { since: this.partitions.get(partition)?.since ?? t, last: t, err });
      throw err;
    } finally {
      const n = this.inHand.get(partition)! - 1;
      if (n > 0) this.inHand.set(partition, n);
      else this.inHand.delete(partition);
    }
  }

  private checkPartitions(): void {
    const t = this.now();
    for (const [partition, f] of this.partitions) {
      if (!this.inHand.has(partition) && t - f.last > FAILURE_FORGOTTEN_MS) {
        this.partitions.delete(partition);
        continue;
      }
      if (t - f.since < this.stallMs) continue;
      const why = f.err instanceof Error ? f.err.message : String(f.err);
      throw new Error(`${this.stage}: every batch of partition ${partition} has failed for ${Math.round((t - f.since) / 1000)} s (last: ${why})`);
    }
  }
}
