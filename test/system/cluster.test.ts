// Runs alone (scripts/test.sh): it restarts the shared Redis, Kafka and etcd, which every suite running beside it would feel.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelNoteKind, ErrorCode, MemberRole, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { signUp, type TestUser } from "../support/api.js";
import { TestDevice } from "../support/device.js";
import { connectRedis, engineConfig } from "../support/engines.js";
import { metricIn } from "../support/metrics.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { waitFor, waitOut } from "../support/wait.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { TokenSigner, loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { Etcd3 } from "etcd3";
import kafkajs from "kafkajs";
import { ConsumerGroups } from "../../internal/pipeline/topics.js";

const ROOT = resolve(import.meta.dirname, "../..");
const LEASE_TTL_S = 3;

/**
 * Sends until acked: a send whose answer does not come (its chat server died
 * mid-flight) goes again under the same client_msg_id, as a real client does.
 */
async function sendReliably(d: TestDevice, channelId: bigint, text: string, key: string): Promise<bigint> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const ref = d.sendFrame({ kind: { case: "send", value: { channelId, text, clientMsgId: key } } });
    let reply: ServerFrame;
    try {
      reply = await d.reply(ref, 3_000);
    } catch {
      continue;
    }
    if (reply.kind.case === "sendAck") return reply.kind.value.messageId;
    // As a client does: after the server's retry_after_ms (by the monotonic clock, which a timer can beat), or a pause.
    if (reply.kind.case === "error") await waitOut(Math.max(100, reply.kind.value.retryAfterMs));
  }
  throw new Error(`send ${key} never acked`);
}

/** The checker: each device saw the channel once per message, in seq order, and every acked message. */
function checkView(d: TestDevice, channelId: bigint, acked: Set<bigint>, label: string): void {
  const msgs = d.messagesIn(channelId);
  const ids = msgs.map((m) => m.messageId);
  assert.equal(new Set(ids).size, ids.length, `${label}: a message shown twice`);
  for (let i = 1; i < msgs.length; i++) assert.ok(msgs[i]!.seq > msgs[i - 1]!.seq, `${label}: out of order at ${i}`);
  for (const id of acked) assert.ok(ids.includes(id), `${label}: acked message ${id} missing`);
}

/** What a device holds of a channel and of its socket, for a failure's message. */
function describeDevice(d: TestDevice, channelId: bigint, acked: Set<bigint>): string {
  const msgs = d.messagesIn(channelId);
  const have = new Set(msgs.map((m) => m.messageId));
  const missing = [...acked].filter((id) => !have.has(id));
  const w = d.welcome();
  return [
    `socket ${d.closeCode === undefined ? (d.ws?.readyState === 1 ? "open" : `state ${d.ws?.readyState}`) : `closed ${d.closeCode} ${d.closeReason}`}`,
    `url ${d.ws?.url}`,
    `welcome cursor ${w?.deviceCursor} head ${w?.headInboxSeq}`,
    `cursor ${d.cursor}, ${d.entries.length} entries, ${msgs.length} of the channel (seqs ${msgs[0]?.seq}..${msgs.at(-1)?.seq})`,
    `missing ${missing.length} of ${acked.size}: ${missing.slice(0, 5).join(" ")}`,
    `received seqs tail ${d.received.slice(-8).join(" ")}`,
  ].join("; ");
}

describe("distributed mode on the real engines (separate processes)", function () {
  this.timeout(600_000);
  const engines = engineConfig();
  // Its own keyspace, Kafka namespace and etcd prefix, dropped at the end.
  const { run, scope, keysDir, env } = useDeployment("it");
  const common = {
    ...env,
    CHAT_KAFKA_PARTITIONS: "6",
    CHAT_OPS_PORT: "0",
    CHAT_LEASE_TTL_S: String(LEASE_TTL_S),
  };
  let api: RoleProcess;
  const chatServers: RoleProcess[] = [];
  const pipelines: RoleProcess[] = [];
  const gateways: RoleProcess[] = [];
  const devices: TestDevice[] = [];
  const apiUrl = () => String(api.info.http);
  const gatewayWs = (i: number) => String(gateways[i % gateways.length]!.info.ws);
  const connect = async (i: number, token: string) => {
    const d = new TestDevice(gatewayWs(i), token);
    devices.push(d);
    return d.connect();
  };

  before(async () => {
    // The api creates the keyspace and the signing key; the rest start after it.
    api = await startRole("api", common);
    chatServers.push(...(await Promise.all([1, 2].map((i) => startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs${i}-${run}` })))));
    pipelines.push(...(await Promise.all([1, 2].map(() => startRole("pipeline", common)))));
    gateways.push(...(await Promise.all([1, 2].map((i) => startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw${i}-${run}` })))));
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });

  it("delivers 1:1 and group messages between users on different gateways and chat servers", async () => {
    const users: TestUser[] = [];
    for (let i = 0; i < 6; i++) users.push(await signUp(apiUrl(), "cl"));
    const [a, b] = users;
    const direct = (await a!.api.channels.openDirect({ userId: b!.userId })).channel!.channelId;
    const group = (await a!.api.channels.createGroup({ title: "cluster", memberUserIds: users.slice(1).map((u) => u.userId) })).channel!.channelId;
    const devs = await Promise.all(users.map((u, i) => connect(i, u.devices[0]!.token)));
    const ackedDirect = new Set<bigint>();
    const ackedGroup = new Set<bigint>();
    for (let n = 0; n < 5; n++) ackedDirect.add(await sendReliably(devs[n % 2]!, direct, `d${n}`, `d-${run}-${n}`));
    await Promise.all(
      devs.slice(0, 3).map(async (d, i) => {
        for (let n = 0; n < 4; n++) ackedGroup.add(await sendReliably(d, group, `g${i}.${n}`, `g-${run}-${i}-${n}`));
      }),
    );
    await Promise.all(devs.slice(0, 2).map((d) => waitFor(() => d.messagesIn(direct).length >= 5, "direct messages")));
    await Promise.all(devs.map((d) => waitFor(() => d.messagesIn(group).length >= 12, "group messages", 60_000)));
    for (const [i, d] of devs.entries()) {
      if (i < 2) checkView(d, direct, ackedDirect, `device ${i} direct`);
      checkView(d, group, ackedGroup, `device ${i} group`);
    }
    const order = devs[0]!.messagesIn(group).map((m) => m.messageId);
    for (const d of devs) assert.deepEqual(d.messagesIn(group).map((m) => m.messageId), order, "same group order everywhere");
    // Both chat servers took sessions (least-loaded placement spreads them).
    const res = await fetch(`http://127.0.0.1:${chatServers[0]!.info.ops}/metrics`);
    assert.match(await res.text(), /chat_sessions [1-9]/);
  });

  it("keeps a session open past its token's expiry once handed a fresh token, through a gateway and a chat server", async () => {
    const user = await signUp(apiUrl(), "re");
    const other = await signUp(apiUrl(), "re");
    const direct = (await user.api.channels.openDirect({ userId: other.userId })).channel!.channelId;
    const keys = await loadOrCreateKeys(keysDir);
    const who = { userId: user.userId, deviceId: user.devices[0]!.deviceId };
    const ttlMs = 60_000;
    const issuedAt = Date.now() - ttlMs + 3000; // expires 3 s from now
    const { token: ending } = new TokenSigner(keys, { ttlMs, now: () => issuedAt }).sign(who);
    const control = await connect(0, ending);
    const renewed = await connect(0, ending);
    const answer = await renewed.reauthenticate(user.devices[0]!.token);
    assert.equal(answer.kind.case, "reauthenticated", answer.kind.case === "error" ? answer.kind.value.message : "");
    assert.equal(await control.waitClosed(), 4002);
    // Each user's sessions are swept about once a second on whichever chat server holds them.
    await waitFor(() => Date.now() > issuedAt + ttlMs + 2500, "two sweeps past the first token's expiry");
    assert.equal(renewed.closeCode, undefined);
    assert.equal((await renewed.send(direct, "still here")).kind.case, "sendAck");
  });

  it("carries edits, deletes, replies and reactions through Kafka and Cassandra to every member on other gateways and chat servers, in order", async () => {
    const users: TestUser[] = [];
    for (let i = 0; i < 3; i++) users.push(await signUp(apiUrl(), "ed"));
    const [owner, writer] = users as [TestUser, TestUser, TestUser];
    const group = (await owner.api.channels.createGroup({ title: "edits", memberUserIds: users.slice(1).map((u) => u.userId) })).channel!.channelId;
    const devs = await Promise.all(users.map((u, i) => connect(i, u.devices[0]!.token)));
    const [o, w] = devs as [TestDevice, TestDevice, TestDevice];
    for (let n = 1; n <= 3; n++) await sendReliably(w, group, `m${n}`, `ed-${run}-${n}`);
    // A device learns a message's seq from its delivery (the ack comes once Kafka holds it, before the Sequencer).
    await Promise.all(devs.map((d) => waitFor(() => d.messagesIn(group).length >= 3, "the 3 messages")));
    // m2 is edited before it is deleted: the delete must take that text out of the inboxes too.
    assert.equal((await w.edit(group, 2n, "m2, edited", `ed-${run}-e2`)).kind.case, "sendAck");
    await Promise.all(devs.map((d) => waitFor(() => d.messagesIn(group).length >= 4, "the edit of m2")));
    // Sent back to back: the Sequencer gets them in one batch or a few, and must keep their order.
    const replies = await Promise.all([
      w.edit(group, 1n, "m1, edited", `ed-${run}-e1`),
      w.edit(group, 3n, "m3, edited", `ed-${run}-e3`),
      o.deleteMessage(group, 2n, `ed-${run}-d2`),
      w.edit(group, 1n, "m1, edited twice", `ed-${run}-e1b`),
    ]);
    for (const r of replies) assert.equal(r.kind.case, "sendAck", r.kind.case === "error" ? r.kind.value.message : "");
    const expected = [
      { seq: 1n, text: "m1, edited twice", edited: true, deleted: false },
      { seq: 2n, text: "", edited: false, deleted: true },
      { seq: 3n, text: "m3, edited", edited: true, deleted: false },
    ];
    // The two edits of m1 may reach the Sequencer in either order; the later-minted one wins either way
    // (the other, if it comes second, is dropped), so a device sees 3 or 4 changes but one end state.
    const same = (d: TestDevice) => JSON.stringify(d.shown(group), (_k, v) => (typeof v === "bigint" ? String(v) : v));
    const want = JSON.stringify(expected, (_k, v) => (typeof v === "bigint" ? String(v) : v));
    await Promise.all(devs.map((d) => waitFor(() => same(d) === want, "every change applied", 60_000)));
    // An edit after the delete is refused by the chat server that reads it deleted.
    const late = await w.edit(group, 2n, "back?");
    assert.ok(late.kind.case === "error" && late.kind.value.code === ErrorCode.NOT_FOUND, "editing a deleted message");
    const history = await users[2]!.api.messages.listMessages({ channelId: group, limit: 10 });
    assert.deepEqual(history.messages.map((m) => [m.seq, m.text, m.editedAt !== undefined, m.deleted]), [
      [3n, "m3, edited", true, false], [2n, "", false, true], [1n, "m1, edited twice", true, false],
    ]);
    // Search reads the same history on Cassandra: the texts as they now are, the deleted one's edit found by nothing.
    const found = await users[2]!.api.messages.searchMessages({ channelId: group, query: "EDITED" });
    assert.deepEqual([found.messages.map((m) => [m.seq, m.text]), found.nextBeforeSeq], [[[3n, "m3, edited"], [1n, "m1, edited twice"]], 0n]);
    const listed = (await users[2]!.api.channels.listChannels({})).channels.find((c) => c.channelId === group)!;
    assert.deepEqual([listed.lastMessage?.text, listed.unreadCount], ["m3, edited", 3n], "the preview follows the edit; changes are not unread");
    // The sync queue keeps the entries, in order, but not the deleted text.
    for (const u of users) {
      const synced = await u.api.messages.syncInbox({ afterInboxSeq: 0n, limit: 100 });
      const texts = synced.entries.map((e) => e.message!.text);
      assert.ok(texts.length >= 7, `${u.username}: every entry is still there`);
      assert.ok(!texts.some((t) => t.startsWith("m2")), `${u.username}: the deleted text is gone from the inbox (${texts.join(" | ")})`);
    }
    // A reply names what it answers, through Kafka and Cassandra alike.
    assert.equal((await o.send(group, "re m1", `ed-${run}-r1`, { replyToSeq: 1n })).kind.case, "sendAck");
    await Promise.all(devs.map((d) => waitFor(() => d.messagesIn(group).some((m) => m.replyToSeq === 1n && m.seq === 4n), "the reply")));
    const top = (await users[1]!.api.messages.listMessages({ channelId: group, limit: 1 })).messages[0]!;
    assert.deepEqual([top.seq, top.replyToSeq, top.text], [4n, 1n, "re m1"]);
    // Reactions: one per user, the later replacing the earlier, whatever chat server minted them.
    const reactions = await Promise.all([
      w.react(group, 4n, "👍", `ed-${run}-x1`),
      devs[2]!.react(group, 4n, "😂", `ed-${run}-x2`),
      w.react(group, 4n, "❤️", `ed-${run}-x3`),
    ]);
    for (const r of reactions) assert.equal(r.kind.case, "sendAck", r.kind.case === "error" ? r.kind.value.message : "");
    const wanted = [`❤️:${writer.userId}`, `😂:${users[2]!.userId}`].sort().join(" ");
    await Promise.all(devs.map((d) => waitFor(() => d.reactionsShown(group).get(4n)?.join(" ") === wanted, "the reactions", 60_000)));
    assert.ok(devs.every((d) => d.shown(group).find((m) => m.seq === 4n)?.text === "re m1"), "a reaction is no edit");
    const reacted = (await users[0]!.api.messages.listMessages({ channelId: group, limit: 1 })).messages[0]!;
    assert.deepEqual(reacted.reactions.map((r) => `${r.emoji}:${r.userId}`).sort().join(" "), wanted);
    // The api's note of a change to the group takes the pipeline like a message: the next seq, every member's inbox, history.
    await owner.api.channels.setMemberRole({ channelId: group, userId: writer.userId, role: MemberRole.ADMIN });
    const isNote = (m: Message) => m.seq === 5n && m.note?.kind === ChannelNoteKind.ROLE_CHANGED && m.note.userIds[0] === writer.userId;
    await Promise.all(devs.map((d) => waitFor(() => d.messagesIn(group).some(isNote), "the note of the new admin")));
    const noted = (await users[2]!.api.messages.listMessages({ channelId: group, limit: 1 })).messages[0]!;
    assert.ok(isNote(noted) && noted.senderUserId === owner.userId && noted.note!.role === MemberRole.ADMIN, "history has the note");
    const refused = await w.react(group, 5n, "👍");
    assert.ok(refused.kind.case === "error" && refused.kind.value.code === ErrorCode.INVALID_ARGUMENT, "a note takes no reaction");
  });

  it("stops a direct chat's sends on the chat servers as soon as a block made through the api returns, and resumes them as soon as the unblock does", async () => {
    const [a, b] = [await signUp(apiUrl(), "bl"), await signUp(apiUrl(), "bl")];
    const dm = (await b.api.channels.openDirect({ userId: a.userId })).channel!.channelId;
    const db = await connect(1, b.devices[0]!.token);
    assert.equal((await db.send(dm, "before")).kind.case, "sendAck", "the chat server now holds 'no block' for the pair");
    // The chat servers keep block answers CHAT_BLOCK_CACHE_TTL_S (5 s): the api has them forget the pair, so no send slips through meanwhile.
    await a.api.users.blockUser({ userId: b.userId });
    const refused = await db.send(dm, "still there?");
    assert.equal(refused.kind.case, "error");
    assert.equal(refused.kind.value.code, ErrorCode.BLOCKED);
    await a.api.users.unblockUser({ userId: b.userId });
    assert.equal((await db.send(dm, "again")).kind.case, "sendAck");
  });

  async function sessionsOn(server: RoleProcess): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${server.info.ops}/metrics`)).text();
    return Number(/^chat_sessions (\d+)/m.exec(text)?.[1] ?? 0);
  }

  /** Removes from the list, and returns, the chat server holding the most sessions (at least one). */
  async function takeBusiest(): Promise<RoleProcess> {
    const counts = await Promise.all(chatServers.map(sessionsOn));
    const i = counts.indexOf(Math.max(...counts));
    assert.ok(counts[i]! > 0, "some chat server holds the sessions");
    return chatServers.splice(i, 1)[0]!;
  }

  /**
   * Two senders keep a group of four busy through `disrupt`; every sender must
   * be acked again within `maxResumeMs` and every device must end with every
   * acked message, once and in order. With `rejoin`, a device whose socket
   * drops reconnects through a live gateway, as a real client does, until the
   * check is over.
   */
  async function underLoad(disrupt: () => Promise<void>, label: string, maxResumeMs = 120_000, rejoin = false): Promise<void> {
    try {
      await runUnderLoad(disrupt, label, maxResumeMs, rejoin);
    } catch (err) {
      printWarnings();
      throw err;
    }
  }

  /** What the roles warned about is what explains a failure. */
  function printWarnings(): void {
    for (const p of [api, ...chatServers, ...pipelines, ...gateways]) {
      const warnings = p.output.filter((l) => !l.startsWith('{"level":30') && !l.startsWith('{"level":20'));
      console.error(`--- ${p.role} (exit ${p.child.exitCode ?? p.child.signalCode ?? "-"})\n${warnings.slice(-40).join("\n")}`);
    }
  }

  async function runUnderLoad(disrupt: () => Promise<void>, label: string, maxResumeMs: number, rejoin: boolean): Promise<void> {
    const users: TestUser[] = [];
    for (let i = 0; i < 4; i++) users.push(await signUp(apiUrl(), "fo"));
    const group = (await users[0]!.api.channels.createGroup({ title: label, memberUserIds: users.slice(1).map((u) => u.userId) })).channel!.channelId;
    const devs = await Promise.all(users.map((u, i) => connect(i, u.devices[0]!.token)));
    const acked = new Set<bigint>();
    const ackedBy = [0, 0];
    let sending = true;
    const senders = devs.slice(0, 2).map(async (d, i) => {
      for (let n = 0; sending; n++) {
        acked.add(await sendReliably(d, group, `${label} ${i}.${n}`, `${label}-${run}-${i}-${n}`));
        ackedBy[i]!++;
      }
    });
    let rejoining = rejoin;
    const rejoiners = devs.map(async (d, i) => {
      while (rejoining) {
        await waitFor(() => !rejoining || d.closeCode !== undefined, `device ${i}'s socket closed`, 600_000);
        if (!rejoining) break;
        await d.connect(gatewayWs(i)).catch(() => undefined);
        // A reconnect refused (its gateway the one that went away) goes again after a client's pause, not in a hot loop.
        if (d.closeCode !== undefined) await waitOut(50);
      }
    });
    await waitFor(() => acked.size >= 20, "traffic before the disruption", 60_000);
    const disruptedAt = Date.now();
    await disrupt();
    const before = acked.size;
    // Every sender is served again (its session moved, if it had to) within the bound.
    const counts = () => [ackedBy[0]!, ackedBy[1]!];
    const base = counts();
    await waitFor(() => counts().every((c, i) => c > base[i]!), `${label}: both senders acked again`, maxResumeMs);
    const resumedMs = Date.now() - disruptedAt;
    assert.ok(resumedMs <= maxResumeMs, `${label}: resumed after ${resumedMs} ms`);
    await waitFor(() => acked.size >= before + 20, "traffic after the disruption", 120_000);
    sending = false;
    await Promise.all(senders);
    try {
      await Promise.all(devs.map((d) => waitFor(() => [...acked].every((id) => d.messagesIn(group).some((m) => m.messageId === id)), `${label}: every acked message on every device`, 120_000)));
    } catch (err) {
      for (const [i, d] of devs.entries()) console.error(`${label} device ${i}: ${describeDevice(d, group, acked)}`);
      throw err;
    } finally {
      rejoining = false;
      await Promise.all(rejoiners);
    }
    for (const [i, d] of devs.entries()) checkView(d, group, acked, `${label} device ${i}`);
    for (const d of devs) assert.equal(d.closeCode, undefined, `${label}: a device socket was ${rejoin ? "left closed" : "closed"}`);
  }

  it("a gateway on SIGTERM ends its WebSocket sessions with 1001 and its native gRPC streams with UNAVAILABLE, then exits 0", async () => {
    const gw = await startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw-term-${run}` });
    const user = await signUp(apiUrl(), "term");
    const ws = new TestDevice(String(gw.info.ws), user.devices[0]!.token);
    devices.push(ws);
    await ws.connect();

    const native = createClient(SessionService, createGrpcTransport({ baseUrl: String(gw.info.grpc) }));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* noFrames() {
      await held; // keeps our half of the stream open
    }
    const frames: ServerFrame[] = [];
    const ended = (async () => {
      try {
        for await (const res of native.connect(noFrames(), { headers: { authorization: `Bearer ${user.devices[0]!.token}` } })) frames.push(res.frame!);
        return undefined;
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
    try {
      await waitFor(() => frames[0]?.kind.case === "welcome", "the welcome over gRPC");
      await gw.stop();
      assert.equal(gw.child.exitCode, 0, gw.output.slice(-5).join("\n"));
      assert.equal(await ws.waitClosed(), 1001);
      const err = await ended;
      assert.ok(err, "the gRPC stream ended without a status");
      assert.equal(err.code, Code.Unavailable);
      assert.match(err.rawMessage, /^close 1001: gateway shutting down/);
    } finally {
      release();
    }
  });

  it("loses nothing acked when a gateway is killed with SIGKILL and its devices reconnect through another", async () => {
    await underLoad(
      async () => {
        // Devices 0 and 2 (one sender, one reader) were on it.
        const victim = gateways.shift()!;
        await victim.kill();
        gateways.push(await startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw-kill-${run}` }));
      },
      "gateway-kill",
      120_000,
      true,
    );
  });

  it("moves sessions off a chat server killed with SIGKILL, losing nothing acked", async () => {
    await underLoad(async () => {
      const victim = await takeBusiest();
      await victim.kill();
    }, "chat-server-kill", (LEASE_TTL_S + 5) * 1000);
    // A replacement joins, as an orchestrator would start one.
    chatServers.push(await startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs3-${run}` }));
  });

  it("drains a chat server on SIGTERM: its devices move without losing their sockets or a message", async () => {
    await underLoad(async () => {
      const victim = await takeBusiest();
      await victim.stop();
    }, "chat-server-drain", 10_000);
    chatServers.push(await startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs4-${run}` }));
  });

  it("stops serving on a chat server whose lease is lost, moves its sessions, and re-registers it", async () => {
    const etcd = new Etcd3({ hosts: engines.etcdEndpoints.map((h) => `http://${h}`) });
    try {
      let victim: RoleProcess | undefined;
      await underLoad(async () => {
        victim = await takeBusiest();
        chatServers.push(victim);
        const key = `/${scope.env.CHAT_ETCD_PREFIX}/servers/${String(victim.info.serverId ?? "")}`;
        const kv = (await etcd.get(key).exec()).kvs[0];
        assert.ok(kv, `the victim is registered at ${key}`);
        // As if etcd expired the lease (a partition, a long GC pause).
        await etcd.leaseClient.leaseRevoke({ ID: kv.lease });
      }, "lease-lost", (LEASE_TTL_S + 5) * 1000);
      // Its sessions left it, and it came back: registered again, taking sessions.
      const key = `/${scope.env.CHAT_ETCD_PREFIX}/servers/${String(victim!.info.serverId ?? "")}`;
      await waitFor(async () => (await etcd.get(key).exec()).kvs.length > 0, "the chat server to register again", 30_000, 100);
      assert.ok(victim!.output.some((l) => l.includes("registration lost")), "it noticed the loss");
    } finally {
      etcd.close();
    }
  });

  it("survives a pipeline worker killed mid-stream (Kafka rebalance)", async () => {
    await underLoad(async () => {
      await pipelines.shift()!.kill();
    }, "pipeline-kill");
  });

  it("survives a pipeline worker that stalls past its session and comes back: two writers of a partition at once", async () => {
    // What the appends without a fence are built for: a worker frozen (a
    // long pause, a stopped VM) loses its partitions, wakes up with a batch
    // and a head cache from before, and writes beside their new owner, then
    // may get partitions back. Every device's view must stay whole.
    if (pipelines.length < 2) pipelines.push(await startRole("pipeline", common));
    const live = pipelines.length;
    const kafka = new kafkajs.Kafka({ brokers: engines.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const groups = [ConsumerGroups.sequencer, ConsumerGroups.inboxWriter].map((g) => `${scope.env.CHAT_KAFKA_NAMESPACE}.${g}`);
    const members = async () => (await admin.describeGroups(groups)).groups.map((g) => (g.state === "Stable" ? g.members.length : -1));
    try {
      await waitFor(async () => (await members()).every((n) => n === live), "every pipeline worker in both groups", 60_000, 250);
      await underLoad(async () => {
        const stalled = pipelines[0]!;
        stalled.child.kill("SIGSTOP");
        try {
          await waitFor(async () => (await members()).every((n) => n === live - 1), "the stalled worker's partitions given away", 60_000, 250);
        } finally {
          stalled.child.kill("SIGCONT");
        }
      }, "pipeline-stall");
    } finally {
      await admin.disconnect();
    }
  });

  it("survives a Redis restart", async () => {
    await underLoad(async () => {
      execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "down", "redis"], { stdio: "pipe" });
      execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "up", "redis"], { stdio: "pipe" });
    }, "redis-restart");
  });

  it("survives a Kafka broker restart", async () => {
    await underLoad(async () => {
      execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "down", "kafka"], { stdio: "pipe" });
      execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "up", "kafka"], { stdio: "pipe" });
    }, "kafka-restart");
  });

  it("survives an etcd restart", async () => {
    // A blink of etcd must not move or close sessions: the leases outlive the restart
    // (etcd keeps them, with their TTL afresh), so the chat servers keep serving.
    const etcd = new Etcd3({ hosts: engines.etcdEndpoints.map((h) => `http://${h}`) });
    try {
      await underLoad(async () => {
        execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "down", "etcd"], { stdio: "pipe" });
        execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "up", "etcd"], { stdio: "pipe" });
      }, "etcd-restart");
      try {
        for (const [i, d] of devices.entries()) {
          assert.equal(d.frames.filter((f) => f.kind.case === "welcome").length, 1, `etcd-restart: device ${i}'s session was moved`);
        }
      } catch (err) {
        printWarnings();
        throw err;
      }
      // Every process holds one worker id of its own (one under a lost lease expires), and every chat server is registered.
      const minters = 1 + chatServers.length;
      await waitFor(async () => (await etcd.getAll().prefix(`/${scope.env.CHAT_ETCD_PREFIX}/worker-ids/`).keys()).length === minters, `${minters} worker ids held`, 30_000, 250);
      for (const cs of chatServers) {
        const key = `/${scope.env.CHAT_ETCD_PREFIX}/servers/${String(cs.info.serverId ?? "")}`;
        await waitFor(async () => (await etcd.get(key).exec()).kvs.length > 0, `${key} registered after the restart`, 30_000, 100);
      }
      // Both gateways follow the registry again (their watches broke): a server started now gets new sessions.
      const fresh = await startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs-etcd-${run}` });
      chatServers.push(fresh);
      const freshKey = `/${scope.env.CHAT_ETCD_PREFIX}/servers/${String(fresh.info.serverId ?? "")}`;
      await waitFor(async () => (await etcd.get(freshKey).exec()).kvs.length > 0, `${freshKey} registered`, 30_000, 100);
      // Placement is least-loaded: a gateway that knows the fresh server (none on it) sends it a session within a few.
      for (const [g] of gateways.entries()) {
        const had = await sessionsOn(fresh);
        for (let n = 0; (await sessionsOn(fresh)) === had; n++) {
          assert.ok(n < 12, `gateway ${g} placed ${n} sessions, none on the chat server registered after the restart`);
          await connect(g, (await signUp(apiUrl(), "er")).devices[0]!.token);
        }
      }
      for (const p of [api, ...chatServers, ...pipelines, ...gateways]) {
        await waitFor(async () => (await fetch(`http://127.0.0.1:${p.info.ops}/healthz`)).ok, `${p.role} healthy after the restart`, 30_000, 250);
        assert.equal(p.child.exitCode, null, `${p.role} still running`);
      }
    } finally {
      etcd.close();
    }
  });

  it("acks a resend through the api's SendMessage, made before the first copy was stored, with the first copy's id", async () => {
    const [a, b] = [await signUp(apiUrl(), "ra"), await signUp(apiUrl(), "ra")];
    const direct = (await a.api.channels.openDirect({ userId: b.userId })).channel!.channelId;
    const da = await connect(0, a.devices[0]!.token);
    const key = `api-${run}`;
    // Nothing reaches the MessageLog while the pipeline is frozen, so only the claim knows the first id.
    for (const p of pipelines) p.child.kill("SIGSTOP");
    try {
      const first = await da.reply(da.sendFrame({ kind: { case: "send", value: { channelId: direct, text: "once", clientMsgId: key } } }));
      assert.equal(first.kind.case, "sendAck");
      const again = await a.api.messages.sendMessage({ channelId: direct, text: "once", clientMsgId: key });
      assert.equal(again.messageId, (first.kind.value as { messageId: bigint }).messageId, "the api's ack names the first copy's message");
      assert.equal(again.duplicate, true);
    } finally {
      for (const p of pipelines) p.child.kill("SIGCONT");
    }
    await waitFor(() => da.messagesIn(direct).length > 0, "the message at the sender", 60_000);
    assert.deepStrictEqual(da.messagesIn(direct).map((m) => [m.clientMsgId, m.seq]), [[key, 1n]]);
  });

  it("acks a resend that moved to another chat server before the first copy was stored with the first copy's id", async () => {
    const [a, b] = [await signUp(apiUrl(), "rs"), await signUp(apiUrl(), "rs")];
    const direct = (await a.api.channels.openDirect({ userId: b.userId })).channel!.channelId;
    const [da, db] = await Promise.all([connect(0, a.devices[0]!.token), connect(1, b.devices[0]!.token)]);
    const key = `moved-${run}`;
    const ackOf = async (reply: Promise<ServerFrame>) => {
      const f = await reply;
      assert.equal(f.kind.case, "sendAck", JSON.stringify(f.kind.value, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
      return f.kind.value as { messageId: bigint; duplicate: boolean };
    };
    const redis = await connectRedis();
    // Nothing reaches the MessageLog while the pipeline is frozen, so only the claim knows the first id.
    for (const p of pipelines) p.child.kill("SIGSTOP");
    try {
      const first = await ackOf(da.reply(da.sendFrame({ kind: { case: "send", value: { channelId: direct, text: "once", clientMsgId: key } } })));
      // The device loses that ack and its chat server (drained), and its session moves to the other one.
      const holderId = (await redis.hkeys(`${scope.env.CHAT_ETCD_PREFIX}:route:${a.userId}`))[0];
      const i = chatServers.findIndex((c) => c.info.serverId === holderId);
      assert.ok(i >= 0, `the chat server holding the sender (${holderId}) is one of ours`);
      const holder = chatServers.splice(i, 1)[0]!;
      await holder.stop();
      const again = await waitFor(
        async () => ackOf(da.reply(da.sendFrame({ kind: { case: "send", value: { channelId: direct, text: "once", clientMsgId: key } } }), 3_000)).catch(() => undefined),
        "the resend acked by the other chat server",
        30_000,
      );
      assert.deepStrictEqual(again, { ...first, duplicate: true }, "the resend's ack names the first copy's message");
    } finally {
      for (const p of pipelines) p.child.kill("SIGCONT");
      await redis.quit();
    }
    // Stored and delivered once, under that id.
    await waitFor(() => db.messagesIn(direct).length > 0, "the message at the peer", 60_000);
    await waitFor(() => da.messagesIn(direct).length > 0, "the message at the sender", 60_000);
    for (const d of [da, db]) assert.deepStrictEqual(d.messagesIn(direct).map((m) => [m.clientMsgId, m.seq]), [[key, 1n]]);
    assert.equal(db.messagesIn(direct)[0]!.messageId, da.messagesIn(direct)[0]!.messageId);
    chatServers.push(await startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs5-${run}` }));
  });
});

describe("a cluster whose Cassandra stops answering for a while, under load", function () {
  this.timeout(600_000);
  const engines = engineConfig();
  const { run, env: deployment } = useDeployment("cx");
  // The shared Cassandra serves other suites: it is cut off from this deployment only, by a proxy.
  let proxy: TcpProxy;
  const roles: RoleProcess[] = [];
  const devices: TestDevice[] = [];

  before(async () => {
    proxy = await TcpProxy.start(engines.cassandraContactPoints[0]!);
    const env = {
      ...deployment,
      CHAT_CASSANDRA_CONTACT_POINTS: proxy.address,
      CHAT_KAFKA_PARTITIONS: "3",
      CHAT_OPS_PORT: "0",
      CHAT_LEASE_TTL_S: String(LEASE_TTL_S),
    };
    roles.push(await startRole("api", env));
    roles.push(await startRole("chat-server", { ...env, CHAT_SERVER_ID: `cs-${run}` }));
    roles.push(await startRole("pipeline", env));
    roles.push(await startRole("gateway", { ...env, CHAT_GATEWAY_ID: `gw-${run}` }));
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await proxy?.close();
  });

  it("refuses sends while Cassandra is away, acks none it could lose, and delivers every acked one once and in order after", async () => {
    const [api, , , gateway] = roles;
    const users: TestUser[] = [];
    for (let i = 0; i < 3; i++) users.push(await signUp(String(api!.info.http), "cx"));
    const group = (await users[0]!.api.channels.createGroup({ title: "outage", memberUserIds: users.slice(1).map((u) => u.userId) })).channel!.channelId;
    for (const u of users) devices.push(await new TestDevice(String(gateway!.info.ws), u.devices[0]!.token).connect());
    const acked = new Set<bigint>();
    const refusals: string[] = [];
    let outage = false;
    let ackedDuringOutage = 0;
    let sending = true;
    const senders = devices.slice(0, 2).map(async (d, i) => {
      for (let n = 0; sending; n++) {
        const key = `cx-${run}-${i}-${n}`;
        for (;;) {
          const sentInOutage = outage;
          const ref = d.sendFrame({ kind: { case: "send", value: { channelId: group, text: `${i}.${n}`, clientMsgId: key } } });
          const reply = await d.reply(ref, 15_000);
          if (reply.kind.case === "sendAck") {
            acked.add(reply.kind.value.messageId);
            // One already past its membership read when the cut came is in Kafka, so acked rightly.
            if (sentInOutage && outage) ackedDuringOutage++;
            break;
          }
          assert.equal(reply.kind.case, "error");
          if (reply.kind.case === "error") refusals.push(`${ErrorCode[reply.kind.value.code]}: ${reply.kind.value.message}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    await waitFor(() => acked.size >= 20, "traffic before the outage", 60_000);
    const pipelineMetrics = `http://127.0.0.1:${String(roles[2]!.info.ops)}/metrics`;
    const failedBatches = async () => metricIn(await (await fetch(pipelineMetrics)).text(), "chat_pipeline_batches_failed_total", 'stage="sequencer"') ?? 0;
    const failedBefore = await failedBatches();
    proxy.cut("reset");
    outage = true;
    // Cut until the block and membership caches went stale (sends refused) and the pipeline failed
    // batches again and again, its backoff (50 ms doubling) grown past a second: the state the
    // recovery below starts from.
    await waitFor(() => refusals.length >= 10, "sends refused while Cassandra is away", 30_000);
    await waitFor(async () => (await failedBatches()) >= failedBefore + 6, "batches failed by the pipeline while Cassandra is away", 60_000, 200);
    outage = false;
    await proxy.restore();
    const before = acked.size;
    await waitFor(() => acked.size >= before + 20, "sends acked again after the outage", 60_000);
    sending = false;
    await Promise.all(senders);
    assert.equal(ackedDuringOutage, 0, "no send made while Cassandra is away is acked before it is back");
    for (const r of refusals) assert.match(r, /^UNAVAILABLE: /, "a refusal says the storage is away");
    await Promise.all(devices.map((d) => waitFor(() => [...acked].every((id) => d.messagesIn(group).some((m) => m.messageId === id)), "every acked message on every device", 120_000)));
    for (const [i, d] of devices.entries()) checkView(d, group, acked, `cassandra-outage device ${i}`);
    for (const d of devices) assert.equal(d.closeCode, undefined, "a device socket was closed");
    for (const p of roles) {
      assert.equal(p.child.exitCode, null, `${p.role} still running`);
      await waitFor(async () => (await fetch(`http://127.0.0.1:${p.info.ops}/healthz`)).ok, `${p.role} healthy again`, 60_000, 250);
    }
  });
});
