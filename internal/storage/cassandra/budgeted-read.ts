import { TextBudget } from "../../messages/page-bytes.js";
import { FANOUT, mapLimit, type Db, type Params, type Row } from "./session.js";

/**
 * A read with a text budget asks for this many rows first, then for as many
 * as it has read (doubling), at most MAX_PAGE_ROWS more at a time. A row can
 * hold a text of ~400 KB, and nothing tells its size before it is read: a
 * request for a page's whole limit (up to 1,000 rows) could bring hundreds of
 * megabytes into the process to send one or two of them. Stopping within a
 * request of the budget bounds what a read holds past what it returns to
 * MAX_PAGE_ROWS rows (~13 MB of the longest texts), and a run of long texts
 * costs one request of FIRST_PAGE_ROWS; a page of 200 short texts costs a few
 * small requests instead of one.
 */
export const FIRST_PAGE_ROWS = 8;
export const MAX_PAGE_ROWS = 32;

/** One query of a read, and its parameters: a partition's slice, its rows in the order the read wants them. */
export interface Slice {
  query: string;
  params: Params;
  /** The most rows it can hold (a bucket's slice of seqs: one row each), if known. */
  rows?: number;
}

/**
 * The items of `slices`. With `textBytes`, read one slice after the other
 * until a TextBudget of it stops the read: what withinTextBytes keeps and the
 * item after it, as a read of everything then throughTextBytes would return,
 * with nothing read past it beyond the request it came in. Without, every
 * slice at once (FANOUT at a time), in whatever order. `complete` when every
 * slice was read to its end. `readBefore`: rows an earlier read of the same
 * scan held, which the fetch size grows from as if this read had them.
 */
export async function readSlices<T>(
  db: Db,
  slices: readonly Slice[],
  textBytes: number | undefined,
  toItem: (r: Row) => T,
  textOf: (item: T) => string,
  readBefore = 0,
): Promise<{ items: T[]; complete: boolean }> {
  if (textBytes === undefined) {
    const parts = await mapLimit(slices, FANOUT, (s) => db.rows(s.query, s.params));
    return { items: parts.flat().map(toItem), complete: true };
  }
  const items: T[] = [];
  const budget = new TextBudget(textBytes);
  for (const { query, params, rows: most } of slices) {
    let pageState: string | undefined;
    let here = 0;
    do {
      const read = readBefore + items.length;
      let fetchSize = Math.min(MAX_PAGE_ROWS, Math.max(FIRST_PAGE_ROWS - read, read, 1));
      // A request for exactly the rows left comes back full, with a page
      // state that costs one more request to learn the slice is done; asking
      // one more than can be left ends the slice in this one.
      if (most !== undefined && fetchSize === most - here) fetchSize++;
      const page = await db.page(query, params, fetchSize, pageState);
      here += page.rows.length;
      for (const r of page.rows) {
        const item = toItem(r);
        items.push(item);
        if (budget.add(textOf(item))) return { items, complete: false };
      }
      pageState = page.next;
    } while (pageState);
  }
  return { items, complete: true };
}
