import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { removeDataDir } from "../support/chatd.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const NOBODY = 65534;

// Past the lock and the databases, chatd writes or reads its keys and the VAPID pair in
// CHAT_DATA_DIR: a file there it may not read (restored or made by root), or no room left
// (ENOSPC), ended it with a stack trace that named no setting.
describe("chatd on a data directory whose key files it cannot use", function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDataDir));

  const start = async (dataDir: string, asNobody: boolean) => {
    const command = [process.execPath, "--import", "tsx", "cmd/chatd/main.ts"];
    const [file, ...args] = asNobody ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", ...command] : command;
    const env = { ...process.env, CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" };
    return run(file!, args, { cwd: ROOT, env }).then(
      () => ({ code: 0, stderr: "" }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? "" }),
    );
  };

  const refused = (result: { code?: number; stderr: string }, dataDir: string, line: RegExp) => {
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, line);
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
    assert.ok(!existsSync(join(dataDir, "chatd.lock")), "the directory is left to the next start");
  };

  it("exits 2 naming CHAT_DATA_DIR and the file when keys is not a directory", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatd keys file "));
    dirs.push(dataDir);
    writeFileSync(join(dataDir, "keys"), "");
    refused(await start(dataDir, false), dataDir, /^chatd: CHAT_DATA_DIR=".*": ENOTDIR: not a directory, open '.*\/keys\/token-ed25519\.key\.pem'\n$/);
  });

  it("exits 2 naming CHAT_DATA_DIR and the file when the signing key is another user's", async function () {
    if (process.getuid?.() !== 0) this.skip(); // making a file chatd's user may not read takes root
    const dataDir = mkdtempSync(join(tmpdir(), "chatd keys root "));
    dirs.push(dataDir);
    chownSync(dataDir, NOBODY, NOBODY);
    mkdirSync(join(dataDir, "keys"), { mode: 0o755 });
    writeFileSync(join(dataDir, "keys", "token-ed25519.key.pem"), "", { mode: 0o600 });
    chmodSync(join(dataDir, "keys", "token-ed25519.key.pem"), 0o600);
    refused(await start(dataDir, true), dataDir, /^chatd: CHAT_DATA_DIR=".*": EACCES: permission denied, open '.*\/keys\/token-ed25519\.key\.pem'\n$/);
  });
});
