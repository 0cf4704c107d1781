import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { restoreDataDir } from "./restore.js";
import { lockDataDir } from "./data-dir.js";
import { openDatabase, SCHEMA_VERSION } from "./database.js";

// A restore refused into a data directory that did not exist (a mistyped CHAT_DATA_DIR, a first
// restore onto a new host) must not leave an empty one behind, which a chatd would start on as new.
describe("restore: refused into a data directory it made", () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chatd restore refused "))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  const backupOf = (version: number) => {
    const dir = join(base, "the backup");
    mkdirSync(dir);
    const db = openDatabase(join(dir, "chat.db"));
    db.pragma(`user_version = ${version}`);
    db.close();
    return dir;
  };

  it("leaves no directory, nor the parents it made, when the backup is from a newer build", () => {
    const backup = backupOf(SCHEMA_VERSION + 1);
    assert.throws(() => restoreDataDir(backup, join(base, "new", "parents", "data")), /newer than this build's/);
    assert.deepEqual(readdirSync(base), ["the backup"]);
  });

  it("leaves no directory when the backup is damaged", () => {
    const backup = join(base, "the backup");
    mkdirSync(backup);
    writeFileSync(join(backup, "chat.db"), "not a database, a truncated copy of one");
    assert.throws(() => restoreDataDir(backup, join(base, "data")));
    assert.deepEqual(readdirSync(base), ["the backup"]);
  });

  it("leaves no directory when the lock is refused after making it (chatd running)", () => {
    const backup = backupOf(SCHEMA_VERSION);
    const refused = (dir: string) => {
      lockDataDir(dir).release();
      throw new Error("in use by another chatd");
    };
    assert.throws(() => restoreDataDir(backup, join(base, "data"), undefined, refused), /in use/);
    assert.deepEqual(readdirSync(base), ["the backup"]);
  });

  it("keeps a directory that was there, empty or not, and one a restore filled", () => {
    const backup = backupOf(SCHEMA_VERSION + 1);
    mkdirSync(join(base, "empty"));
    assert.throws(() => restoreDataDir(backup, join(base, "empty")), /newer than this build's/);
    assert.deepEqual(readdirSync(join(base, "empty")), []);
    mkdirSync(join(base, "held"));
    assert.throws(() => restoreDataDir(backup, join(base, "held", "data")), /newer than this build's/);
    assert.deepEqual(readdirSync(join(base, "held")), [], "only what it made is removed");

    const good = join(base, "good backup");
    mkdirSync(good);
    openDatabase(join(good, "chat.db")).close();
    restoreDataDir(good, join(base, "made", "data"));
    assert.ok(existsSync(join(base, "made", "data", "chat.db")));
  });
});
