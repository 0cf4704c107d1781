// chat-cli's home (CHAT_CLI_HOME) where others could swap the credentials kept in it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LoginStore } from "../../internal/cli/store.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

function run(home: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // A server nothing listens on: what is refused is refused before any call.
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:1", CHAT_PASSWORD: "correct horse battery" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let [stdout, stderr] = ["", ""];
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((done) => child.on("close", (code) => done({ code, stdout, stderr })));
}

describe("chat-cli: a home others may write in", function () {
  this.timeout(60_000);
  let home: string;
  beforeEach(() => (home = mkdtempSync(join(tmpdir(), "chat-cli-home-"))));
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  // The README's homes are in /tmp, where anyone may make /tmp/bob first, mode 777: the credentials
  // file in it could be swapped for a login on their own server, which every later command talks to.
  it("is refused, naming it and its mode, before the credentials in it are used or any are written", async () => {
    new LoginStore({ CHAT_CLI_HOME: home }).write({ server: "http://127.0.0.1:1", username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    chmodSync(home, 0o777);
    const whoami = await run(home, ["whoami"]);
    assert.equal(whoami.code, 1, whoami.stderr);
    assert.equal(whoami.stderr, `chat-cli: ${home} may be written by others (mode 777): chat-cli keeps no credentials there; chmod 700 ${home}\n`);

    rmSync(join(home, "credentials.json"));
    const login = await run(home, ["login", "u"]);
    assert.equal(login.code, 1, login.stderr);
    assert.match(login.stderr, /may be written by others/);
    assert.equal(existsSync(join(home, "credentials.json")), false);
  });

  it("is taken once only its owner may write in it", async () => {
    chmodSync(home, 0o755);
    const r = await run(home, ["whoami"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /not logged in/);
  });

  // Edited by hand, or cut short: "chat-cli: Invalid URL" (exit 1) named neither the file nor what to do.
  it("takes a credentials file whose server is no http(s) URL, or whose ids are no numbers, as damaged: exit 3 naming it", async () => {
    const login = { server: "garbage", username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" };
    writeFileSync(join(home, "credentials.json"), JSON.stringify(login), { mode: 0o600 });
    const r = await run(home, ["chats"]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr, `chat-cli: ${join(home, "credentials.json")} has no server URL; remove it and log in again\n`);
    // Nor an id that is no number: "Cannot convert x to a BigInt" at its first use.
    writeFileSync(join(home, "credentials.json"), JSON.stringify({ ...login, server: "http://127.0.0.1:1", userId: "me" }), { mode: 0o600 });
    const ids = await run(home, ["send", "@someone", "hi"]);
    assert.equal(ids.code, 3, ids.stderr);
    assert.match(ids.stderr, /credentials\.json has no userId; remove it and log in again\n$/);
  });
});
