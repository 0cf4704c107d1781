import assert from "node:assert/strict";
import { countingByTable, scratchCassandra } from "../../../test/support/cassandra.js";
import type { Id, NewMessage } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraInbox, CassandraMessageLog } from "./index.js";

/**
 * History kept for years. Buckets are by seq, not by time (buckets.ts): a
 * page's reads are the buckets its seqs fall in, however far apart in time
 * its messages were sent, and a clock stepped back or two sends in one
 * millisecond across a bucket edge change neither which bucket a message
 * lands in nor its place in a page.
 */
describe("cassandra: paging a history years long", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const BUCKET = 4;
  const N = 13;
  const YEAR = 365 * 24 * 3600 * 1000;
  const T = 1_767_225_600_000;
  /**
   * Sent times, by seq: years apart, the clock stepped back (seq 3 and 7 sent
   * "before" the message they follow), and seqs 4 and 5 in one millisecond
   * across the edge of buckets 1 and 2.
   */
  const sentAt = [T, T + 3 * YEAR, T + YEAR, T + 5 * YEAR, T + 5 * YEAR, T + 9 * YEAR, T + 2 * YEAR, ...Array.from({ length: N - 7 }, (_, i) => T + (10 + i) * YEAR)];

  const msg = (channelId: Id, i: number): NewMessage => ({
    messageId: uniqueId(), channelId, senderUserId: 5n, senderDeviceId: 1n, clientMsgId: `c${i}`, text: `m${i + 1}`, sentAtMs: sentAt[i]!,
  });

  async function history() {
    const { db, count } = countingByTable(storage().db);
    const log = new CassandraMessageLog(db, BUCKET);
    const channelId = uniqueId();
    for (let i = 0; i < N; i++) await log.append(msg(channelId, i));
    count.clear();
    return { log, channelId, count };
  }

  /** Buckets the inclusive seq range [lo, hi] touches. */
  const bucketsOf = (lo: bigint, hi: bigint) => (hi < lo ? 0 : Number(hi / BigInt(BUCKET) - lo / BigInt(BUCKET)) + 1);

  it("every page, at every anchor (bucket edges among them) and limit, both ways: each message once, in seq order, a read per bucket it spans", async () => {
    const { log, channelId, count } = await history();
    for (const textBytes of [undefined, 1 << 20]) {
      for (let limit = 1; limit <= 2 * BUCKET + 1; limit++) {
        for (let anchor = 0n; anchor <= BigInt(N + 2); anchor++) {
          for (const direction of ["backward", "forward"] as const) {
            count.clear();
            const got = await log.page(channelId, { anchorSeq: anchor, direction, limit, textBytes });
            let lo: bigint;
            let hi: bigint;
            if (direction === "backward") {
              hi = anchor === 0n || anchor > BigInt(N) ? BigInt(N) : anchor - 1n;
              lo = hi - BigInt(limit) + 1n < 1n ? 1n : hi - BigInt(limit) + 1n;
            } else {
              lo = anchor + 1n;
              hi = lo + BigInt(limit) - 1n > BigInt(N) ? BigInt(N) : lo + BigInt(limit) - 1n;
            }
            const want: bigint[] = [];
            for (let s = lo; s <= hi; s++) want.push(s);
            if (direction === "backward") want.reverse();
            const where = `${direction} from ${anchor}, limit ${limit}, budget ${textBytes}`;
            assert.deepEqual(got.map((m) => m.seq), want, where);
            assert.deepEqual(got.map((m) => m.sentAtMs), want.map((s) => sentAt[Number(s) - 1]), where);
            assert.equal(count.get("SELECT messages") ?? 0, bucketsOf(lo, hi), where);
          }
        }
      }
    }
  });

  it("an inbox page, at every cursor and limit, with a budget: a read per bucket it spans, none to find a bucket's end", async () => {
    const { log, channelId } = await history();
    const { db, count } = countingByTable(storage().db);
    const inbox = new CassandraInbox(db, BUCKET);
    const u = uniqueId();
    for (const m of await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: N })) await inbox.append(u, m);
    for (let limit = 1; limit <= 2 * BUCKET + 1; limit++) {
      for (let after = 0n; after <= BigInt(N); after++) {
        count.clear();
        const got = await inbox.readAfter(u, after, limit, 1 << 20);
        const hi = after + BigInt(limit) > BigInt(N) ? BigInt(N) : after + BigInt(limit);
        const want: bigint[] = [];
        for (let s = after + 1n; s <= hi; s++) want.push(s);
        assert.deepEqual(got.map((e) => e.inboxSeq), want, `after ${after}, limit ${limit}`);
        assert.equal(count.get("SELECT inbox") ?? 0, bucketsOf(after + 1n, hi), `after ${after}, limit ${limit}`);
      }
    }
  });

  it("paging back through it all from the newest: every message once, newest first, whatever the clock said", async () => {
    const { log, channelId, count } = await history();
    const seen: bigint[] = [];
    let anchor = 0n;
    for (;;) {
      const page = await log.page(channelId, { anchorSeq: anchor, direction: "backward", limit: 3 });
      if (page.length === 0) break;
      seen.push(...page.map((m) => m.seq));
      anchor = page.at(-1)!.seq;
    }
    assert.deepEqual(seen, Array.from({ length: N }, (_, i) => BigInt(N - i)));
    // Five pages and the empty one: a read of a bucket or two each, never of the years between.
    assert.ok((count.get("SELECT messages") ?? 0) <= 2 * 5, `${count.get("SELECT messages")} reads of messages`);
  });

  it("a scan's later pages (scanned): the same messages as a page read afresh, without reading the head again", async () => {
    const { log, channelId, count } = await history();
    for (let limit = 1; limit <= 2 * BUCKET + 1; limit++) {
      for (let anchor = 1n; anchor <= BigInt(N); anchor++) {
        const where = `from ${anchor}, limit ${limit}`;
        const afresh = await log.page(channelId, { anchorSeq: anchor, direction: "backward", limit, textBytes: 1 << 20 });
        count.clear();
        const goingOn = await log.page(channelId, { anchorSeq: anchor, direction: "backward", limit, textBytes: 1 << 20, scanned: 40 });
        assert.deepEqual(goingOn, afresh, where);
        assert.equal(count.get("SELECT channel_newest") ?? 0, 0, where);
        const hi = anchor - 1n;
        const lo = hi - BigInt(limit) + 1n < 1n ? 1n : hi - BigInt(limit) + 1n;
        // A fetch already grown to 32 rows reads each bucket's slice in one request.
        assert.equal(count.get("SELECT messages") ?? 0, bucketsOf(lo, hi), where);
      }
    }
  });

  it("an edit, a reaction and a delete of the oldest message, years on, find its bucket with one read", async () => {
    const { log, channelId, count } = await history();
    const change = (i: number, c: Partial<NewMessage>): NewMessage => ({ ...msg(channelId, 100 + i), targetSeq: 1n, sentAtMs: T + 30 * YEAR, ...c });
    assert.equal((await log.amend(change(0, { text: "edited" })))?.text, "edited");
    assert.deepEqual((await log.amend(change(1, { text: "👍", reaction: true })))?.reactions, [{ userId: 5n, emoji: "👍" }]);
    assert.equal((await log.amend(change(2, { text: "", deleted: true })))?.deleted, true);
    // Each change reads its target once, by its seq's bucket.
    assert.equal(count.get("SELECT messages"), 3);
    const [oldest] = await log.page(channelId, { anchorSeq: 2n, direction: "backward", limit: 10 });
    assert.equal(oldest?.seq, 1n);
    assert.equal(oldest?.deleted, true);
    assert.equal(oldest?.sentAtMs, T);
  });
});
