// chat-cli asking for a password at a terminal (util-linux's script gives it one, as a person at one has).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
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

  /** chat-cli with these arguments at a terminal, asking no server (nothing listens at port 1): what it writes there, and its exit. */
  function atTerminal(...args: string[]): { child: ChildProcess; screen: () => string; exited: Promise<number | null> } {
    const env: NodeJS.ProcessEnv = { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:1" };
    delete env.CHAT_PASSWORD;
    const command = [process.execPath, "--import", "tsx", CLI, ...args].map((a) => `'${a}'`).join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let screen = "";
    child.stdout!.on("data", (d) => (screen += d));
    child.stderr!.on("data", (d) => (screen += d));
    const exited = new Promise<number | null>((done) => child.on("close", done));
    children.push(child);
    return { child, screen: () => screen, exited };
  }
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill();
  });

  // The prompt's readline closed without an answer, and with nothing left to wait for the process
  // ended: exit 0, no word, as if the login had been made.
  it("ends with exit 2 and a line saying no password came when Ctrl+D ends the input, asking no server", async () => {
    const t = atTerminal("login", "someone");
    await waitFor(() => t.screen().includes("Password: "), `the prompt (got: ${t.screen()})`);
    t.child.stdin!.write("\x04");
    assert.equal(await t.exited, 2, t.screen());
    assert.match(t.screen(), /chat-cli: no password given \(the input ended\)/);
  });

  it("ends with exit 130 and a line saying so at Ctrl+C, at the second prompt of a signup too, asking no server", async () => {
    const t = atTerminal("signup", "someone");
    await waitFor(() => t.screen().includes("Password: "), `the prompt (got: ${t.screen()})`);
    t.child.stdin!.write("pw-typed\r");
    await waitFor(() => t.screen().includes("Password again: "), `the second prompt (got: ${t.screen()})`);
    t.child.stdin!.write("\x03");
    assert.equal(await t.exited, 130, t.screen());
    assert.match(t.screen(), /chat-cli: cancelled at the password prompt; nothing was asked of the server\r?\n/);
    assert.doesNotMatch(t.screen(), /cannot reach/);
  });

  const prompts = (screen: string) => screen.split("Password: ").length - 1;

  // Sent as it was, an empty password was refused by the server as a wrong one, as if mistyped.
  it("asks again when Enter alone is typed at the prompt, and logs in with what is typed then", async () => {
    const t = atTerminal("login", "someone");
    await waitFor(() => prompts(t.screen()) >= 1, `the prompt (got: ${t.screen()})`);
    t.child.stdin!.write("\r");
    await waitFor(() => /the password is empty/.test(t.screen()) && prompts(t.screen()) >= 2, `the prompt again (got: ${t.screen()})`);
    t.child.stdin!.write("pw-typed\r");
    // Past the password: the login it was for, at a server nothing listens on.
    assert.equal(await t.exited, 1, t.screen());
    assert.match(t.screen(), /cannot reach the server/);
  });

  it("ends with exit 2, asking no server, after three empty passwords", async () => {
    const t = atTerminal("signup", "someone");
    for (let i = 1; i <= 3; i++) {
      await waitFor(() => prompts(t.screen()) >= i, `prompt ${i} (got: ${t.screen()})`);
      t.child.stdin!.write("\r");
    }
    assert.equal(await t.exited, 2, t.screen());
    assert.match(t.screen(), /chat-cli: no password given \(empty three times\); nothing was asked of the server/);
    assert.doesNotMatch(t.screen(), /cannot reach|Password again/);
  });

  // Read as piped text, what was typed at the terminal was echoed there (its scrollback, a screen share) until Ctrl+D.
  it("does not echo a password typed at a terminal for --password-stdin", async () => {
    const t = atTerminal("login", "someone", "--password-stdin");
    await waitFor(() => t.screen().includes("Password: "), `a prompt (got: ${t.screen()})`);
    t.child.stdin!.write("secret-typed-here\r");
    // Past the password: the login it was for, at a server nothing listens on.
    assert.equal(await t.exited, 1, t.screen());
    assert.match(t.screen(), /cannot reach the server/);
    assert.doesNotMatch(t.screen(), /secret-typed-here/);
  });
});
