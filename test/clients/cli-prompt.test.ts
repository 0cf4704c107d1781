// chat-cli asking for a password at a terminal (util-linux's script gives it one, as a person at one has).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

describe("chat-cli's password prompt", function () {
  this.timeout(60_000);
  let home: string;
  before(() => (home = mkdtempSync(join(tmpdir(), "chat-cli-prompt-"))));
  after(() => rmSync(home, { recursive: true, force: true }));

  // The prompt's readline closed without an answer, and with nothing left to wait for the process
  // ended: exit 0, no word, as if the login had been made.
  it("ends with exit 2 and a line saying no password came when Ctrl+D ends the input, asking no server", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:1" };
    delete env.CHAT_PASSWORD;
    const command = [process.execPath, "--import", "tsx", CLI, "login", "someone"].map((a) => `'${a}'`).join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let screen = "";
    child.stdout!.on("data", (d) => (screen += d));
    child.stderr!.on("data", (d) => (screen += d));
    const exited = new Promise<number | null>((done) => child.on("close", done));
    try {
      await waitFor(() => screen.includes("Password: "), `the prompt (got: ${screen})`);
      child.stdin!.write("\x04");
      assert.equal(await exited, 2, screen);
    } finally {
      child.kill();
    }
    assert.match(screen, /chat-cli: no password given \(the input ended\)/);
  });

  // Read as piped text, what was typed at the terminal was echoed there (its scrollback, a screen share) until Ctrl+D.
  it("does not echo a password typed at a terminal for --password-stdin", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:1" };
    delete env.CHAT_PASSWORD;
    const command = [process.execPath, "--import", "tsx", CLI, "login", "someone", "--password-stdin"].map((a) => `'${a}'`).join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let screen = "";
    child.stdout!.on("data", (d) => (screen += d));
    child.stderr!.on("data", (d) => (screen += d));
    const exited = new Promise<number | null>((done) => child.on("close", done));
    try {
      await waitFor(() => screen.includes("Password: "), `a prompt (got: ${screen})`);
      child.stdin!.write("secret-typed-here\r");
      // Past the password: the login it was for, at a server nothing listens on.
      assert.equal(await exited, 1, screen);
    } finally {
      child.kill();
    }
    assert.match(screen, /cannot reach the server/);
    assert.doesNotMatch(screen, /secret-typed-here/);
  });
});
