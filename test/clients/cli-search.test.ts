import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { SEARCH_SCAN_TEXT_BYTES } from "../../internal/api/messages-service.js";
import { signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

/**
 * `chat-cli search` where SearchMessages stops at its scan bound: a page
 * with no match then is "nothing in the part searched so far", not "no
 * matches", and the hint it prints runs as pasted.
 */
describe("chat-cli search past the server's scan bound", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  let home: string;
  let reader: TestUser;
  let writer: TestUser;
  // 99,990 three-byte characters: 300 kB a message, so 14 of them are past the bound.
  const long = "€".repeat(99_990);
  const perCall = Math.floor(SEARCH_SCAN_TEXT_BYTES / Buffer.byteLength(long));
  const longOnes = perCall + 2;

  before(async () => {
    // The text rate holds the history written at once.
    chatd = await startChatd({ env: { CHAT_TEXT_BURST_BYTES: String(16 * 1024 * 1024), CHAT_TEXT_BYTES_PER_SEC: String(16 * 1024 * 1024) } });
    home = mkdtempSync(join(tmpdir(), "chat-cli-search-"));
    reader = await signUp(chatd.httpUrl, "rd");
    writer = await signUp(chatd.httpUrl, "wr");
    const { channelId } = (await writer.api.channels.openDirect({ userId: reader.userId })).channel!;
    let n = 0;
    const send = (text: string) => writer.api.messages.sendMessage({ clientMsgId: `m${n++}`, channelId, text });
    await send("it's -1 for #lunch friday"); // #1, under the long ones
    for (let i = 0; i < longOnes; i++) await send(long);
    await cli("login", reader.username);
  });

  after(async () => {
    if (home) rmSync(home, { recursive: true, force: true });
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
        cwd: ROOT,
        env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: chatd.httpUrl, CHAT_PASSWORD: reader.password },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let [stdout, stderr] = ["", ""];
      child.stdout!.on("data", (d) => (stdout += d));
      child.stderr!.on("data", (d) => (stderr += d));
      child.on("close", (code) => done({ code, stdout, stderr }));
    });
  }

  /** The words of a command line as bash splits them. */
  async function shellSplit(line: string): Promise<string[]> {
    const { stdout } = await promisify(execFile)("bash", ["-c", `printf '%s\\0' ${line}`]);
    return stdout.split("\0").slice(0, -1);
  }

  it("says which messages it searched and that older ones remain, not \"no matches\", and its hint finds the match", async () => {
    const first = await cli("search", `@${writer.username}`, "--", "-1", "#lunch", "it's");
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "");
    const next = longOnes + 2 - perCall;
    const hint = `chat-cli search @${writer.username} --before ${next} -- -1 '#lunch' 'it'\\''s'`;
    assert.equal(first.stderr, `(no matches in messages #${next} and newer; older messages are not searched yet: ${hint})\n`);

    const again = await cli(...(await shellSplit(hint)).slice(1));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /#1 \S+: it's -1 for #lunch friday\n$/);
    assert.equal(again.stderr, "");
  });

  it("says so on stderr with --json too, with a hint that keeps --json and --limit, so a script can tell none from none yet", async () => {
    const first = await cli("search", `@${writer.username}`, "lunch", "--json", "--limit", "5");
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "");
    const next = longOnes + 2 - perCall;
    const hint = `chat-cli search @${writer.username} --before ${next} --limit 5 --json lunch`;
    assert.equal(first.stderr, `(no matches in messages #${next} and newer; older messages are not searched yet: ${hint})\n`);
    const again = await cli(...(await shellSplit(hint)).slice(1));
    assert.equal(JSON.parse(again.stdout).seq, "1");
    assert.equal(again.stderr, "");
  });
});
