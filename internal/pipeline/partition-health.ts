import { StageHealth } from "../observability/stage-health.js";
import type { QueueRecord } from "../queue/port.js";

/**
 * A partition that has failed no batch for this long is taken as no longer
 * this worker's (a rebalance moved it): the queue delivers a failing batch
 * again within seconds (Kafka's backoff stops at 5 s, SQLite's at 2 s).
 */
const PARTITION_FORGOTTEN_MS = 30_000;

/**
 * A pipeline stage's health, its batches also told apart by partition.
 * StageHealth takes any batch that goes through as the stage working, but a
 * stage handles several partitions side by side: one whose batch failed
 * again and again (a record its store refuses, never skipped) stalled the
 * channels or users of that partition for good while the other partitions'
 * batches kept /healthz passing, and only the lag told. Here each partition
 * also keeps its own clock, and the check fails once any one has failed
 * every batch for `stallMs`.
 */
export class PartitionedStageHealth {
  private readonly whole: StageHealth;
  private readonly partitions = new Map<number, { since: number; last: number; err: unknown }>();
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

  /** A health check (`/healthz`): throws while the stage, or one of its partitions, is stalled. */
  readonly check = async (): Promise<void> => {
    await this.whole.check();
    this.checkPartitions();
  };

  /** Runs one batch's work (records of one partition), noting whether it failed, for the stage and for its partition. */
  async runBatch<T>(records: readonly QueueRecord[], work: () => Promise<T>): Promise<T> {
    const partition = records[0]?.partition ?? 0;
    try {
      const result = await this.whole.run(work);
      this.partitions.delete(partition);
      return result;
    } catch (err) {
      this.onFailed?.();
      const t = this.now();
      const before = this.partitions.get(partition);
      // The run before is over, though no check came to forget it: this one starts a clock of its own.
      const since = before !== undefined && t - before.last <= PARTITION_FORGOTTEN_MS ? before.since : t;
      this.partitions.set(partition, { since, last: t, err });
      throw err;
    }
  }

  private checkPartitions(): void {
    const t = this.now();
    for (const [partition, f] of this.partitions) {
      if (t - f.last > PARTITION_FORGOTTEN_MS) {
        this.partitions.delete(partition);
        continue;
      }
      if (t - f.since < this.stallMs) continue;
      const why = f.err instanceof Error ? f.err.message : String(f.err);
      throw new Error(`${this.stage}: every batch of partition ${partition} has failed for ${Math.round((t - f.since) / 1000)} s (last: ${why})`);
    }
  }
}
