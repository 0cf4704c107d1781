import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(import.meta.dirname, "../..");

/** `npm run backup -- <target>` in a process group of its own, as a terminal runs it. */
function startBackup(source: string, target: string) {
  const child = spawn("npm", ["run", "--silent", "backup", "--", target], {
    cwd: ROOT,
    env: { ...process.env, CHAT_DATA_DIR: source },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += String(d)));
  // npm ends itself by the signal its script ended by, which a shell reports as 128 + its number.
  const exited = new Promise<{ code: number | null; stderr: string }>((r) =>
    child.once("exit", (code, signal) => r({ code: signal === "SIGINT" ? 130 : code, stderr })),
  );
  return { child, exited };
}

/** Whether a process of group `pgid` is still running (not a zombie), from /proc. */
function runningInGroup(pgid: number): boolean {
  return readdirSync("/proc").some((pid) => {
    if (!/^\d+$/.test(pid)) return false;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // After "(comm)": state, ppid, pgrp, ...
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(pgrp) === pgid && state !== "Z";
    } catch {
      return false; // ended while read
    }
  });
}

describe("npm run backup, interrupted", function () {
  this.timeout(120_000);
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chatd-backup-int-"))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("on Ctrl-C stops the copy at once and leaves no half-made copy beside the target", async () => {
    const data = join(base, "data");
    mkdirSync(data);
    // Large enough that copying takes seconds (VACUUM INTO copies every page).
    const db = new Database(join(data, "chat.db"));
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (b BLOB)");
    const insert = db.prepare("INSERT INTO t VALUES (zeroblob(1048576))");
    db.transaction(() => {
      for (let i = 0; i < 700; i++) insert.run();
    })();
    db.close();
    const target = join(base, "copy");
    const { child, exited } = startBackup(data, target);
    // Wait until the copy of chat.db is being written.
    await waitFor(
      () => {
        const partial = readdirSync(base).find((n) => n.startsWith(".copy.partial-"));
        return partial !== undefined && existsSync(join(base, partial, "chat.db")) && statSync(join(base, partial, "chat.db")).size > 0;
      },
      "the copy to begin",
      60_000,
      20,
    );
    const signalled = Date.now();
    process.kill(-child.pid!, "SIGINT");
    const { code, stderr } = await exited;
    const tookMs = Date.now() - signalled;
    assert.ok(tookMs < 2_000, `stopped ${tookMs} ms after Ctrl-C`);
    assert.equal(code, 130, stderr);
    assert.match(stderr, /backup: interrupted by SIGINT; nothing was left at .*copy\n/);
    // Every process of the group is gone (the copy was killed, not left running). Zombies do not
    // count: an orphan of npm's waits for whoever reaps it, which a container's init may never do.
    await waitFor(() => !runningInGroup(child.pid!), "no process of the backup's group left running", 10_000);
    assert.deepEqual(readdirSync(base), ["data"], "neither the target nor a partial copy");
  });

  it("removes what an earlier backup to the same target left when it was killed, and keeps a running one's", async () => {
    const data = join(base, "data");
    mkdirSync(data);
    new Database(join(data, "chat.db")).close();
    // The pid of a process that has ended.
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
    const abandoned = join(base, `.copy.partial-${gone}`);
    mkdirSync(abandoned);
    writeFileSync(join(abandoned, "chat.db"), "password hashes");
    const running = join(base, `.copy.partial-${process.pid}`);
    mkdirSync(running);
    const { exited } = startBackup(data, join(base, "copy"));
    const { code, stderr } = await exited;
    assert.equal(code, 0, stderr);
    assert.deepEqual(readdirSync(base).sort(), [".copy.partial-" + process.pid, "copy", "data"]);
  });
});
