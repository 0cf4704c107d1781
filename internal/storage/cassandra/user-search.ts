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
      find: `SELECT user_id FROM ${db.t("user_search")}
             WHERE prefix = ? AND username_lower >= ? AND username_lower < ? LIMIT ?`,
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

  async find(lower: string, limit: number): Promise<Id[]> {
    const out: Id[] = [];
    for await (const part of this.partitions(lower)) {
      const rows = await this.db.rows(this.q.find, [part, lower, lower + END, limit - out.length]);
      for (const r of rows) out.push(big(r.get("user_id")));
      if (out.length >= limit) break;
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
