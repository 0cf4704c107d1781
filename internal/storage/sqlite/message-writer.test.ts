import assert from "node:assert/strict";
import type { NewMessage } from "../../model/types.js";
import { openSqliteStorage, type SqliteStorage } from "./index.js";

const send = (messageId: bigint, clientMsgId: string, channelId = 7n): NewMessage => ({
  messageId,
  channelId,
  senderUserId: 1n,
  senderDeviceId: 11n,
  clientMsgId,
  text: `text ${clientMsgId}`,
  sentAtMs: 1_000,
});

describe("sqlite message writer (log and inboxes in one write)", () => {
  let s: SqliteStorage;
  beforeEach(() => (s = openSqliteStorage(":memory:")));
  afterEach(() => s.close());

  it("stores the message with the channel's next seq and a copy in every member's inbox", async () => {
    const [a, b] = await Promise.all([s.writer.write(send(100n, "a"), [1n, 2n]), s.writer.write(send(101n, "b"), [1n, 2n])]);
    assert.deepEqual([a.message.seq, b.message.seq], [1n, 2n]);
    assert.deepEqual(a.entries.map((e) => [e.userId, e.entry.inboxSeq]), [[1n, 1n], [2n, 1n]]);
    assert.deepEqual(b.entries.map((e) => [e.userId, e.entry.inboxSeq]), [[1n, 2n], [2n, 2n]]);
    for (const user of [1n, 2n]) {
      assert.deepEqual((await s.inbox.readAfter(user, 0n, 10)).map((e) => e.message.messageId), [100n, 101n]);
    }
    assert.deepEqual((await s.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 })).map((m) => m.seq), [1n, 2n]);
  });

  it("gives a resend the stored message and writes no inbox copy again", async () => {
    await s.writer.write(send(100n, "a"), [1n, 2n]);
    const again = await s.writer.write(send(555n, "a"), [1n, 2n]);
    assert.equal(again.duplicate, true);
    assert.equal(again.message.messageId, 100n);
    assert.deepEqual(again.entries, []);
    assert.equal(await s.inbox.head(2n), 1n);
  });

  it("writes all of a message or none of it, and the other writes of the turn still commit", async () => {
    // An inbox append that fails half-way through the members (after user 1's copy).
    s.db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.user_id = 666
               BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
    const failing = s.writer.write(send(100n, "a", 7n), [1n, 666n]);
    const fine = s.writer.write(send(200n, "b", 8n), [1n, 2n]);
    await assert.rejects(failing, /refused by the test/);
    assert.equal((await fine).entries.length, 2);
    assert.deepEqual(await s.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 }), [], "no message without its inbox copies");
    assert.deepEqual((await s.inbox.readAfter(1n, 0n, 10)).map((e) => e.message.messageId), [200n]);
    // Nothing was consumed: the channel's first seq and user 1's next inbox seq are still free.
    s.db.exec("DROP TRIGGER refuse");
    const retried = await s.writer.write(send(100n, "a", 7n), [1n, 666n]);
    assert.equal(retried.message.seq, 1n);
    assert.deepEqual(retried.entries.map((e) => e.entry.inboxSeq), [2n, 1n]);
  });
});
