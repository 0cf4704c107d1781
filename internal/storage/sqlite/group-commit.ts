import { WriteFailures } from "../../observability/write-failures.js";
import type { SqliteDatabase } from "./database.js";

interface Pending {
  work: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Set once the work ran: whether it returned (`value`) or threw (`value` the error). */
  ok?: boolean;
  value?: unknown;
}

/**
 * Group commit: writes asked for in the same turn of the event loop run in
 * one transaction, and each caller's promise settles once that transaction
 * has committed (so "resolved" still means "durable"). The pipeline appends
 * one inbox entry per member and per message; a transaction each made the
 * COMMIT (its WAL page writes) cost several times the work itself, and it was
 * the first thing the benchmark's CPU profile showed (bench/README.md).
 *
 * Each piece of work runs inside a savepoint when it is a better-sqlite3
 * transaction function (they nest as savepoints), so one that throws is
 * rolled back alone and rejects alone; the others still commit.
 */
export class GroupCommit {
  private pending: Pending[] = [];
  private scheduled = false;
  private flushCount = 0;
  private readonly faults = new WriteFailures();
  /**
   * The batch's transaction, made once: better-sqlite3's transaction() builds
   * four wrappers and defines five properties on each, which per commit was
   * a cost paid about every other message.
   */
  private readonly commitBatch: (batch: Pending[]) => void;

  constructor(private readonly db: SqliteDatabase) {
    this.commitBatch = db.transaction((batch: Pending[]) => {
      for (const p of batch) {
        try {
          p.value = p.work();
          p.ok = true;
        } catch (e) {
          p.value = e;
          p.ok = false;
          // SQLite rolled the whole transaction back (a full disk, an I/O error): the pieces
          // left would each run and commit on their own, then be rejected with the rest.
          if (!this.db.inTransaction) throw e;
        }
      }
    }).immediate;
  }

  /** Flushes begun so far: a caller that gathers its writes into one piece of a commit knows by it when that commit has gone. */
  get flushes(): number {
    return this.flushCount;
  }

  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    this.flushCount++;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    try {
      this.commitBatch(batch);
    } catch (e) {
      // A full disk or an I/O error inside a piece rolls the whole transaction back: that piece's error says why.
      const cause = batch.find((p) => p.ok === false && isStorageFault(p.value))?.value ?? e;
      this.faults.failed(cause);
      for (const p of batch) p.reject(cause);
      return;
    }
    const fault = batch.find((p) => p.ok === false && isStorageFault(p.value));
    if (fault) this.faults.failed(fault.value);
    else if (batch.some((p) => p.ok)) this.faults.succeeded();
    for (const p of batch) {
      if (p.ok) p.resolve(p.value);
      else p.reject(p.value);
    }
  }

  /**
   * For `/healthz`: throws while the file refuses writes (a full disk, an I/O
   * error), which a read such as `SELECT 1` does not show: from such a failed
   * write until one goes through, or for `windowMs` after it when nothing is written.
   */
  writeCheck(windowMs?: number): void {
    this.faults.check("writes", windowMs);
  }
}

/** A write refused by the file rather than by its own checks (a ChatError, a constraint). */
function isStorageFault(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^SQLITE_(FULL|IOERR|READONLY|CORRUPT|NOTADB|CANTOPEN|PROTOCOL)/.test(code);
}

const byDatabase = new WeakMap<SqliteDatabase, GroupCommit>();

/** The one GroupCommit of a connection, shared by its stores so their writes of one turn share a commit. */
export function groupCommitOf(db: SqliteDatabase): GroupCommit {
  let g = byDatabase.get(db);
  if (!g) byDatabase.set(db, (g = new GroupCommit(db)));
  return g;
}

