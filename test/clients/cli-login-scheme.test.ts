import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { selfSignedCertificate } from "../support/tls.js";

/**
 * A CLI home at an address whose server changed, as the README's steps
 * change it. Its TLS steps: alice signed up on the plaintext chatd, which is
 * then restarted on the same ports with CHAT_TLS_CERT, and she logs in again
 * with `--server https://…`. The login it replaces is the same server's, now
 * at https: it is signed out there, not left signed in behind a warning that
 * the http URL hung up and advised using https://, which she just did. Its
 * cluster steps: the api takes chatd's address, with accounts of its own.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");
const run = promisify(execFile);

describe("chat-cli at an address whose server changed", function () {
  this.timeout(180_000);
  let dir: string;
  let chatd: ChatdProcess | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "chat-cli-scheme-"));
  });
  after(async () => {
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("chatd restarted with TLS: login signs the old device out at the https URL, with no warning", async () => {
    const { certPath, keyPath, ca } = selfSignedCertificate(dir);
    const home = join(dir, "home");
    const env: NodeJS.ProcessEnv = { ...process.env, CHAT_CLI_HOME: home, CHAT_PASSWORD: "correct horse battery", NODE_EXTRA_CA_CERTS: certPath };
    delete env.CHAT_SERVER;

    chatd = await startChatd();
    const plain = chatd.httpUrl;
    await run(process.execPath, ["--import", "tsx", CLI, "signup", "alice", "--server", plain], { cwd: ROOT, env });
    const before = JSON.parse(readFileSync(join(home, "credentials.json"), "utf8")) as { refreshToken: string };

    const { dataDir } = chatd;
    await chatd.stop();
    chatd = undefined;
    chatd = await startChatd({ dataDir, env: { CHAT_TLS_CERT: certPath, CHAT_TLS_KEY: keyPath, CHAT_HTTP_PORT: new URL(plain).port } });
    assert.equal(chatd.httpUrl, plain.replace(/^http:/, "https:"));

    const login = await run(process.execPath, ["--import", "tsx", CLI, "login", "alice", "--server", chatd.httpUrl], { cwd: ROOT, env });
    assert.doesNotMatch(login.stderr, /not signed out/);
    assert.match(login.stdout, /Logged in as @alice on https:/);

    const auth = createClient(AuthService, createConnectTransport({ baseUrl: chatd.httpUrl, httpVersion: "1.1", nodeOptions: { ca } }));
    await assert.rejects(auth.refresh({ refreshToken: before.refreshToken }), (err) => {
      assert.ok(err instanceof ConnectError, String(err));
      assert.equal(err.code, Code.Unauthenticated, err.message);
      return true;
    });
  });

  it("another server there: says to log in or sign up (exit 3), and signup replaces the login without a warning", async () => {
    const home = join(dir, "other-home");
    const env: NodeJS.ProcessEnv = { ...process.env, CHAT_CLI_HOME: home, CHAT_PASSWORD: "correct horse battery" };
    delete env.CHAT_SERVER;
    delete env.NODE_EXTRA_CA_CERTS;
    const cli = (...args: string[]) =>
      run(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env }).then(
        (r) => ({ code: 0, ...r }),
        (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
      );

    const first = await startChatd();
    const server = first.httpUrl;
    try {
      assert.equal((await cli("signup", "bob", "--server", server)).code, 0);
    } finally {
      await first.stop();
      removeDataDir(first.dataDir);
    }
    // Another server with its own keys and accounts on the same address (the api in the README's cluster steps).
    if (chatd) {
      await chatd.stop();
      removeDataDir(chatd.dataDir);
    }
    chatd = undefined;
    chatd = await startChatd({ env: { CHAT_HTTP_PORT: new URL(server).port } });

    const chats = await cli("chats");
    assert.equal(chats.code, 3, chats.stderr);
    assert.match(chats.stderr, new RegExp(`does not take this device's login \\(access token signed by an unknown key\\); run: chat-cli login bob \\(or signup`));
    const signup = await cli("signup", "bob", "--server", server);
    assert.equal(signup.code, 0, signup.stderr);
    assert.equal(signup.stderr, "");
    assert.equal((await cli("chats")).code, 0);
  });
});
