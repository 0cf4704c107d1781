import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  accountStoreContract,
  channelStoreContract,
  inboxContract,
  messageLogContract,
  type MakeStore,
} from "../contract/index.js";
import Database from "better-sqlite3";
import { MAX_INT64, MIGRATIONS, SCHEMA_VERSION } from "./database.js";
import {
  openDatabase,
  openSqliteStorage,
  SqliteAccountStore,
  SqliteChannelStore,
  SqliteInbox,
  SqliteMessageLog,
  type SqliteDatabase,
} from "./index.js";

/** A fresh database file in its own temp dir, removed (with -wal/-shm) on close. */
function tempStore<S>(make: (db: SqliteDatabase) => S): MakeStore<S> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "chatd-sqlite-"));
    const db = openDatabase(join(dir, "chat.db"));
    return {
      store: make(db),
      close: async () => {
        db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

describe("sqlite storage", () => {
  accountStoreContract(tempStore((db) => new SqliteAccountStore(db)));
  channelStoreContract(tempStore((db) => {
    const log = new SqliteMessageLog(db);
    return { channels: new SqliteChannelStore(db, log), log };
  }));
  messageLogContract(tempStore((db) => new SqliteMessageLog(db)));
  inboxContract(tempStore((db) => new SqliteInbox(db)));

  describe("engine specifics", () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "chatd-sqlite-"))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it("opens in WAL mode with NORMAL sync by default, FULL on request", () => {
      const path = join(dir, "chat.db");
      const db = openDatabase(path);
      assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
      assert.equal(db.pragma("synchronous", { simple: true }), 1n);
      assert.equal(db.pragma("foreign_keys", { simple: true }), 1n);
      assert.equal(db.pragma("user_version", { simple: true }), BigInt(SCHEMA_VERSION));
      db.close();
      const full = openDatabase(path, { synchronous: "full" });
      assert.equal(full.pragma("synchronous", { simple: true }), 2n);
      full.close();
    });

    it("accepts :memory:", async () => {
      const s = openSqliteStorage(":memory:");
      await s.inbox.advanceCursor(1n, 2n, 3n);
      assert.equal(await s.inbox.getCursor(1n, 2n), 3n);
      s.close();
    });

    it("refuses a database from a newer build", () => {
      const path = join(dir, "chat.db");
      const db = openDatabase(path);
      db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      db.close();
      assert.throws(() => openDatabase(path), /newer than this build/);
    });

    it("keeps everything across close and reopen", async () => {
      const path = join(dir, "chat.db");
      const user = { userId: 11n, username: "Persist", displayName: "P", passwordHash: "h", createdAtMs: 5 };
      const channel = { channelId: 21n, kind: "group" as const, title: "t", createdAtMs: 6, createdBy: 11n };
      const member = { channelId: 21n, userId: 11n, role: "owner" as const, joinedAtMs: 6, readSeq: 0n };
      const m = {
        messageId: 31n, channelId: 21n, senderUserId: 11n, senderDeviceId: 41n,
        clientMsgId: "c1", text: "still here 😀", sentAtMs: 7,
      };

      let s = openSqliteStorage(path);
      await s.accounts.createUser(user);
      await s.channels.createGroup(channel, [member]);
      const stored = (await s.messages.append(m)).message;
      await s.inbox.append(11n, stored);
      await s.inbox.advanceCursor(11n, 41n, 1n);
      s.close();

      s = openSqliteStorage(path);
      assert.deepStrictEqual(await s.accounts.findUserByUsername("persist"), user);
      assert.deepStrictEqual(await s.channels.listMembers(21n), [member]);
      assert.deepStrictEqual(await s.messages.page(21n, { anchorSeq: 0n, direction: "backward", limit: 5 }), [stored]);
      assert.equal((await s.messages.append({ ...m, messageId: 32n, clientMsgId: "c2" })).message.seq, 2n);
      assert.deepStrictEqual(await s.inbox.readAfter(11n, 0n, 5), [{ inboxSeq: 1n, message: stored }]);
      assert.equal(await s.inbox.getCursor(11n, 41n), 1n);
      s.close();
    });

    it("upgrades a version 16 database: a token marked used before then reads as reused with no time or successor", async () => {
      const path = join(dir, "chat.db");
      const v16 = new Database(path);
      v16.exec(MIGRATIONS.slice(0, 16).join(""));
      v16.pragma("user_version = 16");
      v16.prepare("INSERT INTO used_refresh_tokens (token_hash, user_id, device_id, expires_at_ms) VALUES ('old', 7, 8, ?)")
        .run(2 ** 52);
      v16.close();

      const s = openSqliteStorage(path);
      const taken = await s.accounts.takeRefreshToken("old", { atMs: 1, successorHash: "next" });
      assert.deepStrictEqual(taken, { record: { userId: 7n, deviceId: 8n, expiresAtMs: 2 ** 52 }, reused: true });
      s.close();
    });

    it("upgrades a version 24 database: a deletion recorded before then lists none to tell, and a new attempt's are added to it", async () => {
      const path = join(dir, "chat.db");
      const v24 = new Database(path);
      v24.exec(MIGRATIONS.slice(0, 24).join(""));
      v24.pragma("user_version = 24");
      v24.prepare("INSERT INTO pending_deletions (user_id, device_id, at_ms) VALUES (7, 8, 1000)").run();
      v24.close();

      const s = openSqliteStorage(path);
      assert.deepStrictEqual(await s.accounts.listPendingDeletions(2000, 10), [{ userId: 7n, deviceId: 8n, atMs: 1000 }]);
      assert.deepStrictEqual(await s.accounts.putPendingDeletion({ userId: 7n, deviceId: 9n, atMs: 1500, tellOffline: [12n, 11n] }), [11n, 12n]);
      assert.deepStrictEqual(await s.accounts.listPendingDeletions(2000, 10), [{ userId: 7n, deviceId: 9n, atMs: 1500, tellOffline: [11n, 12n] }]);
      s.close();
    });

    it("upgrades a version 2 database: logs and inboxes go on from their newest rows, one page of dedup index per message", async () => {
      const path = join(dir, "chat.db");
      const v2 = new Database(path);
      v2.exec(MIGRATIONS[0]! + MIGRATIONS[1]!);
      v2.pragma("user_version = 2");
      const cols = "message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
      for (const seq of [1, 2]) {
        v2.prepare(`INSERT INTO messages (${cols}) VALUES (?, 5, ?, 7, 8, ?, 'old', 1)`).run(100 + seq, seq, `c${seq}`);
        v2.prepare(`INSERT INTO inbox (user_id, inbox_seq, ${cols}) VALUES (7, ?, ?, 5, ?, 7, 8, ?, 'old', 1)`)
          .run(seq, 100 + seq, seq, `c${seq}`);
      }
      v2.exec("INSERT INTO channel_seqs VALUES (5, 2); INSERT INTO inbox_heads VALUES (7, 2);");
      v2.close();

      const s = openSqliteStorage(path);
      const m = { messageId: 103n, channelId: 5n, senderUserId: 7n, senderDeviceId: 8n, clientMsgId: "c3", text: "new", sentAtMs: 2 };
      const stored = (await s.messages.append(m)).message;
      assert.equal(stored.seq, 3n);
      assert.equal((await s.inbox.append(7n, stored)).entry.inboxSeq, 3n);
      assert.equal(await s.inbox.head(7n), 3n);
      const again = await s.inbox.append(7n, { ...stored, messageId: 101n, seq: 1n, clientMsgId: "c1", text: "old" });
      assert.deepStrictEqual([again.duplicate, again.entry.inboxSeq], [true, 1n]);
      assert.deepStrictEqual((await s.inbox.readAfter(7n, 0n, 10)).map((e) => e.message.text), ["old", "old", "new"]);
      s.close();

      const db = new Database(path, { readonly: true });
      const indexColumns = (db.pragma("index_info(inbox_by_message)") as { name: string }[]).map((c) => c.name);
      assert.deepStrictEqual(indexColumns, ["message_id", "user_id"]);
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
      assert.ok(!tables.includes("inbox_heads") && !tables.includes("channel_seqs"), tables.join());
      db.close();
    });

    it("round-trips 64-bit ids above 2^53 exactly", async () => {
      const s = openSqliteStorage(join(dir, "chat.db"));
      const big = [2n ** 53n + 1n, 2n ** 62n + 12345n, MAX_INT64];
      const [u, c, d] = big;
      await s.accounts.createUser({ userId: u!, username: "big", displayName: "B", passwordHash: "h", createdAtMs: 1 });
      assert.equal((await s.accounts.findUserByUsername("big"))?.userId, u);
      await s.accounts.createDevice({
        userId: u!, deviceId: d!, name: "n", platform: "cli", createdAtMs: 1, lastSeenAtMs: 1, revoked: false,
      });
      assert.equal((await s.accounts.listDevices(u!))[0]?.deviceId, d);
      await s.accounts.addFriendship(u!, d!, 1);
      assert.deepStrictEqual(await s.accounts.listFriends(u!), [d]);

      const direct = await s.channels.getOrCreateDirect(
        { channelId: c!, kind: "direct", title: "", createdAtMs: 1, createdBy: u! }, u!, d!);
      assert.equal(direct.channelId, c);
      assert.deepStrictEqual((await s.channels.listMemberships(d!)).map((r) => r.channelId), [c]);

      const m = { messageId: d!, channelId: c!, senderUserId: u!, senderDeviceId: d!, clientMsgId: "x", text: "t", sentAtMs: 1 };
      const stored = (await s.messages.append(m)).message;
      assert.deepStrictEqual(stored, { ...m, seq: 1n });
      assert.deepStrictEqual((await s.messages.latest([c!])).get(c!), stored);
      await s.inbox.append(u!, stored);
      assert.deepStrictEqual((await s.inbox.readAfter(u!, 0n, 1))[0]?.message, stored);
      await s.inbox.advanceCursor(u!, d!, MAX_INT64 - 1n);
      assert.equal(await s.inbox.getCursor(u!, d!), MAX_INT64 - 1n);
      s.close();
    });

    it("maps a clash of message ids to already_exists and leaves no seq gap", async () => {
      const s = openSqliteStorage(":memory:");
      const m = { messageId: 1n, channelId: 2n, senderUserId: 3n, senderDeviceId: 4n, clientMsgId: "a", text: "t", sentAtMs: 1 };
      await s.messages.append(m);
      await assert.rejects(s.messages.append({ ...m, clientMsgId: "b" }), { code: "already_exists" });
      assert.equal((await s.messages.append({ ...m, messageId: 5n, clientMsgId: "c" })).message.seq, 2n);
      s.close();
    });
  });
});
