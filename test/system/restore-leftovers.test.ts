import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

// `npm run backup -- --restore` copies the backup beside the data directory before
// anything moves. Stopped during that copy (Ctrl-C, a kill), it leaves the copy there,
// half made or whole, as large as the data and holding its password hashes.
describe("chatd after a restore stopped during its copy", function () {
  this.timeout(60_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of started) await c.stop();
    for (const d of dirs) removeDataDir(d);
  });

  it("removes the copy the restore left beside its data directory, and nothing else there", async () => {
    const base = mkdtempSync(join(tmpdir(), "chatd-restore-left-"));
    dirs.push(base);
    const dataDir = join(base, "data");
    mkdirSync(dataDir);
    const gone = spawn(process.execPath, ["-e", ""]);
    await once(gone, "exit");
    // As a restore killed during its copy (pid gone) leaves them: its copy under way, and one finished.
    for (const dir of [`..data.restoring.partial-${gone.pid}`, ".data.restoring"]) {
      mkdirSync(join(base, dir));
      writeFileSync(join(base, dir, "chat.db"), "password hashes and all");
    }
    writeFileSync(join(base, "data.restoring-notes"), "not the restore's");
    const chatd = await startChatd({ dataDir });
    started.push(chatd);
    assert.deepEqual(readdirSync(base).sort(), ["data", "data.restoring-notes"]);
  });
});
