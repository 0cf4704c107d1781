import assert from "node:assert/strict";
import type Database from "better-sqlite3";
import { PAGE_TEXT_BYTES, withinTextBytes } from "../../messages/page-bytes.js";
import { MAX_TEXT_CODE_POINTS, utf8BytesAtMost, type NewMessage } from "../../model/types.js";
import { openDatabase, SqliteInbox, SqliteMessageLog, type SqliteDatabase } from "./index.js";

/**
 * A database whose statements count the rows they hand to JavaScript and the
 * text those rows carry: what a read costs the event loop, whatever it returns.
 */
function countingDatabase() {
  const db = openDatabase(":memory:");
  const read = { rows: 0, textUnits: 0 };
  const count = (r: unknown) => {
    read.rows++;
    const text = (r as { text?: unknown } | undefined)?.text;
    if (typeof text === "string") read.textUnits += text.length;
  };
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    const stmt = prepare(sql);
    const [all, get, iterate] = [stmt.all.bind(stmt), stmt.get.bind(stmt), stmt.iterate.bind(stmt)];
    stmt.all = (...params: unknown[]) => {
      const rows = all(...params);
      rows.forEach(count);
      return rows;
    };
    stmt.get = (...params: unknown[]) => {
      const r = get(...params);
      if (r !== undefined) count(r);
      return r;
    };
    stmt.iterate = function* (...params: unknown[]) {
      // A break in the caller's loop returns this generator, which returns (resets) the statement's.
      for (const r of iterate(...params)) {
        count(r);
        yield r;
      }
    };
    return stmt;
  }) as SqliteDatabase["prepare"];
  return { db: db as Database.Database, read, reset: () => Object.assign(read, { rows: 0, textUnits: 0 }) };
}

/** The longest text a send takes, costed far past half a page: every page of them carries one. */
const LONGEST = "😀".repeat(MAX_TEXT_CODE_POINTS - 1);
const N = 30;

const message = (i: number, text = LONGEST): NewMessage => ({
  messageId: 1000n + BigInt(i),
  channelId: 7n,
  senderUserId: 1n,
  senderDeviceId: 11n,
  clientMsgId: `m${i}`,
  text,
  sentAtMs: 1_000 + i,
});

describe("sqlite page reads stop at the text budget", () => {
  let c: ReturnType<typeof countingDatabase>;
  beforeEach(() => (c = countingDatabase()));
  afterEach(() => c.db.close());

  before(() => assert.ok(2 * utf8BytesAtMost(LONGEST) > PAGE_TEXT_BYTES, "one text per page"));

  it("an inbox page of the longest texts reads what it sends and the entry after, not its limit", async () => {
    const inbox = new SqliteInbox(c.db);
    for (let i = 1; i <= N; i++) await inbox.append(5n, { ...message(i), seq: BigInt(i) });
    c.reset();
    const got = await inbox.readAfter(5n, 0n, 1000, PAGE_TEXT_BYTES);
    assert.deepEqual(got.map((e) => e.inboxSeq), [1n, 2n]);
    assert.equal(withinTextBytes(got, (e) => e.message).length, 1);
    assert.deepEqual(c.read, { rows: 2, textUnits: 2 * LONGEST.length });
  });

  it("catching up on an inbox of them costs rows in proportion to the backlog, not its square", async () => {
    const inbox = new SqliteInbox(c.db);
    for (let i = 1; i <= N; i++) await inbox.append(5n, { ...message(i), seq: BigInt(i) });
    c.reset();
    let pages = 0;
    for (let after = 0n; ; pages++) {
      const read = await inbox.readAfter(5n, after, 1000, PAGE_TEXT_BYTES);
      if (read.length === 0) break;
      after = withinTextBytes(read, (e) => e.message).at(-1)!.inboxSeq;
    }
    assert.equal(pages, N);
    // Each page reads its entry and the next one; the last page has none after it, and the empty read none.
    assert.equal(c.read.rows, 2 * N - 1);
  });

  it("a history page of them reads what it sends and the message after, both ways", async () => {
    const log = new SqliteMessageLog(c.db);
    for (let i = 1; i <= N; i++) await log.append(message(i));
    for (const [direction, anchorSeq, want] of [["backward", 0n, [30n, 29n]], ["forward", 0n, [1n, 2n]], ["backward", 2n, [1n]]] as const) {
      c.reset();
      const got = await log.page(7n, { anchorSeq, direction, limit: 201, textBytes: PAGE_TEXT_BYTES });
      assert.deepEqual(got.map((m) => m.seq), want, direction);
      // The page's reactions are read after it, in one query (none here).
      assert.deepEqual(c.read, { rows: want.length, textUnits: want.length * LONGEST.length }, `${direction} from ${anchorSeq}`);
    }
  });

  it("a page of short texts still stops only at its limit", async () => {
    const log = new SqliteMessageLog(c.db);
    for (let i = 1; i <= N; i++) await log.append(message(i, `short ${i}`));
    c.reset();
    const got = await log.page(7n, { anchorSeq: 0n, direction: "forward", limit: 20, textBytes: PAGE_TEXT_BYTES });
    assert.equal(got.length, 20);
    assert.equal(c.read.rows, 20);
  });

  it("latestSentAt reads no text: a list of chats sorts without their newest messages' texts", async () => {
    const log = new SqliteMessageLog(c.db);
    for (let i = 1; i <= 5; i++) await log.append({ ...message(i), channelId: 100n + BigInt(i) });
    c.reset();
    const at = await log.latestSentAt([101n, 102n, 103n, 104n, 105n, 999n]);
    assert.deepEqual([...at.values()], [1001, 1002, 1003, 1004, 1005]);
    assert.deepEqual(c.read, { rows: 5, textUnits: 0 });
  });
});
