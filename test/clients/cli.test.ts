import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WebSocketServer } from "ws";
import { Session } from "../../internal/cli/client.js";
import { LoginStore } from "../../internal/cli/store.js";
import { displayWidth } from "../../internal/cli/width.js";
import { apiClients, signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { Follower } from "../support/chat-cli.js";
import { waitFor } from "../support/wait.js";
import { cliArgs } from "./cli-bundle.js";

const ROOT = resolve(import.meta.dirname, "../..");
const PASSWORD = "correct horse battery";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as a script would run it: its own process, its own credentials directory. */
class CliUser {
  constructor(
    readonly username: string,
    private readonly server: string,
    readonly home = CliUser.newHome(),
  ) {}

  /** Every home made, removed after the suite too: a test that fails before its own cleanup leaves none. */
  private static readonly homes = new Set<string>();

  private static newHome(): string {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-test-"));
    CliUser.homes.add(home);
    return home;
  }

  static removeHomes(): void {
    for (const home of CliUser.homes) rmSync(home, { recursive: true, force: true });
    CliUser.homes.clear();
  }

  spawn(args: string[], input?: string): ChildProcess {
    const child = spawn(process.execPath, cliArgs(...args), {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: this.home, CHAT_SERVER: this.server, CHAT_PASSWORD: PASSWORD },
      stdio: ["pipe", "pipe", "pipe"],
    });
    child.stdin!.end(input ?? "");
    return child;
  }

  follow(...args: string[]): Follower {
    return new Follower(this.spawn(["follow", ...args]));
  }

  run(...args: string[]): Promise<Run> {
    return this.runWithInput(undefined, ...args);
  }

  runWithInput(input: string | undefined, ...args: string[]): Promise<Run> {
    const child = this.spawn(args, input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    return new Promise((resolvePromise) => child.on("close", (code) => resolvePromise({ code, stdout, stderr })));
  }

  async ok(...args: string[]): Promise<string> {
    const r = await this.run(...args);
    assert.equal(r.code, 0, `chat-cli ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

describe("chat-cli against chatd", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  let alice: CliUser;
  let bob: CliUser;
  const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;

  before(async () => {
    chatd = await startChatd();
    alice = new CliUser(`alice_${suffix}`, chatd.httpUrl);
    bob = new CliUser(`bob_${suffix}`, chatd.httpUrl);
  });

  after(async () => {
    CliUser.removeHomes();
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  it("refuses commands before login, with exit code 3 and a hint", async () => {
    const r = await alice.run("chats");
    assert.equal(r.code, 3);
    assert.match(r.stderr, /not logged in; run: chat-cli login/);
    assert.equal(r.stdout, "");
  });

  it("names a text that starts with \"-\", taken for an option, whole, and shows it after --", async () => {
    const r = await alice.run("send", "@bob", "-hello, it's me");
    assert.equal(r.code, 2);
    // parseArgs' own words named "-e" (-h, then -e) and suggested -- "-e".
    const hint = `chat-cli send @bob -- '-hello, it'\\''s me'`;
    assert.ok(r.stderr.includes(`unknown option "-hello, it's me": a text that starts with "-" goes after "--", as in: ${hint}\n`), r.stderr);
    const long = await alice.run("history", "@bob", "--limt", "3");
    assert.equal(long.code, 2);
    assert.match(long.stderr, /unknown option "--limt"; see: chat-cli --help/);
  });

  it("signs up, keeps its credentials private, and logs in again", async () => {
    assert.match(await alice.ok("signup", alice.username, "--display-name", "Alice"), new RegExp(`Signed up and logged in as @${alice.username}`));
    const mode = statSync(join(alice.home, "credentials.json")).mode & 0o777;
    assert.equal(mode, 0o600);
    // The password may come on stdin instead of the environment.
    const r = await bob.runWithInput(`${PASSWORD}\n`, "signup", bob.username, "--password-stdin", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).username, bob.username);

    const bad = await new CliUser(alice.username, chatd.httpUrl).runWithInput("wrong password\n", "login", alice.username, "--password-stdin");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /wrong username or password/);
    assert.match(await alice.ok("login", alice.username), /Logged in as/);
    assert.match(await alice.ok("whoami"), new RegExp(`@${alice.username} \\(Alice\\)`));
  });

  it("takes a damaged credentials file for no login: other commands exit 3 naming it, logout removes it, login writes over it", async () => {
    const carol = new CliUser(`carol_${suffix}`, chatd.httpUrl);
    await carol.ok("signup", carol.username);
    const file = join(carol.home, "credentials.json");
    const { refreshToken, ...partial } = JSON.parse(readFileSync(file, "utf8"));
    assert.ok(refreshToken);
    for (const damaged of ["{ not json", JSON.stringify(partial), "[]", "null"]) {
      writeFileSync(file, damaged);
      const r = await carol.run("chats");
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /credentials\.json (is not valid JSON|has no refreshToken|is not a login); remove it and log in again/);
      assert.doesNotMatch(r.stderr, /Cannot read properties/);
    }
    const out = await carol.ok("logout");
    assert.match(out, /Removed the damaged .*credentials\.json/);
    assert.doesNotMatch(out, /undefined/);
    assert.throws(() => statSync(file), /ENOENT/);

    writeFileSync(file, JSON.stringify(partial));
    const login = await carol.run("login", carol.username);
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stderr, /damaged/);
    assert.match(await carol.ok("whoami"), new RegExp(`@${carol.username}`));
  });

  it("keeps its credentials where --help says: in $XDG_CONFIG_HOME/chat-cli when CHAT_CLI_HOME is unset", async () => {
    assert.match(await alice.ok("--help"), /Credentials live in \$CHAT_CLI_HOME \(default \$XDG_CONFIG_HOME\/chat-cli, else\n~\/\.config\/chat-cli\), mode 0600; a folder another user owns or others may write in\nis refused\./);
    const config = mkdtempSync(join(tmpdir(), "chat-cli-xdg-"));
    try {
      const env = { ...process.env, CHAT_CLI_HOME: "", XDG_CONFIG_HOME: config, CHAT_SERVER: chatd.httpUrl, CHAT_PASSWORD: PASSWORD };
      const r = spawn(process.execPath, cliArgs("login", alice.username), { cwd: ROOT, env, stdio: "ignore" });
      assert.equal((await once(r, "close"))[0], 0);
      assert.equal(JSON.parse(readFileSync(join(config, "chat-cli", "credentials.json"), "utf8")).username, alice.username);
    } finally {
      rmSync(config, { recursive: true, force: true });
    }
  });

  it("refuses a --server other than the saved login's for a command that would talk to the saved one instead", async () => {
    const elsewhere = await alice.run("chats", "--server", "http://127.0.0.1:1");
    assert.equal(elsewhere.code, 2);
    assert.equal(
      elsewhere.stderr,
      `chat-cli: --server http://127.0.0.1:1 is not the server this home is logged in on (${chatd.httpUrl}), which chats talks to; to move: chat-cli login ${alice.username} --server http://127.0.0.1:1\n`,
    );
    assert.equal(elsewhere.stdout, "");
    // The saved one's own address, as typed or not, is no mistake.
    await alice.ok("whoami", "--server", chatd.httpUrl);
    await alice.ok("whoami", "--server", chatd.httpUrl.replace(/^http:\/\//, "") + "/");
  });

  it("refuses a CHAT_SERVER other than the saved login's, telling how to log in there, and sends that server nothing", async () => {
    const seen: string[] = [];
    const other = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ""}`);
      res.writeHead(401).end();
    });
    other.listen(0, "127.0.0.1");
    await once(other, "listening");
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      // Alice's own home, with the environment naming another server: as after `export CHAT_SERVER=...` for something else.
      const there = new CliUser(alice.username, otherUrl, alice.home);
      const r = await there.run("chats");
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(
        r.stderr,
        `chat-cli: CHAT_SERVER=${otherUrl} is not the server this home is logged in on (${chatd.httpUrl}), which chats talks to; to move: chat-cli login ${alice.username} (it logs in on CHAT_SERVER); to stay, unset CHAT_SERVER\n`,
      );
      assert.equal(r.stdout, "");
      assert.equal(seen.length, 0, seen.join("\n"));
      // --server, typed for this one command, is what it means over the environment's.
      await there.ok("whoami", "--server", chatd.httpUrl);
      // The way out it names works: the login moves to that server (which answers here as no chatd would).
      const moved = await there.run("login", alice.username);
      assert.equal(moved.code, 1);
      assert.ok(seen.some((s) => s.startsWith("POST /chat.v1.AuthService/Login")), seen.join("\n"));
      assert.ok(!seen.some((s) => /Bearer/.test(s)), `no token of the saved login went to ${otherUrl}: ${seen.join("\n")}`);
    } finally {
      other.closeAllConnections();
      other.close();
    }
    await alice.ok("whoami");
  });

  it("signs out the device a login on the same home replaces, which nothing would list or sign out again", async () => {
    const cleo = new CliUser(`cleo${suffix}`, chatd.httpUrl);
    try {
      await cleo.ok("signup", cleo.username);
      const first = JSON.parse(await cleo.ok("whoami", "--json")).deviceId as string;
      await cleo.ok("login", cleo.username);
      const second = JSON.parse(await cleo.ok("whoami", "--json")).deviceId as string;
      assert.notEqual(second, first);
      const saved = JSON.parse(readFileSync(join(cleo.home, "credentials.json"), "utf8")) as { accessToken: string };
      const { devices } = await apiClients(chatd.httpUrl, saved.accessToken).auth.listDevices({});
      assert.deepEqual(devices.map((d) => String(d.deviceId)), [second], "only the new login's device is signed in");
    } finally {
      cleo.cleanup();
    }
  });

  it("sends to @user, lists chats, and prints history", async () => {
    assert.match(await alice.ok("send", `@${bob.username}`, "hello", "bob"), new RegExp(`sent to @${bob.username} \\(channel \\d+, message \\d+\\)`));
    // "-" reads the text from stdin, newlines and all.
    const piped = await alice.runWithInput("line one\nline two\n", "send", `@${bob.username}`, "-");
    assert.equal(piped.code, 0, piped.stderr);

    const chats = (await bob.ok("chats", "--json")).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(chats.length, 1);
    assert.equal(chats[0].name, `@${alice.username}`);
    assert.equal(chats[0].unread, "2");
    assert.equal(chats[0].lastMessage.text, "line one\nline two");
    assert.match(await bob.ok("chats"), new RegExp(`${chats[0].channelId}\\s+@${alice.username}\\s+2 unread`));

    const history = await bob.ok("history", chats[0].channelId);
    // Each message with its seq, which edit and delete take.
    assert.match(history, new RegExp(`^\\[[\\d-]+ [\\d:]+\\] #1 ${alice.username}: hello bob\\n\\[[\\d-]+ [\\d:]+\\] #2 ${alice.username}: line one\\n    line two\\n$`));
    const lines = (await bob.ok("history", `@${alice.username}`, "--json", "--limit", "1")).trim().split("\n");
    assert.equal(lines.length, 1);
    assert.deepEqual(
      (({ seq, sender, text }) => ({ seq, sender, text }))(JSON.parse(lines[0]!)),
      { seq: "2", sender: alice.username, text: "line one\nline two" },
    );
    const older = await bob.run("history", `@${alice.username}`, "--limit", "1");
    assert.match(older.stderr, /older messages: chat-cli history @\S+ --before 2 --limit 1\)/);
    assert.match(await bob.ok("history", `@${alice.username}`, "--before", "2"), /hello bob/);

    const bad = await bob.run("history", "not-a-channel");
    assert.equal(bad.code, 2);
    const stranger = await bob.run("history", "12345");
    assert.equal(stranger.code, 1);
    assert.match(stranger.stderr, /not a member/);
  });

  it("searches a chat for messages with every word", async () => {
    const found = await bob.ok("search", `@${alice.username}`, "LINE", "two");
    assert.match(found, /line one\n    line two/);
    assert.doesNotMatch(found, /hello bob/);
    const none = await bob.run("search", `@${alice.username}`, "nothing-like-this");
    assert.equal(none.code, 0);
    assert.match(none.stderr, /no matches/);
  });

  it("follows a chat live, printing what is sent meanwhile once each, and stops on Ctrl+C", async () => {
    const follower = bob.follow(`@${alice.username}`, "--last", "1");
    try {
      await follower.started();
      assert.match(follower.out, /line one/, "the last message of history comes first");
      assert.doesNotMatch(follower.out, /hello bob/, "--last 1 shows one message");

      await alice.ok("send", `@${bob.username}`, "sent while bob follows");
      await alice.ok("send", `@${bob.username}`, "and another");
      await waitFor(() => /and another/.test(follower.out), "the live messages on stdout", 30_000);
      assert.match(follower.out, new RegExp(`${alice.username}: sent while bob follows\\n\\[[^\\]]+\\] #\\d+ ${alice.username}: and another\\n$`));
      assert.equal(follower.out.match(/sent while bob follows/g)?.length, 1);
    } finally {
      follower.interrupt();
    }
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("follows over the WebSocket --ws names (a cluster's gateway, not the api), and refuses one that is not ws://", async () => {
    const gateway = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await once(gateway, "listening");
    const protocols: string[] = [];
    gateway.on("connection", (socket, req) => {
      protocols.push(String(req.headers["sec-websocket-protocol"]));
      socket.close(1013, "a stand-in gateway");
    });
    const follower = bob.follow(`@${alice.username}`, "--ws", `ws://127.0.0.1:${(gateway.address() as AddressInfo).port}/ws`);
    try {
      await waitFor(() => protocols.length > 0, "the follower at the --ws address", 30_000);
      assert.match(protocols[0]!, /bearer\./);
    } finally {
      follower.interrupt();
      await follower.exited;
      await new Promise((r) => gateway.close(r));
    }
    const bad = await bob.run("follow", `@${alice.username}`, "--ws", "http://127.0.0.1:1/ws");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--ws must be a ws:\/\/ or wss:\/\/ URL/);
  });

  it("ends follow with exit 1, naming the address and its answer, when --ws is no chat WebSocket; waits for one that is busy", async () => {
    const nina = new CliUser(`nina_${suffix}`, chatd.httpUrl);
    const omar = new CliUser(`omar_${suffix}`, chatd.httpUrl);
    // A WebSocket server that answers the handshake with what the test says, as a wrong path or a busy proxy would.
    let status = 503;
    const web = createServer((_, res) => res.writeHead(404).end());
    web.on("upgrade", (_, socket) => socket.end(`HTTP/1.1 ${status} Whatever\r\nConnection: close\r\n\r\n`));
    web.listen(0, "127.0.0.1");
    await once(web, "listening");
    const ws = `ws://127.0.0.1:${(web.address() as AddressInfo).port}/wrong`;
    try {
      await Promise.all([nina.ok("signup", nina.username), omar.ok("signup", omar.username)]);
      const busy = nina.follow(`@${omar.username}`, "--ws", ws);
      await busy.said(/answered HTTP 503; reconnecting/);
      busy.interrupt();
      assert.equal(await busy.exited, 0, busy.err);

      status = 404;
      const wrong = await nina.run("follow", `@${omar.username}`, "--ws", ws);
      assert.equal(wrong.code, 1, wrong.stderr);
      assert.match(wrong.stderr, new RegExp(`${ws} answered HTTP 404, not a chat WebSocket`));
    } finally {
      web.close();
      nina.cleanup();
      omar.cleanup();
    }
  });

  it("edits and deletes messages: history marks them, and a follower sees each change once, live", async () => {
    const bobChat = `@${bob.username}`;
    const seqOf = async (text: string) => {
      const lines = (await alice.ok("history", bobChat, "--json", "--limit", "10")).trim().split("\n").map((l) => JSON.parse(l));
      const m = lines.find((l) => l.text === text);
      assert.ok(m, `"${text}" in history`);
      return m.seq as string;
    };
    await alice.ok("send", bobChat, "see you at 5");
    await alice.ok("send", bobChat, "wrong chat, sorry");
    const [fixSeq, oopsSeq] = [await seqOf("see you at 5"), await seqOf("wrong chat, sorry")];

    const follower = bob.follow(`@${alice.username}`, "--last", "2");
    try {
      await follower.started();
      assert.match(await alice.ok("edit", bobChat, fixSeq, "see you at 6"), new RegExp(`edited message #${fixSeq} in @${bob.username}`));
      await waitFor(() => follower.out.includes(`✎ #${fixSeq} edited: see you at 6\n`), `the edit on stdout (got: ${follower.out})`, 30_000);
      assert.match(await alice.ok("delete", bobChat, oopsSeq), new RegExp(`deleted message #${oopsSeq} in @${bob.username}`));
      await waitFor(() => follower.out.includes(`✗ #${oopsSeq} deleted\n`), `the delete on stdout (got: ${follower.out})`, 30_000);
      assert.equal(follower.out.match(/✎/g)?.length, 1, follower.out);
      assert.equal(follower.out.match(/✗/g)?.length, 1, follower.out);
      // Changes are not messages: nothing else was printed.
      assert.equal(follower.out.trim().split("\n").length, 4, follower.out);
    } finally {
      follower.interrupt();
    }
    assert.equal(await follower.exited, 0, follower.err);

    const history = await bob.ok("history", `@${alice.username}`, "--limit", "2");
    assert.match(history, new RegExp(`#${fixSeq} ${alice.username}: see you at 6 \\(edited\\)\\n`));
    assert.match(history, new RegExp(`#${oopsSeq} ${alice.username}: \\[deleted\\]\\n$`));
    assert.doesNotMatch(history, /wrong chat/);
    const json = (await bob.ok("history", `@${alice.username}`, "--json", "--limit", "2")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(
      json.map(({ seq, text, deleted }) => ({ seq, text, deleted })),
      [
        { seq: fixSeq, text: "see you at 6", deleted: false },
        { seq: oopsSeq, text: "", deleted: true },
      ],
    );
    assert.ok(json[0].editedAt, "an edited message has its edit time");
    assert.equal(json[1].editedAt, null);

    // An edit while nobody follows: the next follow gets it replayed (the
    // device's cursor is behind it), but its history shows it already.
    await alice.ok("edit", bobChat, fixSeq, "see you at 7");
    const again = bob.follow(`@${alice.username}`, "--last", "2");
    try {
      await again.started();
      await alice.ok("send", bobChat, "after the changes");
      await waitFor(() => /after the changes/.test(again.out), "the new message on stdout", 30_000);
      assert.match(again.out, new RegExp(`#${fixSeq} ${alice.username}: see you at 7 \\(edited\\)\\n`));
      assert.doesNotMatch(again.out, /[✎✗]/, again.out);
    } finally {
      again.interrupt();
    }
    assert.equal(await again.exited, 0, again.err);
  });

  it("refuses changes the caller may not make, with the server's reason", async () => {
    const bobChat = `@${bob.username}`;
    const last = JSON.parse((await bob.ok("history", `@${alice.username}`, "--json", "--limit", "1")).trim());
    assert.equal(last.sender, alice.username);
    // Bob may neither edit nor delete Alice's message in their 1:1 chat.
    const edit = await bob.run("edit", `@${alice.username}`, last.seq, "not mine");
    assert.equal(edit.code, 1);
    assert.match(edit.stderr, /only its sender/);
    const del = await bob.run("delete", `@${alice.username}`, last.seq);
    assert.equal(del.code, 1);
    assert.match(del.stderr, /only its sender/);
    // No such message, and an edit of one deleted (a delete again may be acked as changing nothing: docs/architecture.md).
    const missing = await alice.run("edit", bobChat, "99999", "nothing there");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no message with seq 99999/);
    await alice.ok("delete", bobChat, last.seq);
    const edited = await alice.run("edit", bobChat, String(last.seq), "too late");
    assert.equal(edited.code, 1);
    assert.match(edited.stderr, /was deleted/);
    // Usage mistakes exit 2 before reaching the server.
    const mistakes = [["edit", bobChat, "3"], ["edit", bobChat, "x", "text"], ["delete", bobChat], ["delete", bobChat, "3", "extra"], ["edit", bobChat, "0", "text"]];
    const codes = await Promise.all(mistakes.map(async (args) => (await alice.run(...args)).code));
    assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
    assert.match(await alice.ok("--help"), /edit <chat> <seq> <text\.\.\.>[\s\S]*delete <chat> <seq>/);
  });

  it("sends a reply with --reply: history prints it with the seq it answers, and --json gives replyToSeq", async () => {
    const aliceChat = `@${alice.username}`;
    await alice.ok("send", `@${bob.username}`, "what time is the meeting?");
    const before = (await bob.ok("history", aliceChat, "--json", "--limit", "10")).trim().split("\n").map((l) => JSON.parse(l));
    const asked = before.at(-1);
    assert.equal(asked.text, "what time is the meeting?");
    assert.equal(asked.replyToSeq, null, "a message that answers nothing has no replyToSeq");

    assert.match(
      await bob.ok("send", aliceChat, "--reply", asked.seq, "at", "10"),
      new RegExp(`sent to @${alice.username} as a reply to #${asked.seq} \\(channel \\d+, message \\d+\\)`),
    );
    const sent = JSON.parse(await bob.ok("send", aliceChat, "ten sharp", "--reply", asked.seq, "--json"));
    assert.equal(sent.replyToSeq, asked.seq);

    const history = await alice.ok("history", `@${bob.username}`, "--limit", "3");
    assert.match(
      history,
      new RegExp(
        `#${asked.seq} ${alice.username}: what time is the meeting\\?\\n` +
          `\\[[^\\]]+\\] #\\d+ ${bob.username}: ↪ #${asked.seq} at 10\\n` +
          `\\[[^\\]]+\\] #\\d+ ${bob.username}: ↪ #${asked.seq} ten sharp\\n$`,
      ),
    );
    const json = (await alice.ok("history", `@${bob.username}`, "--json", "--limit", "3")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(
      json.map(({ sender, text, replyToSeq }) => ({ sender, text, replyToSeq })),
      [
        { sender: alice.username, text: "what time is the meeting?", replyToSeq: null },
        { sender: bob.username, text: "at 10", replyToSeq: asked.seq },
        { sender: bob.username, text: "ten sharp", replyToSeq: asked.seq },
      ],
    );

    // The server refuses a reply to a deleted message or to none.
    const deleted = before.find((m) => m.deleted);
    assert.ok(deleted, "the chat has a deleted message (deleted above)");
    const toDeleted = await bob.run("send", aliceChat, "--reply", deleted.seq, "too late");
    assert.equal(toDeleted.code, 1);
    assert.match(toDeleted.stderr, /was deleted/);
    const toNone = await bob.run("send", aliceChat, "--reply", "99999", "to nothing");
    assert.equal(toNone.code, 1);
    assert.match(toNone.stderr, /no message with seq 99999/);
    // Usage mistakes exit 2 before reaching the server.
    const mistakes = [["send", aliceChat, "--reply", "x", "text"], ["send", aliceChat, "--reply", "0", "text"], ["send", aliceChat, "--reply", asked.seq], ["edit", aliceChat, asked.seq, "text", "--reply", asked.seq]];
    const codes = await Promise.all(mistakes.map(async (args) => (await bob.run(...args)).code));
    assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
    assert.match(await bob.ok("--help"), /--reply SEQ/);
  });

  it("reacts and takes a reaction back: history shows the counts, and a follower sees each reaction once, live", async () => {
    const [aliceChat, bobChat] = [`@${alice.username}`, `@${bob.username}`];
    await alice.ok("send", bobChat, "pizza tonight?");
    const asked = JSON.parse((await bob.ok("history", aliceChat, "--json", "--limit", "1")).trim());
    assert.equal(asked.text, "pizza tonight?");
    assert.deepEqual(asked.reactions, [], "no reactions yet");
    const seq = asked.seq as string;

    const follower = alice.follow(bobChat, "--last", "1");
    const printed = (line: string) => waitFor(() => follower.out.includes(`${line}\n`), `"${line}" on stdout (got: ${follower.out})`, 30_000);
    try {
      await follower.started();
      assert.match(await bob.ok("react", aliceChat, seq, "👍"), new RegExp(`reacted 👍 to message #${seq} in @${alice.username}`));
      await printed(`☺ #${seq} ${bob.username} reacted 👍`);
      // Anyone in the chat may react, to their own message too.
      await alice.ok("react", bobChat, seq, "👍");
      await printed(`☺ #${seq} ${alice.username} reacted 👍`);
      assert.match(await bob.ok("history", aliceChat, "--limit", "1"), new RegExp(`#${seq} ${alice.username}: pizza tonight\\? \\[👍 2\\]\n$`));
      // One reaction per person: another emoji replaces the first.
      await bob.ok("react", aliceChat, seq, "❤️");
      await printed(`☺ #${seq} ${bob.username} reacted ❤️`);
      assert.match(await bob.ok("history", aliceChat, "--limit", "1"), /pizza tonight\? \[(👍 1 ❤️ 1|❤️ 1 👍 1)\]\n$/);
      assert.match(await bob.ok("unreact", aliceChat, seq), new RegExp(`took back your reaction to message #${seq} in @${alice.username}`));
      await printed(`☺ #${seq} ${bob.username} took back their reaction`);
      assert.equal(follower.out.match(/☺/g)?.length, 4, follower.out);
      // Reactions are not messages: the history line first, then the four reactions, nothing else.
      assert.equal(follower.out.trim().split("\n").length, 5, follower.out);
    } finally {
      follower.interrupt();
    }
    assert.equal(await follower.exited, 0, follower.err);

    assert.match(await bob.ok("history", aliceChat, "--limit", "1"), new RegExp(`#${seq} ${alice.username}: pizza tonight\\? \\[👍 1\\]\n$`));
    const json = JSON.parse((await bob.ok("history", aliceChat, "--json", "--limit", "1")).trim());
    assert.deepEqual(json.reactions, [{ userId: json.senderId, user: alice.username, emoji: "👍" }]);

    // A reaction while nobody follows: the next follow gets it replayed (its
    // device's cursor is behind it), but the history it prints shows it already.
    await bob.ok("react", aliceChat, seq, "😂");
    const again = alice.follow(bobChat, "--last", "1");
    try {
      await again.started();
      await bob.ok("send", aliceChat, "after the reactions");
      await waitFor(() => /after the reactions/.test(again.out), "the new message on stdout", 30_000);
      assert.match(again.out, /pizza tonight\? \[(👍 1 😂 1|😂 1 👍 1)\]\n/);
      assert.doesNotMatch(again.out, /☺/, again.out);
    } finally {
      again.interrupt();
    }
    assert.equal(await again.exited, 0, again.err);

    // The server refuses what is not one emoji, and a message that is not there (any more).
    const word = await bob.run("react", aliceChat, seq, "yes");
    assert.equal(word.code, 1);
    assert.match(word.stderr, /one emoji/);
    const missing = await bob.run("react", aliceChat, "99999", "👍");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no message with seq 99999/);
    await alice.ok("delete", bobChat, seq);
    const gone = await bob.run("react", aliceChat, seq, "👍");
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /was deleted/);
    assert.match(await bob.ok("history", aliceChat, "--limit", "2"), new RegExp(`#${seq} ${alice.username}: \\[deleted\\]\n`), "a deleted message shows no reactions");
    // Usage mistakes exit 2 before reaching the server.
    const mistakes = [["react", aliceChat, seq], ["react", aliceChat, "0", "👍"], ["react", aliceChat, seq, "👍", "extra"], ["unreact", aliceChat, seq, "👍"]];
    const codes = await Promise.all(mistakes.map(async (args) => (await bob.run(...args)).code));
    assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
    assert.match(await bob.ok("--help"), /react <chat> <seq> <emoji>[\s\S]*unreact <chat> <seq>/);
  });

  it("blocks and unblocks @user: the blocked one's send fails with the reason, and lists whom it blocked", async () => {
    assert.match(await bob.ok("block", `@${alice.username}`), new RegExp(`blocked @${alice.username}`));
    const listed = (await bob.ok("blocked", "--json")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(listed.map((b) => b.username), [alice.username]);
    const refused = await alice.run("send", `@${bob.username}`, "let me talk");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /blocked you/);
    assert.match(await bob.ok("unblock", `@${alice.username}`), /unblocked/);
    assert.equal(await bob.ok("blocked"), "You have blocked nobody. Block someone with: chat-cli block @username\n", "an empty list says so");
    assert.equal(await bob.ok("blocked", "--json"), "", "one JSON line per blocked user: none");
    assert.equal((await alice.run("send", `@${bob.username}`, "thanks")).code, 0);
    assert.equal((await bob.run("block", "nobody_here_at_all")).code, 2, "a user is named with @");
  });

  it("mutes and unmutes a chat, and shows it muted in the list", async () => {
    assert.match(await bob.ok("mute", `@${alice.username}`), new RegExp(`muted @${alice.username}`));
    assert.match(await bob.ok("chats"), /muted/);
    assert.equal(JSON.parse((await bob.ok("chats", "--json")).trim().split("\n")[0]!).muted, true);
    assert.match(await bob.ok("unmute", `@${alice.username}`), /unmuted/);
    assert.equal(JSON.parse((await bob.ok("chats", "--json")).trim().split("\n")[0]!).muted, false);
  });

  it("refuses a channel id or a seq of 0 or past 64 bits as a usage error that names it", async () => {
    const lee = new CliUser(`lee_${suffix}`, chatd.httpUrl);
    try {
      await lee.ok("signup", lee.username);
      const huge = "99999999999999999999999";
      for (const args of [["history", huge], ["members", "0"], ["history", "18446744073709551615"]]) {
        const r = await lee.run(...args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`"${args[1]}" is neither a channel id`));
      }
      const r = await lee.run("send", `@${lee.username}`, "--reply", huge, "hi");
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`--reply: "${huge}" is not a message's seq`));
    } finally {
      lee.cleanup();
    }
  });

  it("answers --json with one JSON line from block, unblock, mute, unmute and logout too", async () => {
    const jo = new CliUser(`jo_${suffix}`, chatd.httpUrl);
    const ky = new CliUser(`ky_${suffix}`, chatd.httpUrl);
    try {
      await jo.ok("signup", jo.username);
      const kyId = JSON.parse(await ky.ok("signup", ky.username, "--json")).userId;
      const line = async (...args: string[]) => {
        const lines = (await jo.ok(...args, "--json")).trim().split("\n");
        assert.equal(lines.length, 1, `${args.join(" ")}: ${lines.join("\n")}`);
        return JSON.parse(lines[0]!);
      };
      assert.deepEqual(await line("block", `@${ky.username}`), { userId: kyId, username: ky.username, blocked: true });
      assert.equal((await line("unblock", `@${ky.username}`)).blocked, false);
      const muted = await line("mute", `@${ky.username}`);
      assert.deepEqual([muted.name, muted.muted], [`@${ky.username}`, true]);
      assert.equal((await line("unmute", muted.channelId)).muted, false);
      const { deviceId } = JSON.parse(readFileSync(join(jo.home, "credentials.json"), "utf8"));
      assert.deepEqual(await line("logout"), { username: jo.username, deviceId, confirmed: true });
    } finally {
      jo.cleanup();
      ky.cleanup();
    }
  });

  it("takes the \\r of CRLF line endings out of a text read from stdin or a file, for send and edit", async () => {
    const win = new CliUser(`win_${suffix}`, chatd.httpUrl);
    const lin = new CliUser(`lin_${suffix}`, chatd.httpUrl);
    try {
      await Promise.all([win.ok("signup", win.username), lin.ok("signup", lin.username)]);
      const texts = async () => (await lin.ok("history", `@${win.username}`, "--json")).trim().split("\n").map((l) => JSON.parse(l).text as string);
      // As a file saved on Windows arrives through a pipe, and through "$(cat file)", which keeps all but the last newline.
      const piped = await win.runWithInput("from windows\r\nsecond line\r\n", "send", `@${lin.username}`, "-");
      assert.equal(piped.code, 0, piped.stderr);
      await win.ok("send", `@${lin.username}`, "pasted\r\nfrom a file\r");
      assert.deepEqual(await texts(), ["from windows\nsecond line", "pasted\nfrom a file"]);
      const edited = await win.runWithInput("edited\r\nagain\r\n", "edit", `@${lin.username}`, "2", "-");
      assert.equal(edited.code, 0, edited.stderr);
      assert.deepEqual(await texts(), ["from windows\nsecond line", "edited\nagain"]);
      assert.doesNotMatch(await lin.ok("history", `@${win.username}`), /\ufffd/, "no stray character where each line ended");
    } finally {
      win.cleanup();
      lin.cleanup();
    }
  });

  it("refuses a text past the server's request size at once, saying how long it is, not in the HTTP library's words", async () => {
    const big = "€".repeat(200_000); // 600,000 bytes, past CHAT_MAX_FRAME_BYTES (512 KiB)
    const r = await alice.runWithInput(big, "send", `@${bob.username}`, "-");
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "chat-cli: the text is too large for the server to take (200000 characters, 600000 bytes as UTF-8); a message holds at most 99,999 characters\n");
  });

  it("lines up the columns of chats and members by the width a terminal gives names in CJK or with emoji", async () => {
    const mei = new CliUser(`mei_${suffix}`, chatd.httpUrl);
    const ola = new CliUser(`ola_${suffix}`, chatd.httpUrl);
    try {
      await mei.ok("signup", mei.username, "--display-name", "王小明");
      await ola.ok("signup", ola.username);
      await ola.ok("send", `@${mei.username}`, "hi");
      const group = JSON.parse(await ola.ok("group", "旅行 ✈️", `@${mei.username}`, "--json")).channelId as string;
      await ola.ok("send", group, "bonjour");
      await ola.ok("pin", group);
      /** The column (as a terminal counts them) where `at` starts on each line. */
      const column = (line: string, at: number) => displayWidth(line.slice(0, at));

      const [header, ...rows] = (await ola.ok("chats")).trimEnd().split("\n");
      assert.equal(rows.length, 2, rows.join("\n"));
      assert.match(rows[0]!, /📌 旅行 ✈️/);
      const lastMessage = column(header!, header!.indexOf("LAST MESSAGE"));
      for (const row of rows) assert.equal(column(row, row.indexOf(`${ola.username}: `)), lastMessage, `${header}\n${rows.join("\n")}`);

      const members = (await mei.ok("members", group)).trimEnd().split("\n");
      assert.ok(members.some((l) => l.includes("(王小明)")), members.join("\n"));
      const roles = members.map((l) => column(l, l.search(/ (owner|member) {2}/) + 1));
      assert.deepEqual(roles, [roles[0], roles[0]], members.join("\n"));
    } finally {
      mei.cleanup();
      ola.cleanup();
    }
  });

  it("tells someone typing the text of \"-\" at a terminal how to end it, and sends what was typed", async () => {
    const tty = new CliUser(`tty_${suffix}`, chatd.httpUrl);
    const peer = new CliUser(`ttp_${suffix}`, chatd.httpUrl);
    try {
      await Promise.all([tty.ok("signup", tty.username), peer.ok("signup", peer.username)]);
      // util-linux's script gives the CLI a terminal of its own, as a person at one has; what is written to script is typed there.
      const child = spawn("script", ["-qec", [process.execPath, ...cliArgs("send", `@${peer.username}`, "-")].map((a) => `'${a}'`).join(" "), "/dev/null"], {
        cwd: ROOT,
        env: { ...process.env, CHAT_CLI_HOME: tty.home, CHAT_SERVER: chatd.httpUrl },
        stdio: ["pipe", "pipe", "pipe"],
      });
      let screen = "";
      child.stdout!.on("data", (d) => (screen += d));
      child.stderr!.on("data", (d) => (screen += d));
      const exited = new Promise<number | null>((done) => child.on("close", done));
      try {
        await waitFor(() => /Type the text; end it with Ctrl\+D on a line of its own \(Ctrl\+C cancels\)\./.test(screen), `the hint (got: ${screen})`, 30_000);
        child.stdin!.write("typed at a terminal\n");
        await waitFor(() => screen.includes("typed at a terminal"), "the line echoed", 10_000);
        child.stdin!.write("\x04");
        assert.equal(await exited, 0, screen);
      } finally {
        child.kill();
      }
      assert.match(screen, new RegExp(`sent to @${peer.username}`));
      assert.equal(JSON.parse(await peer.ok("history", `@${tty.username}`, "--json")).text, "typed at a terminal");
      // Piped, nobody types: no hint.
      const piped = await tty.runWithInput("piped\n", "send", `@${peer.username}`, "-");
      assert.equal(piped.stderr, "");
    } finally {
      tty.cleanup();
      peer.cleanup();
    }
  });

  it("tells someone whose every chat is archived where they are, not that there are none", async () => {
    const ivy = new CliUser(`ivy_${suffix}`, chatd.httpUrl);
    try {
      await ivy.ok("signup", ivy.username);
      assert.equal(await ivy.ok("chats"), 'No chats yet. Start one with: chat-cli send @username "hello"\n');
      const peer = await signUp(chatd.httpUrl, "peer");
      await peer.api.channels.openDirect({ userId: BigInt(JSON.parse(await ivy.ok("whoami", "--json")).userId) });
      await ivy.ok("archive", `@${peer.username}`);
      assert.equal(await ivy.ok("chats"), "No chats outside the archive. See the archived ones with: chat-cli chats --archived\n");
    } finally {
      ivy.cleanup();
    }
  });

  it("pins a chat to the top of chats with a mark, archives one into chats --archived, and refuses a sixth pin with the server's reason", async () => {
    // A user of its own: pins and the archive would reorder the others' lists.
    const pia = new CliUser(`pia_${suffix}`, chatd.httpUrl);
    try {
      await pia.ok("signup", pia.username);
      const piaId = BigInt(JSON.parse(await pia.ok("whoami", "--json")).userId);
      const peers: string[] = [];
      for (let i = 0; i < 6; i++) {
        const peer = await signUp(chatd.httpUrl, "peer");
        await peer.api.channels.openDirect({ userId: piaId });
        peers.push(`@${peer.username}`);
      }
      const list = async (...args: string[]) =>
        (await pia.ok("chats", "--json", ...args))
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { name: string; pinnedAt: string | null; archived: boolean });
      const [oldest, second] = [peers[0]!, peers[1]!];
      assert.equal((await list()).at(-1)!.name, oldest);

      assert.equal(await pia.ok("pin", oldest), `pinned ${oldest}\n`);
      const pinned = await list();
      assert.equal(pinned[0]!.name, oldest);
      assert.match(pinned[0]!.pinnedAt ?? "", /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
      assert.deepEqual(pinned.slice(1).map((c) => c.pinnedAt), [null, null, null, null, null]);
      const table = (await pia.ok("chats")).split("\n");
      assert.match(table[1]!, new RegExp(`^\\d+\\s+📌 ${oldest}\\s`));
      assert.equal(table.filter((l) => l.includes("📌")).length, 1);

      const archived = JSON.parse(await pia.ok("archive", second, "--json"));
      assert.deepEqual([archived.name, archived.archived, archived.pinnedAt], [second, true, null]);
      assert.ok(!(await list()).some((c) => c.name === second), "an archived chat leaves chats");
      assert.deepEqual((await list("--archived")).map((c) => [c.name, c.archived]), [[second, true]]);
      assert.match(await pia.ok("chats", "--archived"), new RegExp(`\\d+\\s+${second}\\s`));
      assert.equal(await pia.ok("unarchive", second), `unarchived ${second}\n`);
      assert.equal(await pia.ok("chats", "--archived"), "No archived chats.\n");
      assert.equal((await pia.run("pin", second, "--archived")).code, 2, "--archived goes with chats alone");

      for (const peer of peers.slice(1, 5)) await pia.ok("pin", peer);
      const refused = await pia.run("pin", peers[5]!);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /at most 5 chats can be pinned; unpin one first/);
      // The most recently pinned first; the one refused stays below them.
      assert.deepEqual(
        (await list()).map((c) => c.name),
        [peers[4], peers[3], peers[2], peers[1], peers[0], peers[5]],
      );
      assert.equal(await pia.ok("unpin", oldest), `unpinned ${oldest}\n`);
    } finally {
      pia.cleanup();
    }
  });

  it("clears a chat's history for you alone: your history, a follower and chats start after it, the other person's keeps all of it", async () => {
    // Users of their own: the clear would take the others' messages out of later tests.
    const [cleo, dan] = [new CliUser(`cleo_${suffix}`, chatd.httpUrl), new CliUser(`dan_${suffix}`, chatd.httpUrl)];
    try {
      await Promise.all([cleo.ok("signup", cleo.username), dan.ok("signup", dan.username)]);
      const [cleoChat, danChat] = [`@${dan.username}`, `@${cleo.username}`];
      await cleo.ok("send", cleoChat, "the old plan");
      await dan.ok("send", danChat, "agreed, the old plan");

      assert.equal(await cleo.ok("clear", cleoChat), `cleared the history of ${cleoChat} for you, through #2 (the others keep theirs)\n`);
      const mine = await cleo.run("history", cleoChat);
      assert.deepEqual([mine.code, mine.stdout, mine.stderr], [0, "", "(no messages since you cleared the history)\n"]);
      assert.match(await cleo.ok("chats"), new RegExp(`${cleoChat}\\s+\\(history cleared\\)\\n`));
      assert.match(await dan.ok("history", danChat), new RegExp(`^\\[[^\\]]+\\] #1 ${cleo.username}: the old plan\\n\\[[^\\]]+\\] #2 ${dan.username}: agreed, the old plan\\n$`));

      // The device's inbox still replays the cleared messages: a follower leaves them out.
      const follower = cleo.follow(cleoChat);
      try {
        await follower.started();
        await dan.ok("send", danChat, "a new plan");
        await waitFor(() => follower.out.includes("a new plan"), `the new message on stdout (got: ${follower.out})`, 30_000);
      } finally {
        follower.interrupt();
      }
      assert.equal(await follower.exited, 0, follower.err);
      const chatGoesOn = new RegExp(`^\\[[^\\]]+\\] #3 ${dan.username}: a new plan\\n$`);
      assert.match(follower.out, chatGoesOn);
      assert.match(await cleo.ok("history", cleoChat), chatGoesOn, "the chat goes on after the clear");
      const cleared = JSON.parse(await cleo.ok("clear", cleoChat, "--json"));
      assert.deepEqual([cleared.name, cleared.clearedThroughSeq], [cleoChat, "3"]);
      assert.match(cleared.channelId, /^\d+$/);
      assert.match(await dan.ok("history", danChat), /#1 .*the old plan\n.*#2 .*agreed, the old plan\n.*#3 .*a new plan\n$/);

      const mistakes = [["clear"], ["clear", cleoChat, "extra"]];
      const codes = await Promise.all(mistakes.map(async (args) => (await cleo.run(...args)).code));
      assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
      assert.match(await cleo.ok("--help"), /unarchive <chat>.*\n\s+clear <chat>/);
    } finally {
      cleo.cleanup();
      dan.cleanup();
    }
  });

  it("marks a chat unread and takes the mark away with read: chats shows the mark, history leaves it, the other person sees none", async () => {
    // Users of their own: the mark would show in the others' lists.
    const [uma, vic] = [new CliUser(`uma_${suffix}`, chatd.httpUrl), new CliUser(`vic_${suffix}`, chatd.httpUrl)];
    try {
      await Promise.all([uma.ok("signup", uma.username), vic.ok("signup", vic.username)]);
      const [umaChat, vicChat] = [`@${vic.username}`, `@${uma.username}`];
      await vic.ok("send", vicChat, "read this later");
      // Sending reads the chat: nothing is left to count, so only the mark says it is unread.
      await uma.ok("send", umaChat, "will do");
      /** The one chat of the user's "chats --json": its unread count and its mark. */
      const unreadOf = async (user: CliUser) => {
        const c = JSON.parse((await user.ok("chats", "--json")).trim()) as { unread: string; markedUnread: boolean };
        return [c.unread, c.markedUnread];
      };

      assert.equal(await uma.ok("unread", umaChat), `marked ${umaChat} unread\n`);
      const markedRow = new RegExp(`^\\d+\\s+${umaChat}\\s+marked unread\\s+${uma.username}: will do$`, "m");
      assert.match(await uma.ok("chats"), markedRow);
      assert.deepEqual(await unreadOf(uma), ["0", true]);
      assert.match(await uma.ok("history", umaChat), /#2 .*will do\n$/);
      assert.match(await uma.ok("chats"), markedRow, "history only looks: the mark stays");
      assert.deepEqual(await unreadOf(vic), ["1", false], "the mark is uma's alone");
      assert.doesNotMatch(await vic.ok("chats"), /marked unread/);

      // A message to count shows as its count; the mark is still there underneath.
      await vic.ok("send", vicChat, "and this");
      assert.match(await uma.ok("chats"), new RegExp(`${umaChat}\\s+1 unread\\s+${vic.username}: and this`));
      assert.deepEqual(await unreadOf(uma), ["1", true]);

      assert.equal(await uma.ok("read", umaChat), `took the unread mark off ${umaChat}\n`);
      assert.deepEqual(await unreadOf(uma), ["1", false], "read takes the mark away, not the messages' unread");
      const marked = JSON.parse(await uma.ok("unread", umaChat, "--json"));
      assert.deepEqual([marked.name, marked.markedUnread, marked.archived, marked.pinnedAt], [umaChat, true, false, null]);
      assert.equal(JSON.parse(await uma.ok("read", umaChat, "--json")).markedUnread, false);
      assert.doesNotMatch(await uma.ok("chats"), /marked unread/);

      const mistakes = [["unread"], ["read", umaChat, "extra"]];
      const codes = await Promise.all(mistakes.map(async (args) => (await uma.run(...args)).code));
      assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
      assert.match(await uma.ok("--help"), /unmute <chat>.*\n\s+unread <chat>.*\n(?:\s{20,}.*\n)*\s+read <chat>.*\n\s+pin <chat>/);
    } finally {
      uma.cleanup();
      vic.cleanup();
    }
  });

  it("lets a group's owner delete anyone's message, but a member only their own", async () => {
    const created = JSON.parse(await alice.ok("group", "Edit crew", `@${bob.username}`, "--json"));
    const group = String(created.channelId);
    await alice.ok("send", group, "from the owner");
    await bob.ok("send", group, "from a member");
    const seqs = Object.fromEntries(
      (await bob.ok("history", group, "--json"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .map((m) => [m.text, m.seq as string]),
    );
    const refused = await bob.run("delete", group, seqs["from the owner"]!);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /admin/);
    assert.equal((await alice.run("edit", group, seqs["from a member"]!, "put words in their mouth")).code, 1, "nobody edits another's message");
    assert.match(await alice.ok("delete", group, seqs["from a member"]!), /deleted message/);
    const history = await bob.ok("history", group);
    assert.match(history, new RegExp(`#${seqs["from a member"]} ${bob.username}: \\[deleted\\]`));
    assert.match(history, /from the owner/);
  });

  it("never lets someone else's words drive the reader's terminal; --json keeps them as sent", async () => {
    const mallory = await signUp(chatd.httpUrl, "mallory");
    const aliceId = BigInt(JSON.parse(await alice.ok("whoami", "--json")).userId);
    const { channelId } = (await mallory.api.channels.openDirect({ userId: aliceId })).channel!;
    const text = "\u001b]0;pwned\u0007\u001b[2Jgone?\u009b1m";
    await mallory.api.messages.sendMessage({ channelId, clientMsgId: "esc-1", text });
    assert.match(await alice.ok("history", String(channelId)), /: \ufffd\]0;pwned\ufffd\ufffd\[2Jgone\?\ufffd1m\n$/);
    const json = await alice.ok("history", String(channelId), "--json");
    assert.equal(JSON.parse(json).text, text);
    // A C1 control (U+009B is CSI, U+009D OSC) drives a terminal as its ESC form does, and JSON leaves it raw: escaped, it reads back the same.
    assert.doesNotMatch(json, /[\u007f-\u009f]/);
  });

  it("keeps a text with line or paragraph separators (U+2028, U+2029) to one --json line, and indents what follows them, for a script that splits lines as Python's splitlines() does", async () => {
    const reader = new CliUser(`sep_${suffix}`, chatd.httpUrl);
    const readerId = BigInt(JSON.parse(await reader.ok("signup", reader.username, "--json")).userId);
    const mallory = await signUp(chatd.httpUrl, "sepmallory");
    const { channelId } = (await mallory.api.channels.openDirect({ userId: readerId })).channel!;
    const text = 'hi\u2028{"channelId":"1","seq":"99","text":"forged"}\u2029[2024-05-01 18:02] #99 alice: forged';
    await mallory.api.messages.sendMessage({ channelId, clientMsgId: "sep-1", text });
    // Python's str.splitlines() (and the Unicode line-breaking rules) end a line at each of these.
    const splitlines = (s: string) => s.replace(/(\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029])$/, "").split(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/);
    const json = splitlines(await reader.ok("history", String(channelId), "--json"));
    assert.equal(json.length, 1, `one message, ${json.length} lines: ${JSON.stringify(json)}`);
    assert.equal(JSON.parse(json[0]!).text, text, "--json keeps the text as sent");
    const [first, ...rest] = splitlines(await reader.ok("history", String(channelId)));
    assert.match(first!, new RegExp(`#1 ${mallory.username}: hi$`));
    assert.deepEqual(rest, ['    {"channelId":"1","seq":"99","text":"forged"}', "    [2024-05-01 18:02] #99 alice: forged"]);
  });

  it("prints the CRLF line endings of a text another client sent as line ends, in history and follow, not as a stray character", async () => {
    const reader = new CliUser(`crlf_${suffix}`, chatd.httpUrl);
    try {
      const readerId = BigInt(JSON.parse(await reader.ok("signup", reader.username, "--json")).userId);
      const sender = await signUp(chatd.httpUrl, "winapp");
      const { channelId } = (await sender.api.channels.openDirect({ userId: readerId })).channel!;
      await sender.api.messages.sendMessage({ channelId, clientMsgId: "crlf-1", text: "first\r\nsecond" });
      const line = new RegExp(`#1 ${sender.username}: first\\n    second\\n$`);
      assert.match(await reader.ok("history", String(channelId)), line);
      const follower = reader.follow(String(channelId), "--last", "0");
      try {
        await follower.started();
        await sender.api.messages.sendMessage({ channelId, clientMsgId: "crlf-2", text: "live\r\nlines" });
        await sender.api.messages.sendMessage({ channelId, clientMsgId: "crlf-3", text: "fixed\r\nagain", editSeq: 2n });
        await follower.printed("✎ #2 edited:");
        assert.match(follower.out, new RegExp(`#2 ${sender.username}: live\\n    lines\\n✎ #2 edited: fixed\\n    again\\n$`));
      } finally {
        follower.interrupt();
      }
      assert.equal(await follower.exited, 0, follower.err);
      assert.equal(JSON.parse(await reader.ok("history", String(channelId), "--json", "--limit", "1")).text, "fixed\r\nagain", "--json keeps the text as sent");
    } finally {
      reader.cleanup();
    }
  });

  it("prints a group's notes: a follower and history show who added and removed whom, --json has the note, and chats lists it", async () => {
    // The owner and the one added and removed act through the API: the CLI has no command for it.
    const carol = await signUp(chatd.httpUrl, "carol");
    const dave = await signUp(chatd.httpUrl, "dave");
    const aliceId = BigInt(JSON.parse(await alice.ok("whoami", "--json")).userId);
    const { channelId } = (await carol.api.channels.createGroup({ title: "Notes crew", memberUserIds: [aliceId] })).channel!;
    const group = String(channelId);
    const [added, removed] = [`— ${carol.username} added ${dave.username}\n`, `— ${carol.username} removed ${dave.username}\n`];

    const follower = alice.follow(group);
    try {
      await follower.started();
      await carol.api.channels.addMembers({ channelId, userIds: [dave.userId] });
      await waitFor(() => follower.out.includes(added), `the note on stdout (got: ${follower.out})`, 30_000);
      await alice.ok("send", group, "welcome dave");
      await carol.api.channels.removeMember({ channelId, userId: dave.userId });
      await waitFor(() => follower.out.includes(removed), `the note on stdout (got: ${follower.out})`, 30_000);
      assert.match(follower.out, new RegExp(`^\\[[^\\]]+\\] #\\d+ ${added}\\[[^\\]]+\\] #\\d+ ${alice.username}: welcome dave\\n\\[[^\\]]+\\] #\\d+ ${removed}$`));
    } finally {
      follower.interrupt();
    }
    assert.equal(await follower.exited, 0, follower.err);

    const history = await alice.ok("history", group);
    assert.match(history, new RegExp(`^\\[[^\\]]+\\] #1 ${added}\\[[^\\]]+\\] #2 ${alice.username}: welcome dave\\n\\[[^\\]]+\\] #3 ${removed}$`), "creating the group wrote no note");
    const json = (await alice.ok("history", group, "--json")).trim().split("\n").map((l) => JSON.parse(l));
    const daveNote = (kind: string) => ({ kind, userIds: [String(dave.userId)], users: [dave.username] });
    assert.deepEqual(
      json.map(({ seq, sender, text, note }) => ({ seq, sender, text, note })),
      [
        { seq: "1", sender: carol.username, text: "", note: daveNote("members_added") },
        { seq: "2", sender: alice.username, text: "welcome dave", note: null },
        { seq: "3", sender: carol.username, text: "", note: daveNote("member_removed") },
      ],
    );
    assert.match(await alice.ok("chats"), new RegExp(`${group}\\s+Notes crew\\s+.*${carol.username} removed ${dave.username}\\n`));
  });

  it("gives a group's owner its invite link; another joins with the full link and history shows the note; a reset or turned-off link fails with the server's reason", async () => {
    const created = await alice.ok("group", "Invite crew");
    const group = /^created group "Invite crew" \(channel (\d+), 1 member\)\n$/.exec(created)?.[1];
    assert.ok(group, `a group of one is "1 member", not "1 members": ${created}`);
    const link = JSON.parse(await alice.ok("invite", group, "--json"));
    assert.equal(link.channelId, group);
    assert.match(link.code, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(link.url, `${chatd.httpUrl}/#/join/${link.code}`);
    assert.equal(await alice.ok("invite", group), `invite link of Invite crew: ${link.url}\ncode: ${link.code}\n`, "the same link until it is reset");

    assert.equal(await bob.ok("join", link.url), `joined "Invite crew" (channel ${group}, 2 members)\n`);
    assert.deepEqual(JSON.parse(await bob.ok("join", link.code, "--json")), { channelId: group, title: "Invite crew" }, "the bare code joins too; again, it changes nothing");
    assert.match(await alice.ok("history", group), new RegExp(`^\\[[^\\]]+\\] #1 — ${bob.username} joined with the invite link\\n$`), "one note for the first join");
    const [note] = (await bob.ok("history", group, "--json")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual([note.sender, note.note], [bob.username, { kind: "joined_by_invite", userIds: [], users: [] }]);
    const member = await bob.run("invite", group);
    assert.equal(member.code, 1);
    assert.match(member.stderr, /only the owner and admins/);

    const reset = JSON.parse(await alice.ok("invite", group, "--reset", "--json"));
    assert.notEqual(reset.code, link.code);
    const dead = /this invite link does not work: it was reset or revoked, or never was one/;
    const old = await bob.run("join", link.url);
    assert.deepEqual([old.code, old.stdout], [1, ""]);
    assert.match(old.stderr, dead);
    assert.match(await alice.ok("invite", group, "--revoke"), /^turned off the invite link of Invite crew/);
    const off = await bob.run("join", reset.url);
    assert.equal(off.code, 1);
    assert.match(off.stderr, dead);
    const garbled = await bob.run("join", "not-a-code");
    assert.equal(garbled.code, 1);
    assert.match(garbled.stderr, /22 characters/);
    // Usage mistakes exit 2 before reaching the server.
    const mistakes = [["invite", group, "--reset", "--revoke"], ["invite", `@${bob.username}`], ["invite"], ["join"], ["join", link.url, "extra"], ["chats", "--reset"]];
    const codes = await Promise.all(mistakes.map(async (args) => (await alice.run(...args)).code));
    assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
    assert.match(await alice.ok("--help"), /invite <group>[\s\S]*join <link>/);
  });

  it("manages a group: adds people, lists members with roles and read positions, makes and unmakes an admin, renames, removes, leaves; history shows each note, and refusals carry the server's reason", async () => {
    // Users of their own: the group would show in the others' lists.
    const [owen, mia] = [new CliUser(`owen_${suffix}`, chatd.httpUrl), new CliUser(`mia_${suffix}`, chatd.httpUrl)];
    try {
      await Promise.all([owen.ok("signup", owen.username, "--display-name", "Owen"), mia.ok("signup", mia.username)]);
      const group = String(JSON.parse(await owen.ok("group", "Crew", `@${mia.username}`, "--json")).channelId);
      // The ones added and removed act through the API: read positions move by MarkRead, which the CLI never sends.
      const [carol, dave, erin] = [await signUp(chatd.httpUrl, "carol"), await signUp(chatd.httpUrl, "dave"), await signUp(chatd.httpUrl, "erin")];
      const [a, b, c, d] = [owen.username, mia.username, carol.username, dave.username];
      /** `members` as printed: each line's columns (name, role, read position). */
      const rows = async () => (await owen.ok("members", group)).trim().split("\n").map((l) => l.split(/ {2,}/));

      assert.equal(await owen.ok("add", group, `@${c}`, `@${d}`), `added @${c} and @${d} to "Crew" (4 members)\n`);
      assert.equal(await owen.ok("add", group, `@${c}`), `nobody added to "Crew": @${c} was in it already\n`);
      await owen.ok("send", group, "hello crew");
      await carol.api.messages.markRead({ channelId: BigInt(group), seq: 2n });
      // Owen sent #2, so has read up to it, with no MarkRead of his; his note of the add (#1) was no reading.
      assert.deepEqual(await rows(), [
        [`@${a} (Owen)`, "owner", "read up to #2"],
        [`@${b}`, "member", "has read nothing"],
        [`@${c}`, "member", "read up to #2"],
        [`@${d}`, "member", "has read nothing"],
      ]);
      const listed = JSON.parse(await mia.ok("members", group, "--json")) as { userId: string; username: string; role: string; readSeq: string; joinedAt: string }[];
      assert.deepEqual(
        listed.map(({ username, role, readSeq }) => [username, role, readSeq]),
        [[a, "owner", "2"], [b, "member", "0"], [c, "member", "2"], [d, "member", "0"]],
      );
      assert.equal(listed[2]!.userId, String(carol.userId));
      for (const m of listed) assert.match(m.joinedAt, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);

      // A plain member may not add anyone.
      const notManager = await mia.run("add", group, `@${erin.username}`);
      assert.deepEqual([notManager.code, notManager.stdout], [1, ""]);
      assert.match(notManager.stderr, /only the owner and admins can do this/);

      assert.equal(await owen.ok("admin", group, `@${b}`), `made @${b} an admin of "Crew"\n`);
      const again = JSON.parse(await owen.ok("admin", group, `@${b}`, "--json"));
      assert.deepEqual(again, { channelId: group, userId: listed[1]!.userId, username: b, role: "admin", changed: false }, "an admin already: nothing changed");
      assert.deepEqual((await rows()).map((r) => r[1]), ["owner", "admin", "member", "member"]);
      // An admin still may not change roles, nor remove the owner.
      const [notOwner, theOwner] = await Promise.all([mia.run("admin", group, `@${c}`), mia.run("remove", group, `@${a}`)]);
      assert.equal(notOwner.code, 1);
      assert.match(notOwner.stderr, /only the owner can change roles/);
      assert.equal(theOwner.code, 1);
      assert.match(theOwner.stderr, /admins can remove members only, not the owner or other admins/);
      assert.equal(await owen.ok("unadmin", group, `@${b}`), `made @${b} a plain member of "Crew" (no longer an admin)\n`);

      assert.equal(await owen.ok("rename", group, "New", "crew"), `renamed "Crew" to "New crew"\n`);
      assert.equal(await owen.ok("remove", group, `@${d}`), `removed @${d} from "New crew"\n`);
      assert.equal(await mia.ok("leave", group), `left "New crew"\n`);
      const gone = await mia.run("members", group);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /not a member/);
      // His notes since (#3 to #6) are his reading, as his own unread count has it; mia's leaving (#7) is hers.
      assert.deepEqual(await rows(), [
        [`@${a} (Owen)`, "owner", "read up to #6"],
        [`@${c}`, "member", "read up to #2"],
      ]);

      const note = (seq: number, text: string) => `\\[[^\\]]+\\] #${seq} — ${text}\\n`;
      assert.match(
        await owen.ok("history", group),
        new RegExp(
          `^${note(1, `${a} added ${c} and ${d}`)}\\[[^\\]]+\\] #2 ${a}: hello crew\\n` +
            note(3, `${a} made ${b} an admin`) +
            note(4, `${a} made ${b} a member \\(no longer an admin\\)`) +
            note(5, `${a} renamed the group to “New crew”`) +
            note(6, `${a} removed ${d}`) +
            `${note(7, `${b} left the group`)}$`,
        ),
        "a note for each change, none for what changed nothing",
      );

      // Usage mistakes exit 2: an @user is a 1:1 chat, whose members never change, and removing yourself is leaving.
      // Side by side, as they change nothing.
      const mistakes = [["members", `@${b}`], ["add", group, c], ["add", `@${b}`, `@${c}`], ["remove", group, `@${a}`], ["leave", group, "extra"], ["rename", group], ["admin", group]];
      const codes = await Promise.all(mistakes.map(async (args) => (await owen.run(...args)).code));
      assert.deepEqual(codes, mistakes.map(() => 2), mistakes.map((args) => args.join(" ")).join("; "));
      assert.match(await owen.ok("--help"), /members <group>[\s\S]*add <group> <@user\.\.\.>[\s\S]*remove <group> <@user>[\s\S]*leave <group>[\s\S]*rename <group> <title\.\.\.>[\s\S]*admin <group> <@user>[\s\S]*unadmin <group> <@user>/);
    } finally {
      owen.cleanup();
      mia.cleanup();
    }
  });

  it("exits 3, saying to log in again, when its token's refresh is refused (the device signed out elsewhere)", async () => {
    const gus = new CliUser(`gus_${suffix}`, chatd.httpUrl);
    try {
      await gus.ok("signup", gus.username);
      // Its access token due, and a refresh token the server no longer takes.
      const file = join(gus.home, "credentials.json");
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), accessExpiresAtMs: 0, refreshToken: "spent" }));
      for (const args of [["chats"], ["whoami", "--json"], ["send", `@${alice.username}`, "hi"]]) {
        const r = await gus.run(...args);
        assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`this device was signed out .*; run: chat-cli login ${gus.username}`));
        assert.equal(r.stdout, "");
      }
    } finally {
      gus.cleanup();
    }
  });

  it("keeps a login made meanwhile (or a logout) when a running chat-cli refreshes its own token", async () => {
    const [first, second] = [await signUp(chatd.httpUrl, "kim"), await signUp(chatd.httpUrl, "lee")];
    const store = new LoginStore({ CHAT_CLI_HOME: mkdtempSync(join(tmpdir(), "chat-cli-test-")) });
    try {
      const saved = (u: typeof first) => ({ server: chatd.httpUrl, username: u.username, userId: String(u.userId), deviceId: String(u.devices[0]!.deviceId), accessToken: u.devices[0]!.token, accessExpiresAtMs: 0, refreshToken: u.devices[0]!.refreshToken });
      store.write(saved(first));
      // A follow of the first user's, running; then `chat-cli login` as the second.
      const running = new Session(store, store.read()!);
      store.write(saved(second));
      await running.refresh(true);
      assert.equal(store.read()!.username, second.username);
      // And after a logout, nobody is signed in again.
      store.remove();
      await running.refresh(true);
      assert.equal(store.read(), undefined);
    } finally {
      rmSync(store.dir, { recursive: true, force: true });
    }
  });

  it("takes up no other server's login with the same device id when a running chat-cli refreshes (its token would go to this one's server)", async () => {
    const nia = await signUp(chatd.httpUrl, "nia");
    const store = new LoginStore({ CHAT_CLI_HOME: mkdtempSync(join(tmpdir(), "chat-cli-test-")) });
    try {
      const device = nia.devices[0]!;
      const here = { server: chatd.httpUrl, username: nia.username, userId: String(nia.userId), deviceId: String(device.deviceId), accessToken: device.token, accessExpiresAtMs: 0, refreshToken: device.refreshToken };
      // A follow of this server's, running; then `chat-cli login` on another server, whose device happens to have the same id.
      const running = new Session(store, here);
      const elsewhere = { ...here, server: "http://127.0.0.1:1", accessToken: "token-of-another-server", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "refresh-of-another-server" };
      store.write(elsewhere);
      const { users } = await running.api.users.getUsers({ userIds: [nia.userId] });
      assert.equal(users[0]?.username, nia.username);
      assert.equal(running.login.server, chatd.httpUrl);
      assert.notEqual(running.login.accessToken, elsewhere.accessToken);
      assert.deepEqual(store.read(), elsewhere, "the other server's login is left as it was");
    } finally {
      rmSync(store.dir, { recursive: true, force: true });
    }
  });

  it("logs out: the server forgets the device and the CLI its credentials", async () => {
    const login = JSON.parse(readFileSync(join(bob.home, "credentials.json"), "utf8"));
    assert.match(await bob.ok("logout"), /Logged out/);
    assert.equal((await bob.run("chats")).code, 3);
    // The revoked refresh token no longer works.
    const res = await fetch(`${chatd.httpUrl}/chat.v1.AuthService/Refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refreshToken: login.refreshToken }),
    });
    assert.equal(res.status, 401);
  });
});
