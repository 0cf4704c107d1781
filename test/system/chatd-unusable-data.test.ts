import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { removeDataDir, startChatd } from "../support/chatd.js";
import { SCHEMA_VERSION } from "../../internal/storage/sqlite/database.js";

// What an operator meets after a downgrade, a bad restore by hand or a damaged disk:
// the database to fix, named in one line, as a bad setting is.
describe("chatd on a data directory holding a database it cannot use", function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDataDir));

  const refused = async (dataDir: string, line: RegExp) => {
    await assert.rejects(startChatd({ dataDir }), (err: Error) => {
      assert.match(err.message, /exited with 2 before listening/);
      assert.match(err.message, line);
      assert.doesNotMatch(err.message, /\n\s+at /, "no stack trace");
      return true;
    });
    assert.ok(!existsSync(join(dataDir, "chatd.lock")), "the directory is left to the next start");
  };

  it("exits 2 naming CHAT_DATA_DIR and chat.db when it is from a newer build", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatd-newer-"));
    dirs.push(dataDir);
    const db = new Database(join(dataDir, "chat.db"));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await refused(dataDir, new RegExp(`chatd: CHAT_DATA_DIR=".*": chat\\.db: database schema version ${SCHEMA_VERSION + 1} is newer than this build \\(${SCHEMA_VERSION}\\)\\n`));
  });

  it("exits 2 naming CHAT_DATA_DIR and queue.db when it is not a database", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatd-notadb-"));
    dirs.push(dataDir);
    writeFileSync(join(dataDir, "queue.db"), "not a database ".repeat(100));
    await refused(dataDir, /chatd: CHAT_DATA_DIR=".*": queue\.db: file is not a database\n/);
  });
});
