import { big, FANOUT, inParts, mapLimit, type Db, type Row } from "./session.js";

/**
 * Reads of a sequence's newest entry (a channel's, an inbox's): from the
 * schema-2 table, else from schema 1's head, which is read only for a key
 * not appended to since the upgrade (SequencedAppender carries it over).
 */
export class NewestEntries {
  private readonly q;
  /** The columns of a row of each table, last_seq apart. */
  private readonly columnsOfRow: string;
  private readonly legacyColumns: string;

  constructor(
    private readonly db: Db,
    private readonly tables: { newest: string; legacy: string },
    private readonly keyColumn: string,
    columns: string,
    /** Columns only the schema-2 table has (schema 1's heads were never extended). */
    newestOnly?: string,
  ) {
    this.columnsOfRow = `${columns}${newestOnly ? `, ${newestOnly}` : ""}`;
    this.legacyColumns = columns;
    this.q = {
      row: this.select(tables.newest, `last_seq, ${this.columnsOfRow}`),
      legacyRow: this.select(tables.legacy, `last_seq, ${columns}`),
      seq: this.select(tables.newest, "last_seq"),
      legacySeq: this.select(tables.legacy, "last_seq"),
    };
  }

  private select(table: string, cols: string): string {
    return `SELECT ${cols} FROM ${this.db.t(table)} WHERE ${this.keyColumn} = ?`;
  }

  /** The newest entry's row (with last_seq), and whether it is schema 1's. */
  async row(key: bigint): Promise<{ row: Row; seq: bigint; legacy: boolean } | undefined> {
    const r = await this.db.one(this.q.row, [key]);
    if (r) return { row: r, seq: big(r.get("last_seq")), legacy: false };
    const l = await this.db.one(this.q.legacyRow, [key]);
    return l ? { row: l, seq: big(l.get("last_seq")), legacy: true } : undefined;
  }

  /** Some columns of the newest entry, from whichever table holds it: a narrow read where its text is not wanted. */
  async columns(key: bigint, cols: string): Promise<Row | undefined> {
    return (await this.db.one(this.select(this.tables.newest, cols), [key])) ?? (await this.db.one(this.select(this.tables.legacy, cols), [key]));
  }

  /**
   * The newest entries' rows (with last_seq) of many keys, by key; a key with
   * none is absent. `perRead` keys per `IN` read of each table, schema 1's
   * read only for the keys the new table lacks: a read per key made a list
   * of hundreds of chats cost hundreds of round trips.
   */
  async rowsOf(keys: readonly bigint[], perRead: number): Promise<Map<bigint, { row: Row; seq: bigint; legacy: boolean }>> {
    const out = new Map<bigint, { row: Row; seq: bigint; legacy: boolean }>();
    for (const [legacy, table, cols] of [[false, this.tables.newest, this.columnsOfRow], [true, this.tables.legacy, this.legacyColumns]] as const) {
      const missing = [...new Set(keys)].filter((k) => !out.has(k));
      for (const r of await this.readIn(table, `last_seq, ${cols}`, missing, perRead)) {
        out.set(big(r.get(this.keyColumn)), { row: r, seq: big(r.get("last_seq")), legacy });
      }
    }
    return out;
  }

  /** Some columns of many keys' newest entries, by key, as rowsOf reads them: where their texts are not wanted. */
  async columnsOf(keys: readonly bigint[], cols: string, perRead: number): Promise<Map<bigint, Row>> {
    const out = new Map<bigint, Row>();
    for (const table of [this.tables.newest, this.tables.legacy]) {
      const missing = [...new Set(keys)].filter((k) => !out.has(k));
      for (const r of await this.readIn(table, cols, missing, perRead)) out.set(big(r.get(this.keyColumn)), r);
    }
    return out;
  }

  private async readIn(table: string, cols: string, keys: readonly bigint[], perRead: number): Promise<Row[]> {
    const query = `SELECT ${this.keyColumn}, ${cols} FROM ${this.db.t(table)} WHERE ${this.keyColumn} IN ?`;
    return (await mapLimit(inParts(keys, perRead), FANOUT, (some) => this.db.rows(query, [some]))).flat();
  }

  /** The newest seq, 0n when the sequence is empty. */
  async seq(key: bigint): Promise<bigint> {
    return (await this.head(key)).seq;
  }

  /** The newest seq (0n when the sequence is empty), and whether it is schema 1's head. */
  async head(key: bigint): Promise<{ seq: bigint; legacy: boolean }> {
    const r = await this.db.one(this.q.seq, [key]);
    if (r) return { seq: big(r.get("last_seq")), legacy: false };
    const l = await this.db.one(this.q.legacySeq, [key]);
    return { seq: l ? big(l.get("last_seq")) : 0n, legacy: l !== undefined };
  }
}
