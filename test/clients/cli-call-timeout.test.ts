import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CALL_TIMEOUT_MS, CliError, readCallTimeoutMs } from "../../cmd/chat-cli/client.js";
import { LOCK_WAIT_MS } from "../../cmd/chat-cli/store.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

describe("chat-cli's call deadline (CHAT_CLI_CALL_TIMEOUT_MS)", function () {
  this.timeout(60_000);

  it("is 15 s unless set shorter, down to 100 ms; a longer one would outlast the refresh lock's wait", () => {
    assert.equal(readCallTimeoutMs({}), 15_000);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "" }), CALL_TIMEOUT_MS);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "3000" }), 3_000);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "100" }), 100);
    assert.ok(CALL_TIMEOUT_MS < LOCK_WAIT_MS);
    for (const bad of ["99", "15001", "3s", "-1", "1e3", " 3000"]) {
      assert.throws(
        () => readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: bad }),
        (err) => err instanceof CliError && err.exitCode === 2 && err.message.startsWith(`CHAT_CLI_CALL_TIMEOUT_MS=${bad}: `),
        bad,
      );
    }
  });

  it("refuses a bad one at start, exit 2, before any call", async () => {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-timeout-"));
    try {
      // Not signed in, and no server there: without the check at start, whoami fails otherwise.
      const child = spawn(process.execPath, ["--import", "tsx", CLI, "whoami"], {
        cwd: ROOT,
        env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:9", CHAT_CLI_CALL_TIMEOUT_MS: "20000" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr!.on("data", (d) => (stderr += d));
      const code = await new Promise((r) => child.on("close", r));
      assert.equal(code, 2, stderr);
      assert.match(stderr, /CHAT_CLI_CALL_TIMEOUT_MS=20000: expected whole milliseconds from 100 to 15000/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
