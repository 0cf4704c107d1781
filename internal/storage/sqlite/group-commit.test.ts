import assert from "node:assert/strict";
import { openDatabase, SqliteInbox, type SqliteDatabase } from "./index.js";
import { GroupCommit, groupCommitOf } from "./group-commit.js";
import type { StoredMessage } from "../../model/types.js";

const message = (id: bigint): StoredMessage => ({
  messageId: id,
  channelId: 7n,
  seq: id,
  senderUserId: 1n,
  senderDeviceId: 1n,
  clientMsgId: `c${id}`,
  text: "hi",
  sentAtMs: 1,
});

describe("sqlite group commit", () => {
  let db: SqliteDatabase;
  beforeEach(() => {
    db = openDatabase(":memory:");
    db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  });
  afterEach(() => db.close());
  const count = () => (db.prepare("SELECT count(*) AS n FROM t").safeIntegers(true).get() as { n: bigint }).n;

  it("fails its health check while the file refuses writes (a full disk), not for a write's own refusal, and passes once one goes through", async () => {
    const g = new GroupCommit(db);
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    await g.run(() => insert.run(1, "x"));
    g.writeCheck();
    await assert.rejects(g.run(() => insert.run(1, "a second row 1")), /UNIQUE/);
    g.writeCheck();
    // No disk to fill: the file may grow no further, as SQLITE_FULL says.
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true })}`);
    await assert.rejects(g.run(() => insert.run(2, "y".repeat(100_000))), /full/);
    assert.throws(() => g.writeCheck(), /writes failing .*full/);
    assert.doesNotThrow(() => g.writeCheck(0), "only for its window when nothing is written after it");
    db.pragma("max_page_count = 1073741823");
    await g.run(() => insert.run(3, "room again"));
    g.writeCheck();
  });

  it("stores none of a turn's writes when a full disk rolled the transaction back in one of them", async () => {
    const g = new GroupCommit(db);
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    await g.run(() => insert.run(1, "x"));
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true })}`);
    const big = g.run(() => insert.run(2, "y".repeat(100_000)));
    const small = g.run(() => insert.run(3, "z"));
    await assert.rejects(big, /full/);
    // Rejected, so its sender is told to send it again: it must not be stored (and then never delivered).
    await assert.rejects(small, /full/);
    assert.equal(count(), 1n);
  });

  it("runs the writes of one turn in one transaction and resolves after the commit", async () => {
    const g = new GroupCommit(db);
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    const seen: boolean[] = [];
    const done = [1, 2, 3].map((k) =>
      g.run(() => {
        seen.push(db.inTransaction);
        return insert.run(k, "x").changes;
      }),
    );
    assert.equal(count(), 0n, "nothing written before the turn ends");
    assert.deepEqual(await Promise.all(done), [1, 1, 1]);
    assert.deepEqual(seen, [true, true, true]);
    assert.equal(count(), 3n);
  });

  it("rolls back and rejects only the piece of work that failed", async () => {
    const g = new GroupCommit(db);
    const put = db.transaction((k: number, v: string, fail: boolean) => {
      db.prepare("INSERT INTO t (k, v) VALUES (?, ?)").run(k, v);
      if (fail) throw new Error("boom");
    });
    const results = await Promise.allSettled([g.run(() => put(1, "a", false)), g.run(() => put(2, "b", true)), g.run(() => put(3, "c", false))]);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.deepEqual(db.prepare("SELECT k FROM t ORDER BY k").all().map((r) => (r as { k: bigint }).k), [1n, 3n]);
  });

  it("rejects every piece when the transaction itself cannot run", async () => {
    const g = new GroupCommit(db);
    const pending = [g.run(() => 1), g.run(() => 2)];
    db.close();
    const results = await Promise.allSettled(pending);
    assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
    db = openDatabase(":memory:");
  });

  it("keeps each user's inbox gap-free when many appends share a commit", async () => {
    const inbox = new SqliteInbox(db);
    const out = await Promise.all([1n, 2n, 3n, 4n].flatMap((id) => [inbox.append(10n, message(id)), inbox.append(11n, message(id))]));
    assert.deepEqual(out.filter((_, i) => i % 2 === 0).map((r) => r.entry.inboxSeq), [1n, 2n, 3n, 4n]);
    const again = await Promise.all([inbox.append(10n, message(2n)), inbox.append(10n, message(5n))]);
    assert.deepEqual(again.map((r) => [r.entry.inboxSeq, r.duplicate]), [[2n, true], [5n, false]]);
    assert.equal(await inbox.head(11n), 4n);
  });

  it("writes a turn's cursor advances as one piece, and a commit that never ran them ends their batch", async () => {
    const inbox = new SqliteInbox(db);
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    await Promise.all([inbox.advanceCursor(1n, 2n, 3n), inbox.advanceCursor(1n, 2n, 2n), inbox.advanceCursor(1n, 4n, 7n)]);
    assert.deepEqual([await inbox.getCursor(1n, 2n), await inbox.getCursor(1n, 4n)], [3n, 7n]);
    // A full disk in a piece before the advances rolls the transaction back before they run.
    const pages = db.pragma("max_page_count", { simple: true });
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true })}`);
    const big = groupCommitOf(db).run(() => insert.run(1, "y".repeat(100_000)));
    const lost = inbox.advanceCursor(1n, 2n, 5n);
    await assert.rejects(big, /full/);
    await assert.rejects(lost, /full/);
    db.pragma(`max_page_count = ${pages}`);
    // The next ack is of a new batch, not answered with the lost one's failure.
    await inbox.advanceCursor(1n, 2n, 6n);
    assert.equal(await inbox.getCursor(1n, 2n), 6n);
  });
});
