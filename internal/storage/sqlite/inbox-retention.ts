import type Database from "better-sqlite3";
import { prepare, type SqliteDatabase } from "./database.js";
import { groupCommitOf, type GroupCommit } from "./group-commit.js";

/**
 * Rows looked at per step. A step is one piece of a turn's group commit, so
 * sends go on between steps; at a few microseconds a row it holds the event
 * loop for about a millisecond.
 */
const STEP_ROWS = 256;
const MIN_SWEEP_INTERVAL_MS = 1_000;
const MAX_SWEEP_INTERVAL_MS = 10 * 60_000;

export interface InboxRetentionOptions {
  /** How long an inbox entry is kept, from its message's time; 0 keeps them forever (no sweeps). */
  retentionMs: number;
  /** Time between sweeps; by default a tenth of the retention, from 1 s to 10 minutes. */
  sweepIntervalMs?: number;
  now?: () => number;
  /** After each timed sweep: how many entries it took away (for a metric and a log line), or why it failed. */
  onSwept?: (outcome: { removed: number } | { err: unknown }) => void;
}

type Row = { id: bigint; user_id: bigint; inbox_seq: bigint; sent_at_ms: bigint };

/**
 * Takes inbox entries older than the retention away, as Cassandra's TTL does
 * for the cluster (`CHAT_INBOX_RETENTION_S`): the inbox is the sync queue,
 * not the history, which stays forever in `messages`. Kept forever, every
 * sign-in (a new device, cursor 0) replayed the user's whole inbox, and the
 * inbox copies (one per member) were most of the file. A device away longer
 * than the retention gets `expired_through` and pages history instead.
 *
 * Rows are walked in rowid order, which is the order they were written in,
 * so the oldest come first and a sweep stops at the first one still kept
 * (one stamped ahead of the clock apart: see step).
 * Each inbox keeps its newest entry whatever its age: the next entry's seq is
 * taken from it, and seqs never go back.
 */
export class SqliteInboxRetention {
  private readonly commits: GroupCommit;
  private readonly scan: Database.Statement;
  private readonly newest: Database.Statement;
  private readonly remove: Database.Statement;
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private stopped = false;

  constructor(
    db: SqliteDatabase,
    private readonly o: InboxRetentionOptions,
  ) {
    this.commits = groupCommitOf(db);
    this.scan = prepare(db, "SELECT rowid AS id, user_id, inbox_seq, sent_at_ms FROM inbox WHERE rowid > ? ORDER BY rowid LIMIT ?");
    this.newest = prepare(db, "SELECT max(inbox_seq) AS seq FROM inbox WHERE user_id = ?").pluck();
    this.remove = prepare(db, "DELETE FROM inbox WHERE rowid = ?");
  }

  /** Sweeps every interval from now on, unless entries are kept forever. */
  start(): void {
    if (this.o.retentionMs <= 0 || this.stopped) return;
    const interval =
      this.o.sweepIntervalMs ?? Math.min(MAX_SWEEP_INTERVAL_MS, Math.max(MIN_SWEEP_INTERVAL_MS, Math.floor(this.o.retentionMs / 10)));
    const next = () => {
      this.timer = setTimeout(() => {
        // A sweep that fails (a full disk) is tried again at the next interval; the entries are only kept longer.
        void this.sweep()
          .then((removed) => this.o.onSwept?.({ removed }), (err: unknown) => this.o.onSwept?.({ err }))
          .finally(() => !this.stopped && next());
      }, interval);
      this.timer.unref();
    };
    next();
  }

  /** Takes the expired entries away; resolves with how many. One sweep at a time. */
  sweep(): Promise<number> {
    this.running ??= this.sweepAll().finally(() => (this.running = undefined));
    return this.running;
  }

  /** No sweep starts from now on; resolves once the one under way has stopped. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async sweepAll(): Promise<number> {
    const nowMs = (this.o.now ?? Date.now)();
    const walk: Walk = { now: BigInt(nowMs), cutoff: BigInt(nowMs - this.o.retentionMs), after: 0n, through: 0n };
    let removed = 0;
    while (!this.stopped) {
      const step = await this.commits.run(() => this.step(walk));
      removed += step.removed;
      if (step.done) break;
    }
    return removed;
  }

  /**
   * One step of the walk, moving it on. A row stamped ahead of this clock
   * (sent while the clock ran ahead, before it was set back) tells nothing
   * of when it was written: it neither stops the walk, which stalled every
   * sweep until that future time (years, for a clock a year out), nor goes
   * at once. It is held, and goes with the first row written after it that
   * expired: the walk goes back to it and takes everything up to that row,
   * so what expired stays a prefix of each inbox, as reads expect
   * (`expiredThrough`).
   */
  private step(w: Walk): { removed: number; done: boolean } {
    const rows = this.scan.all(w.after, STEP_ROWS) as Row[];
    let removed = 0;
    for (const r of rows) {
      if (r.id > w.through) {
        if (r.sent_at_ms > w.now) {
          w.heldFrom ??= r.id;
          w.after = r.id;
          continue;
        }
        if (r.sent_at_ms >= w.cutoff) return { removed, done: true };
        if (w.heldFrom !== undefined) {
          w.after = w.heldFrom - 1n;
          w.through = r.id;
          w.heldFrom = undefined;
          return { removed, done: false };
        }
      }
      w.after = r.id;
      if (r.inbox_seq === (this.newest.get(r.user_id) as bigint)) continue;
      this.remove.run(r.id);
      removed++;
    }
    return { removed, done: rows.length < STEP_ROWS };
  }
}

/** Where a sweep is: rows after `after` are still to look at; those up to `through` go whatever their time. */
interface Walk {
  now: bigint;
  cutoff: bigint;
  after: bigint;
  through: bigint;
  /** The first of the rows stamped ahead of the clock walked past since the last one that expired. */
  heldFrom?: bigint;
}
