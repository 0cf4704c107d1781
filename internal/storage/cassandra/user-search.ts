import type { Id } from "../../model/types.js";
import { big, type Db, type Statement } from "./session.js";

/**
 * Code points of the lower-cased name that pick its search partition. Three
 * keeps a partition to the names sharing a three-letter start (thousands, not
 * millions, at 50M users) while most queries (usernames are at least 3 long)
 * read exactly one partition.
 */
export const SEARCH_PREFIX = 3;

// Above every code point (and last in UTF-8 byte order, which is how
// Cassandra sorts text), so [p, p + END) is everything starting with p.
const END = "\u{10FFFF}";
// Directory parents carry a marker: a partition key may not be empty.
const ROOT = ">";
/** Search rows of accounts gone that one search reads past before it answers with what it has. */
export const SKIPPED_MAX = 200;
/** Rows one read of a partition asks for at most (the API's largest page). */
const READ_MAX = 100;

export function searchPartition(lower: string): string {
  return [...lower].slice(0, SEARCH_PREFIX).join("");
}

/**
 * Prefix search over lower-cased usernames in alphabetical (code point)
 * order. A query at least SEARCH_PREFIX long reads one partition; a shorter
 * one walks the partitions it spans in order through a two-level directory
 * (first code point, then partition), stopping when the limit is filled.
 */
export class UserSearch {
  private readonly q;

  constructor(private readonly db: Db) {
    this.q = {
      put: `INSERT INTO ${db.t("user_search")} (prefix, username_lower, user_id) VALUES (?, ?, ?)`,
      delete: `DELETE FROM ${db.t("user_search")} WHERE prefix = ? AND username_lower = ?`,
      putDir: `INSERT INTO ${db.t("user_search_dir")} (parent, child) VALUES (?, ?)`,
      find: `SELECT username_lower, user_id FROM ${db.t("user_search")}
             WHERE prefix = ? AND username_lower >= ? AND username_lower < ? LIMIT ?`,
      findAfter: `SELECT username_lower, user_id FROM ${db.t("user_search")}
                  WHERE prefix = ? AND username_lower > ? AND username_lower < ? LIMIT ?`,
      children: `SELECT child FROM ${db.t("user_search_dir")} WHERE parent = ? AND child >= ? AND child < ?`,
    };
  }

  /** The rows that make a name findable (for the creating batch). */
  statements(lower: string, userId: Id): Statement[] {
    const part = searchPartition(lower);
    const head = [...lower][0] ?? "";
    return [
      { query: this.q.put, params: [part, lower, userId] },
      { query: this.q.putDir, params: [ROOT, head] },
      { query: this.q.putDir, params: [ROOT + head, part] },
    ];
  }

  /**
   * The delete that takes a name out of search (for the deleting batch). Its
   * directory entries stay: a partition listed with no names costs a read.
   */
  deleteStatement(lower: string): Statement {
    return { query: this.q.delete, params: [searchPartition(lower), lower] };
  }

  /**
   * Up to `limit` of what `keep` makes of the ids found, in name order. What
   * `keep` leaves out (a deleted account whose search row outlived it) is
   * read past, so a page is not short while more matches exist; at most
   * SKIPPED_MAX rows are read past, so that a run of stale rows costs a
   * bounded read and the page may then come back short.
   */
  async find<T>(lower: string, limit: number, keep: (ids: Id[]) => Promise<T[]>): Promise<T[]> {
    const out: T[] = [];
    if (limit <= 0) return out;
    let skipped = 0;
    for await (const part of this.partitions(lower)) {
      for (let after: string | undefined; ;) {
        const want = limit - out.length;
        // Past stale rows, read more at a time (as many as skipped so far): a run of them cost a read per `want`.
        const fetch = skipped === 0 ? want : Math.min(Math.max(want, skipped), READ_MAX);
        const rows = after === undefined
          ? await this.db.rows(this.q.find, [part, lower, lower + END, fetch])
          : await this.db.rows(this.q.findAfter, [part, after, lower + END, fetch]);
        const kept = rows.length === 0 ? [] : await keep(rows.map((r) => big(r.get("user_id"))));
        out.push(...kept.slice(0, want));
        skipped += rows.length - kept.length;
        if (out.length >= limit || skipped >= SKIPPED_MAX) return out;
        if (rows.length < fetch) break; // the partition is done
        after = rows[rows.length - 1]!.get("username_lower") as string;
      }
    }
    return out;
  }

  private async *partitions(lower: string): AsyncGenerator<string> {
    const cps = [...lower];
    if (cps.length >= SEARCH_PREFIX) {
      yield searchPartition(lower);
      return;
    }
    const heads = cps.length > 0 ? [cps[0]!] : await this.children(ROOT, "");
    for (const head of heads) yield* await this.children(ROOT + head, lower);
  }

  private async children(parent: string, from: string): Promise<string[]> {
    const rows = await this.db.rows(this.q.children, [parent, from, from + END]);
    return rows.map((r) => r.get("child") as string);
  }
}
