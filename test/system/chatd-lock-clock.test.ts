import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

// chatd.lock names its holder by pid. A lock whose pid is alive is held, unless that
// process is not the one that wrote it (a reboot, a container's restart): the lock
// says which one wrote it by this boot's id and its start in clock ticks since boot,
// which a step of the wall clock does not move, as it moves the start time read
// against the lock's mtime.
describe("chatd.lock and the wall clock", function () {
  this.timeout(90_000);
  const started: ChatdProcess[] = [];
  const sleepers: ChildProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of started) await c.stop();
    for (const s of sleepers) s.kill();
    for (const d of dirs) removeDataDir(d);
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "chatd-lock-clock-"));
    dirs.push(dir);
    return dir;
  };
  const sleeper = () => {
    const s = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120_000)"], { stdio: "ignore" });
    sleepers.push(s);
    return s;
  };
  const ticksOf = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
  };
  const bootId = () => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();

  it("keeps a running chatd's directory after the clock stepped forward past its lock's time", async () => {
    const first = await startChatd({ dataDir: tempDir() });
    started.push(first);
    // What a forward step of the clock (NTP on a machine without a real-time clock) makes of the lock.
    const lock = join(first.dataDir, "chatd.lock");
    const anHourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(lock, anHourAgo, anHourAgo);
    await assert.rejects(startChatd({ dataDir: first.dataDir }), (err: Error) => {
      assert.match(err.message, /exited with 2 before listening/);
      assert.match(err.message, new RegExp(`CHAT_DATA_DIR=".*": in use by another chatd \\(pid ${first.child.pid}, `));
      return true;
    });
    assert.equal(readFileSync(lock, "utf8").split("\n")[0], String(first.child.pid));
  });

  for (const [what, identity] of [
    ["of another boot", (pid: number) => `00000000-0000-4000-8000-000000000000 ${ticksOf(pid)}`],
    ["started after the lock's writer in this boot", (pid: number) => `${bootId()} ${Number(ticksOf(pid)) - 1}`],
  ] as const) {
    it(`takes over a lock whose live pid is a process ${what}`, async () => {
      const dataDir = tempDir();
      const other = sleeper();
      writeFileSync(join(dataDir, "chatd.lock"), `${other.pid}\n${identity(other.pid!)}\n`);
      const chatd = await startChatd({ dataDir });
      started.push(chatd);
      assert.equal(readFileSync(join(dataDir, "chatd.lock"), "utf8").split("\n")[0], String(chatd.child.pid));
    });
  }
});
