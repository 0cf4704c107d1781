import assert from "node:assert/strict";
import type cassandra from "cassandra-driver";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { PAGE_TEXT_BYTES, withinTextBytes } from "../../messages/page-bytes.js";
import { MAX_TEXT_CODE_POINTS, utf8BytesAtMost, type NewMessage } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { FIRST_PAGE_ROWS } from "./budgeted-read.js";
import { CassandraInbox, CassandraMessageLog, type Db } from "./index.js";

/**
 * A Db whose requests count the rows carrying a text that they bring back:
 * what a read pulls into the process, whatever it returns.
 */
function countingDb(db: Db) {
  const read = { rows: 0 };
  const execute = (query: string, params?: unknown[], options?: cassandra.QueryOptions) =>
    db.client.execute(query, params, options).then((rs) => {
      if (rs.columns?.some((c) => c.name === "text")) read.rows += rs.rows?.length ?? 0;
      return rs;
    });
  const client = Object.create(db.client, { execute: { value: execute } }) as Db["client"];
  return { db: Object.create(db, { client: { value: client } }) as Db, read, reset: () => (read.rows = 0) };
}

/** The longest text a send takes, costed far past half a page: every page of them carries one. */
const LONGEST = "😀".repeat(MAX_TEXT_CODE_POINTS - 1);
/** Entries and messages stored: more than a first page, across buckets of BUCKET. */
const N = 20;
const BUCKET = 8;

describe("cassandra page reads stop at the text budget", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  let c: ReturnType<typeof countingDb>;
  beforeEach(() => (c = countingDb(storage().db)));

  before(() => assert.ok(2 * utf8BytesAtMost(LONGEST) > PAGE_TEXT_BYTES, "one text per page"));

  const message = (channelId: bigint, i: number, text = LONGEST): NewMessage => ({
    messageId: uniqueId(),
    channelId,
    senderUserId: 1n,
    senderDeviceId: 11n,
    clientMsgId: `m${i}`,
    text,
    sentAtMs: 1_000 + i,
  });

  it("an inbox page of the longest texts reads a page of rows at most, not its limit", async () => {
    const inbox = new CassandraInbox(c.db, BUCKET);
    const u = uniqueId();
    for (let i = 1; i <= N; i++) await inbox.append(u, { ...message(7n, i), seq: BigInt(i) });
    c.reset();
    const got = await inbox.readAfter(u, 0n, 1000, PAGE_TEXT_BYTES);
    assert.deepEqual(got.map((e) => e.inboxSeq), [1n, 2n]);
    assert.equal(withinTextBytes(got, (e) => e.message).length, 1);
    assert.ok(c.read.rows <= FIRST_PAGE_ROWS, `read ${c.read.rows} rows to return ${got.length}`);
  });

  it("a history page of them reads a page of rows at most, both ways", async () => {
    const log = new CassandraMessageLog(c.db, BUCKET);
    const channelId = uniqueId();
    for (let i = 1; i <= N; i++) await log.append(message(channelId, i));
    const want = [["backward", 0n, [20n, 19n]], ["forward", 0n, [1n, 2n]], ["backward", 9n, [8n, 7n]], ["forward", 6n, [7n, 8n]]] as const;
    for (const [direction, anchorSeq, seqs] of want) {
      c.reset();
      const got = await log.page(channelId, { anchorSeq, direction, limit: 201, textBytes: PAGE_TEXT_BYTES });
      assert.deepEqual(got.map((m) => m.seq), seqs, `${direction} from ${anchorSeq}`);
      assert.ok(c.read.rows <= FIRST_PAGE_ROWS, `${direction} from ${anchorSeq}: read ${c.read.rows} rows to return ${got.length}`);
    }
  });

  it("a page of short texts still returns its whole limit, in order, across buckets", async () => {
    const log = new CassandraMessageLog(c.db, BUCKET);
    const inbox = new CassandraInbox(c.db, BUCKET);
    const [channelId, u] = [uniqueId(), uniqueId()];
    for (let i = 1; i <= 3 * FIRST_PAGE_ROWS; i++) {
      const { message: m } = await log.append(message(channelId, i, `short ${i}`));
      await inbox.append(u, m);
    }
    const seqs = (from: number, to: number) => Array.from({ length: Math.abs(to - from) + 1 }, (_, i) => BigInt(from < to ? from + i : from - i));
    const forward = await log.page(channelId, { anchorSeq: 2n, direction: "forward", limit: 20, textBytes: PAGE_TEXT_BYTES });
    assert.deepEqual(forward.map((m) => m.seq), seqs(3, 22));
    const backward = await log.page(channelId, { anchorSeq: 23n, direction: "backward", limit: 20, textBytes: PAGE_TEXT_BYTES });
    assert.deepEqual(backward.map((m) => m.seq), seqs(22, 3));
    const entries = await inbox.readAfter(u, 2n, 20, PAGE_TEXT_BYTES);
    assert.deepEqual(entries.map((e) => e.inboxSeq), seqs(3, 22));
    assert.deepEqual(entries.map((e) => e.message.text), seqs(3, 22).map((s) => `short ${s}`));
  });
});
