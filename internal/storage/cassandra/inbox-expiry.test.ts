import assert from "node:assert/strict";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { waitFor, waitOut } from "../../../test/support/wait.js";
import { expiredThrough } from "../../messages/inbox.js";
import type { StoredMessage } from "../../model/types.js";
import { uniqueId, uniqueName } from "../contract/helpers.js";
import { bucketOf } from "./buckets.js";
import { CassandraInbox, type Db } from "./index.js";

const BUCKET = 4;
/**
 * Seconds an entry is kept: long enough for the late write to land well after the others. The
 * late row outlives the others by RETENTION_S - 1 (less up to a second of Cassandra's whole-second
 * expiry), the time the test has to see them expire and page through the inbox: 3 s of it left a
 * loaded engine's reads (a JVM pause) too little.
 */
const RETENTION_S = 7;

/** Resolves once `cond` holds, polling; fails past `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  await waitFor(cond, what, ms, 25);
}

/** A Db whose entry writes (writeTogether) wait while the gate is shut: a writer stalled between taking a seq and writing its row. */
function stallingDb(db: Db) {
  const gate = { shut: true, stalled: 0, open: () => {} };
  const opened = new Promise<void>((r) => (gate.open = r));
  const writeTogether: Db["writeTogether"] = async (statements) => {
    if (gate.shut) {
      gate.stalled++;
      await opened;
    }
    return db.writeTogether(statements);
  };
  return { db: Object.create(db, { writeTogether: { value: writeTogether } }) as Db, gate };
}

describe("cassandra inbox: a row written late", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  const message = (i: number): StoredMessage => ({
    messageId: uniqueId(),
    channelId: 7n,
    seq: BigInt(i),
    senderUserId: 1n,
    senderDeviceId: 11n,
    clientMsgId: uniqueName("c-"),
    text: `m${i}`,
    sentAtMs: 1_000 + i,
  });

  it("outlives the rows after it, and a read below it is told of every seq it skips", async () => {
    const db = storage().db;
    const u = uniqueId();
    const stalled = stallingDb(db);
    // Writer A takes seq 2 for m2 and stalls before its row; writer B (the
    // partition's next owner) appends m2 again, at seq 2, and goes on.
    const a = new CassandraInbox(stalled.db, BUCKET, undefined, RETENTION_S);
    const b = new CassandraInbox(db, BUCKET, undefined, RETENTION_S);
    await b.append(u, message(1));
    const m2 = message(2);
    const late = a.append(u, m2);
    await until(() => stalled.gate.stalled > 0, "writer A to take seq 2");
    assert.equal((await b.append(u, m2)).entry.inboxSeq, 2n);
    for (let i = 3; i <= 7; i++) assert.equal((await b.append(u, message(i))).entry.inboxSeq, BigInt(i));
    // A wait of time itself: the late row is to outlive the others on Cassandra's own TTL clock, which no test clock moves.
    await waitOut((RETENTION_S - 1) * 1000);
    stalled.gate.shut = false;
    stalled.gate.open();
    assert.equal((await late).entry.inboxSeq, 2n);
    assert.equal(await b.head(u), 7n);

    const rowOf = async (seq: bigint) =>
      (await db.one(`SELECT inbox_seq FROM ${db.t("inbox")} WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`, [u, bucketOf(seq, BUCKET), seq])) != null;
    await until(async () => !(await rowOf(3n)) && !(await rowOf(6n)), "rows 3 to 6 to expire");

    // A device back from far away (cursor 0) pages through: every seq is either
    // sent or told expired (expiredThrough), none skipped in silence.
    const covered: bigint[] = [];
    for (let after = 0n; after < 7n; ) {
      const page = await b.readAfter(u, after, 100);
      for (let s = after + 1n; s <= expiredThrough(after, page); s++) covered.push(s);
      covered.push(...page.map((e) => e.inboxSeq));
      if (page.length === 0) break;
      after = page[page.length - 1]!.inboxSeq;
    }
    // Only meaningful while the late row is still kept past the ones after it.
    assert.ok(await rowOf(2n), "the late row 2 expired before the read: too slow a run to tell");
    assert.deepEqual(covered, [1n, 2n, 3n, 4n, 5n, 6n, 7n]);
  });

  it("a page that begins among expired rows is still a full page when more are kept", async () => {
    const db = storage().db;
    const u = uniqueId();
    // Seqs 1 to 3 live a second; 4 to 12 stay.
    const short = new CassandraInbox(db, BUCKET, undefined, 1);
    const kept = new CassandraInbox(db, BUCKET, undefined, 3600);
    for (let i = 1; i <= 3; i++) await short.append(u, message(i));
    for (let i = 4; i <= 12; i++) await kept.append(u, message(i));
    const rowOf = async (seq: bigint) =>
      (await db.one(`SELECT inbox_seq FROM ${db.t("inbox")} WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`, [u, bucketOf(seq, BUCKET), seq])) != null;
    await until(async () => !(await rowOf(1n)) && !(await rowOf(3n)), "rows 1 to 3 to expire");
    // The session and SyncInbox take a page short of its limit for the end of
    // the inbox: a device back after the retention would stop at seq 4.
    for (const [after, limit, want] of [[0n, 4, [4n, 5n, 6n, 7n]], [2n, 2, [4n, 5n]], [0n, 100, [4n, 5n, 6n, 7n, 8n, 9n, 10n, 11n, 12n]]] as const) {
      assert.deepEqual((await kept.readAfter(u, after, limit)).map((e) => e.inboxSeq), want, `after ${after}, limit ${limit}`);
    }
  });
});
