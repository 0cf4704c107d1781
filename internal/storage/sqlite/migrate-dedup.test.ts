import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { MIGRATIONS, SCHEMA_VERSION } from "./database.js";
import { openSqliteStorage } from "./index.js";

// Schema 4 moved the messages' dedup key from (channel, sender, client_msg_id)
// to (channel, sender, device, client_msg_id): client_msg_id is unique per
// sending device (session.proto), so two devices of one user may both send "1".
describe("sqlite upgrade to per-device dedup (schema 4)", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "chatd-sqlite-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const cols = "message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
  const PHONE = 8n;
  const WEB = 9n;

  /** A database as a build of schema 3 left it: two messages of user 7's phone in channel 5, and their inbox copies. */
  function versionThree(path: string): void {
    const v3 = new Database(path);
    v3.exec(MIGRATIONS.slice(0, 3).join(""));
    v3.pragma("user_version = 3");
    for (const seq of [1, 2]) {
      v3.prepare(`INSERT INTO messages (${cols}) VALUES (?, 5, ?, 7, ?, ?, ?, 1)`).run(100 + seq, seq, PHONE, `${seq}`, `old ${seq}`);
      v3.prepare(`INSERT INTO inbox (user_id, inbox_seq, ${cols}) VALUES (7, ?, ?, 5, ?, 7, ?, ?, ?, 1)`)
        .run(seq, 100 + seq, seq, PHONE, `${seq}`, `old ${seq}`);
    }
    v3.close();
  }

  it("keeps every row and the phone's dedup; the web's same client_msg_id is a new message", async () => {
    const path = join(dir, "chat.db");
    versionThree(path);

    const s = openSqliteStorage(path);
    try {
      assert.equal(s.db.pragma("user_version", { simple: true }), BigInt(SCHEMA_VERSION));
      const old = await s.messages.page(5n, { anchorSeq: 0n, direction: "forward", limit: 10 });
      assert.deepStrictEqual(old.map((m) => [m.messageId, m.seq, m.senderDeviceId, m.clientMsgId, m.text]), [
        [101n, 1n, PHONE, "1", "old 1"],
        [102n, 2n, PHONE, "2", "old 2"],
      ]);
      assert.deepStrictEqual((await s.inbox.readAfter(7n, 0n, 10)).map((e) => e.message.messageId), [101n, 102n]);

      // The phone's resend of a message stored before the upgrade is still caught.
      const phone = { messageId: 103n, channelId: 5n, senderUserId: 7n, senderDeviceId: PHONE, clientMsgId: "1", text: "again", sentAtMs: 2 };
      assert.deepStrictEqual(await s.messages.append(phone), { message: old[0], duplicate: true });
      assert.deepStrictEqual(await s.messages.findByClientMsgId(5n, 7n, PHONE, "1"), old[0]);

      // The web client's "1" (through the writer, as chatd stores a send) is its own message.
      const web = { ...phone, messageId: 104n, senderDeviceId: WEB, text: "from the web" };
      const written = await s.writer.write(web, [7n]);
      assert.deepStrictEqual([written.duplicate, written.message.seq], [false, 3n]);
      assert.equal((await s.writer.write({ ...web, messageId: 105n }, [7n])).duplicate, true);
      assert.deepStrictEqual(await s.messages.findByClientMsgId(5n, 7n, WEB, "1"), { ...web, seq: 3n });
      assert.deepStrictEqual((await s.inbox.readAfter(7n, 0n, 10)).map((e) => e.message.text), ["old 1", "old 2", "from the web"]);
    } finally {
      s.close();
    }

    const db = new Database(path, { readonly: true });
    try {
      const uniques = (db.pragma("index_list(messages)") as { name: string; unique: number }[])
        .filter((i) => i.unique)
        .map((i) => (db.pragma(`index_info(${i.name})`) as { name: string }[]).map((c) => c.name));
      assert.deepStrictEqual(uniques.sort(), [
        ["channel_id", "sender_user_id", "sender_device_id", "client_msg_id"],
        ["channel_id", "seq"],
      ]);
      assert.deepStrictEqual(db.pragma("integrity_check"), [{ integrity_check: "ok" }]);
      assert.deepStrictEqual(db.pragma("foreign_key_check"), []);
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
      assert.ok(tables.includes("messages") && !tables.some((t) => t.startsWith("messages_")), tables.join());
    } finally {
      db.close();
    }
  });
});
