import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import WebSocket, { WebSocketServer } from "ws";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { addDevice, apiClients, signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { scrapeMetric } from "../support/metrics.js";
import { freePort } from "../support/ports.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { Follower } from "../support/chat-cli.js";
import { waitFor } from "../support/wait.js";
import { cliArgs } from "./cli-bundle.js";
import { startStandInGateway, type StandInGateway } from "./stand-in-gateway.js";

const ROOT = resolve(import.meta.dirname, "../..");
const PASSWORD = "correct horse battery";
/**
 * chat-cli's call deadline where a silent network is the test (CHAT_CLI_CALL_TIMEOUT_MS): each of those
 * waited out the 15 s default. Still seconds, so that no call answered on a loaded machine is given up.
 */
const SILENT_CALL_TIMEOUT = { CHAT_CLI_CALL_TIMEOUT_MS: "3000" };

/** A CLI user with its own credentials directory, reaching chatd at `server` (a proxy a test can cut). */
class CliUser {
  readonly home = mkdtempSync(join(tmpdir(), "chat-cli-follow-"));
  constructor(
    readonly username: string,
    private readonly server: string,
  ) {}

  spawn(args: string[], env: Record<string, string> = {}): ChildProcess {
    return spawn(process.execPath, cliArgs(...args), {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: this.home, CHAT_SERVER: this.server, CHAT_PASSWORD: PASSWORD, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  follow(args: string[], env: Record<string, string> = {}): Follower {
    return new Follower(this.spawn(["follow", ...args], env));
  }

  async ok(...args: string[]): Promise<string> {
    const child = this.spawn(args);
    let [stdout, stderr] = ["", ""];
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const code = await new Promise((r) => child.on("close", r));
    assert.equal(code, 0, `chat-cli ${args.join(" ")} exited ${code}: ${stderr}`);
    return stdout;
  }

  /** The saved credentials, as the CLI keeps them. */
  saved(): { accessToken: string; accessExpiresAtMs: number; refreshToken: string; deviceId: string; username: string } {
    return JSON.parse(readFileSync(join(this.home, "credentials.json"), "utf8"));
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

/**
 * A chatd (with `env`) behind a proxy a test can cut, started before the
 * suite's tests; each test's users and followers go after it.
 */
function harness(env: Record<string, string> = {}) {
  const h = {
    chatd: undefined as unknown as ChatdProcess,
    proxy: undefined as unknown as TcpProxy,
    cleanups: [] as (() => unknown)[],
    followers: [] as Follower[],
    /** A CLI user signed in through the proxy, and someone (over the API) in a 1:1 chat with them. */
    async pair(): Promise<{ me: CliUser; myId: bigint; peer: TestUser; channelId: bigint }> {
      const me = new CliUser(`fol${n++}_${suffix}`, `http://${h.proxy.address}`);
      h.cleanups.push(() => me.cleanup());
      // The id from signup's --json, not another chat-cli start. The peer signs up after: under a
      // 10 s CHAT_ACCESS_TOKEN_TTL_S its token must last into the test.
      const myId = BigInt(JSON.parse(await me.ok("signup", me.username, "--json")).userId);
      const peer = await signUp(h.chatd.httpUrl, "peer");
      const { channelId } = (await peer.api.channels.openDirect({ userId: myId })).channel!;
      return { me, myId, peer, channelId };
    },
    /** A stand-in gateway (the api stays chatd, through the proxy): it welcomes each connection, then sends what the test says on its sockets. */
    async standInGateway(): Promise<StandInGateway> {
      const gateway = await startStandInGateway();
      h.cleanups.push(() => gateway.close());
      return gateway;
    },
    follow(me: CliUser, ...args: string[]): Follower {
      return h.followWith({}, me, ...args);
    },
    /** As follow, with these variables too. */
    followWith(env: Record<string, string>, me: CliUser, ...args: string[]): Follower {
      const f = me.follow(args, env);
      h.followers.push(f);
      h.cleanups.push(async () => {
        f.interrupt();
        await f.exited;
      });
      return f;
    },
  };
  before(async () => {
    h.chatd = await startChatd({ env });
    h.proxy = await TcpProxy.start(new URL(h.chatd.httpUrl).host);
  });
  afterEach(async function () {
    h.proxy.restore();
    // A test that timed out names no step: each follower's timed transcript tells where it was.
    if (this.currentTest?.state === "failed") for (const f of h.followers) console.error(`chat-cli follow, as it went:\n${f.transcript()}`);
    h.followers.length = 0;
    while (h.cleanups.length > 0) await h.cleanups.pop()!();
  });
  after(async () => {
    await h.proxy?.close();
    await h.chatd?.stop();
    if (h.chatd) removeDataDir(h.chatd.dataDir);
  });
  return h;
}
const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
let n = 0;

/**
 * A follower that gets #3 live but not #2, while the api is cut as `cut` says: it must read the
 * gap, fail (or give up) and say so, then print #2 and #3 in order once the api is back.
 */
async function followAGapThroughACut(h: ReturnType<typeof harness>, cut: "reset" | "blackhole"): Promise<void> {
  const { me, peer, channelId } = await h.pair();
  const key = `${cut}${n++}`;
  await peer.api.messages.sendMessage({ channelId, clientMsgId: `${key}-1`, text: "one" });
  const { url, sockets } = await h.standInGateway();
  const follower = h.followWith(cut === "blackhole" ? SILENT_CALL_TIMEOUT : {}, me, String(channelId), "--last", "1", "--ws", url);
  await follower.started();
  await follower.printed("one\n");

  // Under a 10 s CHAT_ACCESS_TOKEN_TTL_S the peer's sign-up token can run out by now on a loaded machine: a fresh one.
  const { messages } = apiClients(h.chatd.httpUrl, (await addDevice(h.chatd.httpUrl, peer)).token);
  h.proxy.cut(cut);
  const cutAt = Date.now();
  await messages.sendMessage({ channelId, clientMsgId: `${key}-2`, text: "two" });
  await messages.sendMessage({ channelId, clientMsgId: `${key}-3`, text: "three" });
  const [three] = (await messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages;
  assert.equal(three!.seq, 3n);
  sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 1n, message: three } } } })));
  await follower.said(/could not read the messages after #1 \(.+\); trying again/);
  // The api answered a moment ago: its hang-up is a cut, not the https:// or gRPC port mistake of a first call.
  if (cut === "reset") assert.match(follower.err, /could not read the messages after #1 \(the connection to the server at http:\/\/\S+ was cut \((ECONNRESET|EPIPE)\)\); trying again/);
  // Given up at the deadline it was given, a refresh's and a read's at most, not the default's 15 s.
  if (cut === "blackhole") assert.ok(Date.now() - cutAt < 12_000, `gave up ${Date.now() - cutAt} ms after the cut`);

  void h.proxy.restore();
  await follower.printed("three\n");
  assert.match(follower.out, /#1 \S+: one\n\[[^\]]+\] #2 \S+: two\n\[[^\]]+\] #3 \S+: three\n$/);
  follower.interrupt();
  assert.equal(await follower.exited, 0, follower.err);
}

describe("chat-cli follow through a connection that drops", function () {
  this.timeout(120_000);
  const h = harness();

  it("goes on when a history read to fill a gap fails for a while, printing the gap once it can", async () => {
    // The api is down: the read of the gap fails at once.
    await followAGapThroughACut(h, "reset");
  });

  it("gives up a history read that a silent network never answers, and reads again, instead of waiting for it for good", async () => {
    // The api is silent: the read of the gap is never answered.
    await followAGapThroughACut(h, "blackhole");
  });

  it("gives up a new sender's name lookup that a silent network never answers, and asks again, printing what came after it in order", async () => {
    const { me, myId, peer } = await h.pair();
    const third = await signUp(h.chatd.httpUrl, "third");
    const { channelId } = (await peer.api.channels.createGroup({ title: "Trio", memberUserIds: [myId, third.userId] })).channel!;
    const { url, sockets } = await h.standInGateway();
    const follower = h.followWith(SILENT_CALL_TIMEOUT, me, String(channelId), "--last", "0", "--ws", url);
    await follower.started();
    const newest = async () => (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages[0]!;
    let inboxSeq = 0n;
    const bring = (message: Awaited<ReturnType<typeof newest>>) =>
      sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: ++inboxSeq, message } } } })));
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "n1", text: "one" });
    bring(await newest());
    // Printed after what following read first, in one chain: the api is idle when it is cut.
    await follower.printed("one\n");

    h.proxy.cut("blackhole");
    const cutAt = Date.now();
    // The third member speaks for the first time: their name is asked of the api, whose answer never comes.
    await third.api.messages.sendMessage({ channelId, clientMsgId: "n2", text: "two" });
    bring(await newest());
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "n3", text: "three" });
    bring(await newest());
    await follower.said(/could not print message #\d+ \(.+\); trying again/);
    assert.ok(Date.now() - cutAt < 12_000, `gave up ${Date.now() - cutAt} ms after the cut, not at its 3 s deadline`);
    assert.doesNotMatch(follower.out, /two|three/);

    void h.proxy.restore();
    await follower.printed("three\n");
    assert.match(follower.out, new RegExp(`#\\d+ ${peer.username}: one\\n\\[[^\\]]+\\] #\\d+ ${third.username}: two\\n\\[[^\\]]+\\] #\\d+ ${peer.username}: three\\n$`));
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("prints a reaction once though the server brings it again after a reconnect (its ack lost with the connection)", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "d1", text: "one" });
    // A stand-in gateway that never keeps an ack: every session starts from cursor 0 and brings the reaction again.
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "1", "--ws", url);
    await follower.started();
    await follower.printed("one\n");
    // Made after following began: news the first time. Made at the server too, as its history read after the reconnect shows it.
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "d2", text: "👍", reactSeq: 1n });
    const reaction = { messageId: 424242n, channelId, seq: 0n, targetSeq: 1n, reaction: true, text: "👍", senderUserId: peer.userId, sentAt: timestampNow() };
    const bring = (socket: WebSocket) =>
      socket.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "syncBatch", value: { entries: [{ inboxSeq: 1n, message: reaction }] } } })));
    bring(sockets[0]!);
    await follower.printed("reacted 👍\n");

    sockets[0]!.close(1011, "restarting");
    await follower.said(/reconnected/);
    bring(sockets[1]!);
    // A newer reaction after it: entries are printed in order, so a second 👍 line, if one came, is out by then.
    // The stand-in's alone, stamped past the history read after the reconnect, whenever that ran: news.
    const newer = { ...reaction, messageId: 434343n, text: "🎉", sentAt: timestampFromMs(Date.now() + 60_000) };
    sockets[1]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 2n, message: newer } } } })));
    await follower.printed("reacted 🎉\n");
    assert.equal(follower.out.match(/reacted 👍/g)?.length, 1, follower.out);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("says the server is stopping or restarting when it closes going away, and that it cannot connect while nothing listens, one line a try", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "g1", text: "one" });
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "1", "--ws", url);
    await follower.started();
    sockets[0]!.close(1001, "");
    await follower.said(/\nconnection lost: the server is stopping or restarting \(code 1001\); reconnecting in 0(\.[0-5])?s\n/);
    await follower.said(/reconnected/);

    const nowhere = `ws://127.0.0.1:${await freePort()}/ws`;
    const down = h.follow(me, String(channelId), "--last", "0", "--ws", nowhere);
    const refused = new RegExp(`(^|\\n)cannot connect to ${nowhere.replace(/[./]/g, "\\$&")} \\(connect ECONNREFUSED [\\d.:]+\\); reconnecting in \\S+(?=\\n)`);
    await down.said(refused, 2);
    // Each try one line: its error was a line of its own, then "connection lost (code 1006)" of a connection never made.
    assert.ok(down.err.trim().split("\n").every((line) => line.startsWith(`cannot connect to ${nowhere} `)), down.err);
  });

  it("keeps following through many reconnects without piling up a listener a wait (Node's MaxListenersExceededWarning after the 11th)", async () => {
    const { me, channelId } = await h.pair();
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "0", "--ws", url);
    // Each connection is welcomed (the backoff starts over) and then lost: a wait of up to 0.5 s between tries.
    let closed = 0;
    const closing = setInterval(() => {
      for (; closed < sockets.length; closed++) sockets[closed]!.close(1011, "");
    }, 10);
    try {
      // The 12th line is written after 11 waits, each begun after the line before: a warning raised by the 11th is out before it.
      await follower.said(/connection lost \(code 1011\); reconnecting in 0(\.[0-5])?s\n/, 12);
    } finally {
      clearInterval(closing);
    }
    assert.doesNotMatch(follower.err, /MaxListenersExceeded|memory leak/);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("skips a frame it cannot read and follows on, as the web client does", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "j1", text: "one" });
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "1", "--ws", url);
    await follower.started();
    await follower.printed("one\n");
    // Not protobuf: a field of wire type 7, which no encoder writes.
    sockets[0]!.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "j2", text: "two" });
    const [two] = (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages;
    sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 1n, message: two } } } })));
    await follower.printed("two\n");
    assert.equal(sockets.length, 1, "one connection all along");
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("says the session moved, not that it reconnected, when a gateway welcomes it again on the same connection (a chat server's failover)", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "w1", text: "one" });
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "1", "--ws", url);
    await follower.started();
    await follower.printed("one\n");
    // The gateway moved the session to another chat server: its Welcome, on the socket the follower holds.
    sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "welcome", value: { serverTime: timestampNow(), heartbeatIntervalMs: 25_000 } } })));
    await follower.said(/moved/);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "w2", text: "two" });
    const [two] = (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages;
    sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 1n, message: two } } } })));
    await follower.printed("two\n");
    assert.match(follower.err, /the session moved to another chat server, on the same connection; following on\n/);
    assert.doesNotMatch(follower.err, /reconnect/);
    assert.equal(sockets.length, 1, "one connection all along");
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("prints what was sent while it reconnected, though another chat-cli of the device acked it meanwhile", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "m1", text: "before" });
    const follower = h.follow(me, String(channelId), "--last", "1");
    await follower.started();
    await follower.printed("before\n");

    h.proxy.cut("reset");
    await follower.said(/connection lost/);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "m2", text: "while away 1" });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "m3", text: "while away 2" });
    // The same device, as another `chat-cli follow` of it would be (straight to chatd): it gets both and acks them.
    const other = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken).connect();
    h.cleanups.push(() => other.ws?.close());
    await waitFor(() => other.messages().length >= 2, "the other session's replay");
    const cursor = other.cursor;
    await waitFor(async () => {
      const probe = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken, { autoAck: false }).connect();
      // Closed before the next poll: probes left closing pile up against the device's session cap (8).
      await probe.close();
      return probe.welcome()!.deviceCursor >= cursor;
    }, "the ack stored");

    h.proxy.restore();
    await follower.said(/reconnected/);
    // Nothing more is sent: what it missed comes all the same, once each and in order.
    await follower.printed("while away 2\n");
    assert.match(follower.out, /#1 \S+: before\n\[[^\]]+\] #2 \S+: while away 1\n\[[^\]]+\] #3 \S+: while away 2\n$/);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });

  it("prints an edit and a delete made while it reconnected, though another chat-cli of the device acked them meanwhile, once each", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "e1", text: "first" });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "e2", text: "second" });
    const follower = h.follow(me, String(channelId), "--last", "2");
    const scripted = h.follow(me, String(channelId), "--last", "2", "--json");
    await Promise.all([follower.started(), scripted.started()]);
    await follower.printed("second\n");

    h.proxy.cut("reset");
    await Promise.all([follower.said(/connection lost/), scripted.said(/connection lost/)]);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "e3", text: "first, fixed", editSeq: 1n });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "e4", text: "", deleteSeq: 2n });
    // The same device, as another `chat-cli follow` of it would be: it gets both changes and acks them.
    const other = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken).connect();
    h.cleanups.push(() => other.ws?.close());
    await waitFor(() => other.messages().length >= 2, "the other session's replay");
    const cursor = other.cursor;
    await waitFor(async () => {
      const probe = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken, { autoAck: false }).connect();
      await probe.close();
      return probe.welcome()!.deviceCursor >= cursor;
    }, "the ack stored");

    h.proxy.restore();
    // Both: a follower that reconnects after "third" is sent reads it first, and prints the changes after it.
    await Promise.all([follower.said(/reconnected/), scripted.said(/reconnected/)]);
    // Each was lost: no replay brought it, and the history read after a reconnect looked only past #2.
    await Promise.all([follower.printed("✗ #2 deleted\n"), scripted.printed('"change":"delete"')]);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "e5", text: "third" });
    await follower.printed("third\n");
    assert.match(follower.out, /#1 \S+: first\n\[[^\]]+\] #2 \S+: second\n✎ #1 edited: first, fixed\n✗ #2 deleted\n\[[^\]]+\] #3 \S+: third\n$/);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
    await scripted.printed('"text":"third"');
    const changes = scripted.out.trim().split("\n").map((l) => JSON.parse(l)).filter((j) => j.change);
    // Who deleted it history does not say: no sender rather than the author's name.
    assert.deepEqual(
      changes.map((c) => [c.change, c.targetSeq, c.text, c.sender]),
      [
        ["edit", "1", "first, fixed", peer.username],
        ["delete", "2", "", null],
      ],
    );
  });

  it("prints a reaction made and one taken back while it reconnected, though another chat-cli of the device acked them meanwhile, once each", async () => {
    const { me, myId, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "q1", text: "first" });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "q2", text: "second" });
    await me.ok("react", String(channelId), "2", "❤️");
    const follower = h.follow(me, String(channelId), "--last", "2");
    const scripted = h.follow(me, String(channelId), "--last", "2", "--json");
    await Promise.all([follower.started(), scripted.started()]);
    await follower.printed("second [❤️ 1]\n");

    h.proxy.cut("reset");
    await Promise.all([follower.said(/connection lost/), scripted.said(/connection lost/)]);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "q3", text: "👍", reactSeq: 1n });
    // My own reaction taken back on another device (the api straight, as another chat-cli would).
    const mine = apiClients(h.chatd.httpUrl, me.saved().accessToken);
    await mine.messages.sendMessage({ channelId, clientMsgId: "q4", text: "", reactSeq: 2n });
    const other = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken).connect();
    h.cleanups.push(() => other.ws?.close());
    await waitFor(() => other.messages().length >= 2, "the other session's replay");
    const cursor = other.cursor;
    await waitFor(async () => {
      const probe = await new TestDevice(h.chatd.wsUrl, me.saved().accessToken, { autoAck: false }).connect();
      await probe.close();
      return probe.welcome()!.deviceCursor >= cursor;
    }, "the ack stored");

    h.proxy.restore();
    await Promise.all([follower.said(/reconnected/), scripted.said(/reconnected/)]);
    // Each was lost: no replay brought it, and the history read after a reconnect compared texts alone.
    await Promise.all([follower.printed("took back their reaction\n"), scripted.printed('"change":"reaction","senderId":"' + myId + '"')]);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "q5", text: "third" });
    await follower.printed("third\n");
    assert.match(follower.out, new RegExp(`#2 \\S+: second \\[❤️ 1\\]\\n☺ #1 ${peer.username} reacted 👍\\n☺ #2 ${me.username} took back their reaction\\n\\[[^\\]]+\\] #3 \\S+: third\\n$`));
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
    await scripted.printed('"text":"third"');
    const changes = scripted.out.trim().split("\n").map((l) => JSON.parse(l)).filter((j) => j.change);
    assert.deepEqual(
      changes.map((c) => [c.change, c.targetSeq, c.text, c.senderId]),
      [
        ["reaction", "1", "👍", peer.userId.toString()],
        ["reaction", "2", "", myId.toString()],
      ],
    );
  });

  it("prints a reaction made while it reconnected once: on the message it reads from history, not again as news", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "r1", text: "before" });
    const follower = h.follow(me, String(channelId), "--last", "1");
    await follower.started();
    await follower.printed("before\n");

    h.proxy.cut("reset");
    await follower.said(/connection lost/);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "r2", text: "while away" });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "r3", text: "👍", reactSeq: 2n });
    await waitFor(
      async () => (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages[0]?.reactions.length === 1,
      "the reaction stored",
    );
    // chat-cli tells a replayed reaction from news by the server's clock, as near as the server times
    // it has read let it judge (each late by however long its frame took to be read: towards printing
    // twice rather than never; internal/cli/server-clock.ts). Away for 2 s, not the few ms a loaded
    // machine can lag by: one run in CI was not, when only the reconnect's Welcome counted.
    const storedAt = Date.now();
    await waitFor(() => Date.now() - storedAt >= 2_000, "the device away 2 s past the reaction");

    h.proxy.restore();
    await follower.said(/reconnected/);
    await follower.printed("while away [👍 1]\n");
    // A reaction made now comes after that one in the inbox, which the follower takes in order: once this is out, so would that be.
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "r4", text: "🎉", reactSeq: 1n });
    await follower.printed("reacted 🎉\n");
    assert.match(follower.out, /#1 \S+: before\n\[[^\]]+\] #2 \S+: while away \[👍 1\]\n☺ #1 \S+ reacted 🎉\n$/);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });
});

describe("chat-cli follow on a gateway that refuses every token (it reads other keys than the api)", function () {
  this.timeout(60_000);
  const h = harness();

  it("says so and backs off, instead of refreshing and reconnecting without end", async () => {
    const { me, channelId } = await h.pair();
    const gateway = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await once(gateway, "listening");
    h.cleanups.push(() => new Promise((r) => gateway.close(r)));
    let connections = 0;
    gateway.on("connection", (socket) => {
      connections++;
      socket.close(4001, "access token signed by an unknown key");
    });
    const url = `ws://127.0.0.1:${(gateway.address() as AddressInfo).port}/ws`;
    const follower = h.follow(me, String(channelId), "--ws", url);
    await follower.said(/refused a fresh access token \(close 4001: access token signed by an unknown key\): is it a gateway of the api at http:\/\/\S+ \(the same CHAT_KEYS_DIR\)\? trying again in/, 2);
    // The first with the saved token, then one fresh token per try, 0.5 s and 1 s apart: it
    // refreshed and reconnected some 40 times a second before.
    assert.ok(connections <= 4, `${connections} connections`);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });
});

describe("chat-cli follow with tokens that expire while the server is down", function () {
  this.timeout(120_000);
  // A token this short is refreshed at every reconnect, as one of 15 minutes is after an outage that long.
  const h = harness({ CHAT_ACCESS_TOKEN_TTL_S: "10" });

  it("waits for the server to refresh its token, and follows on once it is back", async () => {
    const { me, peer, channelId } = await h.pair();
    const listed = async () => (await scrapeMetric(`${h.chatd.httpUrl}/metrics`, "chat_api_requests_total", 'method="MessageService/ListMessages",code="ok"')) ?? 0;
    const listedBefore = await listed();
    const follower = h.follow(me, String(channelId), "--last", "0");
    await follower.started();
    // Its first read of history (after a refresh, as every call) done, the one list of `--last 0`,
    // at the Welcome: a refresh the cut answers no more would have spent its refresh token, and the
    // server would sign the device out. Once the server answered the list, the refresh before it was
    // answered to chat-cli.
    await waitFor(async () => (await listed()) > listedBefore, "chat-cli's read of history after its Welcome", 30_000, 50);

    follower.step("cut");
    h.proxy.cut("reset");
    await follower.said(/cannot refresh the access token \(.+\); trying again in/, 2);
    follower.step("restore");
    h.proxy.restore();
    await follower.said(/reconnected/);
    // The peer's 10 s token can run out meanwhile on a loaded machine: it signs in anew.
    const { token } = await addDevice(h.chatd.httpUrl, peer);
    follower.step("peer signed in again");
    await apiClients(h.chatd.httpUrl, token).messages.sendMessage({ channelId, clientMsgId: "r1", text: "back again" });
    follower.step("peer sent");
    await follower.printed("back again\n");
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });
});

describe("chat-cli follow with tokens that are refreshed at every call", function () {
  this.timeout(120_000);
  // A token this short is refreshed before each call: the refresh runs inside the call, in its interceptor.
  const h = harness({ CHAT_ACCESS_TOKEN_TTL_S: "10" });

  it("gives up a token refresh inside a history read that a silent network never answers, and asks again, instead of waiting for it for good", async () => {
    // The read of the gap refreshes the token first, and the refresh is never answered: the
    // read's own deadline does not cover it (an interceptor's wait).
    await followAGapThroughACut(h, "blackhole");
  });
});

describe("chat-cli follow with tokens that expire while it follows", function () {
  this.timeout(60_000);
  const h = harness({ CHAT_ACCESS_TOKEN_TTL_S: "10" });

  it("hands the session a fresh token before its token expires, and follows on in the same session past that expiry", async () => {
    const { me, peer, channelId } = await h.pair();
    const follower = h.follow(me, String(channelId), "--last", "0");
    await follower.started();
    // The token the session was opened with expires by then: the one saved now is that one or a later one.
    const expiresMs = me.saved().accessExpiresAtMs;
    // Past the server's expiry sweep, which closes a session whose token expired (4002) within a second.
    await waitFor(() => Date.now() > expiresMs + 1500, "the first token's expiry", 20_000, 100);

    // The peer's token ran out too: it signs in anew.
    const { token } = await addDevice(h.chatd.httpUrl, peer);
    await apiClients(h.chatd.httpUrl, token).messages.sendMessage({ channelId, clientMsgId: "x1", text: "past the expiry" });
    await follower.printed("past the expiry\n");
    assert.doesNotMatch(follower.err, /reconnected|connection lost|server:/, "the session was closed or refused a token");
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });
});

describe("chat-cli follow with tokens of a minute or less", function () {
  this.timeout(60_000);
  const h = harness({ CHAT_ACCESS_TOKEN_TTL_S: "10" });

  it("hands the session a fresh token half way through its life at the soonest, not every second", async () => {
    const { me, channelId } = await h.pair();
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "0", "--ws", url);
    await follower.started();
    // Welcomed by now, with a token fetched just before (a 10 s token is refreshed at every use).
    const welcomedBy = Date.now();
    const handedAt: number[] = [];
    sockets[0]!.on("message", (data: Buffer) => {
      const frame = fromBinary(ClientFrameSchema, new Uint8Array(data));
      if (frame.kind.case !== "reauthenticate") return;
      handedAt.push(Date.now());
      const value = { tokenExpiresAt: timestampFromMs(Date.now() + 10_000) };
      sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { ref: frame.ref, kind: { case: "reauthenticated", value } })));
    });
    await waitFor(() => handedAt.length >= 2, "two tokens handed over", 30_000, 50);
    // 'A minute before it ends' is before such a token began: each was handed over a second after the last.
    assert.ok(handedAt[0]! - welcomedBy >= 3000, `the first token went ${handedAt[0]! - welcomedBy} ms after the welcome`);
    assert.ok(handedAt[1]! - handedAt[0]! >= 3000, `the second went ${handedAt[1]! - handedAt[0]!} ms after the first`);
    follower.interrupt();
    assert.equal(await follower.exited, 0, follower.err);
  });
});

describe("chat-cli follow through a network that goes silent", function () {
  this.timeout(120_000);
  const h = harness({ CHAT_HEARTBEAT_INTERVAL_MS: "1000" });

  it("notices a connection that carries nothing any more (no close ever comes), reconnects, and prints what came meanwhile", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "s1", text: "before" });
    const follower = h.follow(me, String(channelId), "--last", "1");
    await follower.started();
    await follower.printed("before\n");

    h.proxy.cut("blackhole");
    await follower.said(/connection lost/);
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "s2", text: "while silent" });
    h.proxy.restore();
    await follower.printed("while silent\n");
  });
});

describe("chat-cli follow stopped while the network is silent", function () {
  this.timeout(60_000);
  const h = harness();

  it("stops at Ctrl+C within a few seconds, not after waiting out the close handshake's 30 s", async () => {
    const { me, channelId } = await h.pair();
    const follower = h.follow(me, String(channelId), "--last", "0");
    await follower.started();
    h.proxy.cut("blackhole");
    follower.interrupt();
    // The goodbye a silent network never answers: the socket is let go, as the server's would be.
    await waitFor(() => follower.exitCode !== undefined, `exit after Ctrl+C (stderr: ${follower.err})`, 10_000, 50);
    assert.equal(follower.exitCode, 0, follower.err);
  });

  it("stops at Ctrl+C within a few seconds while a message waits for its sender's name from the silent api, not at the call's deadline", async () => {
    const { me, myId, peer } = await h.pair();
    const third = await signUp(h.chatd.httpUrl, "third");
    const { channelId } = (await peer.api.channels.createGroup({ title: "Trio", memberUserIds: [myId, third.userId] })).channel!;
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "0", "--ws", url);
    await follower.started();
    h.proxy.cut("blackhole");
    // The third member speaks for the first time: their name is asked of the api, whose answer never comes.
    await third.api.messages.sendMessage({ channelId, clientMsgId: "q1", text: "unnamed" });
    const [message] = (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages;
    let acked = false;
    sockets[0]!.on("message", (data: Buffer) => (acked ||= fromBinary(ClientFrameSchema, new Uint8Array(data)).kind.case === "deliveryAck"));
    sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 1n, message } } } })));
    // Acked once taken, and taken into an idle chain: its print is asking for the name by now.
    await waitFor(() => acked, "the delivery's ack", 10_000, 20);
    assert.equal(follower.out, "");
    follower.interrupt();
    await waitFor(() => follower.exitCode !== undefined, `exit after Ctrl+C (stderr: ${follower.err})`, 8_000, 50);
    assert.equal(follower.exitCode, 0, follower.err);
  });
});

describe("chat-cli follow of a group I am no longer in", function () {
  this.timeout(120_000);
  const h = harness();

  it("says so too when a read of history is refused because I am no longer in it, not the server's bare refusal", async () => {
    const { me, myId, peer } = await h.pair();
    const { channelId } = (await peer.api.channels.createGroup({ title: "Crew", memberUserIds: [myId] })).channel!;
    const { url, sockets } = await h.standInGateway();
    const follower = h.follow(me, String(channelId), "--last", "0", "--ws", url);
    await follower.started();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "g1", text: "one" });
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "g2", text: "two" });
    const [newest] = (await peer.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: 1 })).messages;
    await peer.api.channels.removeMember({ channelId, userId: myId });
    // The newest, live, without the one before it: the gap is read from history, which I may no longer read.
    sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 1n, message: newest } } } })));
    assert.equal(await follower.exited, 1, follower.err);
    assert.match(follower.err, /chat-cli: you are no longer a member of this chat \(taken out, or you left it\); stopped following\n$/);
  });

  it("stops with exit 1, saying so, when I am taken out of the group or leave it with another chat-cli", async () => {
    const { me, myId, peer } = await h.pair();
    const { channelId } = (await peer.api.channels.createGroup({ title: "Crew", memberUserIds: [myId] })).channel!;
    const follower = h.follow(me, String(channelId), "--last", "0");
    await follower.started();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "c1", text: "live" });
    await follower.printed("live\n");

    // Before, it went on following a chat nothing came for any more, as if it were only quiet.
    await peer.api.channels.removeMember({ channelId, userId: myId });
    await follower.said(/no longer a member of this chat/);
    assert.equal(await follower.exited, 1, follower.err);

    await peer.api.channels.addMembers({ channelId, userIds: [myId] });
    const again = h.follow(me, String(channelId), "--last", "0");
    await again.started();
    await me.ok("leave", String(channelId));
    await again.said(/no longer a member of this chat/);
    assert.equal(await again.exited, 1, again.err);
  });
});

describe("chat-cli follow with a --ws that is no WebSocket URL", function () {
  this.timeout(60_000);
  const h = harness();

  it("refuses it with exit 2, naming where it came from, before printing any history", async () => {
    const { me, peer, channelId } = await h.pair();
    await peer.api.messages.sendMessage({ channelId, clientMsgId: "u1", text: "one" });
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const child = me.spawn(["follow", String(channelId), "--last", "1", ...args], env);
      let [stdout, stderr] = ["", ""];
      child.stdout!.on("data", (d) => (stdout += d));
      child.stderr!.on("data", (d) => (stderr += d));
      const [code] = (await once(child, "close")) as [number];
      return { code, stdout, stderr };
    };
    // The api's address where the gateway's goes: it printed the history, then failed as if following had.
    const http = await run(["--ws", `http://${h.proxy.address}/ws`]);
    assert.equal(http.code, 2, http.stderr);
    assert.equal(http.stdout, "");
    assert.match(http.stderr, /^chat-cli: --ws must be a ws:\/\/ or wss:\/\/ URL .*"http:\/\/[^"]+"\n$/);
    const junk = await run(["--ws", "::nope"]);
    assert.equal(junk.code, 2, junk.stderr);
    assert.equal(junk.stdout, "");
    assert.match(junk.stderr, /--ws: "::nope" is not a URL/);
    const fromEnv = await run([], { CHAT_WS_URL: "https://gateway.example/ws" });
    assert.equal(fromEnv.code, 2, fromEnv.stderr);
    assert.equal(fromEnv.stdout, "");
    assert.match(fromEnv.stderr, /CHAT_WS_URL must be a ws:\/\/ or wss:\/\/ URL/);
  });
});
