import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, lstatSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import Database from "better-sqlite3";
import { backupDataDir } from "./backup.js";
import { openDatabase } from "./database.js";

describe("backupDataDir", () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chat-backup-unit-"))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("copies what a symlink in the data directory points at, so the backup outlives the original", () => {
    const data = join(base, "data");
    mkdirSync(data);
    openDatabase(join(data, "chat.db")).close();
    const secrets = join(base, "secrets");
    mkdirSync(join(secrets, "keys"), { recursive: true });
    writeFileSync(join(secrets, "vapid.json"), '{"publicKey":"p"}');
    writeFileSync(join(secrets, "keys", "ed25519.pem"), "key");
    symlinkSync(join(secrets, "vapid.json"), join(data, "vapid.json"));
    symlinkSync(join(secrets, "keys"), join(data, "keys"));

    const report = backupDataDir(data, join(base, "copy"));
    rmSync(secrets, { recursive: true });
    assert.deepEqual(report.files, ["keys", "vapid.json"]);
    assert.equal(lstatSync(join(base, "copy", "vapid.json")).isSymbolicLink(), false);
    assert.equal(readFileSync(join(base, "copy", "vapid.json"), "utf8"), '{"publicKey":"p"}');
    assert.equal(readFileSync(join(base, "copy", "keys", "ed25519.pem"), "utf8"), "key");
  });

  it("snapshots queue.db before chat.db: a record chatd moves from the queue to chat.db meanwhile is in one of them", () => {
    // As chatd finishes the sends an older build acked into queue.db (cmd/chatd/old-pipeline.ts):
    // stored in chat.db, then trimmed from the queue, while the backup runs.
    const data = join(base, "data");
    mkdirSync(data);
    const chat = new Database(join(data, "chat.db"));
    const queue = new Database(join(data, "queue.db"));
    try {
      for (const db of [chat, queue]) db.pragma("journal_mode = WAL");
      chat.exec("CREATE TABLE messages (text TEXT)");
      queue.exec("CREATE TABLE records (text TEXT)");
      queue.prepare("INSERT INTO records VALUES (?)").run("acked");
      const order: string[] = [];
      backupDataDir(data, join(base, "copy"), Date.now, () => {}, (name) => {
        order.push(name);
        if (order.length > 1) return;
        chat.prepare("INSERT INTO messages VALUES (?)").run("acked");
        queue.prepare("DELETE FROM records").run();
      });
      const kept = (name: string, table: string) => {
        const db = new Database(join(base, "copy", name), { readonly: true });
        try {
          return (db.prepare(`SELECT text FROM ${table}`).all() as { text: string }[]).map((r) => r.text);
        } finally {
          db.close();
        }
      };
      // In both is fine: stored again, a record is dropped as a repeat.
      assert.ok([...kept("chat.db", "messages"), ...kept("queue.db", "records")].includes("acked"), `lost, copied in the order ${order.join(", ")}`);
    } finally {
      chat.close();
      queue.close();
    }
  });

  it("fails, leaving nothing, when a restore swapped the data directory's content while it copied", () => {
    const data = join(base, "data");
    mkdirSync(data);
    openDatabase(join(data, "chat.db")).close();
    openDatabase(join(data, "queue.db")).close();
    writeFileSync(join(data, "vapid.json"), "old");
    const restored = join(base, "restored");
    mkdirSync(restored);
    openDatabase(join(restored, "chat.db")).close();
    writeFileSync(join(restored, "vapid.json"), "new");
    const target = join(base, "copy");
    assert.throws(
      () =>
        backupDataDir(data, target, Date.now, () => {}, (name) => {
          if (name !== "queue.db") return;
          // What `--restore` does (restore.ts): the content out, the backup's in.
          mkdirSync(join(base, "before"));
          for (const entry of ["chat.db", "queue.db", "vapid.json"]) renameSync(join(data, entry), join(base, "before", entry));
          for (const entry of ["chat.db", "vapid.json"]) renameSync(join(restored, entry), join(data, entry));
        }),
      /data was restored into while it was copied: run the backup again/,
    );
    assert.deepEqual(readdirSync(base).sort(), ["before", "data", "restored"], "no copy, finished or half-made");
  });

  it("says it cannot read a data directory it cannot, not that chat.db is missing", function () {
    // A symlink to itself fails as a directory this user may not read does, also for root.
    const looping = join(base, "data");
    symlinkSync(looping, looping);
    assert.throws(() => backupDataDir(looping, join(base, "copy")), { message: `cannot read ${looping} (ELOOP)` });
    if (process.getuid?.() === 0) return; // root reads any directory
    const locked = join(base, "locked");
    mkdirSync(locked, { mode: 0o700 });
    openDatabase(join(locked, "chat.db")).close();
    chmodSync(locked, 0o000);
    assert.throws(() => backupDataDir(locked, join(base, "copy2")), /^Error: cannot read .*locked \(EACCES\): back up as chatd's user/);
    chmodSync(locked, 0o700);
  });

  it("refuses a target inside the data directory", () => {
    const data = join(base, "data");
    mkdirSync(data);
    openDatabase(join(data, "chat.db")).close();
    assert.throws(() => backupDataDir(data, join(data, "copy")), /cannot go inside the data directory/);
  });

  it("flushes every copied file and folder to the disk before the rename, and the parent after", () => {
    const data = join(base, "data");
    mkdirSync(join(data, "keys"), { recursive: true });
    openDatabase(join(data, "chat.db")).close();
    writeFileSync(join(data, "keys", "ed25519.pem"), "key");
    const target = join(base, "copy");
    const synced: { path: string; renamed: boolean }[] = [];
    backupDataDir(data, target, Date.now, (path) => synced.push({ path, renamed: existsSync(target) }));
    const beforeRename = synced.filter((s) => !s.renamed).map((s) => relative(base, s.path).replace(/^\.copy\.partial-\d+/, "partial"));
    assert.deepEqual(beforeRename.sort(), ["partial", "partial/chat.db", "partial/keys", "partial/keys/ed25519.pem"]);
    assert.deepEqual(synced.filter((s) => s.renamed).map((s) => s.path), [base], "the parent, which holds the new name");
  });
});
