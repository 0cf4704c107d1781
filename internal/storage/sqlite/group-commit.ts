import type { SqliteDatabase } from "./database.js";

interface Pending {
  work: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
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

  constructor(private readonly db: SqliteDatabase) {}

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
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db
        .transaction(() => {
          for (const p of batch) {
            try {
              outcomes.push({ ok: true, value: p.work() });
            } catch (e) {
              outcomes.push({ ok: false, value: e });
            }
          }
        })
        .immediate();
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.value);
    });
  }
}

const byDatabase = new WeakMap<SqliteDatabase, GroupCommit>();

/** The one GroupCommit of a connection, shared by its stores so their writes of one turn share a commit. */
export function groupCommitOf(db: SqliteDatabase): GroupCommit {
  let g = byDatabase.get(db);
  if (!g) byDatabase.set(db, (g = new GroupCommit(db)));
  return g;
}

