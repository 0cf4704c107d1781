import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { startRole, type RoleProcess } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** The JSON log lines' `msg` fields, in order. */
function messages(output: string[]): string[] {
  return output.flatMap((line) => {
    try {
      const rec = JSON.parse(line);
      return typeof rec.msg === "string" ? [rec.msg] : [];
    } catch {
      return [];
    }
  });
}

describe("npm start", function () {
  this.timeout(120_000);
  let dataDir: string;
  let shellDir: string;
  let p: RoleProcess | undefined;

  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "chatd-npm-start-"));
    shellDir = mkdtempSync(join(tmpdir(), "chatd-npm-shell-"));
  });
  after(() => {
    // After a failure: nothing of the group outlives the test.
    if (p && p.child.exitCode === null && p.child.signalCode === null) {
      try {
        process.kill(-p.child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(shellDir, { recursive: true, force: true });
  });

  it("stops chatd cleanly when its process group gets SIGTERM: one stop line, exit 0", async () => {
    // npm exits 143 on SIGTERM whatever the script did, so the script runs in a shell that
    // outlives the signal (trapped), waits for chatd and writes down chatd's exit status.
    const status = join(shellDir, "status");
    const shell = join(shellDir, "sh");
    writeFileSync(shell, `#!/bin/sh\ntrap : INT TERM\n[ "$1" = -c ] && shift\neval "$1"\necho $? > '${status}'\n`);
    chmodSync(shell, 0o755);
    p = await startRole(
      "chatd",
      { CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", npm_config_script_shell: shell },
      60_000,
      { command: ["npm", "start"], detached: true },
    );
    // chatd logs "chatd listening" a moment before it handles signals, which it does right
    // after printing its banner (to stderr, a pipe: written synchronously).
    const output = p.output;
    await waitFor(() => output.join("").includes("Stop it with Ctrl+C."), "chatd's banner", 10_000);
    // And serving: a stop during start-up is not what this is about.
    const healthz = `${String(p.info.http)}/healthz`;
    await waitFor(async () => (await fetch(healthz)).ok, "chatd's /healthz", 10_000);
    // "close": exited, and everything it wrote has been read.
    let closed = false;
    p.child.once("close", () => (closed = true));
    // The signal comes while chatd is busy for 200 ms (SIGSTOP ... SIGCONT stands in for a
    // busy event loop): a launcher that wants an answer within milliseconds, as the tsx
    // CLI does, signals it again and then SIGKILLs it.
    const chatdPid = Number(p.info.pid);
    process.kill(chatdPid, "SIGSTOP");
    try {
      process.kill(-p.child.pid!, "SIGTERM");
      await delay(200);
    } finally {
      try {
        process.kill(chatdPid, "SIGCONT");
      } catch {
        // killed meanwhile
      }
    }
    await waitFor(() => closed, "npm start to exit", 10_000);

    const msgs = messages(p.output);
    const log = p.output.slice(-20).join("\n");
    assert.equal(msgs.filter((m) => m === "stopping").length, 1, log);
    assert.ok(!msgs.includes("second signal while stopping: exiting now"), log);
    assert.equal(readFileSync(status, "utf8").trim(), "0", `chatd's exit status\n${log}`);
    // What the README says `npm start` prints.
    const printed = p.output.join("");
    assert.match(printed, /chatd is running, data in /);
    assert.match(printed, /Web client: +http:\/\/127\.0\.0\.1:\d+\//);
    assert.match(printed, /WebSocket: +ws:\/\/127\.0\.0\.1:\d+\/ws/);
  });
});
