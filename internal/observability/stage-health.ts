/**
 * A run of failures with none for this long is over: a batch that fails is
 * handed again within seconds (Kafka's backoff stops at 5 s), a due
 * notification's endpoint read tried again within the notifier's longest
 * backoff (60 s). Nothing failing since is nothing stalled: the batch's
 * partition went to another worker, or a fan-out failed for good and no
 * other came. Twice that backoff: the next failure comes the backoff after
 * the last plus the failing read's own time (a timeout), past 60 s, and
 * forgotten at 60 s an outage's check passed between two failures and its
 * stall clock started over. Counted only while no batch is in hand: one
 * taking longer than this to fail (a Cassandra timeout, retried) is the
 * stall going on, not over.
 */
export const FAILURE_FORGOTTEN_MS = 120_000;

/**
 * Whether a consumer stage gets its work done. A batch that fails is
 * delivered again and again (an engine down, a record it cannot store) while
 * the process looks alive and consumes nothing; this turns that into a
 * failing health check once batches have failed for `stallMs` with none
 * succeeding, and a healthy one at the next success (or once none has failed
 * for FAILURE_FORGOTTEN_MS with none in hand). Timed from failure to failure
 * alone, a stage whose every batch took ~2 min to fail started a fresh run at
 * each failure, and /healthz passed between them while nothing moved. A consumer the queue
 * gave up on (`consumerStopped`) fails the check for good and settles
 * `stopped`, on which the process exits to be started afresh.
 */
export class StageHealth {
  private failingSince?: number;
  private lastFailedAt = 0;
  private lastError?: unknown;
  /** Batches (or fan-outs) being worked on: while one is, the run of failures is not over, however long it takes. */
  private inHand = 0;
  private consumerFailingSince?: number;
  private consumerError?: Error;
  private stoppedBy?: Error;
  private settleStopped!: (err: Error) => void;
  /** Settles once the stage's consumer stopped for good; never otherwise. */
  readonly stopped = new Promise<Error>((resolve) => (this.settleStopped = resolve));

  constructor(
    readonly stage: string,
    private readonly stallMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs one batch's work, noting whether it failed. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    // The run before is over, though no check came to forget it: a failure of this batch starts a clock of its own.
    this.forgetIfOver();
    this.inHand++;
    try {
      const result = await work();
      this.failingSince = undefined;
      this.lastError = undefined;
      return result;
    } catch (err) {
      const t = this.now();
      this.lastFailedAt = t;
      this.failingSince ??= t;
      this.lastError = err;
      throw err;
    } finally {
      this.inHand--;
    }
  }

  private forgetIfOver(): void {
    if (this.inHand > 0 || this.now() - this.lastFailedAt <= FAILURE_FORGOTTEN_MS) return;
    this.failingSince = undefined;
    this.lastError = undefined;
  }

  /**
   * The stage's consumer failed and retries by itself (`err`), or consumes
   * again (undefined): a queue that is away sends no batch to fail, so this
   * counts toward a stall as failed batches do, on a clock of its own.
   */
  readonly consumerTrouble = (err: Error | undefined): void => {
    if (err) {
      this.consumerFailingSince ??= this.now();
      this.consumerError = err;
    } else {
      this.consumerFailingSince = undefined;
      this.consumerError = undefined;
    }
  };

  /** The queue stopped consuming for this stage and will not resume by itself. */
  readonly consumerStopped = (err: Error): void => {
    this.stoppedBy ??= err;
    this.settleStopped(err);
  };

  /** A health check (`/healthz`): throws while the stage is stalled. */
  readonly check = async (): Promise<void> => {
    if (this.stoppedBy) throw new Error(`${this.stage}: consumer stopped (${this.stoppedBy.message})`);
    if (this.consumerFailingSince !== undefined && this.now() - this.consumerFailingSince >= this.stallMs) {
      const ms = this.now() - this.consumerFailingSince;
      throw new Error(`${this.stage}: the consumer has failed for ${Math.round(ms / 1000)} s (last: ${this.consumerError?.message})`);
    }
    this.forgetIfOver();
    if (this.failingSince === undefined) return;
    const ms = this.now() - this.failingSince;
    if (ms < this.stallMs) return;
    const why = this.lastError instanceof Error ? this.lastError.message : String(this.lastError);
    throw new Error(`${this.stage}: every batch has failed for ${Math.round(ms / 1000)} s (last: ${why})`);
  };
}
