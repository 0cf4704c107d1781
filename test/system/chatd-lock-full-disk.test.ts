import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");

describe("chatd started on a full disk", function () {
  this.timeout(90_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of started) await c.stop().catch(() => undefined);
    for (const d of dirs) removeDataDir(d);
  });

  it("exits 2 naming CHAT_DATA_DIR and leaves no empty lock behind, so it starts once there is room", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatd-full-"));
    dirs.push(dataDir);
    // No room for a byte: a write fails with EFBIG, as on a full disk with ENOSPC; creating a file still works.
    const script = `trap '' XFSZ; ulimit -f 0; exec "$0" --import tsx cmd/chatd/main.ts`;
    const env = { ...process.env, CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" };
    const full = await run("bash", ["-c", script, process.execPath], { cwd: ROOT, env }).then(
      () => ({ code: 0, stderr: "" }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? "" }),
    );
    assert.equal(full.code, 2, full.stderr);
    assert.match(full.stderr, /CHAT_DATA_DIR=".*": cannot create .*chatd\.lock \((EFBIG|ENOSPC)\)/);
    assert.deepEqual(readdirSync(dataDir), [], "no lock naming nobody");

    const chatd = await startChatd({ dataDir });
    started.push(chatd);
    assert.equal(readFileSync(join(dataDir, "chatd.lock"), "utf8").split("\n")[0], String(chatd.child.pid));
  });
});
