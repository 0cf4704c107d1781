import assert from "node:assert/strict";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PresenceStatus, PresenceVisibility } from "../../gen/es/chat/v1/types_pb.js";
import { addDevice, apiClients, signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { PresenceWatcher } from "../support/presence-watcher.js";
import { graceRanOut } from "../support/metrics.js";
import { waitFor } from "../support/wait.js";

const HEARTBEAT_MS = 1_000;
const GRACE_MS = 2_500;

function presenceClient(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(PresenceService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
}

async function befriend(a: TestUser, b: TestUser): Promise<void> {
  await a.api.users.sendFriendRequest({ userId: b.userId });
  await b.api.users.respondFriendRequest({ userId: a.userId, accept: true });
}

describe("chatd system: presence", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  const watchers: PresenceWatcher[] = [];
  const open = async (token: string) => {
    const w = await PresenceWatcher.open(chatd.wsUrl, token, HEARTBEAT_MS);
    watchers.push(w);
    return w;
  };

  before(async () => {
    chatd = await startChatd({
      env: {
        CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
        CHAT_PRESENCE_GRACE_MS: String(GRACE_MS),
        CHAT_PRESENCE_SWEEP_MS: "50",
      },
    });
  });
  afterEach(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.close()));
  });
  after(async () => {
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("tells a friend and a group member (not a stranger) when a user comes and goes, with the grace period and last seen", async () => {
    const [alice, bob, carol, dave] = await Promise.all(["alice", "bob", "carol", "dave"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice, bob!);
    await alice!.api.channels.createGroup({ title: "team", memberUserIds: [carol!.userId] });
    const [b, c, d] = await Promise.all([bob!, carol!, dave!].map((u) => open(u.devices[0]!.token)));

    // Alice comes online on two devices: one ONLINE event each for bob and carol.
    const second = await addDevice(chatd.httpUrl, alice!);
    const a1 = await open(alice!.devices[0]!.token);
    const a2 = await open(second.token);
    await Promise.all([b, c].map((w) => w.hears(alice!.userId, [PresenceStatus.ONLINE], "online events")));

    const bobView = presenceClient(chatd.httpUrl, bob!.devices[0]!.token);
    const daveView = presenceClient(chatd.httpUrl, dave!.devices[0]!.token);
    assert.equal((await bobView.getPresence({ userIds: [alice!.userId] })).presences[0]!.status, PresenceStatus.ONLINE);
    assert.equal((await daveView.getPresence({ userIds: [alice!.userId] })).presences[0]!.status, PresenceStatus.OFFLINE, "a stranger cannot see it");

    // Both devices go away: nothing during the grace period, then OFFLINE with last seen.
    await a1.close();
    const closedAt = Date.now();
    await a2.close();
    await Promise.all([b, c].map((w) => w.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline events, no flapping", 10_000)));
    // A lower bound only: a slow machine makes the event later, never earlier. The grace
    // runs from the last heartbeat, which may be half an interval before the close.
    const heardAfter = Date.now() - closedAt;
    assert.ok(heardAfter >= GRACE_MS - HEARTBEAT_MS / 2 - 300, `OFFLINE came ${heardAfter} ms after the close, inside the ${GRACE_MS} ms grace period`);
    const offline = b.events(alice!.userId)[1]!;
    assert.equal(offline.status, PresenceStatus.OFFLINE);
    const lastSeen = timestampMs(offline.lastSeenAt!);
    assert.ok(Math.abs(lastSeen - closedAt) < 1_000, `last seen ${lastSeen - closedAt} ms from the close`);
    const queried = (await bobView.getPresence({ userIds: [alice!.userId] })).presences[0]!;
    assert.equal(queried.status, PresenceStatus.OFFLINE);
    assert.equal(timestampMs(queried.lastSeenAt!), lastSeen);

    // The stranger heard nothing about alice, ever.
    assert.deepEqual(d.events(alice!.userId), []);
  });

  it("does not flap when a device reconnects within the grace period", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice!, bob!);
    const b = await open(bob!.devices[0]!.token);
    const a = await open(alice!.devices[0]!.token);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online");
    await a.close();
    // Away for a third of the grace period, as a phone between two cells.
    await new Promise((r) => setTimeout(r, GRACE_MS / 3));
    await open(alice!.devices[0]!.token);
    await graceRanOut([`${chatd.httpUrl}/metrics`], GRACE_MS);
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE]);
  });

  it("takes a user offline at once on logout", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice!, bob!);
    const b = await open(bob!.devices[0]!.token);
    const a = await open(alice!.devices[0]!.token);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online");
    const started = Date.now();
    await apiClients(chatd.httpUrl, alice!.devices[0]!.token).auth.logout({});
    assert.equal(await a.device.waitClosed(), 4003);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline after logout", GRACE_MS);
    assert.ok(Date.now() - started < GRACE_MS / 2, `offline ${Date.now() - started} ms after logout`);
  });

  it("follows friendship and membership changes", async () => {
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(chatd.httpUrl, n)));
    const { channel } = await alice!.api.channels.createGroup({ title: "g", memberUserIds: [carol!.userId] });
    const b = await open(bob!.devices[0]!.token);
    const c = await open(carol!.devices[0]!.token);
    const a = await open(alice!.devices[0]!.token);
    await c.hears(alice!.userId, [PresenceStatus.ONLINE], "carol hears alice");
    assert.deepEqual(b.statuses(alice!.userId), [], "bob is nobody to alice yet");

    // Bob becomes a friend (and is told she is online), carol leaves the group: the next change reaches bob, not carol.
    await befriend(alice!, bob!);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "bob, now a friend, hears alice is online");
    await alice!.api.channels.removeMember({ channelId: channel!.channelId, userId: carol!.userId });
    // The group was all carol shared with alice: the removal tells her alice is offline, with no last seen.
    await c.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "carol told alice is gone from her view");
    assert.equal(c.events(alice!.userId)[1]!.lastSeenAt, undefined);
    await apiClients(chatd.httpUrl, alice!.devices[0]!.token).auth.logout({});
    await a.device.waitClosed();
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "bob hears alice go");
    // Bob's event was written to every audience socket before it reached him, so carol's
    // answer to a frame she sends now comes after anything that event put on her socket.
    const ref = c.device.sendFrame({ kind: { case: "heartbeat", value: {} } });
    await waitFor(() => c.device.frames.some((f) => f.ref === ref && f.kind.case === "heartbeatAck"), "carol's heartbeat answered");
    assert.deepEqual(c.statuses(alice!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "carol no longer hears alice");
  });

  it("tells users new to a group each other's presence at once, not at the next change", async () => {
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(chatd.httpUrl, n)));
    await Promise.all([befriend(carol!, alice!), befriend(carol!, bob!)]);
    const { channel } = await alice!.api.channels.createGroup({ title: "g", memberUserIds: [] });
    const c = await open(carol!.devices[0]!.token);
    const [a, b] = await Promise.all([alice!, bob!].map((u) => open(u.devices[0]!.token)));
    // Their coming online is announced (to carol, a friend of both) before they share anything.
    await Promise.all([alice!, bob!].map((u) => c.hears(u.userId, [PresenceStatus.ONLINE], "carol hears both online")));
    await alice!.api.channels.addMembers({ channelId: channel!.channelId, userIds: [bob!.userId] });
    await Promise.all([a.hears(bob!.userId, [PresenceStatus.ONLINE], "alice told bob's presence"), b.hears(alice!.userId, [PresenceStatus.ONLINE], "bob told alice's presence")]);
  });

  it("keeps a user's presence from those her setting leaves out, on their open sessions too", async () => {
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice!, bob!);
    await alice!.api.channels.createGroup({ title: "g", memberUserIds: [carol!.userId] });
    const settings = presenceClient(chatd.httpUrl, alice!.devices[0]!.token);
    await settings.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
    const [b, c] = await Promise.all([bob!, carol!].map((u) => open(u.devices[0]!.token)));
    const a = await open(alice!.devices[0]!.token);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "bob, a friend, hears alice");

    // Nobody: bob is told at once that she is offline, with no last-seen time.
    await settings.updatePresenceSettings({ settings: { visibility: PresenceVisibility.NOBODY } });
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "bob told alice is offline");
    assert.equal(b.events(alice!.userId)[1]!.lastSeenAt, undefined);
    await a.close();
    await graceRanOut([`${chatd.httpUrl}/metrics`], GRACE_MS);
    assert.deepEqual(b.statuses(alice!.userId), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "nothing about her going");
    const queried = (await presenceClient(chatd.httpUrl, bob!.devices[0]!.token).getPresence({ userIds: [alice!.userId] })).presences[0]!;
    assert.deepEqual([queried.status, queried.lastSeenAt], [PresenceStatus.OFFLINE, undefined]);
    // Carol, a group member, heard nothing at all (her heartbeat's answer comes after anything queued before it).
    const ref = c.device.sendFrame({ kind: { case: "heartbeat", value: {} } });
    await waitFor(() => c.device.frames.some((f) => f.ref === ref && f.kind.case === "heartbeatAck"), "carol's heartbeat answered");
    assert.deepEqual(c.statuses(alice!.userId), []);
  });

  it("tells a deleted account's friends, chat peers and group members it is offline at once", async () => {
    const [alice, bob, carol, dave] = await Promise.all(["alice", "bob", "carol", "dave"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice!, bob!);
    await alice!.api.channels.openDirect({ userId: carol!.userId });
    await dave!.api.channels.createGroup({ title: "g", memberUserIds: [alice!.userId] });
    const watching = await Promise.all([bob!, carol!, dave!].map((u) => open(u.devices[0]!.token)));
    const a = await open(alice!.devices[0]!.token);
    await Promise.all(watching.map((w) => w.hears(alice!.userId, [PresenceStatus.ONLINE], "online")));
    const started = Date.now();
    await alice!.api.auth.deleteAccount({ password: alice!.password });
    assert.equal(await a.device.waitClosed(), 4003);
    // The friendship, the chat and the group it went through are gone with the account: it must not stay online on their
    // screens. Told by the sign-out and by the deletion itself, each may hear OFFLINE more than once.
    await waitFor(() => watching.every((w) => w.statuses(alice!.userId).at(-1) === PresenceStatus.OFFLINE), "offline after the deletion", GRACE_MS);
    assert.ok(Date.now() - started < GRACE_MS / 2, `offline ${Date.now() - started} ms after the deletion`);
    for (const w of watching) assert.deepEqual(w.statuses(alice!.userId).filter((s) => s === PresenceStatus.ONLINE), [PresenceStatus.ONLINE], "online once, then only offline");
  });
});

describe("chatd system: presence of a device that went silent", function () {
  this.timeout(60_000);
  // Longer than the three heartbeat intervals after which the server closes a silent socket.
  const LONG_GRACE_MS = 5_000;
  let chatd: ChatdProcess;
  const watchers: PresenceWatcher[] = [];
  before(async () => {
    chatd = await startChatd({
      env: { CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS), CHAT_PRESENCE_GRACE_MS: String(LONG_GRACE_MS), CHAT_PRESENCE_SWEEP_MS: "50" },
    });
  });
  after(async () => {
    await Promise.all(watchers.map((w) => w.close()));
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("goes offline a grace period after its last heartbeat, not after the server closed its socket, with last seen its last heartbeat", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(alice!, bob!);
    const b = await PresenceWatcher.open(chatd.wsUrl, bob!.devices[0]!.token, HEARTBEAT_MS);
    const a = await PresenceWatcher.open(chatd.wsUrl, alice!.devices[0]!.token, HEARTBEAT_MS);
    watchers.push(a, b);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "online");
    // The last heartbeat; then the network goes without a FIN.
    a.device.sendFrame({ kind: { case: "heartbeat", value: {} } });
    const lastHeartbeat = Date.now();
    a.silence();
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "offline", 20_000);
    const heardAfter = Date.now() - lastHeartbeat;
    const lastSeen = timestampMs(b.events(alice!.userId)[1]!.lastSeenAt!);
    assert.ok(Math.abs(lastSeen - lastHeartbeat) < 500, `last seen ${lastSeen - lastHeartbeat} ms after the last heartbeat`);
    // The server closes the socket after 3 s of silence; restarting the grace period there would make it 8 s.
    assert.ok(heardAfter < LONG_GRACE_MS + 2_000, `offline ${heardAfter} ms after the last heartbeat, grace ${LONG_GRACE_MS} ms`);
  });
});
