/**
 * Whether a consumer stage gets its work done. A batch that fails is
 * delivered again and again (an engine down, a record it cannot store) while
 * the process looks alive and consumes nothing; this turns that into a
 * failing health check once batches have failed for `stallMs` with none
 * succeeding, and a healthy one at the next success.
 */
export class StageHealth {
  private failingSince?: number;
  private lastError?: unknown;

  constructor(
    readonly stage: string,
    private readonly stallMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs one batch's work, noting whether it failed. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      this.failingSince = undefined;
      this.lastError = undefined;
      return result;
    } catch (err) {
      this.failingSince ??= this.now();
      this.lastError = err;
      throw err;
    }
  }

  /** A health check (`/healthz`): throws while the stage is stalled. */
  readonly check = async (): Promise<void> => {
    if (this.failingSince === undefined) return;
    const ms = this.now() - this.failingSince;
    if (ms < this.stallMs) return;
    const why = this.lastError instanceof Error ? this.lastError.message : String(this.lastError);
    throw new Error(`${this.stage}: every batch has failed for ${Math.round(ms / 1000)} s (last: ${why})`);
  };
}
