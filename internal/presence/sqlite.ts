import type Database from "better-sqlite3";
import type { Id } from "../model/types.js";
import { prepare, type SqliteDatabase } from "../storage/sqlite/database.js";
import { groupCommitOf, type GroupCommit } from "../storage/sqlite/group-commit.js";
import type { LastSeen, LastSeenLog } from "./last-seen.js";

/**
 * Rows past the retention taken away per write, besides those written: more
 * than a write adds, so the table never keeps more than the users seen
 * within the retention for long, and few enough to cost a write little.
 */
const FORGET_ROWS = 16;

/**
 * LastSeenLog on chat.db (table presence_last_seen, schema version 19): one
 * row per user, so backups (a copy of chat.db) carry it. A deleted account
 * gets no row (its flip to offline may come a grace period after the
 * deletion), and the deletion takes away the one it had (SqliteAccountStore).
 */
export class SqliteLastSeenLog implements LastSeenLog {
  private readonly commits: GroupCommit;
  private readonly lookup: Database.Statement;
  private readonly write: (entries: readonly LastSeen[], forgetBeforeMs: number) => void;

  constructor(db: SqliteDatabase) {
    this.commits = groupCommitOf(db);
    this.lookup = prepare(db, "SELECT at_ms FROM presence_last_seen WHERE user_id = ? AND at_ms > ?").pluck();
    const upsert = prepare(
      db,
      `INSERT INTO presence_last_seen (user_id, at_ms) SELECT user_id, ? FROM users WHERE user_id = ? AND username <> ''
       ON CONFLICT (user_id) DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)`,
    );
    const forget = prepare(
      db,
      `DELETE FROM presence_last_seen WHERE user_id IN
         (SELECT user_id FROM presence_last_seen WHERE at_ms <= ? ORDER BY at_ms LIMIT ?)`,
    );
    // A transaction function: a piece of a group commit that fails rolls back alone.
    this.write = db.transaction((entries: readonly LastSeen[], forgetBeforeMs: number) => {
      for (const e of entries) upsert.run(Math.floor(e.atMs), e.userId);
      forget.run(Math.floor(forgetBeforeMs), entries.length + FORGET_ROWS);
    });
  }

  record(entries: readonly LastSeen[], forgetBeforeMs: number): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    return this.commits.run(() => this.write(entries, forgetBeforeMs));
  }

  async read(userIds: readonly Id[], sinceMs: number): Promise<Map<Id, number>> {
    const found = new Map<Id, number>();
    for (const userId of userIds) {
      const atMs = this.lookup.get(userId, Math.floor(sinceMs)) as bigint | undefined;
      if (atMs !== undefined) found.set(userId, Number(atMs));
    }
    return found;
  }
}
