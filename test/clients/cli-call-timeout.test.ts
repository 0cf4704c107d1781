import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { CALL_TIMEOUT_MS, CliError, readCallTimeoutMs } from "../../internal/cli/client.js";
import { LOCK_WAIT_MS, LoginStore } from "../../internal/cli/store.js";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

describe("chat-cli's call deadline (CHAT_CLI_CALL_TIMEOUT_MS)", function () {
  this.timeout(60_000);

  it("is 15 s unless set shorter, down to 100 ms; a longer one would outlast the refresh lock's wait", () => {
    assert.equal(readCallTimeoutMs({}), 15_000);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "" }), CALL_TIMEOUT_MS);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "3000" }), 3_000);
    assert.equal(readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: "100" }), 100);
    assert.ok(CALL_TIMEOUT_MS < LOCK_WAIT_MS);
    for (const bad of ["99", "15001", "3s", "-1", "1e3", " 3000"]) {
      assert.throws(
        () => readCallTimeoutMs({ CHAT_CLI_CALL_TIMEOUT_MS: bad }),
        (err) => err instanceof CliError && err.exitCode === 2 && err.message.startsWith(`CHAT_CLI_CALL_TIMEOUT_MS=${bad}: `),
        bad,
      );
    }
  });

  it("refuses a bad one at start, exit 2, before any call", async () => {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-timeout-"));
    try {
      // Not signed in, and no server there: without the check at start, whoami fails otherwise.
      const child = spawn(process.execPath, ["--import", "tsx", CLI, "whoami"], {
        cwd: ROOT,
        env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: "http://127.0.0.1:9", CHAT_CLI_CALL_TIMEOUT_MS: "20000" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr!.on("data", (d) => (stderr += d));
      const code = await new Promise((r) => child.on("close", r));
      assert.equal(code, 2, stderr);
      assert.match(stderr, /CHAT_CLI_CALL_TIMEOUT_MS=20000: expected whole milliseconds from 100 to 15000/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

/** A server that takes every call and never answers it: a silent network, a hung process. */
describe("chat-cli's calls to a server that never answers", function () {
  // A try takes about a second (the start of tsx, then 0.5 s); one that waits for its answer fails here.
  this.timeout(15_000);
  let server: Server;
  let url: string;
  const homes: string[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    // Every call held until the CLI hangs up (or the test ends), but a channel's description: a send gets as far as its own call.
    const held = (_req: unknown, ctx: HandlerContext) => new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
    const holding = (answered: Record<string, unknown> = {}) => new Proxy(answered, { get: (impl, name: string) => impl[name] ?? held, has: () => true });
    const routes = (router: ConnectRouter) => {
      router.service(ChannelService, holding({ describeChannel: (req: { channelId: bigint }) => ({ channel: { channelId: req.channelId, kind: ChannelKind.GROUP, title: "ops" } }) }));
      router.service(MessageService, holding());
    };
    server = createServer(connectNodeAdapter({ routes, fallback: () => {} }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const child of children) child.kill();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  async function run(args: string[], signedIn = true): Promise<{ code: number | null; stderr: string; ms: number }> {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-timeout-"));
    homes.push(home);
    if (signedIn) {
      new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    }
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: url, CHAT_PASSWORD: "pw-pw-pw-pw", CHAT_CLI_CALL_TIMEOUT_MS: "500" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    return { code, stderr, ms: Date.now() - started };
  }

  // Each waited for its answer without end: `chat-cli chats` in a script hung with the server.
  for (const args of [["chats"], ["whoami"], ["history", "7"], ["members", "7"], ["blocked"], ["search", "7", "lunch"], ["send", "@bob", "hi"]]) {
    it(`gives up ${args[0]} at the deadline, exit 1, saying the server did not answer`, async () => {
      const r = await run(args);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^chat-cli: the server at ${url.replace(/\./g, "\\.")} did not answer within 0\\.5 s \\(CHAT_CLI_CALL_TIMEOUT_MS\\)\n$`));
    });
  }

  it("gives up a send at the deadline saying the message may have been sent, and where to look", async () => {
    const r = await run(["send", "7", "hi"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /did not answer within 0\.5 s \(CHAT_CLI_CALL_TIMEOUT_MS\): the message may have been sent or not; see chat-cli history 7 before sending it again\n$/);
  });

  it("gives up a group's creation at the deadline saying it may have been made, and where to look", async () => {
    const r = await run(["group", "standup"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /did not answer within 0\.5 s \(CHAT_CLI_CALL_TIMEOUT_MS\): the group may have been created or not; see chat-cli chats\n$/);
  });

  it("gives up a signup at the deadline saying the account may have been made, saving nothing", async () => {
    const r = await run(["signup", "newbie"], false);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /did not answer within 0\.5 s \(CHAT_CLI_CALL_TIMEOUT_MS\): the account may have been made; see: chat-cli login newbie\n$/);
  });

  // Its 15 s stayed when CHAT_CLI_CALL_TIMEOUT_MS, which the help says gives up sooner, was set.
  it("gives up follow's WebSocket handshake that is never answered at the deadline too, and tries again", async () => {
    const silent = createNetServer(() => {});
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const home = mkdtempSync(join(tmpdir(), "chat-cli-timeout-"));
    homes.push(home);
    new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    const ws = `ws://127.0.0.1:${(silent.address() as AddressInfo).port}/ws`;
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "follow", "7", "--last", "0", "--ws", ws], {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: home, CHAT_CLI_CALL_TIMEOUT_MS: "500" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    try {
      // A start of tsx and the channel's description, then 0.5 s: well under 10 s, against the 15 s before.
      await waitFor(() => /cannot connect to .*handshake has timed out/.test(stderr), `the handshake given up (got: ${stderr})`, 10_000);
    } finally {
      child.kill("SIGINT");
      await new Promise((r) => child.on("close", r));
      silent.close();
    }
  });

  it("removes the credentials of a logout the server does not confirm in time", async () => {
    const r = await run(["logout"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /server did not confirm the logout \(the server at .* did not answer within 0\.5 s/);
  });
});
