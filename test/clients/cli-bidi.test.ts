// chat-cli printing someone else's words that carry bidi controls (Trojan Source's trick, in a chat).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { LoginStore } from "../../internal/cli/store.js";
import { displayWidth } from "../../internal/cli/width.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

/** Every explicit embedding, override and isolate, and its ending: U+202A to U+202E, U+2066 to U+2069. */
const BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069";

describe("chat-cli output of texts with bidi controls", function () {
  this.timeout(60_000);
  let server: Server;
  let home: string;
  // U+202E shows "gpj.exe" as "exe.jpg"; the others each reorder what follows them up to a U+202C or U+2069.
  const text = `see invoice\u202egpj.exe ${BIDI}end`;
  const title = `ops\u202e (admin)`;
  /** Last messages of a chat list: a control where a cut at 50 columns keeps it, and one where the cut falls inside its marker. */
  const lasts = [`${"x".repeat(40)}\u202eabcdefghijklmnop`, `${"王".repeat(22)}y\u202eabcdefghijklmnop`];

  before(async () => {
    const routes = (router: ConnectRouter) => {
      router.service(ChannelService, {
        describeChannel: (req) => ({ channel: { channelId: req.channelId, kind: ChannelKind.GROUP, title, memberCount: 2 } }),
        leaveGroup: () => ({}),
        listChannels: () => ({
          channels: lasts.map((last, i) => ({
            channelId: BigInt(20 + i),
            kind: ChannelKind.GROUP,
            title: `g${i}`,
            memberCount: 2,
            lastMessage: { channelId: BigInt(20 + i), seq: 1n, messageId: BigInt(30 + i), senderUserId: 5n, text: last, sentAt: timestampFromMs(Date.now()) },
          })),
        }),
      });
      router.service(MessageService, {
        listMessages: (req) => ({ messages: [{ channelId: req.channelId, seq: 1n, messageId: 11n, senderUserId: 5n, text, sentAt: timestampFromMs(Date.now()) }] }),
      });
      router.service(UserService, {
        getUsers: () => ({ users: [{ userId: 5n, username: "mallory", displayName: "\u2067yrollam" }] }),
      });
    };
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    home = mkdtempSync(join(tmpdir(), "chat-cli-bidi-"));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(home, { recursive: true, force: true });
  });

  function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, CHAT_CLI_HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
      let [stdout, stderr] = ["", ""];
      child.stdout!.on("data", (d) => (stdout += d));
      child.stderr!.on("data", (d) => (stderr += d));
      child.on("close", (code) => done({ code, stdout, stderr }));
    });
  }

  // Raw, a sender's U+202E made "gpj.exe" read "exe.jpg" on the reader's terminal (those that apply
  // bidi, as GNOME's does), and reordered the line's other words, the sender's name among them.
  it("shows each control escaped where it was, as <U+202E>, in a printed text", async () => {
    const r = await cli("history", "7");
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /[\u202a-\u202e\u2066-\u2069]/u);
    assert.match(r.stdout, / #1 mallory: see invoice<U\+202E>gpj\.exe <U\+202A><U\+202B><U\+202C><U\+202D><U\+202E><U\+2066><U\+2067><U\+2068><U\+2069>end\n$/);
  });

  it("escapes them in a group's title, as a confirming line names it", async () => {
    const r = await cli("leave", "7");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'left "ops<U+202E> (admin)"\n');
  });

  // Cut to 50 columns before the controls were escaped, the column ran past 50 by 7 for each marker, or ended in half of one.
  it("cuts a chat's last message to 50 columns with its markers in, never through one", async () => {
    const r = await cli("chats");
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split("\n").slice(1);
    assert.equal(rows.length, 2, r.stdout);
    const cut = rows.map((row) => row.slice(row.indexOf("mallory: ") + "mallory: ".length));
    for (const c of cut) {
      assert.ok(displayWidth(c) <= 50, `${c}: ${displayWidth(c)} columns`);
      assert.doesNotMatch(c, /<(U(\+[0-9A-F]{0,4})?)?…$/, "half a marker");
    }
    assert.equal(cut[0], `${"x".repeat(40)}<U+202E>a…`);
    assert.equal(cut[1], `${"王".repeat(22)}y…`);
  });

  // JSON lines are read at a terminal too (`| less`, a log): escaped as JSON allows, they parse back the same.
  it("keeps the exact text in --json, for scripts, each control written as its \\u escape", async () => {
    const r = await cli("history", "7", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).text, text);
    assert.doesNotMatch(r.stdout, /[\u202a-\u202e\u2066-\u2069]/u);
    assert.match(r.stdout, /see invoice\\u202egpj\.exe \\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069end/);
  });
});
