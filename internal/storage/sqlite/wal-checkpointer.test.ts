import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "../../../test/support/wait.js";
import { pino } from "pino";
import { Registry } from "prom-client";
import { metricIn } from "../../../test/support/metrics.js";
import { openDatabase, openSqliteStorage, type SqliteStorage } from "./index.js";
import { WalCheckpointer, walCheckpointMetrics, WRITER_AUTOCHECKPOINT_PAGES, type CheckpointFailure } from "./wal-checkpointer.js";

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

  describe("when checkpoints fail", () => {
    let checkpointer: WalCheckpointer | undefined;
    let causes: CheckpointFailure[];
    let lines: { level: number; msg: string; cause?: string }[];
    let registry: Registry;

    beforeEach(() => {
      causes = [];
      lines = [];
      registry = new Registry();
    });
    afterEach(async () => {
      checkpointer?.stop();
      await checkpointer?.exited();
      checkpointer = undefined;
    });

    function start(path: string): WalCheckpointer {
      const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
      const metrics = walCheckpointMetrics(registry);
      checkpointer = new WalCheckpointer(path, {
        logger,
        onFailure: (cause) => (causes.push(cause), metrics.onFailure(cause)),
        restartBaseMs: 10,
        restartMaxMs: 40,
      });
      return checkpointer;
    }
    const failed = async (cause: CheckpointFailure) => metricIn(await registry.metrics(), "chat_sqlite_checkpoints_failed_total", `cause="${cause}"`);

    it("starts a worker that died (its file would not open) again with backoff, counting each death and logging the streak once, until it checkpoints", async () => {
      // A dead worker was silent, and never came back: the writer's backstop then copied
      // 10,000 pages at a time itself, inside a COMMIT on the main thread.
      const path = join(dir, "later.db");
      start(path);
      assert.equal(await failed("worker_exit"), 0, "counted from 0");
      await waitFor(() => causes.length >= 3, "three deaths, each started again", 10_000);
      assert.ok(causes.every((c) => c === "worker_exit"), causes.join());
      assert.ok((await failed("worker_exit"))! >= 3);
      const told = lines.filter((l) => l.level >= 40);
      assert.equal(told.length, 1, JSON.stringify(lines));
      assert.equal(told[0]!.level, 50, "an error");
      assert.equal(told[0]!.cause, "worker_exit");

      const db = openDatabase(path);
      try {
        db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
        const before = statSync(path).size;
        db.exec("CREATE TABLE filler (b BLOB)");
        const insert = db.prepare("INSERT INTO filler VALUES (randomblob(3000))");
        db.transaction(() => {
          for (let i = 0; i < 500; i++) insert.run();
        })();
        // Below the writer's own checkpoint: only a worker started again copies them.
        await waitFor(() => statSync(path).size >= before + 1_400_000, "the main file to hold the committed pages", 10_000);
        await waitFor(() => lines.some((l) => l.msg === "WAL checkpoints going through again"), "the streak's end told");
        assert.equal(lines.filter((l) => l.level >= 40).length, 1, "no line per death");
      } finally {
        db.close();
      }
    });

    it("counts each checkpoint that fails and logs the streak once, and tells when they go through again", async () => {
      const path = join(dir, "chat.db");
      const good = join(dir, "good.db");
      openDatabase(good).close();
      // Not a database: the worker's connection opens, each checkpoint fails (SQLITE_NOTADB).
      writeFileSync(path, Buffer.alloc(8192, 0x41));
      start(path);
      await waitFor(() => causes.length >= 3, "three failed checkpoints", 10_000);
      assert.ok(causes.every((c) => c === "error"), causes.join());
      assert.equal(await failed("worker_exit"), 0, "the worker lives on");
      const told = lines.filter((l) => l.level >= 40);
      assert.equal(told.length, 1, JSON.stringify(lines));
      assert.equal(told[0]!.level, 40, "a warning");
      assert.equal(told[0]!.cause, "error");

      copyFileSync(good, path);
      await waitFor(() => lines.some((l) => l.msg === "WAL checkpoints going through again"), "the streak's end told", 10_000);
      assert.ok((await failed("error"))! >= 3);
    });
  });

  it("is not started for an in-memory database", () => {
    storage = openSqliteStorage(":memory:");
    assert.equal(storage.checkpointer, undefined);
  });
});
