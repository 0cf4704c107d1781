import assert from "node:assert/strict";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { addDevice, apiClients, signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

const receiptsOf = (d: TestDevice, channelId: bigint, userId: bigint) =>
  d.frames.flatMap((f) => (f.kind.case === "receipt" && f.kind.value.channelId === channelId && f.kind.value.userId === userId ? [f.kind.value.seq] : []));

/**
 * What a device holds of a channel, as comparable lines: by inbox order, the message's id, seq, sender and
 * target (not its text: a device that syncs after a delete gets the deleted message's entry emptied).
 */
const view = (d: TestDevice, channelId: bigint) =>
  d.messagesIn(channelId).map((m) => `${m.messageId}/${m.seq}/${m.senderUserId}:${m.senderDeviceId}/${m.targetSeq}/${m.reaction}`);

/** Where a scenario runs: the api, and the WebSocket URL of the device numbered i (devices spread over gateways). */
interface Edge {
  apiUrl: string;
  wsUrl(i: number): string;
  devices: TestDevice[];
}

/** Alice on three devices (the third speaking JSON: frames a user's sessions share are encoded once per encoding) and Bob on one, in a direct chat. */
async function aliceOnThreeDevices(edge: Edge) {
  const alice = await signUp(edge.apiUrl, "alice");
  const bob = await signUp(edge.apiUrl, "bob");
  await addDevice(edge.apiUrl, alice);
  await addDevice(edge.apiUrl, alice);
  const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
  const channelId = channel!.channelId;
  const [a, b, c] = await Promise.all(alice.devices.map((d, i) => new TestDevice(edge.wsUrl(i), d.token, { json: i === 2 }).connect()));
  const bo = await new TestDevice(edge.wsUrl(3), bob.devices[0]!.token).connect();
  edge.devices.push(a!, b!, c!, bo);
  return { alice, bob, channelId, a: a!, b: b!, c: c!, bo };
}

const acked = (reply: ServerFrame, what: string) =>
  assert.ok(reply.kind.case === "sendAck", `${what}: ${reply.kind.case === "error" ? reply.kind.value.message : reply.kind.case}`);

/**
 * One user on three devices, one of them offline for a while: every device
 * ends with the same view of the chat (messages, their order and ids, edits,
 * deletes, reactions, the read position), whatever was sent from which.
 */
async function offlineDeviceCatchesUp(edge: Edge): Promise<void> {
  const { alice, channelId, a, b, c, bo } = await aliceOnThreeDevices(edge);
  const online = [a, b, bo];
  // Each change waits for the one before it to reach every device: in the cluster an ack comes before the log has it.
  const change = async (reply: Promise<ServerFrame>, what: string, entries: number) => {
    acked(await reply, what);
    await Promise.all(online.map((d) => d.waitForMessages(entries, `${what} on every device`, 60_000)));
  };
  acked(await bo.send(channelId, "one"), "one");
  await Promise.all([a, b, c].map((d) => d.waitForMessages(1, "one", 60_000)));
  // c acks what it has, then goes away.
  c.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: 1n } } });
  await c.close();

  await change(bo.send(channelId, "two"), "two", 2);
  const fromA = await a.send(channelId, "three, from alice's first device");
  acked(fromA, "three");
  const sentId = fromA.kind.case === "sendAck" ? fromA.kind.value.messageId : 0n;
  await Promise.all(online.map((d) => d.waitForMessages(3, "three", 60_000)));
  const onB = b.messagesIn(channelId).find((m) => m.messageId === sentId)!;
  assert.equal(onB.senderUserId, alice.userId, "alice's own message shows as hers on her other device");
  assert.equal(onB.senderDeviceId, alice.devices[0]!.deviceId);

  await change(bo.edit(channelId, 1n, "one, edited"), "bob's edit", 4);
  await change(bo.deleteMessage(channelId, 2n), "bob's delete", 5);
  await change(b.react(channelId, 1n, "👍"), "alice's reaction from b", 6);
  await change(a.react(channelId, 1n, ""), "alice taking it back from a", 7);
  await change(a.react(channelId, 3n, "🎉"), "alice's reaction from a", 8);
  await change(bo.react(channelId, 3n, "❤️"), "bob's reaction", 9);
  await change(bo.react(channelId, 3n, ""), "bob taking his back", 10);

  // Read on b: a and bob hear it at once, and the read position is the same from any device.
  b.sendFrame({ kind: { case: "read", value: { channelId, seq: 3n } } });
  await waitFor(() => receiptsOf(a, channelId, alice.userId).includes(3n), "a hears b's read");
  await waitFor(() => receiptsOf(bo, channelId, alice.userId).includes(3n), "bob hears alice's read");

  await c.connect();
  await c.waitForMessages(10, "c's catch-up", 60_000);
  for (const d of [b, c]) assert.deepEqual(view(d, channelId), view(a, channelId));
  // Bob's inbox holds the same messages and changes in the same order (inbox seqs differ, ids do not).
  assert.deepEqual(view(bo, channelId), view(a, channelId));
  for (const d of [a, b, c, bo]) {
    assert.deepEqual(d.shown(channelId), [
      { seq: 1n, text: "one, edited", edited: true, deleted: false },
      { seq: 2n, text: "", deleted: true, edited: false },
      { seq: 3n, text: "three, from alice's first device", edited: false, deleted: false },
    ]);
    assert.deepEqual([...d.reactionsShown(channelId)], [[3n, [`🎉:${alice.userId}`]]]);
  }
  for (const d of alice.devices) {
    const seen = (await apiClients(edge.apiUrl, d.token).channels.describeChannel({ channelId })).channel!;
    assert.deepEqual([seen.readSeq, seen.unreadCount], [3n, 0n]);
  }
}

/** Keys are per device: two of one user's devices sending under one client_msg_id send two messages (and two edits). */
async function sameKeyFromTwoDevices(edge: Edge): Promise<void> {
  const { channelId, a, b, bo } = await aliceOnThreeDevices(edge);
  const [x, y] = await Promise.all([a.send(channelId, "from a", "same-key"), b.send(channelId, "from b", "same-key")]);
  acked(x, "a's send");
  acked(y, "b's send");
  if (x.kind.case !== "sendAck" || y.kind.case !== "sendAck") return;
  assert.notEqual(x.kind.value.messageId, y.kind.value.messageId);
  assert.equal(x.kind.value.duplicate || y.kind.value.duplicate, false);
  await Promise.all([a, b, bo].map((d) => d.waitForMessages(2, "both messages", 60_000)));
  assert.deepEqual(bo.messagesIn(channelId).map((m) => m.text).sort(), ["from a", "from b"]);
  const [e1, e2] = await Promise.all([a.edit(channelId, 1n, "edit a", "edit-key"), b.edit(channelId, 2n, "edit b", "edit-key")]);
  acked(e1, "a's edit");
  acked(e2, "b's edit");
  if (e1.kind.case !== "sendAck" || e2.kind.case !== "sendAck") return;
  assert.notEqual(e1.kind.value.messageId, e2.kind.value.messageId);
  await Promise.all([a, b, bo].map((d) => d.waitForMessages(4, "both edits", 60_000)));
  for (const d of [a, b, bo]) assert.deepEqual(d.shown(channelId).map((m) => m.text).sort(), ["edit a", "edit b"]);
}

/** A device signed out is closed with 4003 at once and gets nothing more; its token opens nothing; the others go on. */
async function signedOutDeviceStops(edge: Edge): Promise<void> {
  const { alice, channelId, a, b, c, bo } = await aliceOnThreeDevices(edge);
  await apiClients(edge.apiUrl, alice.devices[1]!.token).auth.logout({});
  assert.equal(await b.waitClosed(), 4003);
  acked(await bo.send(channelId, "after the logout"), "after the logout");
  await Promise.all([a, c].map((d) => d.waitForMessages(1, "after the logout", 60_000)));
  assert.equal(b.entries.length, 0);
  const again = await new TestDevice(edge.wsUrl(1), alice.devices[1]!.token).connect();
  edge.devices.push(again);
  assert.equal(await again.waitClosed(), 4003);
  assert.equal(again.entries.length, 0);
}

/** A device signed in later gets the chat's entries once, in the order the others have them. */
async function laterDeviceCatchesUp(edge: Edge): Promise<void> {
  const { alice, channelId, a, bo } = await aliceOnThreeDevices(edge);
  for (const t of ["one", "two", "three"]) acked(await bo.send(channelId, t), t);
  await a.waitForMessages(3, "three messages", 60_000);
  const d = await addDevice(edge.apiUrl, alice);
  const late = await new TestDevice(edge.wsUrl(4), d.token).connect();
  edge.devices.push(late);
  await late.waitForMessages(3, "the late device's catch-up", 60_000);
  assert.deepEqual(view(late, channelId), view(a, channelId));
  assert.equal(late.welcome()!.headInboxSeq, 3n);
}

/**
 * A device behind the others reads up to a message before the user's own newest one (sent from another
 * device): the position is stored and the user's devices hear it, but the others are not told, as for
 * MarkRead, since they are shown the user as having read up to their own message already.
 */
async function laggingReadMovesNobodyBack(edge: Edge): Promise<void> {
  const { alice, bob, channelId, a, b, bo } = await aliceOnThreeDevices(edge);
  acked(await bo.send(channelId, "one"), "one");
  await Promise.all([a, b].map((d) => d.waitForMessages(1, "one", 60_000)));
  acked(await a.send(channelId, "two, from a"), "two");
  await Promise.all([a, b, bo].map((d) => d.waitForMessages(2, "two", 60_000)));
  const shownToBob = async () => (await bob.api.channels.listMembers({ channelId })).members.find((m) => m.userId === alice.userId)!.readSeq;
  assert.equal(await shownToBob(), 2n, "alice shows as having read up to her own message");

  b.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
  await waitFor(() => receiptsOf(a, channelId, alice.userId).includes(1n), "alice's other device hears the read");
  assert.equal(await shownToBob(), 2n);
  // A fence: a read that moves what bob is shown reaches him, after any receipt before it.
  acked(await bo.send(channelId, "three"), "three");
  await b.waitForMessages(3, "three", 60_000);
  b.sendFrame({ kind: { case: "read", value: { channelId, seq: 3n } } });
  await waitFor(() => receiptsOf(bo, channelId, alice.userId).includes(3n), "bob hears alice's read of 3");
  assert.deepEqual(receiptsOf(bo, channelId, alice.userId), [3n], "no receipt moved bob's view of alice back");
}

/** Logins past the device limit (DEVICE_LIMIT) sign out the device seen least recently: its session is closed at once, the others go on. */
async function pastTheDeviceLimit(edge: Edge): Promise<void> {
  const { alice, channelId, a, b, c, bo } = await aliceOnThreeDevices(edge);
  await addDevice(edge.apiUrl, alice);
  assert.equal(a.closeCode, undefined, "within the limit nobody is signed out");
  await addDevice(edge.apiUrl, alice);
  assert.equal(await a.waitClosed(), 4003);
  const newest = await new TestDevice(edge.wsUrl(4), alice.devices[4]!.token).connect();
  edge.devices.push(newest);
  acked(await bo.send(channelId, "after the fifth login"), "after the fifth login");
  await Promise.all([b, c, newest].map((d) => d.waitForMessages(1, "after the fifth login", 60_000)));
  assert.equal(a.entries.length, 0);
}

const scenarios: [string, (edge: Edge) => Promise<void>][] = [
  ["a device offline meanwhile catches up to the same messages, changes and read position as the others", offlineDeviceCatchesUp],
  ["two devices of one user sending under the same client_msg_id send two messages", sameKeyFromTwoDevices],
  ["a device signed out stops receiving at once; the others go on", signedOutDeviceStops],
  ["a device signed in later gets the chat's entries once, in the order the others have them", laterDeviceCatchesUp],
  ["a lagging device's read below the user's own newest message moves no other member's view of them back", laggingReadMovesNobodyBack],
  ["a login past the device limit closes the least recently seen device's session at once", pastTheDeviceLimit],
];

/** An account's most devices in these suites: alice's three, a later one, and one more past it. */
const DEVICE_LIMIT = "4";

describe("one user on several devices (chatd)", function () {
  this.timeout(120_000);
  const suite = useChatd({ env: { CHAT_MAX_DEVICES_PER_ACCOUNT: DEVICE_LIMIT } });
  const edge = (): Edge => ({ apiUrl: suite.chatd.httpUrl, wsUrl: () => suite.chatd.wsUrl, devices: suite.devices });
  for (const [name, scenario] of scenarios) it(name, () => scenario(edge()));
});

describe("one user on several devices (cluster: two gateways, two chat servers)", function () {
  this.timeout(300_000);
  const { run, env } = useDeployment("md");
  let api: RoleProcess;
  const gateways: RoleProcess[] = [];
  const devices: TestDevice[] = [];
  before(async () => {
    api = await startRole("api", { ...env, CHAT_MAX_DEVICES_PER_ACCOUNT: DEVICE_LIMIT });
    await Promise.all([1, 2].map((i) => startRole("chat-server", { ...env, CHAT_SERVER_ID: `cs${i}-${run}` })));
    await startRole("pipeline", env);
    gateways.push(...(await Promise.all([1, 2].map((i) => startRole("gateway", { ...env, CHAT_GATEWAY_ID: `gw${i}-${run}` })))));
    await Promise.all(gateways.map((g) => waitFor(async () => (await fetch(`${String(g.info.http)}/healthz`)).ok, "a gateway to see the chat servers", 60_000)));
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });
  const edge = (): Edge => ({ apiUrl: String(api.info.http), wsUrl: (i) => String(gateways[i % gateways.length]!.info.ws), devices });
  for (const [name, scenario] of scenarios) it(name, () => scenario(edge()));
});

describe("one user on several devices: past retention (chatd)", function () {
  this.timeout(120_000);
  const suite = useChatd({ env: { CHAT_INBOX_RETENTION_S: "1" } });
  const devices = suite.devices;

  it("a device away past retention is told what expired and the history fills it without a gap or a repeat", async () => {
    const url = suite.chatd.httpUrl;
    const alice = await signUp(url, "alice");
    const bob = await signUp(url, "bob");
    await addDevice(url, alice);
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const channelId = channel!.channelId;
    const a = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    const away = await new TestDevice(suite.chatd.wsUrl, alice.devices[1]!.token).connect();
    const bo = await new TestDevice(suite.chatd.wsUrl, bob.devices[0]!.token).connect();
    devices.push(a, away, bo);
    assert.equal((await bo.send(channelId, "m1")).kind.case, "sendAck");
    await away.waitForMessages(1);
    away.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: 1n } } });
    await away.close();
    for (const t of ["m2", "m3", "m4"]) assert.equal((await bo.send(channelId, t)).kind.case, "sendAck");
    assert.equal((await a.send(channelId, "m5 from a")).kind.case, "sendAck");
    await a.waitForMessages(5);
    await waitFor(
      async () => (await alice.api.messages.syncInbox({ afterInboxSeq: 1n, limit: 100 })).expiredThrough === 4n,
      "alice's entries up to 4 expired",
      30_000,
      100,
    );
    await away.connect();
    const first = await waitFor(() => away.frames.find((f) => f.kind.case === "syncBatch"), "the catch-up");
    assert.ok(first.kind.case === "syncBatch");
    assert.equal(first.kind.value.expiredThrough, 4n);
    assert.deepEqual(first.kind.value.entries.map((e) => [e.inboxSeq, e.message?.text]), [[5n, "m5 from a"]]);
    // What expired is filled from history: the messages before the one it kept, each once.
    const kept = first.kind.value.entries[0]!.message!.seq;
    const page = await apiClients(url, alice.devices[1]!.token).messages.listMessages({ channelId, anchorSeq: kept, direction: PageDirection.BACKWARD, limit: 10 });
    assert.deepEqual(page.messages.map((m) => [m.seq, m.text]), [[4n, "m4"], [3n, "m3"], [2n, "m2"], [1n, "m1"]]);
    assert.equal(kept, 5n);
  });
});
