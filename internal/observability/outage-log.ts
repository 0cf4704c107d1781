import type { Logger } from "pino";

export interface OutageLogOptions {
  logger: Logger | undefined;
  /** Warned at the first failure after a success (or since the start). */
  failed: string;
  /** Debug, each failure after that one while the outage lasts. */
  failedAgain: string;
  /** Info, at the first success after failures: how many failed and for how long. */
  recovered: string;
  /** Fields every line carries, read as it is written (what is out: a prefix, a worker id). */
  fields?: () => Record<string, unknown>;
  /** Whether the lines after the first count the failures (`failures`). Default true. */
  counted?: boolean;
  /** What the recovery line names the outage's length (ms) under. Default `failingMs`. */
  lengthKey?: string;
  /** A monotonic clock in ms (tests). Default performance.now. */
  now?: () => number;
}

/**
 * The log of an engine call retried through an outage: a client reconnecting
 * or a renewal on a timer fails every second or so for as long as the engine
 * is away, and a line a try would bury the rest of the log. So an outage is
 * one warning as it starts and one line as it ends, with its length; the
 * tries in between are debug, and nothing is said while the calls succeed.
 */
export class OutageLog {
  private since: number | undefined;
  private failures = 0;
  private readonly now: () => number;

  constructor(private readonly options: OutageLogOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  failed(err: unknown): void {
    const { logger, fields, counted = true } = this.options;
    this.failures++;
    if (this.since !== undefined) {
      return void logger?.debug({ err, ...fields?.(), ...(counted && { failures: this.failures }) }, this.options.failedAgain);
    }
    this.since = this.now();
    logger?.warn({ err, ...fields?.() }, this.options.failed);
  }

  succeeded(): void {
    if (this.since === undefined) return;
    const { logger, fields, counted = true, lengthKey = "failingMs" } = this.options;
    const length = Math.round(this.now() - this.since);
    logger?.info({ ...fields?.(), ...(counted && { failures: this.failures }), [lengthKey]: length }, this.options.recovered);
    this.forget();
  }

  /** Ends the outage without a line, where another line tells of its end. */
  forget(): void {
    this.since = undefined;
    this.failures = 0;
  }
}
