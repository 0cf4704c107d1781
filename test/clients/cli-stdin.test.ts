// What chat-cli reads from stdin (a text for "-", a password for --password-stdin), against a stand-in api that keeps what it got.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { LoginStore } from "../../internal/cli/store.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

describe("chat-cli reading stdin", function () {
  this.timeout(60_000);
  let server: Server;
  let url: string;
  let texts: string[] = [];
  let passwords: string[] = [];
  const homes: string[] = [];

  before(async () => {
    const credentials = () => ({ accessToken: "a", accessTokenExpiresAt: timestampFromMs(Date.now() + 900_000), refreshToken: "r", userId: 1n, deviceId: 2n });
    const routes = (router: ConnectRouter) => {
      router.service(AuthService, {
        login: (req) => {
          passwords.push(req.password);
          return { user: { userId: 1n, username: req.username }, credentials: credentials() };
        },
      });
      router.service(ChannelService, {
        describeChannel: (req) => ({ channel: { channelId: req.channelId, kind: ChannelKind.GROUP, title: "ops" } }),
      });
      router.service(MessageService, {
        sendMessage: (req) => {
          texts.push(req.text);
          return { messageId: 100n, duplicate: false };
        },
      });
    };
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    texts = [];
    passwords = [];
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  function run(args: string[], input: Buffer, loggedIn = true): Promise<{ code: number | null; stderr: string }> {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-stdin-"));
    homes.push(home);
    if (loggedIn) {
      new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    }
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: url, CHAT_PASSWORD: "" },
      stdio: ["pipe", "ignore", "pipe"],
    });
    child.stdin!.end(input);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    return new Promise((done) => child.on("close", (code) => done({ code, stderr })));
  }

  // A text file saved by Notepad (and other Windows editors) starts with one: the message began with
  // an invisible U+FEFF, and a password piped from such a file was refused as wrong without a hint.
  it("leaves out the byte order mark a file saved as UTF-8 on Windows starts with", async () => {
    const sent = await run(["send", "7", "-"], Buffer.concat([BOM, Buffer.from("hello\r\n")]));
    assert.equal(sent.code, 0, sent.stderr);
    assert.deepEqual(texts, ["hello"]);
    const login = await run(["login", "u", "--password-stdin"], Buffer.concat([BOM, Buffer.from("correct horse battery\n")]), false);
    assert.equal(login.code, 0, login.stderr);
    assert.deepEqual(passwords, ["correct horse battery"]);
  });

  // `< /dev/null`, or a password file's variable left unset: the empty password went to the server,
  // which refused it as a wrong one (or, at signup, as too short), as if the person had mistyped.
  it("refuses an empty password on stdin as a usage error, asking no server", async () => {
    for (const input of ["", "\n", "\r\n"]) {
      const r = await run(["login", "u", "--password-stdin"], Buffer.from(input), false);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, "chat-cli: no password on stdin (it was empty)\n");
    }
    assert.deepEqual(passwords, []);
  });

  // Bytes that are not UTF-8 (a file in Latin-1 or Windows-1252) were sent as U+FFFD in their place, without a word.
  it("refuses a text that is not UTF-8 as a usage error, sending nothing", async () => {
    const r = await run(["send", "7", "-"], Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^chat-cli: stdin is not UTF-8 text .*\n$/);
    assert.deepEqual(texts, []);
  });
});
