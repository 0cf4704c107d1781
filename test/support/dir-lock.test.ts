import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withDirLock } from "./dir-lock.js";
import { waitFor, waitOut } from "./wait.js";

describe("withDirLock (test support)", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "dir-lock-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("lets a second holder in only once the first has let go", async () => {
    const lock = join(dir, "lock");
    const events: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = withDirLock(lock, "a test", async () => {
      events.push("first in");
      await held;
      events.push("first out");
    });
    await waitFor(() => events.includes("first in"), "the first holder in");
    const second = withDirLock(lock, "a test", async () => {
      events.push("second in");
      return 7;
    });
    // The second polls every 50 ms: give it several polls' worth of chances to cut in.
    await waitFor(() => existsSync(join(lock, "pid")), "the lock's pid");
    await waitOut(300);
    assert.deepEqual(events, ["first in"]);
    release();
    await first;
    assert.equal(await second, 7);
    assert.deepEqual(events, ["first in", "first out", "second in"]);
    assert.equal(existsSync(lock), false);
  });

  it("takes over a lock whose holder died without letting go", async () => {
    const dead = spawnSync(process.execPath, ["-e", "process.pid"]).pid!;
    const lock = join(dir, "lock");
    mkdirSync(lock);
    writeFileSync(join(lock, "pid"), String(dead));
    assert.equal(await withDirLock(lock, "a test", async () => "taken", 5_000), "taken");
  });

  it("lets go when the work throws, and hands the error on", async () => {
    const lock = join(dir, "lock");
    await assert.rejects(
      withDirLock(lock, "a test", async () => {
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal(existsSync(lock), false);
  });

  it("names what it waited for when a live holder keeps it past the timeout", async () => {
    const lock = join(dir, "lock");
    mkdirSync(lock);
    writeFileSync(join(lock, "pid"), String(process.pid));
    await assert.rejects(withDirLock(lock, "the web client's build", async () => undefined, 300), /the lock of the web client's build/);
  });
});
