import type { Id } from "../model/types.js";
import { Slots } from "../model/slots.js";
import { big, FANOUT, inParts, mapLimit, ms, msCell, type Db } from "../storage/cassandra/session.js";
import type { LastSeen, LastSeenLog } from "./last-seen.js";

/**
 * LastSeenLog on Cassandra (table presence_last_seen, schema.ts): the
 * cluster's last-seen times beyond Redis, whose presence state is soft: a
 * Redis restarted without persistence lost every offline user's last seen,
 * and each showed just "offline". One row per user, written with the time
 * itself as the write timestamp (in microseconds), so the latest time wins
 * without a read whatever order the writes land in, and with a TTL that ends
 * the row at the retention (`forgetBeforeMs`), as the Redis hash ends.
 */
export class CassandraLastSeenLog implements LastSeenLog {
  private readonly q;
  /**
   * Writes in flight, over all calls: the Redis store hands each sweep
   * round's flips (500) to record() without waiting, so a chat server that
   * died with 10,000 users online put them all on the wire at once, past the
   * driver's 2,048 per connection: the rest failed as "unreachable" (their
   * last seens lost), and so did the process's other queries meanwhile.
   */
  private readonly writes = new Slots(FANOUT);

  constructor(private readonly db: Db) {
    const t = db.t("presence_last_seen");
    this.q = {
      write: `INSERT INTO ${t} (user_id, at_ms) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?`,
      read: `SELECT user_id, at_ms FROM ${t} WHERE user_id IN ?`,
    };
  }

  async record(entries: readonly LastSeen[], forgetBeforeMs: number): Promise<void> {
    await Promise.all(
      entries.map((e) => {
        const atMs = Math.floor(e.atMs);
        const ttlS = Math.ceil((atMs - forgetBeforeMs) / 1000);
        if (ttlS <= 0) return undefined; // past the retention already
        return this.writes.run(() => this.db.write(this.q.write, [e.userId, msCell(atMs), msCell(atMs) * 1000n, ttlS]));
      }),
    );
  }

  /** A read per hundred users: one per user made a GetPresence of 500 users Redis had lost cost 500. */
  async read(userIds: readonly Id[], sinceMs: number): Promise<Map<Id, number>> {
    const parts = await mapLimit(inParts([...new Set(userIds)]), FANOUT, (some) => this.db.rows(this.q.read, [some]));
    const found = new Map<Id, number>();
    for (const row of parts.flat()) {
      const atMs = ms(row.get("at_ms"));
      if (atMs > sinceMs) found.set(big(row.get("user_id")), atMs);
    }
    return found;
  }
}
