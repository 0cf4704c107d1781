import assert from "node:assert/strict";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { apiClients, signUp, type TestUser } from "../support/api.js";
import { engineConfig } from "../support/engines.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { PresenceWatcher } from "../support/presence-watcher.js";
import { PushReceiver, type TestSubscription } from "../support/push-receiver.js";
import { graceRanOut, notifierSettled, scrapeMetric, sweptTwiceMore } from "../support/metrics.js";
import { waitFor } from "../support/wait.js";

const HEARTBEAT_MS = 1_000;
const GRACE_MS = 2_500;
const COLLAPSE_MS = 300;

function authed(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] });
}

async function befriend(a: TestUser, b: TestUser): Promise<void> {
  await a.api.users.sendFriendRequest({ userId: b.userId });
  await b.api.users.respondFriendRequest({ userId: a.userId, accept: true });
}

/**
 * Presence and push in the distributed mode, every role its own process on
 * the real engines: two gateways, two chat servers (each sweeping presence),
 * the pipeline, the api, a presence sweeper and the notifier on Kafka.
 */
describe("distributed mode: presence and push across processes", function () {
  this.timeout(600_000);
  const engines = engineConfig();
  // Its own keyspace, Kafka namespace and etcd prefix, dropped at the end.
  const { run, scope, env } = useDeployment("pp");
  const common = {
    ...env,
    CHAT_KAFKA_PARTITIONS: "4",
    CHAT_OPS_PORT: "0",
    CHAT_LEASE_TTL_S: "3",
    CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
    CHAT_PRESENCE_GRACE_MS: String(GRACE_MS),
    CHAT_PRESENCE_SWEEP_MS: "100",
    CHAT_PUSH_ALLOW_HTTP: "true",
    CHAT_PUSH_COLLAPSE_MS: String(COLLAPSE_MS),
    CHAT_PUSH_BACKOFF_MS: "100",
    CHAT_PUSH_TIMEOUT_MS: "1000",
    CHAT_VAPID_SUBJECT: "mailto:ops@chat.test",
  };
  let api: RoleProcess;
  let notifier: RoleProcess;
  let sweeper: RoleProcess;
  const chatServers: RoleProcess[] = [];
  const gateways: RoleProcess[] = [];
  const others: RoleProcess[] = [];
  const watchers: PresenceWatcher[] = [];
  let redis: Redis;
  let receiver: PushReceiver;
  const apiUrl = () => String(api.info.http);
  const ws = (gateway: RoleProcess) => String(gateway.info.ws);
  const open = async (gateway: RoleProcess, token: string) => {
    const w = await PresenceWatcher.open(ws(gateway), token, HEARTBEAT_MS);
    watchers.push(w);
    return w;
  };
  /** The chat servers holding a session of the user (the routing table in Redis). */
  const serversOf = async (userId: bigint): Promise<string[]> => {
    const h = await redis.hgetall(`${scope.env.CHAT_ETCD_PREFIX}:route:${userId}`);
    return Object.entries(h)
      .filter(([, expiry]) => Number(expiry) > Date.now())
      .map(([serverId]) => serverId);
  };
  /** Every chat server's registered load is the number of sessions it holds. */
  const registryCaughtUp = async (): Promise<void> => {
    const etcd = new Etcd3({ hosts: engines.etcdEndpoints.map((h) => `http://${h}`) });
    try {
      await waitFor(
        async () => {
          for (const cs of chatServers) {
            const value = await etcd.get(`/${scope.env.CHAT_ETCD_PREFIX}/servers/${String(cs.info.serverId)}`).string();
            const sessions = await scrapeMetric(metricsOf(cs), "chat_sessions");
            if (value === null || (JSON.parse(value) as { load: number }).load !== sessions) return false;
          }
          return true;
        },
        "the registry's load figures to catch up",
        10_000,
        50,
      );
    } finally {
      etcd.close();
    }
  };
  /** Opens a session through `gateway`, again until it lands on a chat server other than `avoid`. */
  const openAvoiding = async (gateway: RoleProcess, user: TestUser, avoid: string): Promise<{ w: PresenceWatcher; server: string }> => {
    for (let attempt = 0; attempt < 15; attempt++) {
      const w = await open(gateway, user.devices[0]!.token);
      const [server] = await serversOf(user.userId);
      if (server && server !== avoid) return { w, server };
      await w.close();
      // Gateways place by the load each server reports (once a second): retry once the registry shows this session gone.
      await registryCaughtUp();
    }
    throw new Error("could not place a session on the other chat server");
  };

  const metricsOf = (role: RoleProcess) => `http://127.0.0.1:${String(role.info.ops)}/metrics`;
  /** Every process that sweeps: the chat servers and cmd/presence. */
  const sweepers = () => [...chatServers, sweeper].map(metricsOf);

  before(async () => {
    redis = new Redis(engines.redisUrl);
    receiver = await new PushReceiver().start();
    // The api creates the keyspace, the token signing key and the VAPID keys; the rest start after it.
    api = await startRole("api", common);
    chatServers.push(...(await Promise.all([1, 2].map((i) => startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs${i}-${run}` })))));
    const [pipeline, presence, notifierRole] = await Promise.all([startRole("pipeline", common), startRole("presence", common), startRole("notifier", common)]);
    notifier = notifierRole!;
    sweeper = presence!;
    others.push(pipeline!, sweeper, notifier);
    gateways.push(...(await Promise.all([1, 2].map((i) => startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw${i}-${run}` })))));
  });
  afterEach(async function () {
    if (this.currentTest?.state === "failed") {
      // What the processes said about presence, for the CI log: the test's own view shows only the outcome.
      for (const p of [...chatServers, ...gateways, ...others]) {
        const lines = p.output.filter((l) => /presence|sweep|deliver|moving|link/i.test(l));
        if (lines.length > 0) console.error(`--- ${p.role} ${String(p.info.serverId ?? p.info.gatewayId ?? "")}\n${lines.slice(-40).join("\n")}`);
      }
    }
    await Promise.all(watchers.splice(0).map((w) => w.close()));
  });
  after(async () => {
    await receiver?.stop();
    redis?.disconnect();
  });

  /** Alice with a friend (bob) and a group member (carol) on different gateways and chat servers, and a stranger (dave). */
  async function circle() {
    const [alice, bob, carol, dave] = await Promise.all(["alice", "bob", "carol", "dave"].map((n) => signUp(apiUrl(), n)));
    await befriend(alice!, bob!);
    await alice!.api.channels.createGroup({ title: "team", memberUserIds: [carol!.userId] });
    const b = await open(gateways[0]!, bob!.devices[0]!.token);
    const [bobServer] = await serversOf(bob!.userId);
    const { w: c, server: carolServer } = await openAvoiding(gateways[1]!, carol!, bobServer!);
    const d = await open(gateways[0]!, dave!.devices[0]!.token);
    return { alice: alice!, bob: bob!, carol: carol!, dave: dave!, b, c, d, bobServer: bobServer!, carolServer };
  }

  it("tells a friend and a group member on other gateways and chat servers when a user comes and goes (after the grace period), never a stranger", async () => {
    const { alice, bob, dave, b, c, d, bobServer, carolServer } = await circle();
    assert.notEqual(bobServer, carolServer, "the friend and the group member sit on different chat servers");

    const a = await open(gateways[1]!, alice.devices[0]!.token);
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE], "online events", 10_000)));

    // GetPresence on the api reads the same Redis store.
    const bobView = createClient(PresenceService, authed(apiUrl(), bob.devices[0]!.token));
    const daveView = createClient(PresenceService, authed(apiUrl(), dave.devices[0]!.token));
    assert.equal((await bobView.getPresence({ userIds: [alice.userId] })).presences[0]!.status, PresenceStatus.ONLINE);
    assert.equal((await daveView.getPresence({ userIds: [alice.userId] })).presences[0]!.status, PresenceStatus.OFFLINE, "a stranger cannot see it");

    // Heartbeats keep her online well past the grace period.
    await graceRanOut(sweepers(), GRACE_MS);
    assert.deepEqual(b.statuses(alice.userId), [PresenceStatus.ONLINE], "no flapping while heartbeating");

    const closedAt = Date.now();
    await a.close();
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline events", 10_000)));
    const offline = b.events(alice.userId)[1]!;
    assert.equal(offline.status, PresenceStatus.OFFLINE);
    const lastSeen = timestampMs(offline.lastSeenAt!);
    assert.ok(Math.abs(lastSeen - closedAt) < 1_000, `last seen ${lastSeen - closedAt} ms from the close`);
    // A lower bound only (a slow machine makes the event later, never earlier): nothing inside the grace period.
    assert.ok(Date.now() - closedAt >= GRACE_MS - 100, "not before the grace period ran out");
    // Three processes sweep (both chat servers and cmd/presence): still one event each.
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE]);
    assert.deepEqual(c.statuses(alice.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE]);
    const queried = (await bobView.getPresence({ userIds: [alice.userId] })).presences[0]!;
    assert.equal(queried.status, PresenceStatus.OFFLINE);
    assert.equal(timestampMs(queried.lastSeenAt!), lastSeen);
    assert.deepEqual(d.events(alice.userId), [], "the stranger heard nothing");
  });

  it("takes a user offline at once on logout, also when her socket closed just before", async () => {
    const { alice, b, c, d } = await circle();
    const a = await open(gateways[1]!, alice.devices[0]!.token);
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE], "online events", 10_000)));
    const started = Date.now();
    await apiClients(apiUrl(), alice.devices[0]!.token).auth.logout({});
    assert.equal(await a.device.waitClosed(), 4003);
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after logout", GRACE_MS)));
    assert.ok(Date.now() - started < GRACE_MS / 2, `offline ${Date.now() - started} ms after logout`);

    // Her access token has most of its life left, but opens nothing any more
    // on any chat server, and nobody hears her come online for it.
    for (const gw of gateways) {
      const again = await open(gw, alice.devices[0]!.token);
      assert.equal(await again.device.waitClosed(), 4003);
      assert.equal(again.device.welcome(), undefined);
    }

    // A second device closes its socket first (no chat server holds it any
    // more, its grace period runs), then logs out: offline at once all the same.
    const login = await apiClients(apiUrl()).auth.login({ username: alice.username, password: alice.password, device: { name: "laptop" } });
    const token = login.credentials!.accessToken;
    const laptop = await open(gateways[0]!, token);
    await b.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.ONLINE], "online again", 10_000);
    await laptop.close();
    const loggedOutAt = Date.now();
    await apiClients(apiUrl(), token).auth.logout({});
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after the logout", GRACE_MS)));
    assert.ok(Date.now() - loggedOutAt < GRACE_MS / 2, `offline ${Date.now() - loggedOutAt} ms after logout`);
    await graceRanOut(sweepers(), GRACE_MS);
    assert.deepEqual(b.statuses(alice.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "no second offline when the grace period would have run out");
    assert.deepEqual(d.events(alice.userId), []);
  });

  it("closes the sockets a RevokeDevice, a ChangePassword and a DeleteAccount sign out at once, through either gateway, and tells the account's circle it went", async () => {
    const { alice, b, c, d } = await circle();
    const signIn = async (name: string) =>
      (await apiClients(apiUrl()).auth.login({ username: alice.username, password: alice.password, device: { name } })).credentials!;
    const [tablet, phone] = [await signIn("tablet"), await signIn("phone")];
    const main = await open(gateways[1]!, alice.devices[0]!.token);
    const onTablet = await open(gateways[0]!, tablet.accessToken);
    const onPhone = await open(gateways[1]!, phone.accessToken);
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE], "online events", 10_000)));
    const auth = apiClients(apiUrl(), alice.devices[0]!.token).auth;
    const served = async (w: PresenceWatcher) => {
      const ref = w.device.sendFrame({ kind: { case: "heartbeat", value: {} } });
      await waitFor(() => w.device.frames.some((f) => f.ref === ref && f.kind.case === "heartbeatAck"), "the device that asked still served");
    };

    await auth.revokeDevice({ deviceId: tablet.deviceId });
    assert.equal(await onTablet.device.waitClosed(), 4003);
    await served(main);
    assert.equal((await auth.changePassword({ currentPassword: alice.password, newPassword: "a new password" })).devicesSignedOut, 1);
    assert.equal(await onPhone.device.waitClosed(), 4003);
    await served(main);
    assert.deepEqual((await auth.listDevices({})).devices.map((x) => x.deviceId), [alice.devices[0]!.deviceId]);
    // Alice was online on her first device all along: nobody heard anything of the others going.
    assert.deepEqual([b, c].map((w) => w.statuses(alice.userId)), [[PresenceStatus.ONLINE], [PresenceStatus.ONLINE]]);

    const started = Date.now();
    await auth.deleteAccount({ password: "a new password" });
    assert.equal(await main.device.waitClosed(), 4003);
    // Told by the sign-out and by the deletion itself: OFFLINE may come more than once, nothing else.
    await waitFor(() => [b, c].every((w) => w.statuses(alice.userId).at(-1) === PresenceStatus.OFFLINE), "offline after the deletion", GRACE_MS);
    assert.ok(Date.now() - started < GRACE_MS / 2, `offline ${Date.now() - started} ms after the deletion`);
    for (const w of [b, c]) assert.deepEqual(w.statuses(alice.userId).filter((s) => s === PresenceStatus.ONLINE), [PresenceStatus.ONLINE]);
    for (const gw of gateways) {
      const again = await open(gw, alice.devices[0]!.token);
      assert.equal(await again.device.waitClosed(), 4003);
      assert.equal(again.device.welcome(), undefined);
    }
    assert.deepEqual(d.events(alice.userId), []);
  });

  it("takes offline, after the grace period, the users of a chat server that died without a word, and keeps the last seen when Redis then loses its data", async () => {
    const { alice, bob, b, c } = await circle();
    const gw3 = await startRole("gateway", { ...common, CHAT_GATEWAY_ID: `gw3-${run}` });
    others.push(gw3);
    const a = await open(gw3, alice.devices[0]!.token);
    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE], "online events", 10_000)));
    const [aliceServer] = await serversOf(alice.userId);
    const victim = chatServers.find((p) => p.info.serverId === aliceServer);
    assert.ok(victim, `the process of ${aliceServer}`);

    // Freeze alice's gateway (it can neither move her session nor report it
    // closed), kill her chat server outright, then the gateway: no process
    // ever says she left. Her last heartbeat was the last sign of life.
    gw3.child.kill("SIGSTOP");
    const silentAt = Date.now();
    a.silence();
    await victim.kill();
    await gw3.kill();
    chatServers.splice(chatServers.indexOf(victim), 1);
    // A replacement joins, as an orchestrator would start one.
    chatServers.push(await startRole("chat-server", { ...common, CHAT_SERVER_ID: `cs3-${run}` }));

    await Promise.all([b, c].map((w) => w.hears(alice.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline events from a sweeper", 20_000)));
    const offlineAfter = Date.now() - silentAt;
    assert.ok(offlineAfter >= GRACE_MS - HEARTBEAT_MS, `offline ${offlineAfter} ms after the crash: not before the grace period`);
    const lastSeen = timestampMs(b.events(alice.userId)[1]!.lastSeenAt!);
    assert.ok(lastSeen <= silentAt && lastSeen > silentAt - 2 * HEARTBEAT_MS, `last seen ${silentAt - lastSeen} ms before the crash`);
    await sweptTwiceMore(sweepers());
    assert.deepEqual(b.statuses(alice.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "reported once");
    assert.deepEqual(c.statuses(alice.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "reported once");

    // Redis restarts without persistence: this cluster's presence keys are gone (no other's). The
    // sweeper that flipped her wrote her last seen to Cassandra too, and the api answers it from there.
    const lost = await redis.keys(`${scope.env.CHAT_ETCD_PREFIX}:presence:*`);
    if (lost.length > 0) await redis.del(...lost);
    const bobView = createClient(PresenceService, authed(apiUrl(), bob.devices[0]!.token));
    const after = await waitFor(async () => {
      const [p] = (await bobView.getPresence({ userIds: [alice.userId] })).presences;
      return p?.lastSeenAt && p;
    }, "alice's last seen answered after Redis lost it", 10_000, 100);
    assert.equal(after.status, PresenceStatus.OFFLINE);
    assert.equal(timestampMs(after.lastSeenAt!), lastSeen, "the last seen her friends were told");
  });

  async function register(token: string, sub: TestSubscription): Promise<void> {
    await createClient(PushService, authed(apiUrl(), token)).registerPushEndpoint({
      endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth } },
      settings: { hidePreview: false, muted: false },
    });
  }

  /** Alice (online, sending) and Bob (no device online, a Web Push endpoint at `on`) in a direct chat. */
  async function pair(on: PushReceiver, behaviour?: Parameters<PushReceiver["subscribe"]>[0]) {
    const alice = await signUp(apiUrl(), "alice");
    const bob = await signUp(apiUrl(), "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const sub = on.subscribe(behaviour);
    await register(bob.devices[0]!.token, sub);
    const a = await open(gateways[0]!, alice.devices[0]!.token);
    return { alice, bob, channelId: channel!.channelId, sub, a };
  }

  it("pushes a new message to a user with no device online through cmd/notifier on Kafka (Web Push, VAPID, RFC 8291), and none while a device is online", async () => {
    const { alice, bob, channelId, sub, a } = await pair(receiver);
    const vapidKey = (await createClient(PushService, authed(apiUrl(), alice.devices[0]!.token)).getVapidPublicKey({})).publicKey;
    const ack = await a.device.send(channelId, "are you coming tonight?");
    assert.equal(ack.kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push", 30_000);
    const push = receiver.deliveredTo(sub)[0]!;
    assert.equal(push.error, undefined, "decrypted with the subscription's keys");
    assert.equal(push.vapidOk, true);
    assert.equal(push.vapidPublicKey, vapidKey, "the notifier signs with the key the api hands to browsers");
    assert.equal(push.vapidSubject, "mailto:ops@chat.test");
    assert.equal(push.topic, `c${channelId}`);
    assert.equal(push.json!.title, alice.username);
    assert.equal(push.json!.body, "are you coming tonight?");
    assert.equal(push.json!.messageId, ack.kind.case === "sendAck" ? String(ack.kind.value.messageId) : "");

    // Bob comes online (on the other gateway): no push while he is.
    const b = await open(gateways[1]!, bob.devices[0]!.token);
    await a.device.send(channelId, "you are online");
    await b.device.waitForMessages(2);
    // Then he leaves, and the next message is pushed. A push for the message he
    // saw online would have been requested before this one, on the same
    // partition (keyed by user): once the notifier has consumed and sent all it
    // was asked, only this one may have come.
    await b.close();
    await a.device.send(channelId, "now you are not");
    await waitFor(() => receiver.deliveredTo(sub).length >= 2, "the push after bob left", 30_000);
    await notifierSettled(metricsOf(notifier), 30_000, 100);
    assert.deepEqual(receiver.deliveredTo(sub).map((p) => p.json!.body), ["are you coming tonight?", "now you are not"], "no push while bob was online");
    assert.equal(receiver.pushesTo(sub).length, 2);

    // A reaction to his message reaches him too (the Sequencer marks his inbox copy), from the api's send.
    await bob.api.messages.sendMessage({ channelId, clientMsgId: `bob-${channelId}`, text: "back soon" });
    await a.device.waitForMessages(4);
    assert.equal((await a.device.react(channelId, 4n, "👍")).kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length >= 3, "the reaction's push", 30_000);
    assert.deepEqual([receiver.deliveredTo(sub)[2]!.json!.body, receiver.deliveredTo(sub)[2]!.json!.type], ["Reacted 👍 to your message", "reaction"]);

    // Bob mutes the chat: the notifier reads the mute from Cassandra and sends nothing more.
    await bob.api.channels.muteChannel({ channelId, mutedUntil: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
    await a.device.send(channelId, "muted now");
    await waitFor(async () => ((await scrapeMetric(metricsOf(notifier), "chat_push_skipped_total", 'reason="channel_muted"')) ?? 0) >= 1, "the muted chat skipped", 30_000);
    assert.equal(receiver.pushesTo(sub).length, 3, "a muted chat pushes nothing");
  });

  it("keeps notifying while a push service hangs", async () => {
    const hung = await new PushReceiver().start();
    try {
      // A group of 20 whose endpoints all sit on a push service that never answers
      // (more than the notifier sends to one host at once), and an ordinary pair.
      const owner = await signUp(apiUrl(), "owner");
      const members = await Promise.all(Array.from({ length: 20 }, () => signUp(apiUrl(), "hung")));
      const subs = members.map(() => hung.subscribe({ kind: "hang" }));
      await Promise.all(members.map((m, i) => register(m.devices[0]!.token, subs[i]!)));
      const { channel } = await owner.api.channels.createGroup({ title: "void", memberUserIds: members.map((m) => m.userId) });
      const o = await open(gateways[1]!, owner.devices[0]!.token);
      const fine = await pair(receiver);

      await o.device.send(channel!.channelId, "into the void");
      await waitFor(() => hung.received.length >= 10, "pushes hanging at the dead service", 30_000);
      await fine.a.device.send(fine.channelId, "hello");
      await waitFor(() => receiver.deliveredTo(fine.sub).length === 1, "the other user's push", 10_000);
      await waitFor(() => subs.some((s) => hung.pushesTo(s).length >= 2), "a hung push retried after its timeout", 15_000);
      await fine.a.device.send(fine.channelId, "still working");
      await waitFor(() => receiver.deliveredTo(fine.sub).length === 2, "a later push", 10_000);
      assert.equal(receiver.deliveredTo(fine.sub)[1]!.json!.body, "still working");
    } finally {
      await hung.stop();
    }
  });

  it("gives up a push waiting on its retry when its chat is read, by MarkRead at the api or a receipt at a chat server (read records on Kafka)", async () => {
    // Its own push service: the Retry-After below holds its endpoints, nothing of the other tests'.
    const limited = await new PushReceiver().start();
    try {
      const reads = async () => (await scrapeMetric(metricsOf(notifier), "chat_push_skipped_total", 'reason="read"')) ?? 0;
      const before = await reads();
      // The first try refused with a Retry-After of a minute: the read comes long before the retry.
      const refusedOnce = { kind: "failFirst", times: 1, status: 429, retryAfterSeconds: 60 } as const;
      const viaApi = await pair(limited, refusedOnce);
      assert.equal((await viaApi.a.device.send(viaApi.channelId, "read at the api")).kind.case, "sendAck");
      await waitFor(() => limited.pushesTo(viaApi.sub).length === 1, "the first try", 30_000);
      assert.equal((await viaApi.bob.api.messages.markRead({ channelId: viaApi.channelId, seq: 1n })).readSeq, 1n);
      await waitFor(async () => (await reads()) === before + 1, "the retry given up at MarkRead", 30_000);

      const viaReceipt = await pair(limited, refusedOnce);
      assert.equal((await viaReceipt.a.device.send(viaReceipt.channelId, "read on the laptop")).kind.case, "sendAck");
      await waitFor(() => limited.pushesTo(viaReceipt.sub).length === 1, "the first try", 30_000);
      const laptop = await open(gateways[1]!, viaReceipt.bob.devices[0]!.token);
      laptop.device.sendFrame({ kind: { case: "read", value: { channelId: viaReceipt.channelId, seq: 1n } } });
      await waitFor(() => laptop.device.frames.find((f) => f.kind.case === "receipt" && f.kind.value.seq === 1n), "the receipt of the read", 30_000);
      await laptop.close();
      await waitFor(async () => (await reads()) === before + 2, "the retry given up at the receipt", 30_000);
      await notifierSettled(metricsOf(notifier), 30_000, 100);
      assert.deepEqual([limited.pushesTo(viaApi.sub).length, limited.pushesTo(viaReceipt.sub).length], [1, 1], "only the refused first tries");
    } finally {
      await limited.stop();
    }
  });
});
