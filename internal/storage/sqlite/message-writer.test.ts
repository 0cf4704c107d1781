import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isChatError } from "../../model/errors.js";
import type { NewMessage, StoredMessage } from "../../model/types.js";
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

/** An edit (or with `deleted`, a delete) of seq `targetSeq` in channel 7, sent by user 1's device 11 unless said otherwise. */
const change = (messageId: bigint, clientMsgId: string, targetSeq: bigint, over: Partial<NewMessage> = {}): NewMessage => ({
  ...send(messageId, clientMsgId),
  text: over.deleted ? "" : `edit ${clientMsgId}`,
  sentAtMs: 2_000 + Number(messageId),
  targetSeq,
  ...over,
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

  describe("changes (edits and deletes)", () => {
    const members = [1n, 2n, 3n];
    const heads = () => Promise.all(members.map((u) => s.inbox.head(u)));
    const changeRows = () => Number((s.db.prepare("SELECT count(*) AS n FROM message_changes").get() as { n: bigint }).n);
    /** Channel 7 with messages 100 ("a", seq 1) and 101 ("b", seq 2) in every member's inbox. */
    const two = async (): Promise<StoredMessage[]> => {
      const a = await s.writer.write(send(100n, "a"), members);
      const b = await s.writer.write(send(101n, "b"), members);
      return [a.message, b.message];
    };
    const texts = async (user: bigint) => (await s.inbox.readAfter(user, 0n, 100)).map((e) => e.message.text);

    it("an edit reaches every member's inbox as an entry of its own (targetSeq, seq 0n), and the log shows it", async () => {
      const [a, b] = await two();
      const edit = change(200n, "e1", 1n, { text: "a, edited 😀" });
      const w = await s.writer.write(edit, members);
      assert.deepStrictEqual(w.message, { ...edit, seq: 0n });
      assert.equal(w.duplicate, false);
      assert.deepStrictEqual(w.entries, members.map((userId) => ({ userId, entry: { inboxSeq: 3n, message: { ...edit, seq: 0n } } })));
      for (const u of members) {
        assert.deepStrictEqual(await s.inbox.readAfter(u, 2n, 10), [{ inboxSeq: 3n, message: { ...edit, seq: 0n } }]);
        // The original's copy stays as it was sent: devices apply the edit entry that follows it.
        assert.deepStrictEqual((await s.inbox.readAfter(u, 0n, 1))[0]?.message, a);
      }
      const edited = { ...a!, text: "a, edited 😀", editedAtMs: edit.sentAtMs };
      assert.deepStrictEqual(await s.messages.get(7n, 1n), edited);
      assert.deepStrictEqual(await s.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 }), [edited, b]);
      // A change takes no seq: the next message is seq 3.
      assert.equal((await s.writer.write(send(102n, "c"), members)).message.seq, 3n);
    });

    it("a delete empties the target's copies in every inbox, and the text of its earlier edits' entries", async () => {
      await two();
      await s.writer.write(change(200n, "e1", 1n, { text: "secret, edited" }), members);
      const del = change(201n, "d1", 1n, { deleted: true });
      const w = await s.writer.write(del, members);
      assert.deepStrictEqual(w.message, { ...del, seq: 0n });
      assert.deepStrictEqual(w.entries.map((e) => [e.userId, e.entry.inboxSeq]), members.map((u) => [u, 4n]));
      for (const u of members) {
        const entries = await s.inbox.readAfter(u, 0n, 10);
        assert.deepStrictEqual(entries.map((e) => [e.message.messageId, e.message.text, e.message.deleted, e.message.targetSeq]), [
          [100n, "", true, undefined], // the target: emptied in place
          [101n, "text b", undefined, undefined],
          [200n, "", undefined, 1n], // its edit: still an edit, text gone
          [201n, "", true, 1n], // the delete itself
        ]);
      }
      assert.deepStrictEqual(await s.messages.get(7n, 1n), { ...send(100n, "a"), text: "", deleted: true, seq: 1n });
      const left = s.db.prepare("SELECT count(*) AS n FROM inbox WHERE text <> '' AND message_id IN (100, 200, 201)").get() as { n: bigint };
      assert.equal(left.n, 0n);
    });

    it("a delete minted before an edit that was stored first still applies, and empties that edit's entries", async () => {
      await two();
      await s.writer.write(change(300n, "e1", 1n, { text: "edited later" }), members);
      const w = await s.writer.write(change(250n, "d1", 1n, { deleted: true }), members);
      assert.equal(w.entries.length, 3);
      assert.deepStrictEqual(await s.messages.get(7n, 1n), { ...send(100n, "a"), text: "", deleted: true, seq: 1n });
      assert.deepStrictEqual(await texts(2n), ["", "text b", "", ""]);
    });

    it("a delete empties a copy in the inbox of a member who has left since", async () => {
      await s.writer.write(send(100n, "a"), [1n, 2n, 9n]);
      await s.writer.write(change(201n, "d1", 1n, { deleted: true }), [1n, 2n]);
      assert.deepStrictEqual((await s.inbox.readAfter(9n, 0n, 10)).map((e) => [e.message.text, e.message.deleted]), [["", true]]);
    });

    it("a resend of a change (another message id) returns the stored change with duplicate = true and writes nothing", async () => {
      await two();
      const edit = change(200n, "e1", 1n, { text: "once" });
      await s.writer.write(edit, members);
      const del = change(201n, "d1", 2n, { deleted: true });
      await s.writer.write(del, members);
      const before = await heads();

      const editAgain = await s.writer.write({ ...edit, messageId: 300n, sentAtMs: 9_999 }, members);
      assert.deepStrictEqual(editAgain, { message: { ...edit, seq: 0n }, duplicate: true, entries: [] });
      // The target is deleted by now, and a resend of its delete is still a duplicate, not refused.
      const delAgain = await s.writer.write({ ...del, messageId: 301n }, members);
      assert.deepStrictEqual(delAgain, { message: { ...del, seq: 0n }, duplicate: true, entries: [] });

      assert.deepStrictEqual(await heads(), before);
      assert.equal(changeRows(), 2);
      assert.equal((await s.messages.get(7n, 1n))?.editedAtMs, edit.sentAtMs);
    });

    it("a change that does not apply is refused with not_found and writes nothing; the turn's other writes commit", async () => {
      const [a] = await two();
      await s.writer.write(change(200n, "e1", 2n, { text: "b, edited" }), members);
      await s.writer.write(change(201n, "d1", 1n, { deleted: true }), members);
      const before = await heads();
      const log = await s.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 });
      const notFound = (e: unknown) => isChatError(e, "not_found");

      const refused = [
        s.writer.write(change(300n, "x1", 3n), members), // no such seq
        s.writer.write(change(301n, "x2", 1n, { channelId: 8n }), members), // no such channel
        s.writer.write(change(302n, "x3", 1n, { text: "back from the dead" }), members), // deleted
        s.writer.write(change(303n, "x4", 1n, { deleted: true }), members), // deleted already
        s.writer.write(change(199n, "x5", 2n, { text: "older than the stored edit" }), members),
      ];
      const fine = s.writer.write(send(102n, "c", 9n), members);
      for (const r of refused) await assert.rejects(r, notFound);
      assert.equal((await fine).entries.length, 3);

      assert.deepStrictEqual(await heads(), before.map((h) => h + 1n));
      assert.deepStrictEqual(await s.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 }), log);
      assert.equal(changeRows(), 2);
      assert.equal(log[0]?.messageId, a?.messageId);
      // Nothing of a refused change was kept: its client_msg_id is free for a change that applies.
      assert.equal((await s.writer.write(change(304n, "x5", 2n, { text: "newest" }), members)).duplicate, false);
    });

    it("a change that fails after its target was amended leaves the target as it was", async () => {
      await two();
      await s.writer.write(change(200n, "e1", 2n), members);
      const before = await heads();
      // Message id 200 is taken by e1: the log's amend runs, then message_changes refuses the id.
      await assert.rejects(s.writer.write(change(200n, "e2", 1n, { deleted: true }), members), (e: unknown) => isChatError(e, "already_exists"));
      assert.deepStrictEqual(await s.messages.get(7n, 1n), { ...send(100n, "a"), seq: 1n });
      assert.deepStrictEqual(await texts(1n), ["text a", "text b", "edit e1"]);
      assert.deepStrictEqual(await heads(), before);
    });

    it("a change written in the turn of the message it targets applies after it", async () => {
      const [m, e] = await Promise.all([
        s.writer.write(send(100n, "a"), members),
        s.writer.write(change(200n, "e1", 1n, { text: "at once" }), members),
      ]);
      assert.equal(m.message.seq, 1n);
      assert.deepStrictEqual(e.entries.map((x) => x.entry.inboxSeq), [2n, 2n, 2n]);
      assert.equal((await s.messages.get(7n, 1n))?.text, "at once");
    });
  });

  it("leaves no byte of a text deleted for everyone in the file, a short one or one on overflow pages", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chat-secure-delete-"));
    const file = (s0: string) => readFileSync(join(dir, "chat.db")).toString("latin1").includes(s0);
    const disk = openSqliteStorage(join(dir, "chat.db"));
    try {
      await disk.writer.write({ ...send(100n, "a"), text: "SHORT-SECRET-x" }, [1n, 2n]);
      await disk.writer.write({ ...send(101n, "b"), text: `LONG-SECRET-${"q".repeat(8_000)}` }, [1n, 2n]);
      await disk.writer.write(change(200n, "d1", 1n, { deleted: true }), [1n, 2n]);
      await disk.writer.write(change(201n, "d2", 2n, { deleted: true }), [1n, 2n]);
      disk.db.pragma("wal_checkpoint(TRUNCATE)");
      assert.equal(file("SHORT-SECRET-"), false);
      assert.equal(file("LONG-SECRET-"), false);
    } finally {
      await disk.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
