import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { MIGRATIONS, SCHEMA_VERSION } from "./database.js";
import { openSqliteStorage } from "./index.js";

// Schema 9 added edits and deletes: columns on messages and inbox (defaults
// for the rows already there) and the message_changes table.
describe("sqlite upgrade to edits and deletes (schema 9)", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "chatd-sqlite-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const cols = "message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
  const old = (seq: bigint) => ({
    messageId: 100n + seq, channelId: 5n, senderUserId: 7n, senderDeviceId: 8n, clientMsgId: `${seq}`, text: `old ${seq}`, sentAtMs: 1, seq,
  });

  /** A database as a build of schema 8 left it: two messages in channel 5, and their copies in the inboxes of users 7 and 9. */
  function versionEight(path: string): void {
    const v8 = new Database(path);
    v8.exec(MIGRATIONS.slice(0, 8).join(""));
    v8.pragma("user_version = 8");
    for (const seq of [1, 2]) {
      v8.prepare(`INSERT INTO messages (${cols}) VALUES (?, 5, ?, 7, 8, ?, ?, 1)`).run(100 + seq, seq, `${seq}`, `old ${seq}`);
      for (const user of [7, 9]) {
        v8.prepare(`INSERT INTO inbox (user_id, inbox_seq, ${cols}) VALUES (?, ?, ?, 5, ?, 7, 8, ?, ?, 1)`)
          .run(user, seq, 100 + seq, seq, `${seq}`, `old ${seq}`);
      }
    }
    v8.close();
  }

  it("reads old rows back as plain messages, without the new optional keys, and takes changes to them", async () => {
    const path = join(dir, "chat.db");
    versionEight(path);

    const s = openSqliteStorage(path);
    try {
      assert.equal(s.db.pragma("user_version", { simple: true }), BigInt(SCHEMA_VERSION));
      // deepStrictEqual: a key set to undefined (editedAtMs, deleted, targetSeq) would fail.
      assert.deepStrictEqual(await s.messages.page(5n, { anchorSeq: 0n, direction: "forward", limit: 10 }), [old(1n), old(2n)]);
      assert.deepStrictEqual(await s.messages.get(5n, 1n), old(1n));
      assert.deepStrictEqual((await s.messages.latest([5n])).get(5n), old(2n));
      assert.deepStrictEqual(await s.messages.findByClientMsgId(5n, 7n, 8n, "2"), old(2n));
      assert.deepStrictEqual(await s.inbox.readAfter(7n, 0n, 10), [
        { inboxSeq: 1n, message: old(1n) },
        { inboxSeq: 2n, message: old(2n) },
      ]);

      const edit = { ...old(1n), messageId: 200n, clientMsgId: "e", text: "edited", sentAtMs: 5, targetSeq: 1n };
      const { seq: _seq, ...del } = { ...old(2n), messageId: 201n, clientMsgId: "d", text: "", sentAtMs: 6, targetSeq: 2n, deleted: true };
      assert.equal((await s.writer.write(edit, [7n, 9n])).entries.length, 2);
      assert.equal((await s.writer.write(del, [7n, 9n])).entries.length, 2);
      assert.deepStrictEqual(await s.messages.page(5n, { anchorSeq: 0n, direction: "forward", limit: 10 }), [
        { ...old(1n), text: "edited", editedAtMs: 5 },
        { ...old(2n), text: "", deleted: true },
      ]);
      assert.deepStrictEqual((await s.inbox.readAfter(9n, 0n, 10)).map((e) => [e.inboxSeq, e.message.text, e.message.deleted, e.message.targetSeq]), [
        [1n, "old 1", undefined, undefined],
        [2n, "", true, undefined],
        [3n, "edited", undefined, 1n],
        [4n, "", true, 2n],
      ]);
      // Schema 11's reactions, on the same upgraded file; a resend of one (same key) is the same reaction.
      const { seq: _s, ...react } = { ...old(1n), messageId: 202n, senderUserId: 9n, clientMsgId: "r", text: "👍", sentAtMs: 7, targetSeq: 1n, reaction: true };
      assert.equal((await s.writer.write(react, [7n, 9n])).entries.length, 2);
      const again = await s.writer.write({ ...react, messageId: 203n }, [7n, 9n]);
      assert.deepStrictEqual([again.duplicate, again.message.messageId, again.message.reaction, again.entries.length], [true, 202n, true, 0]);
      assert.deepStrictEqual((await s.messages.get(5n, 1n))?.reactions, [{ userId: 9n, emoji: "👍" }]);
      assert.deepStrictEqual((await s.inbox.readAfter(7n, 4n, 10)).map((e) => [e.message.reaction, e.message.text, e.message.targetSeq]), [[true, "👍", 1n]]);
    } finally {
      s.close();
    }

    const db = new Database(path, { readonly: true });
    try {
      assert.deepStrictEqual(db.pragma("integrity_check"), [{ integrity_check: "ok" }]);
      const changes = db.prepare("SELECT * FROM message_changes ORDER BY change_id").all() as Record<string, unknown>[];
      assert.deepStrictEqual(changes.map((c) => [c.change_id, c.target_seq, c.deleted, c.reaction]), [[200, 1, 0, 0], [201, 2, 1, 0], [202, 1, 0, 1]]);
      assert.ok(changes.every((c) => !("text" in c)), "message_changes keeps no text");
    } finally {
      db.close();
    }
  });
});
