import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { waitFor } from "../support/wait.js";

/**
 * The README's chat-cli walk-through, pasted line by line into bash as a
 * newcomer would: every line must work as written (a placeholder such as
 * `<group>` is a redirection to bash), against a fresh chatd on free ports.
 * Only the addresses and homes differ: CHAT_SERVER names this chatd, the
 * README's /tmp/ homes and alice's default one are under a directory of
 * the test's own. Lines that share nothing run in bash sessions side by side
 * (the sign-ups; the group's lines beside the others), each in README order.
 */

const ROOT = resolve(import.meta.dirname, "../..");

/** The lines of the README's first sh block after `heading`, blank ones left out. */
function readmeBlock(heading: string): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(heading);
  assert.ok(at >= 0, `README.md has no "${heading}"`);
  const start = readme.indexOf("```sh\n", at) + "```sh\n".length;
  return readme.slice(start, readme.indexOf("\n```", start)).split("\n").filter((l) => l.trim() !== "");
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("the README's chat-cli examples, pasted", function () {
  this.timeout(300_000);
  let chatd: ChatdProcess;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  /** The follow job, in its process group: stopped here too when the test ended before its Ctrl+C did. */
  let followJob: ChildProcess | undefined;

  before(async () => {
    chatd = await startChatd();
    dir = mkdtempSync(join(tmpdir(), "chat-cli-readme-"));
    env = { ...process.env, CHAT_SERVER: chatd.httpUrl, CHAT_PASSWORD: "correct horse battery", XDG_CONFIG_HOME: join(dir, "config") };
    delete env.CHAT_CLI_HOME;
    delete env.CHAT_WS_URL;
  });

  after(async () => {
    if (followJob?.exitCode === null && followJob.signalCode === null) process.kill(-followJob.pid!, "SIGKILL");
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Lines as one bash session that stops at the first failing one (-x names it on stderr); `detached`, in a process group of its own, as a terminal's foreground job. */
  const bash = (lines: string[], detached = false) =>
    spawn("bash", ["-euo", "pipefail", "-xc", lines.map((l) => l.replaceAll("/tmp/", `${dir}/`)).join("\n")], {
      cwd: ROOT,
      env,
      detached,
      stdio: ["ignore", "pipe", "pipe"],
    });
  const collect = (child: ReturnType<typeof bash>) => {
    const ran: Ran = { code: null, stdout: "", stderr: "" };
    child.stdout!.on("data", (d) => (ran.stdout += d));
    child.stderr!.on("data", (d) => (ran.stderr += d));
    const exited = new Promise<Ran>((done) => child.on("close", (code) => done(Object.assign(ran, { code }))));
    return { ran, exited };
  };

  it("runs every line of \"From a terminal\", follow printing what the later ones do until Ctrl+C", async () => {
    const lines = readmeBlock("**From a terminal**");
    const at = lines.findIndex((l) => / -- follow /.test(l));
    assert.ok(at > 0, "the walk-through follows a chat");

    // Each line starts npm and chat-cli (seconds of CPU on a loaded machine), so lines that share
    // nothing run side by side: the sign-ups, each a home of its own, then the rest in order.
    const signups = lines.slice(0, at).filter((l) => / -- signup /.test(l));
    assert.ok(signups.length >= 2, lines.join("\n"));
    for (const signedUp of await Promise.all(signups.map((l) => collect(bash([l])).exited))) assert.equal(signedUp.code, 0, signedUp.stderr);
    const before = await collect(bash(lines.slice(0, at).filter((l) => !signups.includes(l)))).exited;
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /sent to @bob/);

    const followChild = bash([lines[at]!], true);
    followJob = followChild;
    const follow = collect(followChild);
    try {
      await waitFor(() => /following .*; Ctrl\+C to stop/.test(follow.ran.stderr), `follow started (stderr: ${follow.ran.stderr})`, 60_000);
      // The group's lines (they share $GROUP) beside the others, each in README order.
      const later = lines.slice(at + 1);
      const group = later.filter((l) => /\$GROUP|^GROUP=/.test(l));
      assert.ok(group.length >= 2, later.join("\n"));
      const [others, grouped] = await Promise.all([later.filter((l) => !group.includes(l)), group].map((ls) => collect(bash(ls)).exited));
      for (const ran of [others!, grouped!]) assert.equal(ran.code, 0, ran.stderr);
      const rest = { stdout: grouped!.stdout + others!.stdout };
      assert.match(rest.stdout, /@alice +owner[\s\S]*added @carol[\s\S]*made @bob an admin[\s\S]*renamed "Trip" to "Trip 2026"[\s\S]*invite link of Trip 2026: http/);
      assert.match(rest.stdout, /Commands:/, "--help");
      await waitFor(() => /alice: ↪ #1 yes/.test(follow.ran.stdout) && /✗ #2 deleted/.test(follow.ran.stdout), `the reply and its delete, live (got: ${follow.ran.stdout})`, 60_000);
      assert.match(follow.ran.stdout, /✎ #1 edited: hello, bob/);
      assert.match(follow.ran.stdout, /☺ #1 alice reacted 👍/);
    } finally {
      // Ctrl+C: SIGINT to the whole foreground job (bash, npm, chat-cli).
      if (followChild.exitCode === null) process.kill(-followChild.pid!, "SIGINT");
    }
    const followed = await follow.exited;
    // npm, like a shell, ends by the signal itself (exit 130 at a terminal); chat-cli stops without a word of error.
    assert.doesNotMatch(followed.stderr, /Error|chat-cli:/, followed.stderr);
  });
});

/**
 * The README's grpcurl and Connect examples, pasted into one bash session as
 * a newcomer would (the curl lines use the grpcurl lines' $TOKEN), against a
 * fresh chatd whose ports replace the README's 8081 and 8080.
 */
describe("the README's grpcurl and curl examples, pasted", function () {
  // scripts/grpcurl.sh builds grpcurl on its first run (about 90 s on 2 cores).
  this.timeout(600_000);
  let chatd: ChatdProcess;

  before(async () => {
    chatd = await startChatd();
  });
  after(async () => {
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  it("sign up, log in, open a session and list chats as the README shows", async () => {
    const lines = [...readmeBlock("**With grpcurl**"), ...readmeBlock("**Over Connect with curl**")].map((l) =>
      l.replaceAll("127.0.0.1:8081", new URL(chatd.grpcUrl).host).replaceAll("http://127.0.0.1:8080", chatd.httpUrl),
    );
    const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", lines.join("\n")], { cwd: ROOT, timeout: 540_000 }).catch(
      (e: { stdout?: string; stderr?: string }) => assert.fail(`a README line failed:\n${e.stderr}${e.stdout}`),
    );
    assert.match(stdout, /^chat\.v1\.AuthService$/m, "list");
    assert.match(stdout, /chat\.v1\.Welcome is a message/, "describe");
    assert.match(stdout, /"username": "dave"/, "SignUp");
    // Only with the $TOKEN that Login's line picked out.
    assert.match(stdout, /"welcome": \{[\s\S]*"ref": "1",\s*"heartbeatAck"/, "the session: the welcome, then the heartbeat ack");
    assert.match(stdout, /"status": "SERVING"/, "health");
    assert.match(stdout, /\{"credentials":\{"accessToken":"/, "Login over Connect");
    assert.ok(stdout.endsWith("{}"), `ListChannels over Connect with $TOKEN answers dave's (no) chats, not an error: ${stdout.slice(-300)}`);
  });
});

/**
 * The README's backup and restore lines, pasted: the backup while chatd runs,
 * the restore once it stopped. Their directory is the test's own, and the
 * backup is named as the restore line names it.
 */
describe("the README's backup and restore, pasted", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess | undefined;
  let dataDir: string | undefined;
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "chatd-readme-backup-"));
  });
  after(async () => {
    await chatd?.stop();
    // The restore moved what the data directory held beside it.
    if (dataDir) {
      const moved = readdirSync(dirname(dataDir)).filter((n) => n.startsWith(`${basename(dataDir!)}.before-restore-`));
      for (const d of [dataDir, ...moved.map((n) => join(dirname(dataDir!), n))]) removeDataDir(d);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const auth = (url: string, method: "SignUp" | "Login", username: string) =>
    fetch(`${url}/chat.v1.AuthService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password: "correct horse battery", device: { name: "readme" } }),
    }).then((r) => r.status);

  it("backs up a running chatd, restores it stopped: the accounts of the backup, none made after it", async () => {
    const lines = readmeBlock("## Backups").map((l) => l.replaceAll("/backups/", `${dir}/`).replaceAll("chatd-$(date +%F)", "chatd-2026-12-01"));
    assert.equal(lines.length, 2, lines.join("\n"));
    chatd = await startChatd();
    dataDir = chatd.dataDir;
    const sh = (line: string) =>
      promisify(execFile)("bash", ["-euo", "pipefail", "-c", line], { cwd: ROOT, env: { ...process.env, CHAT_DATA_DIR: dataDir }, timeout: 60_000 }).catch(
        (e: { stdout?: string; stderr?: string }) => assert.fail(`${line}\nfailed:\n${e.stderr}${e.stdout}`),
      );

    assert.equal(await auth(chatd.httpUrl, "SignUp", "erin"), 200);
    assert.match((await sh(lines[0]!)).stdout, /backed up .* chat\.db/);
    assert.equal(await auth(chatd.httpUrl, "SignUp", "frank"), 200);
    await chatd.stop();
    chatd = undefined;
    assert.match((await sh(lines[1]!)).stdout, /restored .*chatd-2026-12-01 to /);

    chatd = await startChatd({ dataDir });
    assert.equal(await auth(chatd.httpUrl, "Login", "erin"), 200);
    assert.equal(await auth(chatd.httpUrl, "Login", "frank"), 401, "signed up after the backup");
  });
});
