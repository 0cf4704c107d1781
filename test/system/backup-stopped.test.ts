import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openDatabase } from "../../internal/storage/sqlite/database.js";
import { backupDataDir } from "../../internal/storage/sqlite/backup.js";

/** Names and modification times: what a backup must leave as it found it. */
function listing(dir: string): Record<string, bigint> {
  return Object.fromEntries(readdirSync(dir).map((n) => [n, statSync(join(dir, n), { bigint: true }).mtimeNs]));
}

describe("npm run backup of a stopped chatd's data directory", () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chatd-backup-stopped-"))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("leaves the directory as it was (no chat.db-wal or -shm made beside the database) and copies all of it", () => {
    const data = join(base, "data");
    mkdirSync(data);
    // As chatd leaves its databases on a clean stop: WAL mode, no -wal or -shm file.
    for (const name of ["chat.db", "queue.db"]) {
      const db = openDatabase(join(data, name));
      const insert = db.prepare("INSERT INTO users (user_id, username, username_lower, display_name, password_hash, created_at_ms) VALUES (?, ?, ?, 'U', 'hash', 0)");
      db.transaction(() => {
        for (let i = 1; i <= 500; i++) insert.run(BigInt(i), `u${i}`, `u${i}`);
      })();
      db.close();
    }
    const before = listing(data);
    assert.deepEqual(Object.keys(before).sort(), ["chat.db", "queue.db"]);

    const report = backupDataDir(data, join(base, "copy"));
    assert.deepEqual(listing(data), before, "the data directory as it was");
    assert.deepEqual(report.databases.map((d) => d.name), ["queue.db", "chat.db"], "the queue first: what moves between them goes into chat.db");
    assert.deepEqual(readdirSync(join(base, "copy")).sort(), ["chat.db", "queue.db"], "the copy needs no -wal or -shm either");
    for (const name of ["chat.db", "queue.db"]) {
      assert.equal((statSync(join(base, "copy", name)).mode & 0o777).toString(8), "600");
      const copy = new Database(join(base, "copy", name), { readonly: true, fileMustExist: true });
      try {
        assert.equal(copy.pragma("journal_mode", { simple: true }), "delete");
        assert.deepEqual(copy.prepare("SELECT count(*) AS n, max(user_id) AS hi FROM users").get(), { n: 500, hi: 500 });
      } finally {
        copy.close();
      }
    }
    assert.deepEqual(readdirSync(join(base, "copy")).sort(), ["chat.db", "queue.db"]);
  });
});
