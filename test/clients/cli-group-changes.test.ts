// A group change, a block, a clear or a logout stopped (Ctrl+C, SIGTERM, the call deadline) before the server answered it.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { ChannelKind, MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import { LoginStore } from "../../internal/cli/store.js";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

/** Each command, and what its line says may have happened, and where to look. */
const CHANGES: Array<[string[], string]> = [
  [["add", "7", "@bob"], "the add may have been made or not; see chat-cli members 7"],
  [["remove", "7", "@bob"], "@bob may have been removed or not; see chat-cli members 7"],
  [["rename", "7", "new", "title"], "the new title may have been set or not; see chat-cli chats"],
  [["leave", "7"], "you may have left the group or not; see chat-cli chats"],
  [["join", "http://x/#/join/abc"], "you may have joined the group or not; see chat-cli chats"],
  [["admin", "7", "@bob"], "the role of @bob may have been changed or not; see chat-cli members 7"],
  [["block", "@bob"], "@bob may have been blocked or not; see chat-cli blocked"],
  [["unblock", "@bob"], "@bob may have been unblocked or not; see chat-cli blocked"],
  [["invite", "7", "--reset"], "a new invite link may have been made (the old one no longer working) or not; see chat-cli invite 7"],
  [["invite", "7", "--revoke"], "the invite link may have been turned off or not; to be sure: chat-cli invite 7 --revoke"],
  [["clear", "7"], "the history may have been cleared or not; see chat-cli history 7"],
];

const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("chat-cli's group changes, blocks, clears and logout stopped before the server answered", function () {
  this.timeout(60_000);
  let server: Server;
  let url: string;
  /** Changes asked of the stand-in, which holds each until the CLI hangs up. */
  let changes = 0;
  const homes: string[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    const held = (_req: unknown, ctx: HandlerContext) => {
      changes++;
      return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
    };
    // Reads are answered, so that a command gets as far as its change; every other call is a change, held.
    const holding = (answered: Record<string, unknown>) => new Proxy(answered, { get: (impl, name: string) => impl[name] ?? held, has: () => true });
    const routes = (router: ConnectRouter) => {
      router.service(
        ChannelService,
        holding({
          describeChannel: (req: { channelId: bigint }) => ({ channel: { channelId: req.channelId, kind: ChannelKind.GROUP, title: "ops", memberCount: 2 } }),
          listMembers: () => ({ members: [{ userId: 1n, role: MemberRole.OWNER }] }),
          getInviteLink: (req: { reset: boolean }, ctx: HandlerContext) => (req.reset ? held(req, ctx) : { code: "abc" }),
        }),
      );
      router.service(
        UserService,
        holding({
          searchUsers: () => ({ users: [{ userId: 5n, username: "bob" }] }),
          getUsers: () => ({ users: [] }),
        }),
      );
      router.service(AuthService, holding({}));
    };
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => (changes = 0));
  afterEach(() => {
    for (const child of children.splice(0)) child.kill("SIGKILL");
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  function start(args: string[], env: NodeJS.ProcessEnv = {}): { home: string; said: () => string; closed: Promise<number | null>; child: ChildProcess } {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-changes-"));
    homes.push(home);
    new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, CHAT_CLI_HOME: home, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const closed = new Promise<number | null>((done) => child.on("close", (code) => done(code)));
    return { home, said: () => stderr, closed, child };
  }

  // Each ended in silence (killed by the signal): whoever pressed Ctrl+C, or a script's timeout, could not tell
  // whether the group was changed, and an `add` or `join` run again to be sure told nothing of the first.
  for (const [i, [args, line]] of CHANGES.entries()) {
    const signal: NodeJS.Signals = i % 2 === 0 ? "SIGINT" : "SIGTERM";
    it(`${args.join(" ")}: ${signal} says ${line.split(";")[0]}, exit ${signal === "SIGINT" ? 130 : 143}`, async () => {
      const run = start(args);
      await waitFor(() => changes > 0, `the change at the server (got: ${run.said()})`);
      run.child.kill(signal);
      assert.equal(await run.closed, signal === "SIGINT" ? 130 : 143, run.said());
      assert.equal(run.said(), `chat-cli: interrupted before the server answered: ${line}\n`);
    });
  }

  // Given up at the deadline, each said only that the server did not answer, as of a read.
  for (const [args, line] of CHANGES) {
    it(`${args.join(" ")}: given up at the deadline, says ${line.split(";")[0]}, exit 1`, async () => {
      const run = start(args, { CHAT_CLI_CALL_TIMEOUT_MS: "500" });
      assert.equal(await run.closed, 1, run.said());
      assert.match(run.said(), new RegExp(`^chat-cli: the server at ${escaped(url)} did not answer within 0\\.5 s \\(CHAT_CLI_CALL_TIMEOUT_MS\\): ${escaped(line)}\n$`));
    });
  }

  it("logout: Ctrl+C keeps the login and says the device may have been signed out, exit 130", async () => {
    const run = start(["logout"]);
    await waitFor(() => changes > 0, `the logout at the server (got: ${run.said()})`);
    run.child.kill("SIGINT");
    assert.equal(await run.closed, 130, run.said());
    assert.equal(run.said(), "chat-cli: interrupted before the server answered: the device may have been signed out or not; the login is kept here: chat-cli logout ends it\n");
    assert.equal(new LoginStore({ CHAT_CLI_HOME: run.home }).read()?.username, "u");
  });

  it("logout: SIGTERM says the same, exit 143", async () => {
    const run = start(["logout"]);
    await waitFor(() => changes > 0, `the logout at the server (got: ${run.said()})`);
    run.child.kill("SIGTERM");
    assert.equal(await run.closed, 143, run.said());
    assert.match(run.said(), /^chat-cli: interrupted before the server answered: the device may have been signed out or not/);
  });
});
