import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lockDataDir } from "./data-dir.js";

/** When this machine booted (ms since the epoch), as /proc/stat says. */
function bootMs(): number {
  return Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))![1]) * 1000;
}

describe("chatd's data directory lock (empty lock files)", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "chatd-lock-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("takes over an empty lock written before this boot: a power cut can leave the new file without its pid", () => {
    const path = join(dir, "chatd.lock");
    writeFileSync(path, "");
    const before = new Date(bootMs() - 60_000);
    utimesSync(path, before, before);
    const lock = lockDataDir(dir);
    assert.equal(readFileSync(path, "utf8").split("\n")[0], String(process.pid));
    lock.release();
  });

  it("still refuses an empty lock written since this boot: a start may be writing its pid into it", () => {
    writeFileSync(join(dir, "chatd.lock"), "");
    assert.throws(() => lockDataDir(dir), /names no process/);
  });
});
