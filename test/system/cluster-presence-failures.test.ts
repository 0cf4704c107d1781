import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { apiClients, signUp, type TestUser } from "../support/api.js";
import { engineConfig } from "../support/engines.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { PresenceWatcher } from "../support/presence-watcher.js";
import { graceRanOut, sweptTwiceMore } from "../support/metrics.js";
import { OwnRedis } from "../support/own-redis.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

const HEARTBEAT_MS = 1_000;
// Longer than a frozen chat server takes to lose its sessions to another: its lease (3 s), then
// the gateway's wait for its stream to end (3 s), then the move; shorter, its users flap.
const GRACE_MS = 8_000;

async function befriend(a: TestUser, b: TestUser): Promise<void> {
  await a.api.users.sendFriendRequest({ userId: b.userId });
  await b.api.users.respondFriendRequest({ userId: a.userId, accept: true });
}

/**
 * Presence when processes fail, every role its own process on the real
 * engines: two gateways, two chat servers (each sweeping) and a presence sweeper.
 */
describe("distributed mode: presence when processes fail", function () {
  this.timeout(600_000);
  const engines = engineConfig();
  const { run, scope, env } = useDeployment("pf");
  const common = {
    ...env,
    CHAT_KAFKA_PARTITIONS: "2",
    CHAT_OPS_PORT: "0",
    CHAT_LEASE_TTL_S: "3",
    CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
    CHAT_PRESENCE_GRACE_MS: String(GRACE_MS),
    CHAT_PRESENCE_SWEEP_MS: "100",
  };
  let api: RoleProcess;
  let sweeper: RoleProcess;
  const chatServers: RoleProcess[] = [];
  const gateways: RoleProcess[] = [];
  const others: RoleProcess[] = [];
  const watchers: PresenceWatcher[] = [];
  let redis: Redis;
  const apiUrl = () => String(api.info.http);
  const open = async (gateway: RoleProcess, token: string) => {
    const w = await PresenceWatcher.open(String(gateway.info.ws), token, HEARTBEAT_MS);
    watchers.push(w);
    return w;
  };
  const serversOf = async (userId: bigint): Promise<string[]> => {
    const h = await redis.hgetall(`${scope.env.CHAT_ETCD_PREFIX}:route:${userId}`);
    return Object.entries(h)
      .filter(([, expiry]) => Number(expiry) > Date.now())
      .map(([serverId]) => serverId);
  };
  /**
   * Whether the user's latest flip is recorded as told in the presence store. A chat server killed after
   * its push and before that record has the flip told again by a sweep (twice rather than never, by design).
   */
  const toldRecorded = async (userId: bigint): Promise<boolean> => {
    for (const key of await redis.keys(`${scope.env.CHAT_ETCD_PREFIX}:presence:*:untold`)) {
      if ((await redis.zscore(key, String(userId))) !== null) return false;
    }
    return true;
  };
  const metricsOf = (role: RoleProcess) => `http://127.0.0.1:${String(role.info.ops)}/metrics`;
  const sweepers = () => [...chatServers, sweeper].map(metricsOf);
  /** Opens sessions of `user` through `gateway` until one lands on the chat server `want` says. */
  const openWhere = async (gateway: RoleProcess, user: TestUser, want: (server: string) => boolean): Promise<{ w: PresenceWatcher; server: string }> => {
    for (let attempt = 0; attempt < 30; attempt++) {
      const w = await open(gateway, user.devices[0]!.token);
      const server = await waitFor(async () => (await serversOf(user.userId))[0], "the session's route", 5_000, 20);
      if (want(server)) return { w, server };
      await w.close();
      await waitFor(async () => (await serversOf(user.userId)).length === 0, "the route gone", 5_000, 20);
    }
    throw new Error("could not place the session where wanted");
  };

  before(async () => {
    redis = new Redis(engines.redisUrl);
    api = await startRole("api", common);
    chatServers.push(...(await Promise.all([1, 2].map((i) => startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs${i}-${run}` })))));
    sweeper = await startRole("presence", common);
    others.push(sweeper);
    gateways.push(...(await Promise.all([1, 2].map((i) => startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw${i}-${run}` })))));
  });
  afterEach(async function () {
    if (this.currentTest?.state === "failed") {
      for (const p of [api, ...chatServers, ...gateways, ...others]) {
        const lines = p.output.filter((l) => /presence|sweep|deliver|moving|link/i.test(l));
        if (lines.length > 0) console.error(`--- ${p.role} ${String(p.info.serverId ?? p.info.gatewayId ?? "")}\n${lines.slice(-40).join("\n")}`);
      }
    }
    await Promise.all(watchers.splice(0).map((w) => w.close()));
  });
  after(async () => {
    redis?.disconnect();
  });

  /** Replaces a killed chat server, as an orchestrator would. */
  async function replace(victim: RoleProcess, id: string): Promise<void> {
    chatServers.splice(chatServers.indexOf(victim), 1);
    chatServers.push(await startRole("chat-server", { ...common, CHAT_SERVER_ID: `${id}-${run}` }));
  }

  it("shows no offline to a friend when a chat server is killed with -9 and the gateway moves the session within the grace period, and offline once when the device later goes", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(apiUrl(), n)));
    await befriend(alice!, bob!);
    const { w: b, server: bobServer } = await openWhere(gateways[0]!, bob!, () => true);
    const { w: a } = await openWhere(gateways[1]!, alice!, (s) => s !== bobServer);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online", 10_000);
    // Killed before it recorded the ONLINE told, her chat server's flip was told bob again (CI, once).
    await waitFor(() => toldRecorded(alice!.userId), "alice's online recorded as told", 10_000, 20);
    const [aliceServer] = await serversOf(alice!.userId);
    const victim = chatServers.find((p) => p.info.serverId === aliceServer)!;
    await victim.kill();
    // The gateway moves her session to the live server; her socket stays open.
    await waitFor(async () => (await serversOf(alice!.userId)).some((s) => s !== aliceServer), "alice's session moved", GRACE_MS);
    await replace(victim, "cs3");
    // Her old device entry would expire now had the move not touched it.
    await graceRanOut(sweepers(), GRACE_MS);
    await sweptTwiceMore(sweepers());
    assert.equal(a.device.closeCode, undefined, "alice's socket stayed open");
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE], "no flap over the failover");

    await a.close();
    const closedAt = Date.now();
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after the grace", GRACE_MS * 3);
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline told once");
    const lastSeen = b.events(alice!.userId)[1]!.lastSeenAt;
    assert.ok(lastSeen, "a last seen");
    const lastSeenMs = Number(lastSeen.seconds) * 1000 + Math.floor(lastSeen.nanos / 1e6);
    // Stamped when her chat server hears of the closed session, through the gateway: on a busy machine a while after this process closed it.
    assert.ok(lastSeenMs <= closedAt + 1_000 && lastSeenMs > closedAt - 2 * HEARTBEAT_MS, `last seen ${closedAt - lastSeenMs} ms before the close`);
  });

  it("takes offline after the grace period the users of a gateway killed with -9, with last seen the kill, and shows no flap for one who reconnects through another gateway within it", async () => {
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(apiUrl(), n)));
    await Promise.all([alice, carol].map((u) => befriend(u!, bob!)));
    const gw = await startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gwk-${run}` });
    others.push(gw);
    const b = await open(gateways[0]!, bob!.devices[0]!.token);
    const a = await open(gw, alice!.devices[0]!.token);
    const c = await open(gw, carol!.devices[0]!.token);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "alice online", 10_000);
    await b.hears(carol!.userId, [PresenceStatus.ONLINE], "carol online", 10_000);
    a.silence();
    c.silence();
    await gw.kill();
    const killedAt = Date.now();
    await open(gateways[1]!, alice!.devices[0]!.token);
    await b.hears(carol!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "carol offline", GRACE_MS * 3);
    const offlineAfter = Date.now() - killedAt;
    assert.ok(offlineAfter >= GRACE_MS - HEARTBEAT_MS, `carol offline ${offlineAfter} ms after the kill`);
    const seen = b.events(carol!.userId)[1]!.lastSeenAt!;
    const seenMs = Number(seen.seconds) * 1000 + Math.floor(seen.nanos / 1e6);
    // The chat server stamps the end of a session when it hears of the broken stream, which on a busy
    // machine can come a little after this process saw the gateway exit: hence the margin after the kill.
    assert.ok(seenMs <= killedAt + 1_000 && seenMs > killedAt - 2 * HEARTBEAT_MS, `carol last seen ${killedAt - seenMs} ms before the kill`);
    await graceRanOut(sweepers(), GRACE_MS);
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE], "alice never flapped");
    assert.deepEqual(b.statuses(carol!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "carol offline once");
  });

  it("shows no flap when a chat server frozen past its lease comes back after the gateway moved its session", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(apiUrl(), n)));
    await befriend(alice!, bob!);
    const { w: b, server: bobServer } = await openWhere(gateways[0]!, bob!, () => true);
    const { w: a, server: aliceServer } = await openWhere(gateways[1]!, alice!, (s) => s !== bobServer);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online", 10_000);
    const frozen = chatServers.find((p) => p.info.serverId === aliceServer)!;
    frozen.child.kill("SIGSTOP");
    try {
      await waitFor(async () => (await serversOf(alice!.userId)).some((s) => s !== aliceServer), "alice's session moved", 30_000, 50);
    } finally {
      frozen.child.kill("SIGCONT");
    }
    // The old server wakes to a lost lease and ends what it held, as of each session's last frame.
    await graceRanOut(sweepers(), GRACE_MS);
    await sweptTwiceMore(sweepers());
    assert.equal(a.device.closeCode, undefined, "alice's socket stayed open");
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE], "no flap over the move");
  });

  /**
   * Alice and bob, friends, online on different chat servers; `meanwhile` runs once bob's is frozen
   * (SIGSTOP), which wakes once the gateway has moved his session to the other. Bob's watcher heard her online.
   */
  async function whileBobsServerFrozen(meanwhile: (alice: TestUser, bob: TestUser) => Promise<unknown>): Promise<{ alice: TestUser; b: PresenceWatcher }> {
    const [alice, bob] = (await Promise.all(["alice", "bob"].map((n) => signUp(apiUrl(), n)))) as [TestUser, TestUser];
    await befriend(alice, bob);
    const { w: b, server: bobServer } = await openWhere(gateways[0]!, bob, () => true);
    await openWhere(gateways[1]!, alice, (s) => s !== bobServer);
    await b.hears(alice.userId, [PresenceStatus.ONLINE], "online", 10_000);
    const frozen = chatServers.find((p) => p.info.serverId === bobServer)!;
    frozen.child.kill("SIGSTOP");
    try {
      await meanwhile(alice, bob);
      await waitFor(async () => (await serversOf(bob.userId)).some((s) => s !== bobServer), "bob's session moved", 30_000, 50);
    } finally {
      frozen.child.kill("SIGCONT");
    }
    return { alice, b };
  }

  it("tells a friend on a chat server frozen past its lease (session moved) that a user logged out meanwhile", async () => {
    const { alice, b } = await whileBobsServerFrozen((alice) => apiClients(apiUrl(), alice.devices[0]!.token).auth.logout({}));
    await b.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after the logout", 20_000);
  });

  it("tells an ex-friend on a chat server frozen past its lease (session moved) of an unfriending made meanwhile", async () => {
    // Its "offline" to bob is not taken by his frozen chat server: told again once his session moved.
    const { alice, b } = await whileBobsServerFrozen((alice, bob) => alice.api.users.removeFriend({ userId: bob.userId }));
    await b.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after the unfriending", 20_000);
    assert.equal(b.events(alice.userId)[1]!.lastSeenAt, undefined, "no last seen to an ex-friend");
  });

  it("keeps offline a user who logged out while her chat server was dead and her gateway frozen, when the gateway comes back and moves her session", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(apiUrl(), n)));
    await befriend(alice!, bob!);
    const gw3 = await startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw3-${run}` });
    others.push(gw3);
    const { w: b, server: bobServer } = await openWhere(gateways[0]!, bob!, () => true);
    const { w: a, server: aliceServer } = await openWhere(gw3, alice!, (s) => s !== bobServer);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online", 10_000);
    const victim = chatServers.find((p) => p.info.serverId === aliceServer)!;
    gw3.child.kill("SIGSTOP");
    try {
      await victim.kill();
      await apiClients(apiUrl(), alice!.devices[0]!.token).auth.logout({});
      await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline at the logout", GRACE_MS);
    } finally {
      gw3.child.kill("SIGCONT");
    }
    await replace(victim, "cs4");
    // The gateway, awake, finds her chat server gone and tries to move her session.
    assert.equal(await a.device.waitClosed(), 4003, "her session closed as signed out");
    await graceRanOut(sweepers(), GRACE_MS);
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "never online again");
    await gw3.stop();
  });

  it("stops telling an ex-friend on another chat server after an unfriending", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(apiUrl(), n)));
    await befriend(alice!, bob!);
    const { w: b, server: bobServer } = await openWhere(gateways[0]!, bob!, () => true);
    const { w: a } = await openWhere(gateways[1]!, alice!, (s) => s !== bobServer);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online", 10_000);
    await alice!.api.users.removeFriend({ userId: bob!.userId });
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline at the unfriending", 10_000);
    assert.equal(b.events(alice!.userId)[1]!.lastSeenAt, undefined, "no last seen to an ex-friend");
    await a.close();
    await graceRanOut(sweepers(), GRACE_MS);
    await open(gateways[1]!, alice!.devices[0]!.token);
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "nothing after the unfriending");
  });
});

function presenceClient(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(PresenceService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
}

/**
 * Redis (a test's own, without persistence) restarted empty twice in a row
 * under a cluster: presence is rebuilt from the chat servers' sessions each
 * time, nobody stuck offline or online, and friends hear no storm.
 */
describe("distributed mode: presence over two Redis restarts", function () {
  this.timeout(600_000);
  const { run, env } = useDeployment("pr");
  // Made in `before`: a run whose --grep skips the suite runs none of its hooks, and left a folder made as the file loaded.
  let redisDir: string | undefined;
  let own: OwnRedis;
  let common: Record<string, string>;
  let api: RoleProcess;
  const chatServers: RoleProcess[] = [];
  const gateways: RoleProcess[] = [];
  const watchers: PresenceWatcher[] = [];
  const apiUrl = () => String(api.info.http);
  const open = async (gateway: RoleProcess, token: string) => {
    const w = await PresenceWatcher.open(String(gateway.info.ws), token, HEARTBEAT_MS);
    watchers.push(w);
    return w;
  };
  const metricsOf = (role: RoleProcess) => `http://127.0.0.1:${String(role.info.ops)}/metrics`;

  before(async () => {
    redisDir = mkdtempSync(join(tmpdir(), "chat-pr-redis-"));
    own = new OwnRedis(await freePort(), redisDir);
    await own.start();
    common = {
      ...env,
      CHAT_REDIS_URL: own.url,
      CHAT_KAFKA_PARTITIONS: "2",
      CHAT_OPS_PORT: "0",
      CHAT_LEASE_TTL_S: "3",
      CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      CHAT_PRESENCE_GRACE_MS: String(GRACE_MS),
      CHAT_PRESENCE_SWEEP_MS: "100",
    };
    api = await startRole("api", common);
    chatServers.push(...(await Promise.all([1, 2].map((i) => startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs${i}-${run}` })))));
    gateways.push(...(await Promise.all([1, 2].map((i) => startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw${i}-${run}` })))));
  });
  afterEach(async function () {
    if (this.currentTest?.state === "failed") {
      for (const p of [...chatServers, ...gateways]) {
        const lines = p.output.filter((l) => /presence|sweep|redis|store/i.test(l));
        if (lines.length > 0) console.error(`--- ${p.role} ${String(p.info.serverId ?? p.info.gatewayId ?? "")}\n${lines.slice(-40).join("\n")}`);
      }
    }
    await Promise.all(watchers.splice(0).map((w) => w.close()));
  });
  after(async () => {
    await Promise.all([...gateways, ...chatServers, api].filter(Boolean).map((p) => p.stop()));
    await own?.kill();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
  });

  it("rebuilds who is online from heartbeats after each restart, within two intervals, takes offline the one that left in its grace period, and tells friends no storm", async () => {
    const [alice, bob, carol, dave] = await Promise.all(["alice", "bob", "carol", "dave"].map((n) => signUp(apiUrl(), n)));
    await Promise.all([alice, carol, dave].map((u) => befriend(u!, bob!)));
    const b = await open(gateways[0]!, bob!.devices[0]!.token);
    await open(gateways[1]!, alice!.devices[0]!.token);
    const c = await open(gateways[0]!, carol!.devices[0]!.token);
    // Dave came and went long before: offline with a last seen.
    const d = await open(gateways[1]!, dave!.devices[0]!.token);
    await b.hears(dave!.userId, [PresenceStatus.ONLINE], "dave online", 10_000);
    await d.close();
    await b.hears(dave!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "dave offline", GRACE_MS * 3);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "alice online", 10_000);
    await b.hears(carol!.userId, [PresenceStatus.ONLINE], "carol online", 10_000);
    const view = presenceClient(apiUrl(), bob!.devices[0]!.token);
    const statuses = async () => {
      const { presences } = await view.getPresence({ userIds: [alice!.userId, carol!.userId, dave!.userId] });
      return presences.map((p) => p.status);
    };

    // Carol leaves just before the first restart: her grace period runs over it.
    await c.close();
    const carolLeftAt = Date.now();
    for (const round of [1, 2]) {
      await own.kill();
      await own.start();
      const restartedAt = Date.now();
      const rebuilt = await waitFor(
        async () => {
          const s = await statuses().catch(() => undefined);
          return s?.[0] === PresenceStatus.ONLINE ? s : undefined;
        },
        `alice online again after restart ${round}`,
        30_000,
        50,
      );
      const took = Date.now() - restartedAt;
      assert.ok(took <= 2 * HEARTBEAT_MS + 1_000, `restart ${round}: alice shown online again ${took} ms after it`);
      assert.equal(rebuilt[2], PresenceStatus.OFFLINE, `restart ${round}: dave stays offline`);
    }
    // Carol, gone in her grace period at the first restart, goes offline for bob once (a restart
    // that lost her may tell her online again first, as it does alice).
    await waitFor(() => b.statuses(carol!.userId).at(-1) === PresenceStatus.OFFLINE, "carol offline", 30_000);
    await graceRanOut(chatServers.map(metricsOf), GRACE_MS);
    await sweptTwiceMore(chatServers.map(metricsOf));
    assert.deepEqual(await statuses(), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.OFFLINE]);
    // At most one online per restart for alice, never offline; nothing of dave.
    const aliceSaid = b.statuses(alice!.userId);
    assert.ok(aliceSaid.length <= 3 && aliceSaid.every((s) => s === PresenceStatus.ONLINE), `alice told bob ${aliceSaid.map((s) => PresenceStatus[s]).join(",")}`);
    assert.deepEqual(b.statuses(dave!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "nothing of dave");
    const ms = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
    const carolSeen = ms(b.events(carol!.userId).at(-1)!.lastSeenAt!);
    assert.ok(carolSeen <= carolLeftAt + 200 && carolSeen > carolLeftAt - 2 * HEARTBEAT_MS, `carol last seen ${carolLeftAt - carolSeen} ms before she left`);
    const { presences } = await view.getPresence({ userIds: [carol!.userId, dave!.userId] });
    assert.equal(ms(presences[0]!.lastSeenAt!), carolSeen, "carol's last seen as told");
    assert.equal(ms(presences[1]!.lastSeenAt!), ms(b.events(dave!.userId)[1]!.lastSeenAt!), "dave's last seen kept over both restarts");
    const carolSaid = b.statuses(carol!.userId);
    assert.ok(
      carolSaid.length <= 4 && carolSaid.slice(0, -1).every((s) => s === PresenceStatus.ONLINE) && carolSaid.at(-1) === PresenceStatus.OFFLINE,
      `carol told bob ${carolSaid.map((s) => PresenceStatus[s]).join(",")}`,
    );
  });
});
