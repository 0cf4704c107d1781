import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { restoreDataDir } from "./restore.js";
import { openDatabase, SCHEMA_VERSION } from "./database.js";

// A backup made by a newer build (before a downgrade) is one this build's chatd refuses
// to open: put in place, it would leave a data directory no chatd here starts on.
describe("restore: a backup from a newer build", () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chatd restore schema "))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  const database = (dir: string, version: number) => {
    mkdirSync(dir);
    const db = openDatabase(join(dir, "chat.db"));
    db.pragma(`user_version = ${version}`);
    db.close();
  };

  it("is refused, naming both versions, before anything moves", () => {
    const backup = join(base, "the backup");
    const dataDir = join(base, "data dir");
    database(backup, SCHEMA_VERSION + 1);
    database(dataDir, SCHEMA_VERSION);
    const held = readdirSync(dataDir).sort();

    assert.throws(
      () => restoreDataDir(backup, dataDir),
      new RegExp(`^Error: .*the backup's chat\\.db has schema version ${SCHEMA_VERSION + 1}, newer than this build's \\(${SCHEMA_VERSION}\\)`),
    );
    assert.deepEqual(readdirSync(dataDir).sort(), held, "the data directory as it was");
    assert.deepEqual(readdirSync(base).sort(), ["data dir", "the backup"], "no copy left beside it, nothing moved aside");
  });

  it("takes one of this build's or an older one", () => {
    for (const [name, version] of [["same", SCHEMA_VERSION], ["older", SCHEMA_VERSION - 1]] as const) {
      const backup = join(base, `${name} backup`);
      database(backup, version);
      const report = restoreDataDir(backup, join(base, `${name} data`));
      assert.deepEqual(report.databases, ["chat.db"]);
    }
  });
});
