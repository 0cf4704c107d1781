import assert from "node:assert/strict";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { addDevice, signUp, type TestUser, rpcError } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { PushReceiver, type TestSubscription } from "../support/push-receiver.js";
import { notifierSettled, scrapeMetric } from "../support/metrics.js";
import { waitFor } from "../support/wait.js";

const COLLAPSE_MS = 300;

function pushClient(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(PushService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
}

describe("chatd system: push notifications (Web Push to a loopback push service)", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  let receiver: PushReceiver;
  const devices: TestDevice[] = [];

  before(async () => {
    receiver = await new PushReceiver().start();
    chatd = await startChatd({
      env: {
        CHAT_PUSH_ALLOW_HTTP: "true",
        CHAT_PUSH_COLLAPSE_MS: String(COLLAPSE_MS),
        CHAT_PUSH_BACKOFF_MS: "100",
        CHAT_PUSH_TIMEOUT_MS: "1000",
        CHAT_VAPID_SUBJECT: "mailto:ops@chat.test",
      },
    });
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });
  after(async () => {
    await chatd.stop();
    await receiver.stop();
    removeDataDir(chatd.dataDir);
  });

  const metric = (name: string, labels = "") => scrapeMetric(`${chatd.httpUrl}/metrics`, name, labels);
  const settled = () => notifierSettled(`${chatd.httpUrl}/metrics`, 10_000, 50);

  const connect = async (token: string) => {
    const d = new TestDevice(chatd.wsUrl, token);
    devices.push(d);
    return d.connect();
  };

  async function register(user: TestUser, device: number, sub: TestSubscription, settings = { hidePreview: false, muted: false }) {
    await pushClient(chatd.httpUrl, user.devices[device]!.token).registerPushEndpoint({
      endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth } },
      settings,
    });
  }

  /** Alice (online, sending) and Bob (offline, with a push endpoint) in a direct chat. */
  async function pair(behaviour?: Parameters<PushReceiver["subscribe"]>[0]) {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const sub = receiver.subscribe(behaviour);
    await register(bob, 0, sub);
    const a = await connect(alice.devices[0]!.token);
    return { alice, bob, channelId: channel!.channelId, sub, a };
  }

  it("pushes a new message to an offline user: VAPID-signed, encrypted for the subscription, with sender, channel and preview", async () => {
    const { alice, channelId, sub, a } = await pair();
    const vapidKey = (await pushClient(chatd.httpUrl, alice.devices[0]!.token).getVapidPublicKey({})).publicKey;
    const ack = await a.send(channelId, "are you coming tonight?");
    assert.equal(ack.kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push");
    const push = receiver.deliveredTo(sub)[0]!;
    assert.equal(push.error, undefined);
    assert.equal(push.vapidOk, true);
    assert.equal(push.vapidPublicKey, vapidKey, "signed with the key GetVapidPublicKey hands out");
    assert.equal(push.vapidSubject, "mailto:ops@chat.test");
    assert.equal(push.topic, `c${channelId}`);
    const json = push.json!;
    assert.equal(json.title, alice.username, "a direct chat is titled with the sender's name");
    assert.equal(json.body, "are you coming tonight?");
    assert.equal(json.senderName, alice.username);
    assert.equal(json.channelId, String(channelId));
    assert.equal(json.messageId, ack.kind.case === "sendAck" ? String(ack.kind.value.messageId) : "");
  });

  it("names the group in a group's notification", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.createGroup({ title: "Book club", memberUserIds: [bob.userId] });
    const sub = receiver.subscribe();
    await register(bob, 0, sub);
    const a = await connect(alice.devices[0]!.token);
    await a.send(channel!.channelId, "chapter 3 tonight");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push");
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.equal(json.title, `${alice.username} in Book club`);
    assert.equal(json.channelTitle, "Book club");
    assert.equal(json.body, "chapter 3 tonight");
    assert.equal(receiver.pushesTo(receiver.subscribe()).length, 0);
  });

  it("sends no push to a user who has a device online, and none to the sender", async () => {
    const { alice, bob, channelId, sub, a } = await pair();
    const aliceSub = receiver.subscribe();
    await register(alice, 0, aliceSub);
    await addDevice(chatd.httpUrl, bob);
    const b = await connect(bob.devices[1]!.token); // bob's other device is online
    await a.send(channelId, "you are online");
    await b.waitForMessages(1);
    await settled();
    assert.equal(receiver.pushesTo(sub).length, 0, "bob is online: no push");
    assert.equal(receiver.pushesTo(aliceSub).length, 0, "alice sent it: no push");
    // Once bob's device is gone, the next message is pushed.
    await b.close();
    await a.send(channelId, "now you are not");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push after bob left");
    assert.equal(receiver.deliveredTo(sub)[0]!.json!.body, "now you are not");
  });

  it("respects hide_preview and muted set through UpdatePushSettings", async () => {
    const { bob, channelId, sub, a } = await pair();
    const bobPush = pushClient(chatd.httpUrl, bob.devices[0]!.token);
    await bobPush.updatePushSettings({ settings: { hidePreview: true, muted: false } });
    await a.send(channelId, "top secret text");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push");
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.equal(json.body, "New message");
    assert.ok(!JSON.stringify(json).includes("secret"), "the text appears nowhere in the payload");

    await bobPush.updatePushSettings({ settings: { hidePreview: false, muted: true } });
    const mutedBefore = (await metric("chat_push_skipped_total", 'reason="muted"')) ?? 0;
    await a.send(channelId, "shh");
    await waitFor(async () => ((await metric("chat_push_skipped_total", 'reason="muted"')) ?? 0) > mutedBefore, "the muted device skipped");
    await settled();
    assert.equal(receiver.pushesTo(sub).length, 1, "a muted device gets nothing");
  });

  it("sends nothing for a chat the user muted through MuteChannel, and pushes again once it is unmuted", async () => {
    const { bob, channelId, sub, a } = await pair();
    await bob.api.channels.muteChannel({ channelId, mutedUntil: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
    const before = (await metric("chat_push_skipped_total", 'reason="channel_muted"')) ?? 0;
    await a.send(channelId, "muted chatter");
    await waitFor(async () => ((await metric("chat_push_skipped_total", 'reason="channel_muted"')) ?? 0) > before, "the muted chat skipped");
    await settled();
    assert.equal(receiver.pushesTo(sub).length, 0, "a muted chat pushes nothing");
    await bob.api.channels.muteChannel({ channelId });
    await a.send(channelId, "heard again");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push after unmuting");
    assert.equal(receiver.deliveredTo(sub)[0]!.json!.body, "heard again");
  });

  it("pushes a mention (@username) of the user even from a chat the user muted", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const channelId = (await alice.api.channels.createGroup({ title: "Standup", memberUserIds: [bob.userId] })).channel!.channelId;
    const sub = receiver.subscribe();
    await register(bob, 0, sub);
    await bob.api.channels.muteChannel({ channelId, mutedUntil: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
    const a = await connect(alice.devices[0]!.token);
    const before = (await metric("chat_push_skipped_total", 'reason="channel_muted"')) ?? 0;
    await a.send(channelId, `not for @${bob.username}x, nor mail to x@${bob.username}.example`);
    await waitFor(async () => ((await metric("chat_push_skipped_total", 'reason="channel_muted"')) ?? 0) > before, "the muted chat skipped");
    await settled();
    assert.equal(receiver.pushesTo(sub).length, 0, "no mention, no push");
    await a.send(channelId, `@${bob.username.toUpperCase()}, your turn`);
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the mention's push");
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.mentioned], [`@${bob.username.toUpperCase()}, your turn`, "true"]);
  });

  it("pushes a reaction to the offline author of the message, and nothing for one taken back or to another's message", async () => {
    const { alice, bob, channelId, sub, a } = await pair();
    await bob.api.messages.sendMessage({ channelId, clientMsgId: "bob-1", text: "lunch at noon?" });
    assert.equal((await a.send(channelId, "sure")).kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push of alice's message");
    await settled();
    assert.equal((await a.react(channelId, 1n, "👍")).kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length === 2, "the reaction's push");
    const json = receiver.deliveredTo(sub)[1]!.json!;
    assert.deepEqual([json.title, json.body, json.type, json.targetSeq], [alice.username, "Reacted 👍 to your message", "reaction", "1"]);
    for (const [seq, emoji] of [[1n, ""], [2n, "😂"]] as const) assert.equal((await a.react(channelId, seq, emoji)).kind.case, "sendAck");
    assert.equal((await a.send(channelId, "marker")).kind.case, "sendAck");
    await waitFor(() => receiver.deliveredTo(sub).length >= 3, "the marker's push");
    await settled();
    assert.deepEqual(receiver.deliveredTo(sub).slice(2).map((p) => p.json!.body), ["marker"], "no push for the others");
  });

  it("collapses a burst of messages into one notification per channel", async () => {
    const { channelId, sub, a } = await pair();
    for (let i = 1; i <= 4; i++) await a.send(channelId, `burst ${i}`);
    await waitFor(() => receiver.deliveredTo(sub).length >= 1, "the push");
    await settled();
    const pushes = receiver.deliveredTo(sub);
    assert.equal(pushes.length, 1, `${pushes.length} pushes for one burst`);
    assert.equal(pushes[0]!.json!.count, "4");
    assert.equal(pushes[0]!.json!.body, "4 new messages, the latest: burst 4");
  });

  it("retries a push service that fails, and removes an endpoint that answers 410", async () => {
    const { bob, channelId, sub, a } = await pair({ kind: "failFirst", times: 2, status: 503 });
    await addDevice(chatd.httpUrl, bob);
    const dead = receiver.subscribe({ kind: "status", status: 410 });
    await register(bob, 1, dead);
    await a.send(channelId, "persistence pays");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "delivery after two 503s");
    assert.deepEqual(receiver.pushesTo(sub).map((p) => p.status), [503, 503, 201]);
    assert.equal(receiver.pushesTo(dead).length, 1);
    // The dead endpoint is gone: its device has nothing left to update.
    const err = await rpcError(() => pushClient(chatd.httpUrl, bob.devices[1]!.token).updatePushSettings({ settings: { hidePreview: true, muted: false } }));
    assert.equal(err.code, Code.NotFound);
    await a.send(channelId, "again");
    await waitFor(() => receiver.deliveredTo(sub).length === 2, "second push");
    assert.equal(receiver.pushesTo(dead).length, 1, "never tried again");
  });

  it("keeps notifying others while one push service hangs", async () => {
    const hung = await pair({ kind: "hang" });
    const fine = await pair();
    await hung.a.send(hung.channelId, "into the void");
    await waitFor(() => receiver.pushesTo(hung.sub).length >= 1, "the hung push under way");
    await fine.a.send(fine.channelId, "hello");
    await waitFor(() => receiver.deliveredTo(fine.sub).length === 1, "the other user's push", 5_000);
    await waitFor(() => receiver.pushesTo(hung.sub).length >= 2, "the hung push retried after its timeout", 10_000);
    await fine.a.send(fine.channelId, "still working");
    await waitFor(() => receiver.deliveredTo(fine.sub).length === 2, "a later push", 5_000);
  });

  it("refuses bad registrations and unconfigured push services with clear errors", async () => {
    const bob = await signUp(chatd.httpUrl, "bob");
    const client = pushClient(chatd.httpUrl, bob.devices[0]!.token);
    const sub = receiver.subscribe();
    const badKey = await rpcError(() =>
      client.registerPushEndpoint({ endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: "AAAA", auth: sub.auth } } }),
    );
    assert.equal(badKey.code, Code.InvalidArgument);
    assert.match(badKey.rawMessage, /p256dh/);
    const badUrl = await rpcError(() =>
      client.registerPushEndpoint({ endpoint: { case: "webPush", value: { endpoint: "ftp://x/y", p256dh: sub.p256dh, auth: sub.auth } } }),
    );
    assert.equal(badUrl.code, Code.InvalidArgument);
    const apns = await rpcError(() => client.registerPushEndpoint({ endpoint: { case: "apns", value: { deviceToken: "ab".repeat(32), topic: "com.example" } } }));
    assert.equal(apns.code, Code.FailedPrecondition);
    assert.match(apns.rawMessage, /APNs push is not configured/);
    const fcm = await rpcError(() => client.registerPushEndpoint({ endpoint: { case: "fcm", value: { registrationToken: "tok" } } }));
    assert.equal(fcm.code, Code.FailedPrecondition);
    assert.equal((await rpcError(() => client.registerPushEndpoint({}))).code, Code.InvalidArgument);
    assert.equal((await rpcError(() => client.updatePushSettings({ settings: { hidePreview: true, muted: false } }))).code, Code.NotFound);
    // Unregister is idempotent, and an unregistered device gets no push.
    await register(bob, 0, sub);
    await client.unregisterPushEndpoint({});
    await client.unregisterPushEndpoint({});
    const unauth = await rpcError(() => pushClient(chatd.httpUrl, "nope").getVapidPublicKey({}));
    assert.equal(unauth.code, Code.Unauthenticated);
  });
});
