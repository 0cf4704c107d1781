import type { Logger } from "pino";
import { engineOutageError } from "../model/engine-errors.js";
import type { ChatError } from "../model/errors.js";

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

export interface ThrottledWarningOptions {
  logger: Logger | undefined;
  /** Warned at the first event, and as the line counting those held back after it. */
  message: string;
  /** A warning at most this often (ms); the events between are counted, not written. Default 60 s. */
  everyMs?: number;
  /** A monotonic clock in ms (tests). Default performance.now. */
  now?: () => number;
}

/** The ThrottledWarnings holding a count, for closeAll(): each leaves as it writes the count, so none is kept past its window. */
const holding = new Set<ThrottledWarning>();

/**
 * The log of a failure told once per event (a session's read, a push's
 * lookup, a write per user) with no success to end it as OutageLog's: during
 * an engine outage each of 50,000 sessions fails in the same second, and a
 * line each buried the log and cost the process its CPU. The first event is
 * warned at once; those in the next `everyMs` are counted, and the count,
 * with the last one's fields, is warned as the window ends, so an outage's
 * start and size are told and an outage that ended leaves no count untold.
 * Timed on the monotonic clock: on the wall clock a step back silenced it
 * for as long, and a step forward let every event through.
 */
export class ThrottledWarning {
  private lastMs: number | undefined;
  private suppressed = 0;
  private lastFields: Record<string, unknown> = {};
  private timer: NodeJS.Timeout | undefined;
  private readonly everyMs: number;
  private readonly now: () => number;

  constructor(private readonly options: ThrottledWarningOptions) {
    this.everyMs = options.everyMs ?? 60_000;
    this.now = options.now ?? (() => performance.now());
  }

  warn(fields: Record<string, unknown>): void {
    const t = this.now();
    if (this.lastMs === undefined || t - this.lastMs >= this.everyMs) {
      if (this.suppressed > 0) return this.flush(fields);
      this.lastMs = t;
      return void this.options.logger?.warn(fields, this.options.message);
    }
    this.suppressed++;
    this.lastFields = fields;
    // One timer per window, let go as it fires: nothing held once the failures stop.
    this.timer ??= setTimeout(() => this.flush(), Math.max(0, this.lastMs + this.everyMs - t)).unref();
    holding.add(this);
  }

  /**
   * Warns the count held back now rather than as the window ends. The window's
   * timer does not keep the process up, so a process stopping within a minute
   * of an outage's last burst never told its size: the one line of it that
   * says how far the outage went. A new window starts, as after any count.
   */
  close(): void {
    if (this.suppressed > 0) this.flush();
  }

  /**
   * close() on every ThrottledWarning holding a count, as the process ends:
   * some have no stop of their own (the api's, one per logger and service),
   * and failures during a stop (a route not removed, a write refused at
   * close) come after any owner's.
   */
  static closeAll(): void {
    for (const w of [...holding]) w.close();
  }

  private flush(latest?: Record<string, unknown>): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    holding.delete(this);
    // Held back since the last line; the event given, if any, is this line's own.
    const suppressed = this.suppressed;
    const fields = latest ?? this.lastFields;
    this.suppressed = 0;
    this.lastFields = {};
    this.lastMs = this.now();
    this.options.logger?.warn({ ...fields, suppressed }, this.options.message);
  }
}

/**
 * The refusal of an engine that did not answer (engineOutageError), warned of
 * through a ThrottledWarning: in an outage every RPC and every session frame
 * fails alike, and a line each buried the log. The api's RPCs and the
 * sessions' frames answer an outage the same way, with this.
 */
export class EngineOutageWarning {
  private readonly warning: ThrottledWarning;

  constructor(options: ThrottledWarningOptions) {
    this.warning = new ThrottledWarning(options);
  }

  /** The retryable refusal for `err` if it is an engine outage, warned of with `fields`; undefined, and nothing said, if not. */
  refusal(err: unknown, fields?: Record<string, unknown>): ChatError | undefined {
    const outage = engineOutageError(err);
    if (outage) this.warning.warn({ err, ...fields });
    return outage;
  }
}
