import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "../../../test/support/wait.js";
import { openSqliteStorage, type SqliteStorage } from "./index.js";

describe("WalCheckpointer", () => {
  let dir: string;
  let storage: SqliteStorage | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "chatd-wal-"));
  });
  afterEach(async () => {
    await storage?.close();
    storage = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("copies committed pages into the database file while the writer never checkpoints", async () => {
    const path = join(dir, "chat.db");
    storage = openSqliteStorage(path);
    const { db } = storage;
    const before = statSync(path).size;
    // About 1.5 MB: far below the writer's own checkpoint at 10,000 pages (40 MB),
    // so only the worker can have put these pages into the main file.
    db.exec("CREATE TABLE filler (b BLOB)");
    const insert = db.prepare("INSERT INTO filler VALUES (randomblob(3000))");
    db.transaction(() => {
      for (let i = 0; i < 500; i++) insert.run();
    })();
    assert.ok(statSync(`${path}-wal`).size > 1_400_000, "the commit went to the WAL");
    await waitFor(() => statSync(path).size >= before + 1_400_000, "the main file to hold the committed pages", 10_000);
  });

  it("closing the storage ends the worker thread, and resolves once the WAL file is gone (a process may exit right after)", async () => {
    const path = join(dir, "chat.db");
    storage = openSqliteStorage(path);
    storage.db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    assert.ok(existsSync(`${path}-wal`));
    const checkpointer = storage.checkpointer!;
    const closing = storage.close();
    storage = undefined;
    await closing;
    assert.equal(existsSync(`${path}-wal`), false, "the WAL file left behind");
    await checkpointer.exited();
  });

  it("a process with nothing else to do still waits for close() to finish (no exit code 13, no WAL file left)", () => {
    const path = join(dir, "chat.db");
    const script = `
      import { existsSync } from "node:fs";
      import { openSqliteStorage } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, "index.ts")).href)};
      const storage = openSqliteStorage(${JSON.stringify(path)});
      storage.db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
      await storage.close();
      console.log(existsSync(${JSON.stringify(`${path}-wal`)}) ? "wal left" : "closed");`;
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
    assert.equal(child.status, 0, `exit code ${child.status}: ${child.stderr}`);
    assert.equal(child.stdout.trim(), "closed");
    assert.equal(existsSync(`${path}-wal`), false);
  });

  it("is not started for an in-memory database", () => {
    storage = openSqliteStorage(":memory:");
    assert.equal(storage.checkpointer, undefined);
  });
});
