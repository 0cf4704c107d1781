import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mock } from "node:test";
import { pushEndpoint } from "../../test/support/push-endpoint.js";
import { PushReceiver, type TestSubscription } from "../../test/support/push-receiver.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { topicSpecs, Topics } from "../pipeline/topics.js";
import type { BatchHandler, MessageQueue, QueueRecord } from "../queue/port.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { pino } from "pino";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { pushMetrics } from "./metrics.js";
import { Notifier, type NotifierDeps, type NotifierOptions, type SendResult, type SkipReason } from "./notifier.js";
import type { PushEndpoint, PushEndpointStore, PushNotification, PushProvider, SendOutcome } from "./port.js";
import { encodeNotificationRequested, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

describe("Notifier with Web Push against a loopback push service", function () {
  this.timeout(30_000);
  let dir: string;
  let db: SqliteDatabase;
  let queue: SqliteQueue;
  let endpoints: SqlitePushEndpointStore;
  let receiver: PushReceiver;
  let notifier: Notifier | undefined;
  let results: SendResult[];
  let online: Set<Id>;
  /** The users the notifier asked about when their notification was due. */
  let askedOnline: Id[];
  let skips: SkipReason[];
  /** Channel mutes by `${userId}:${channelId}`, as the ChannelStore would answer. */
  let mutes: Map<string, number>;
  /** Devices that sign out during a test. */
  let signedOut: Set<Id>;
  const vapidSubject = "mailto:ops@chat.test";
  let provider: WebPushProvider;
  let seq = 0n;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "notifier-"));
    db = openDatabase(":memory:");
    endpoints = new SqlitePushEndpointStore(db);
    queue = new SqliteQueue({ path: join(dir, "queue.db") });
    await queue.ensureTopics(topicSpecs(2));
    receiver = await new PushReceiver().start();
    // The receiver is on loopback: local endpoints allowed, as CHAT_PUSH_ALLOW_HTTP does.
    provider = new WebPushProvider({ vapid: loadOrCreateVapidKeys(join(dir, "vapid.json")), subject: vapidSubject, allowLocalEndpoints: true });
    results = [];
    online = new Set();
    askedOnline = [];
    skips = [];
    mutes = new Map();
    signedOut = new Set();
  });
  afterEach(async () => {
    await notifier?.stop();
    notifier = undefined;
    await provider.close();
    await receiver.stop();
    await queue.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A device id the tests treat as logged out. */
  const REVOKED = 13n;
  /** A channel whose mutes cannot be read. */
  const UNREADABLE = 666n;

  async function startNotifier(options: Partial<NotifierOptions> = {}, more: Partial<NotifierDeps> = {}): Promise<Notifier> {
    notifier = new Notifier({
      queue,
      endpoints,
      providers: { web_push: provider },
      isOnline: async (u) => (askedOnline.push(u), online.has(u)),
      isDeviceActive: async (_u, d) => d !== REVOKED && !signedOut.has(d),
      channelMutedUntil: async (u, c) => {
        if (c === UNREADABLE) throw new Error("storage away");
        return mutes.get(`${u}:${c}`);
      },
      onSkipped: (reason) => skips.push(reason),
      options: { collapseWindowMs: 50, backoffBaseMs: 50, backoffMaxMs: 200, timeoutMs: 2_000, ...options },
      onResult: (r) => results.push(r),
      ...more,
    });
    await notifier.start();
    return notifier;
  }

  async function register(userId: Id, deviceId: Id, sub: TestSubscription, settings: Partial<PushEndpoint> = {}): Promise<void> {
    await endpoints.put({
      userId,
      deviceId,
      kind: "web_push",
      address: sub.endpoint,
      p256dh: sub.p256dh,
      auth: sub.auth,
      apnsTopic: "",
      hidePreview: false,
      muted: false,
      updatedAtMs: Date.now(),
      ...settings,
    });
  }

  async function notify(userId: Id, channelId: Id, text: string, extra: Partial<NotificationRequest> = {}): Promise<void> {
    seq++;
    const req: NotificationRequest = {
      userId,
      senderName: "Bob",
      channelTitle: "",
      ...extra,
      message: {
        messageId: 1000n + seq,
        channelId,
        seq,
        senderUserId: 77n,
        senderDeviceId: 1n,
        clientMsgId: `c${seq}`,
        text,
        sentAtMs: Date.now(),
      },
    };
    await queue.publish(Topics.notifications, [{ key: String(userId), value: encodeNotificationRequested(req) }]);
  }

  it("sends an encrypted, VAPID-signed Web Push that the subscription's key decrypts", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier();
    await notify(1n, 500n, "hello there, are we still on for lunch?", { senderName: "Bob", channelTitle: "Lunch club" });
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "one push");
    const push = receiver.deliveredTo(sub)[0]!;
    assert.equal(push.vapidOk, true, push.error);
    assert.equal(push.vapidPublicKey, provider.publicKey);
    assert.equal(push.vapidSubject, vapidSubject);
    assert.equal(push.error, undefined);
    assert.equal(push.topic, "c500");
    assert.ok(push.ttl && push.ttl > 0);
    assert.deepEqual(push.json, {
      title: "Bob in Lunch club",
      body: "hello there, are we still on for lunch?",
      tag: "c500",
      type: "message",
      channelId: "500",
      messageId: String(1000n + seq),
      seq: String(seq),
      senderUserId: "77",
      senderName: "Bob",
      channelTitle: "Lunch club",
      count: "1",
    });
  });

  it("tells of a reaction to the user's message with its emoji, or as a new reaction without a preview", async () => {
    const sub = receiver.subscribe();
    const hidden = receiver.subscribe();
    await register(1n, 10n, sub);
    await register(1n, 11n, hidden, { hidePreview: true });
    await startNotifier();
    const req: NotificationRequest = {
      userId: 1n,
      senderName: "Bob",
      channelTitle: "",
      message: { messageId: 5000n, channelId: 501n, seq: 0n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: "r", text: "👍", sentAtMs: Date.now(), targetSeq: 12n, reaction: true },
    };
    await queue.publish(Topics.notifications, [{ key: "1", value: encodeNotificationRequested(req) }]);
    await waitFor(() => receiver.deliveredTo(sub).length === 1 && receiver.deliveredTo(hidden).length === 1, "both pushes");
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.title, json.body, json.type, json.targetSeq, json.channelId], ["Bob", "Reacted 👍 to your message", "reaction", "12", "501"]);
    assert.equal(receiver.deliveredTo(hidden)[0]!.json!.body, "New reaction");
  });

  it("hides the text for a device that asked for no preview, and sends nothing to a muted device", async () => {
    const hidden = receiver.subscribe();
    const muted = receiver.subscribe();
    await register(1n, 10n, hidden, { hidePreview: true });
    await register(1n, 11n, muted, { muted: true });
    await startNotifier();
    await notify(1n, 500n, "the secret plan");
    await waitFor(() => receiver.deliveredTo(hidden).length === 1, "push to the no-preview device");
    const json = receiver.deliveredTo(hidden)[0]!.json!;
    assert.equal(json.body, "New message");
    assert.equal(json.title, "Bob");
    assert.ok(!JSON.stringify(json).includes("secret"), "no text anywhere in the payload");
    await notifier!.idle();
    assert.equal(receiver.pushesTo(muted).length, 0);
  });

  it("cuts a long preview between user-perceived characters, never inside a flag, an emoji sequence or an accented letter", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier();
    // 120 code points is the budget: 2 a flag, 7 a family, 2 an "e" with its accent; a cut at 119 fell inside each.
    const flags = "🇫🇷".repeat(100);
    const families = "👨‍👩‍👧‍👦".repeat(40);
    const accents = "e\u0301".repeat(100);
    for (const text of [flags, families, accents]) await notify(1n, 500n + BigInt(text.length), text);
    await waitFor(() => receiver.deliveredTo(sub).length === 3, "three pushes");
    const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });
    for (const push of receiver.deliveredTo(sub)) {
      const body = String(push.json!.body);
      assert.ok(body.endsWith("…"), body);
      const kept = body.slice(0, -1);
      const whole = [flags, families, accents].find((t) => t.startsWith(kept));
      assert.ok(whole, `the preview is a prefix of its text: ${body}`);
      const boundaries = new Set([...segmenter.segment(whole)].map((s) => s.index));
      assert.ok(boundaries.has(kept.length), `cut inside a character: ${JSON.stringify(kept.slice(-8))}`);
      assert.ok([...kept].length <= 119 && [...kept].length > 100, `${[...kept].length} code points kept`);
    }
  });

  it("collapses several messages of a channel in a short window into one notification per channel", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({ collapseWindowMs: 400 });
    for (let i = 1; i <= 5; i++) await notify(1n, 500n, `message ${i}`);
    await notify(1n, 600n, "other channel");
    await waitFor(() => receiver.deliveredTo(sub).length >= 2, "pushes");
    await notifier!.idle();
    const pushes = receiver.deliveredTo(sub);
    assert.equal(pushes.length, 2, "one per channel");
    const c500 = pushes.find((p) => p.topic === "c500")!;
    assert.equal(c500.json!.count, "5");
    assert.equal(c500.json!.body, "5 new messages, the latest: message 5");
    assert.equal(pushes.find((p) => p.topic === "c600")!.json!.count, "1");
    // A message after the window is a new notification (same topic: it replaces the old one if undelivered).
    await notify(1n, 500n, "later");
    await waitFor(() => receiver.deliveredTo(sub).length === 3, "third push");
    assert.equal(receiver.deliveredTo(sub)[2]!.topic, "c500");
  });

  it("retries a failing push service with backoff until it accepts", async () => {
    const sub = receiver.subscribe({ kind: "failFirst", times: 2, status: 503 });
    await register(1n, 10n, sub);
    await startNotifier({ backoffBaseMs: 100 });
    await notify(1n, 500n, "eventually");
    await waitFor(() => results.length === 3, "delivery after retries");
    const tries = receiver.pushesTo(sub);
    assert.deepEqual(tries.map((p) => p.status), [503, 503, 201]);
    assert.deepEqual(results.map((r) => [r.attempt, r.action]), [[1, "retry"], [2, "retry"], [3, "delivered"]]);
    // Backoff: the gaps grow (base 100 ms, doubled, with jitter between half and all of it).
    const gap1 = tries[1]!.at - tries[0]!.at;
    const gap2 = tries[2]!.at - tries[1]!.at;
    assert.ok(gap1 >= 45, `first retry after ${gap1} ms`);
    assert.ok(gap2 >= 95, `second retry after ${gap2} ms`);
    assert.ok(await endpoints.get(1n, 10n), "a failing endpoint is kept");
  });

  it("does not retry to a user who came online, nor to a device that signed out, since the first try", async () => {
    const toOnline = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    const toGone = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, toOnline);
    await register(2n, 20n, toGone);
    await startNotifier({ backoffBaseMs: 100 });
    await notify(1n, 500n, "for user 1");
    await notify(2n, 501n, "for user 2");
    await waitFor(() => results.length === 2, "the first tries");
    assert.deepEqual(results.map((r) => r.action), ["retry", "retry"]);
    online.add(1n); // a session opened meanwhile: it has the message
    signedOut.add(20n);
    await notifier!.idle();
    assert.equal(results.length, 2, "no second try");
    assert.deepEqual(skips.sort(), ["online", "revoked_device"]);
    // As at a first try: kept, it would be read and asked about at every later notification.
    assert.equal(await endpoints.get(2n, 20n), undefined, "the signed-out device's endpoint is removed");
    assert.ok(await endpoints.get(1n, 10n), "the online user's endpoint is kept");
  });

  it("does not retry a chat the user muted since the first try, unless the notification mentions them", async () => {
    const plain = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    const mention = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, plain);
    await register(2n, 20n, mention);
    await startNotifier({ backoffBaseMs: 1_000, backoffMaxMs: 1_000 }); // the mute below lands long before the retry
    await notify(1n, 500n, "chatter");
    await notify(2n, 500n, "@you look", { mentioned: true });
    await waitFor(() => results.length === 2, "the first tries");
    const until = Date.now() + 3_600_000;
    mutes.set("1:500", until);
    mutes.set("2:500", until);
    await notifier!.idle();
    assert.deepEqual([receiver.pushesTo(plain).length, receiver.deliveredTo(mention).length], [1, 1], "the mention still goes");
    assert.deepEqual(skips, ["channel_muted"]);
  });

  it("honours Retry-After and gives up after maxAttempts", async () => {
    const sub = receiver.subscribe({ kind: "status", status: 500 });
    const slow = receiver.subscribe({ kind: "failFirst", times: 1, status: 429, retryAfterSeconds: 1 });
    await register(1n, 10n, sub);
    await register(2n, 20n, slow);
    await startNotifier({ maxAttempts: 3, backoffBaseMs: 20, backoffMaxMs: 5_000 });
    await notify(1n, 500n, "never");
    await notify(2n, 500n, "rate limited");
    await waitFor(() => receiver.deliveredTo(slow).length === 1, "delivery after Retry-After", 10_000);
    const [first, second] = receiver.pushesTo(slow);
    assert.ok(second!.at - first!.at >= 950, `retried ${second!.at - first!.at} ms later, Retry-After was 1 s`);
    await notifier!.idle();
    assert.equal(receiver.pushesTo(sub).length, 3);
    assert.equal(results.filter((r) => r.endpoint.userId === 1n).at(-1)?.action, "dropped");
  });

  for (const status of [404, 410]) {
    it(`removes an endpoint that answers ${status}, without retrying`, async () => {
      const dead = receiver.subscribe({ kind: "status", status });
      const alive = receiver.subscribe();
      await register(1n, 10n, dead);
      await register(1n, 11n, alive);
      await startNotifier();
      await notify(1n, 500n, "hello");
      await waitFor(() => results.length === 2, "both sends");
      await notifier!.idle();
      assert.equal(await endpoints.get(1n, 10n), undefined, "dead endpoint removed");
      assert.ok(await endpoints.get(1n, 11n), "the other device keeps its endpoint");
      assert.equal(receiver.pushesTo(dead).length, 1, "no retry");
      await notify(1n, 500n, "again");
      await waitFor(() => receiver.deliveredTo(alive).length === 2, "second push");
      assert.equal(receiver.pushesTo(dead).length, 1, "the dead endpoint is not tried again");
    });
  }

  it("keeps an endpoint found gone when its address was registered again before the removal (an APNs token the app got back)", async () => {
    const dead = receiver.subscribe({ kind: "status", status: 410 });
    await register(1n, 10n, dead, { updatedAtMs: 1000 });
    // The device registers the same address again while the push service is answering 410 to the old registration.
    const again = { ...(await endpoints.get(1n, 10n))!, updatedAtMs: 2000 };
    const send: PushProvider["send"] = async (e, n, t) => {
      const outcome = await provider.send(e, n, t);
      await endpoints.put(again);
      return outcome;
    };
    await startNotifier({}, { providers: { web_push: { kind: "web_push", send } } });
    await notify(1n, 500n, "hello");
    await waitFor(() => results.length === 1, "the send");
    await notifier!.idle();
    assert.equal(results[0]!.outcome.ok === false && results[0]!.outcome.gone, true, "the push service called it gone");
    assert.equal(results[0]!.action, "dropped", "not removed, nor counted as removed");
    assert.deepEqual(await endpoints.get(1n, 10n), again, "the registration made after the send stays");
  });

  it("keeps an endpoint registered after the time the push service says its address went dead (APNs's 410 timestamp), counting the failure", async () => {
    const [before, after, working] = [receiver.subscribe(), receiver.subscribe(), receiver.subscribe()];
    await register(1n, 10n, before, { updatedAtMs: 1000 });
    await register(1n, 11n, after, { updatedAtMs: 3000 });
    await register(1n, 12n, working);
    // Answered once the service took a send to another device: a failure then counts against the endpoint.
    const send: PushProvider["send"] = async (e) => {
      if (e.deviceId === 12n) return { ok: true };
      await waitFor(() => results.some((r) => r.endpoint.deviceId === 12n), "the delivery to the working device");
      return { ok: false, gone: true, retryable: false, status: 410, reason: "Unregistered", goneSinceMs: 2000 };
    };
    await startNotifier({}, { providers: { web_push: { kind: "web_push", send } } });
    const at = Date.now();
    await notify(1n, 500n, "hello");
    await waitFor(() => results.length === 3, "the three sends");
    await notifier!.idle();
    assert.equal(await endpoints.get(1n, 10n), undefined, "registered before it went dead: removed");
    const kept = await endpoints.get(1n, 11n);
    assert.equal(kept?.updatedAtMs, 3000, "registered since: kept");
    assert.ok(kept.failedSends === 1 && kept.failingSinceMs! >= at, `its failure counted: ${JSON.stringify(kept, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
    const actions = results.map((r) => `${r.endpoint.deviceId}:${r.action}`).sort();
    assert.deepEqual(actions, ["10:removed", "11:dropped", "12:delivered"]);
  });

  it("holds only the endpoint that answered 429 with a Retry-After: another endpoint's first try on the same host goes at once", async () => {
    // A Retry-After far past the wait below: held with the limited endpoint, the other push would not come in time.
    const limited = receiver.subscribe({ kind: "failFirst", times: 1, status: 429, retryAfterSeconds: 600 });
    const other = receiver.subscribe();
    await register(1n, 10n, limited);
    await register(2n, 20n, other);
    await startNotifier({ backoffBaseMs: 20, backoffMaxMs: 5_000 });
    await notify(1n, 500n, "over this device's quota");
    await waitFor(() => results.length === 1, "the 429");
    await notify(2n, 500n, "to another device of the same push service");
    await waitFor(() => receiver.deliveredTo(other).length === 1, "the other endpoint's first try, not held by the 429 of one device");
    assert.equal(receiver.pushesTo(limited).length, 1, "the limited endpoint waits for its Retry-After");
  });

  it("holds no host for 429s from fewer than 3 endpoints, nor for a third after a delivery to the host between", async () => {
    // Held with the limited endpoints, the others' pushes would not come in time.
    const limited = [0, 1, 2].map(() => receiver.subscribe({ kind: "failFirst", times: 1, status: 429, retryAfterSeconds: 600 }));
    const others = [receiver.subscribe(), receiver.subscribe()];
    for (const [i, sub] of limited.entries()) await register(BigInt(i + 1), 10n, sub);
    for (const [i, sub] of others.entries()) await register(BigInt(i + 8), 80n, sub);
    await startNotifier({ backoffBaseMs: 20, backoffMaxMs: 5_000 });
    await notify(1n, 500n, "over this device's quota");
    await notify(2n, 500n, "and this one's");
    await waitFor(() => results.length === 2, "two 429s");
    await notify(8n, 500n, "to a third device");
    await waitFor(() => receiver.deliveredTo(others[0]!).length === 1, "the first try after two endpoints' 429s");
    // The delivery says the host takes sends: a third endpoint's 429 is the third device's own.
    await notify(3n, 500n, "over a third device's quota");
    await waitFor(() => results.length === 4, "the third 429");
    await notify(9n, 500n, "to a fourth device");
    await waitFor(() => receiver.deliveredTo(others[1]!).length === 1, "the first try after a third 429 that followed a delivery");
    assert.deepEqual(limited.map((sub) => receiver.pushesTo(sub).length), [1, 1, 1], "the limited endpoints wait for their Retry-After");
  });

  it("holds the 429'd endpoint's new notification until its Retry-After passes, then sends it and the retry", async () => {
    const limited = receiver.subscribe({ kind: "failFirst", times: 1, status: 429, retryAfterSeconds: 1 });
    await register(1n, 10n, limited);
    await startNotifier({ backoffBaseMs: 20, backoffMaxMs: 5_000 });
    await notify(1n, 500n, "rate limited");
    await waitFor(() => results.length === 1, "the 429");
    const refusedAt = receiver.pushesTo(limited)[0]!.at;
    // Another chat's, so the retry is not superseded by it: both must go.
    await notify(1n, 501n, "told while the endpoint is held");
    await waitFor(() => receiver.deliveredTo(limited).length === 2, "the held first try and the retry, once the Retry-After passed", 10_000);
    for (const push of receiver.pushesTo(limited).slice(1)) assert.ok(push.at - refusedAt >= 950, `sent ${push.at - refusedAt} ms after the 429, Retry-After was 1 s`);
    assert.deepEqual(
      receiver.deliveredTo(limited).map((p) => (p.json as { body: string }).body).sort(),
      ["rate limited", "told while the endpoint is held"],
      "neither lost nor tried into the 429",
    );
    assert.equal(receiver.pushesTo(limited).length, 3);
  });

  for (const [what, refusing] of [
    ["429s from 3 endpoints", [429, 429, 429]],
    ["a 503", [503]],
  ] as const) {
    it(`holds every first try to a push service host after ${what} with a Retry-After, until it passes`, async () => {
      const refused = refusing.map((status) => receiver.subscribe({ kind: "failFirst", times: 1, status, retryAfterSeconds: 1 }));
      const other = receiver.subscribe();
      for (const [i, sub] of refused.entries()) await register(BigInt(i + 1), 10n, sub);
      await register(9n, 90n, other);
      await startNotifier({ backoffBaseMs: 20, backoffMaxMs: 5_000 });
      for (let i = 0; i < refused.length; i++) await notify(BigInt(i + 1), 500n, "the service is limiting");
      await waitFor(() => results.length === refused.length, "the refusals");
      const refusedAt = Math.max(...refused.map((sub) => receiver.pushesTo(sub)[0]!.at));
      // A new notification to another subscription on the same host, told while the host holds.
      await notify(9n, 500n, "after the refusals");
      await waitFor(() => receiver.deliveredTo(other).length === 1, "the held first try, once the Retry-After passed", 10_000);
      const sentAt = receiver.pushesTo(other)[0]!.at;
      assert.ok(sentAt - refusedAt >= 950, `first try sent ${sentAt - refusedAt} ms after the last refusal, Retry-After was 1 s`);
      await waitFor(() => refused.every((sub) => receiver.deliveredTo(sub).length === 1), "the retries after Retry-After");
      assert.equal(receiver.pushesTo(other).length, 1, "sent once, not lost nor tried into the refusal");
    });
  }

  it("keeps going when a push service never answers (timeouts, bounded concurrency)", async () => {
    const hung = receiver.subscribe({ kind: "hang" });
    await register(1n, 10n, hung);
    const good: TestSubscription[] = [];
    for (let u = 2n; u < 6n; u++) {
      const s = receiver.subscribe();
      good.push(s);
      await register(u, 10n, s);
    }
    await startNotifier({ timeoutMs: 300, maxAttempts: 2, perHostConcurrency: 64, concurrency: 4 });
    // Many notifications for the hanging endpoint first, then for the others.
    for (let c = 1n; c <= 10n; c++) await notify(1n, 900n + c, "into the void");
    for (let u = 2n; u < 6n; u++) await notify(u, 500n, `hi ${u}`);
    const started = Date.now();
    await waitFor(() => good.every((s) => receiver.deliveredTo(s).length === 1), "every good endpoint served", 10_000);
    const took = Date.now() - started;
    // Ten hung sends at concurrency 4 with a 300 ms timeout cost at most a few timeouts, never a stall.
    assert.ok(took < 5_000, `took ${took} ms`);
    await notifier!.idle();
    const hungResults = results.filter((r) => r.endpoint.userId === 1n);
    assert.equal(hungResults.length, 20, "each hung notification tried twice");
    assert.ok(hungResults.every((r) => !r.outcome.ok && r.outcome.reason === "timed out"));
    assert.ok(await endpoints.get(1n, 10n), "a slow push service does not lose the endpoint");
    // Still consuming afterwards.
    await notify(2n, 501n, "still alive");
    await waitFor(() => receiver.deliveredTo(good[0]!).length === 2, "a later push");
  });

  it("reports each notification it does not send, and why", async () => {
    online.add(1n);
    await register(3n, 10n, receiver.subscribe(), { muted: true });
    await register(4n, 11n, receiver.subscribe(), { kind: "apns", apnsTopic: "chat.app" }); // no APNs configured here
    await register(5n, REVOKED, receiver.subscribe());
    await startNotifier();
    for (const u of [1n, 2n, 3n, 4n, 5n]) await notify(u, 500n, "unsent");
    await waitFor(() => skips.length === 5, "five skips");
    await notifier!.idle();
    assert.deepEqual([...skips].sort(), ["muted", "no_endpoint", "no_provider", "online", "revoked_device"]);
    assert.equal(results.length, 0, "nothing was sent");
    assert.equal(await endpoints.get(5n, REVOKED), undefined, "a logged-out device's endpoint is removed");
  });

  it("skips a record it cannot decode, logging it and counting it, and sends the user's next notification", async () => {
    // Skipped with a log line only, a stream of unreadable records (a producer of another
    // schema) showed in no metric, so no alert.
    const registry = new Registry();
    const lines: { msg: string; stage?: string; offset?: string }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const { onRecordSkipped } = pushMetrics(registry, () => 0);
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({}, { logger, onRecordSkipped });
    const skipped = async () => metricIn(await registry.metrics(), "chat_push_records_skipped_total");
    assert.equal(await skipped(), 0, "counted from 0");
    await queue.publish(Topics.notifications, [{ key: "1", value: new Uint8Array([0xff, 0xff]) }]);
    await notify(1n, 500n, "after");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push after the unreadable record");
    assert.equal(await skipped(), 1);
    const line = lines.find((l) => l.msg === "skipping an undecodable record");
    assert.ok(line, JSON.stringify(lines));
    assert.equal(line.stage, "notifier");
    assert.equal(typeof line.offset, "string");
  });

  it("sends nothing for a channel the user muted while the mute lasts, and notifies when its mutes cannot be read", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    mutes.set("1:500", Date.now() + 3_600_000);
    mutes.set("1:501", Date.now() - 1);
    await startNotifier();
    await notify(1n, 500n, "muted chatter");
    await notify(1n, 501n, "a mute that ended");
    await notify(1n, UNREADABLE, "fails open");
    await waitFor(() => receiver.deliveredTo(sub).length === 2, "pushes for the unmuted channels");
    await notifier!.idle();
    assert.deepEqual(receiver.deliveredTo(sub).map((p) => p.json?.body).sort(), ["a mute that ended", "fails open"]);
    assert.deepEqual(skips, ["channel_muted"]);
  });

  it("warns once that mutes cannot be read while every read fails, not once a notification, and says when they can be read again", async () => {
    // A store away fails the mutes read of every due notification: a warning each buried the log.
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const subs = [1n, 2n, 3n, 4n].map(() => receiver.subscribe());
    for (const [i, sub] of subs.entries()) await register(BigInt(i + 1), 20n + BigInt(i), sub);
    await startNotifier({}, { logger });
    for (const u of [1n, 2n, 3n]) await notify(u, UNREADABLE, "fails open");
    await waitFor(() => subs.slice(0, 3).every((sub) => receiver.deliveredTo(sub).length === 1), "the pushes, notified anyway");
    await notify(4n, 500n, "mutes readable again");
    await waitFor(() => receiver.deliveredTo(subs[3]!).length === 1, "the push after");
    await notifier!.idle();
    const about = lines.filter((l) => /mutes/.test(l.msg)).map((l) => [l.level, l.msg]);
    assert.deepEqual(about, [
      [40, "channel mutes unreadable: notifying anyway"],
      [30, "channel mutes readable again"],
    ]);
  });

  it("pushes a mention from a muted channel, also when it is collapsed with later messages that are not", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    mutes.set("1:500", Date.now() + 3_600_000);
    await startNotifier({ collapseWindowMs: 200 });
    await notify(1n, 500n, "@you look", { mentioned: true });
    await notify(1n, 500n, "and this too");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the mention's push");
    await notifier!.idle();
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count, json.mentioned], ["2 new messages, the latest: and this too", "2", "true"]);
    assert.deepEqual(skips, []);
  });

  it("sends nothing to a user who is online by the time the notification is due", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    online.add(1n);
    await startNotifier();
    await notify(1n, 500n, "you are here anyway");
    await waitFor(() => askedOnline.includes(1n), "the notification to fall due");
    await notifier!.idle();
    assert.equal(results.length, 0, "nothing was sent");
    assert.equal(receiver.pushesTo(sub).length, 0);
  });

  it("sends nothing for a message older than a push service would hold (a backlog, or a first start reading the topic from its beginning)", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({ ttlSeconds: 3600 });
    const request = (channelId: Id, text: string, ageMs: number): NotificationRequest => {
      seq++;
      const message = { messageId: 1000n + seq, channelId, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now() - ageMs };
      return { userId: 1n, senderName: "Bob", channelTitle: "", message };
    };
    await queue.publish(Topics.notifications, [request(600n, "old", 2 * 3600_000), request(601n, "new", 0)].map((r) => ({ key: "1", value: encodeNotificationRequested(r) })));
    await waitFor(() => results.some((r) => r.action === "delivered"), "the new message's push");
    await notifier!.idle();
    assert.deepEqual([results.map((r) => r.notification.body), skips], [["new"], ["expired"]]);
  });

  it("asks the push service to hold a notification only for what is left of the message's TTL, not a whole TTL from the send", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({ ttlSeconds: 3600 });
    seq++;
    // 50 minutes old (a backlog after an outage): held a whole hour more, it would show 110 minutes after it was sent.
    const message = { messageId: 1000n + seq, channelId: 600n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: "late", sentAtMs: Date.now() - 50 * 60_000 };
    await queue.publish(Topics.notifications, [{ key: "1", value: encodeNotificationRequested({ userId: 1n, senderName: "Bob", channelTitle: "", message }) }]);
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push");
    const ttl = receiver.deliveredTo(sub)[0]!.ttl!;
    assert.ok(ttl > 500 && ttl <= 600, `TTL ${ttl} s`);
  });

  it("gives a batch waiting for room its turn when the retries holding it end unsent (their user came online)", async () => {
    const sub = receiver.subscribe({ kind: "status", status: 503 });
    await register(1n, 10n, sub);
    await register(2n, 20n, receiver.subscribe());
    let user1Checks = 0;
    const sent: Id[] = [];
    notifier = new Notifier({
      queue,
      endpoints,
      providers: {
        web_push: {
          kind: "web_push",
          send: async (e) => (sent.push(e.userId), e.userId === 1n ? { ok: false, gone: false, retryable: true, reason: "503" } : { ok: true }),
        },
      },
      // User 1 is offline when the first push is due and online by its retry.
      isOnline: async (u) => u === 1n && user1Checks++ > 0,
      onSkipped: (reason) => skips.push(reason),
      options: { collapseWindowMs: 10, maxPending: 1, backoffBaseMs: 20, backoffMaxMs: 20 },
    });
    await notifier.start();
    const request = (userId: Id): NotificationRequest => {
      seq++;
      const message = { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: "hi", sentAtMs: Date.now() };
      return { userId, senderName: "Bob", channelTitle: "", message };
    };
    // User 2's batch waits for room while user 1's push is tried, then retried.
    await queue.publish(Topics.notifications, [{ key: "k", value: encodeNotificationRequested(request(1n)) }]);
    await waitFor(() => sent.includes(1n), "user 1's first try");
    await queue.publish(Topics.notifications, [{ key: "k", value: encodeNotificationRequested(request(2n)) }]);
    await waitFor(() => sent.includes(2n), "user 2's push, once user 1's retry ended unsent");
    assert.deepEqual([sent, skips], [[1n, 2n], ["online"]]);
  });

  /** Users 1 to 29 with a device at the push service `host` (one that misbehaves), user 30 at one that works. */
  async function usersBehind(host: string): Promise<void> {
    for (let u = 1n; u <= 30n; u++) {
      await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: u === 30n ? "https://ok.push.example/30" : `${host}${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    }
  }

  it("keeps sending to other push services while one hangs under load: its backlog is capped, not the whole notifier's", async () => {
    const hung = "https://hung.push.example/";
    const delivered: Id[] = [];
    const hanging = new Set<() => void>();
    let ending = false;
    await usersBehind(hung);
    notifier = new Notifier({
      queue,
      endpoints,
      providers: {
        web_push: {
          kind: "web_push",
          // The hung service answers nothing before its timeout, which outlasts the test.
          send: (e) =>
            e.address.startsWith(hung)
              ? new Promise((resolve) => {
                  const timedOut = () => resolve({ ok: false, gone: false, retryable: true, reason: "timed out" });
                  if (ending) timedOut();
                  else hanging.add(timedOut);
                })
              : (delivered.push(e.userId), Promise.resolve({ ok: true })),
        },
      },
      onSkipped: (reason) => skips.push(reason),
      options: { collapseWindowMs: 10, maxPending: 8, perHostConcurrency: 2 },
    });
    await notifier.start();
    try {
      for (let u = 1n; u < 30n; u++) await notify(u, 500n, "into the void");
      await notify(30n, 500n, "to a push service that works");
      await waitFor(() => delivered.includes(30n), "the push to the working service", 10_000);
      assert.ok(skips.includes("backlog"), `the hung service's surplus is dropped and counted: ${skips.join(", ")}`);
    } finally {
      ending = true;
      const stopping = notifier.stop();
      for (const timedOut of hanging) timedOut();
      await stopping;
      notifier = undefined;
    }
  });

  it("keeps sending to other push services while one rate-limits under load: its retries waiting for Retry-After are capped too", async () => {
    const limited = "https://limited.push.example/";
    const delivered: Id[] = [];
    await usersBehind(limited);
    notifier = new Notifier({
      queue,
      endpoints,
      providers: {
        web_push: {
          kind: "web_push",
          send: async (e) =>
            e.address.startsWith(limited)
              ? { ok: false, gone: false, retryable: true, status: 429, retryAfterMs: 600_000, reason: "slow down" }
              : (delivered.push(e.userId), { ok: true }),
        },
      },
      onSkipped: (reason) => skips.push(reason),
      onResult: (r) => results.push(r),
      options: { collapseWindowMs: 10, maxPending: 8, perHostConcurrency: 2 },
    });
    await notifier.start();
    for (let u = 1n; u < 30n; u++) await notify(u, 500n, "not now");
    await notify(30n, 500n, "to a push service that works");
    await waitFor(() => delivered.includes(30n), "the push to the working service", 10_000);
    assert.ok(skips.includes("backlog"), `the limited service's surplus is dropped and counted: ${skips.join(", ")}`);
  });

  it("sends what it was collapsing when stopped (a deploy), rather than dropping pushes whose records are committed", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    const n = await startNotifier({ collapseWindowMs: 60_000 });
    await notify(1n, 500n, "sent just before the deploy");
    await notify(1n, 500n, "and another");
    await waitFor(() => n.pending === 1, "both requests held in one collapse window");
    await n.stop();
    notifier = undefined;
    assert.deepEqual(
      receiver.deliveredTo(sub).map((p) => (p.json as { body: string }).body),
      ["2 new messages, the latest: and another"],
      "the window's notification went out before stop() returned",
    );
  });

  it("gives a failed send no retry once stopping", async () => {
    const failing = receiver.subscribe({ kind: "status", status: 503 });
    await register(1n, 10n, failing);
    const n = await startNotifier({ collapseWindowMs: 60_000 });
    await notify(1n, 500n, "to a failing service");
    await waitFor(() => n.pending === 1, "the request held");
    await n.stop();
    notifier = undefined;
    assert.deepEqual(results.map((r) => [r.attempt, r.action]), [[1, "dropped"]]);
    assert.equal(receiver.pushesTo(failing).length, 1);
  });

  it("drops what it could not start within the drain time (a push service that hangs)", async () => {
    const first = receiver.subscribe({ kind: "hang" });
    const second = receiver.subscribe({ kind: "hang" });
    await register(1n, 10n, first);
    await register(2n, 20n, second);
    // One request at a time to the receiver's host: the second waits for the first, which hangs until its timeout.
    const n = await startNotifier({ collapseWindowMs: 60_000, perHostConcurrency: 1, timeoutMs: 1_500, drainMs: 200 });
    await notify(1n, 500n, "one");
    await notify(2n, 501n, "two");
    await waitFor(() => n.pending === 2, "both requests held");
    await n.stop();
    notifier = undefined;
    assert.equal(receiver.pushesTo(first).length + receiver.pushesTo(second).length, 1, "only the first went out");
    assert.deepEqual(results.map((r) => r.action), ["dropped"], "the first timed out, and was not retried");
    assert.deepEqual(skips, ["stopped"], "the second, never started, counted as lost to the stop");
  });

  it("stops promptly while a batch waits for room held only by retries, leaving that batch uncommitted", async () => {
    const sub = receiver.subscribe({ kind: "status", status: 503 });
    await register(1n, 10n, sub);
    // Counts the batches handed to the notifier, to know when the second is in its hands.
    let batches = 0;
    const subscribe = queue.subscribe.bind(queue);
    const counting = mock.method(queue, "subscribe", ((group, topic, handler, options) =>
      subscribe(group, topic, (rs) => (batches++, handler(rs)), options)) as MessageQueue["subscribe"]);
    await startNotifier({ maxPending: 1, backoffBaseMs: 10_000, backoffMaxMs: 10_000 });
    counting.mock.restore();
    const request = (channelId: Id, text: string): NotificationRequest => {
      seq++;
      const message = { messageId: 1000n + seq, channelId, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now() };
      return { userId: 1n, senderName: "Bob", channelTitle: "", message };
    };
    // The second batch waits for room while the first's push waits for its retry.
    const publish = (r: NotificationRequest) => queue.publish(Topics.notifications, [{ key: "1", value: encodeNotificationRequested(r) }]);
    await publish(request(500n, "first"));
    await waitFor(() => results.length === 1 && results[0]!.action === "retry", "the first send to fail and wait to retry");
    await publish(request(501n, "second"));
    await waitFor(() => batches === 2, "the second batch handed to the notifier, waiting for room");
    const stopping = notifier!.stop();
    notifier = undefined;
    const stoppedInTime = await Promise.race([stopping.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]);
    assert.ok(stoppedInTime, "stop() returned within 2 s");
    assert.deepEqual(skips, ["stopped"], "the first's retry, given up at the stop, counted");

    // The batch comes again to the next notifier, the record that never got room included.
    const bodies: string[] = [];
    notifier = new Notifier({
      queue,
      endpoints,
      providers: { web_push: { kind: "web_push", send: async (_e, n) => (bodies.push(n.body), { ok: true }) } },
      options: { collapseWindowMs: 50 },
    });
    await notifier.start();
    await waitFor(() => bodies.includes("second"), "the waiting record, delivered again");
    await notifier.idle();
    assert.deepEqual(bodies, ["second"], "the first batch was committed: its retry, given up at the stop, is not sent again");
  });
});

describe("Notifier collapse windows on a faked clock", () => {
  const WINDOW = 2_000;
  const endpoint = pushEndpoint({ deviceId: 10n, address: "https://push.example/sub" });
  let sent: PushNotification[];
  /** The endpoint store's answers wait on this when set: a notification's flush held in the middle. */
  let listGate: Promise<void> | undefined;
  let listed: number;
  let notifier: Notifier;

  beforeEach(() => {
    mock.timers.enable({ apis: ["setTimeout"] });
    sent = [];
    listGate = undefined;
    listed = 0;
    const endpoints = {
      listForUser: async () => {
        listed++;
        await listGate;
        return [endpoint];
      },
      removeIfAddress: async () => false,
    } as unknown as PushEndpointStore;
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n), { ok: true }) };
    // accept() is what the consumer calls per record; no queue is needed for the windows.
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: { web_push: provider }, options: { collapseWindowMs: WINDOW } });
  });
  afterEach(async () => {
    await notifier.stop();
    mock.timers.reset();
  });

  let seq = 0n;
  let lastAccepted: NotificationRequest | undefined;
  function accept(text: string, batch?: AbortSignal): void {
    seq++;
    lastAccepted = {
      userId: 1n,
      senderName: "Bob",
      channelTitle: "",
      message: { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: 0 },
    };
    notifier.accept(lastAccepted, batch);
  }

  /** Lets the notifier's promise chains run (setImmediate is not faked) until `check` holds. */
  async function settled(check: () => boolean, what: string): Promise<void> {
    for (let round = 0; round < 200; round++) {
      if (check()) return;
      await new Promise((r) => setImmediate(r));
    }
    throw new Error(`did not happen on its own: ${what}; sent ${JSON.stringify(sent.map((n) => n.body))}`);
  }
  /** Runs what is due without advancing the faked clock. */
  async function drain(): Promise<void> {
    for (let round = 0; round < 50; round++) await new Promise((r) => setImmediate(r));
  }
  const shown = (n: PushNotification | undefined) => n && [n.body, n.data.count, n.data.seq];

  /** The notifier again, pushing through `send`, its endpoints read by `listForUser` (the one endpoint, at once, unless given). */
  async function renotify(send: PushProvider["send"], listForUser: () => Promise<PushEndpoint[]> = async () => [endpoint]): Promise<void> {
    await notifier.stop();
    notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints: { listForUser, removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: { web_push: { kind: "web_push", send } },
      options: { collapseWindowMs: WINDOW },
    });
  }

  describe("endpoints whose sends keep failing", () => {
    const DAY = 24 * 3_600_000;
    const good = pushEndpoint({ userId: 1n, deviceId: 10n, address: "https://push.example/good" });
    const bad = pushEndpoint({ userId: 1n, deviceId: 11n, address: "https://push.example/bad" });
    const refused: SendOutcome = { ok: false, gone: false, retryable: false, status: 403, reason: "push service answered 403" };
    let db: SqliteDatabase;
    let store: SqlitePushEndpointStore;
    let now: number;
    let results: SendResult[];
    beforeEach(async () => {
      db = openDatabase(":memory:");
      store = new SqlitePushEndpointStore(db);
      await store.put(good);
      await store.put(bad);
      now = 1_767_225_600_000;
      results = [];
    });
    afterEach(() => db.close());

    /** The notifier again on the store, `send` answering for the bad endpoint once the good one's send was told of. */
    async function renotifyOn(
      badSend: (n: PushNotification) => SendOutcome | Promise<SendOutcome>,
      goodSend: () => SendOutcome = () => ({ ok: true }),
      options: Partial<NotifierOptions> = {},
    ): Promise<void> {
      await notifier.stop();
      // By the notification's message id: the bad endpoint's answer to a notification follows the good one's.
      const goodTold = new Map<string, { told: Promise<void>; done: () => void }>();
      const toldOf = (n: PushNotification) => {
        let t = goodTold.get(n.data.messageId!);
        if (!t) {
          let done = () => {};
          t = { told: new Promise<void>((r) => (done = r)), done: () => done() };
          goodTold.set(n.data.messageId!, t);
        }
        return t;
      };
      notifier = new Notifier({
        queue: {} as MessageQueue,
        endpoints: store,
        providers: {
          web_push: {
            kind: "web_push",
            send: async (e, n) => {
              if (e.deviceId === good.deviceId) return goodSend();
              await toldOf(n).told;
              return badSend(n);
            },
          },
        },
        now: () => now,
        options: { collapseWindowMs: WINDOW, maxAttempts: 1, ...options },
        onResult: (r) => {
          results.push(r);
          if (r.endpoint.deviceId === good.deviceId) toldOf(r.notification).done();
        },
      });
    }
    async function notifyOnce(text: string): Promise<SendResult> {
      const before = results.length;
      accept(text);
      mock.timers.tick(WINDOW);
      await settled(() => results.length === before + 2 && notifier.pending === 0, `both devices' sends of ${text}`);
      return results.slice(before).find((r) => r.endpoint.deviceId === bad.deviceId)!;
    }

    it("removes one whose every send failed for failingRemoveAfterMs while its push service delivered to others", async () => {
      await renotifyOn(() => refused);
      assert.equal((await notifyOnce("first")).action, "dropped");
      assert.equal((await store.get(1n, bad.deviceId))?.failingSinceMs, now, "failing from the first failure");
      const since = now;
      now += 6 * DAY;
      assert.equal((await notifyOnce("second")).action, "dropped");
      assert.equal((await store.get(1n, bad.deviceId))?.failingSinceMs, since);
      now += DAY;
      assert.equal((await notifyOnce("third")).action, "removed");
      assert.equal(await store.get(1n, bad.deviceId), undefined);
      assert.ok(await store.get(1n, good.deviceId), "the device whose sends go through keeps its endpoint");
    });

    it("removes none for fewer than 3 failed sends, however far apart (a device whose user is online elsewhere gets few pushes)", async () => {
      await renotifyOn(() => refused);
      assert.equal((await notifyOnce("first")).action, "dropped");
      const since = now;
      now += 8 * DAY;
      assert.equal((await notifyOnce("second")).action, "dropped", "one failure a week ago and one now: kept");
      assert.deepEqual(await store.get(1n, bad.deviceId), { ...bad, failingSinceMs: since, failedSends: 2 });
      now += DAY;
      assert.equal((await notifyOnce("third")).action, "removed");
      assert.equal(await store.get(1n, bad.deviceId), undefined);
    });

    it("counts no failure on our side (an FCM access token not fetched, an APNs token not signed) against the endpoint", async () => {
      const ours: SendOutcome = { ok: false, gone: false, retryable: true, reason: "OAuth token endpoint answered 500", ours: true };
      await renotifyOn(() => ours);
      for (let i = 0; i < 4; i++) {
        assert.equal((await notifyOnce(`no token ${i}`)).action, "dropped");
        now += 8 * DAY;
      }
      assert.deepEqual(await store.get(1n, bad.deviceId), bad, "kept, and not failing");
    });

    it("forgets the failures at a delivery, and counts none while the push service delivers to nobody (its outage, or our settings)", async () => {
      let answer: SendOutcome = refused;
      await renotifyOn(() => answer);
      await notifyOnce("first");
      now += 8 * DAY;
      answer = { ok: true };
      assert.equal((await notifyOnce("second")).action, "delivered");
      assert.equal((await store.get(1n, bad.deviceId))?.failingSinceMs, undefined);
      // Every send of the service refused, the good endpoint's too: nobody is blamed.
      await renotifyOn(() => refused, () => refused);
      for (let i = 0; i < 3; i++) {
        now += 8 * DAY;
        assert.equal((await notifyOnce(`down ${i}`)).action, "dropped");
      }
      assert.deepEqual((await store.listForUser(1n)).map((e) => e.failingSinceMs), [undefined, undefined]);
    });

    it("counts no failure the notifier gave up on itself while the push service had retries left (stopping, a newer push of the chat)", async () => {
      const unavailable: SendOutcome = { ok: false, gone: false, retryable: true, status: 503, reason: "push service answered 503" };
      const since = now - 8 * DAY;
      await store.markFailing(1n, bad.deviceId, bad.address, since);
      const held: (() => void)[] = [];
      const release = () => held.splice(0).forEach((r) => r());
      await renotifyOn(() => new Promise<SendOutcome>((r) => held.push(() => r(unavailable))), undefined, { maxAttempts: 3 });
      try {
        // A newer push of the chat comes while the first is in flight: the 503 is not retried, for the newer.
        accept("first");
        mock.timers.tick(WINDOW);
        await settled(() => results.length === 1, "the good device's send of first");
        accept("second");
        mock.timers.tick(WINDOW);
        await settled(() => results.length === 2, "the good device's send of second");
        release();
        await settled(() => results.length === 3, "the bad device's send of first");
        assert.equal(results[2]!.action, "dropped");
        assert.deepEqual(await store.get(1n, bad.deviceId), { ...bad, failingSinceMs: since, failedSends: 1 }, "the superseded 503 neither removes nor restarts");
        // The newer one's 503 while stopping: no retry, since the notifier stops.
        await settled(() => notifier.pending === 1, "the bad device's send of second in flight");
        const stopping = notifier.stop();
        release();
        await settled(() => results.length === 4, "the bad device's send of second");
        await stopping;
        assert.equal(results[3]!.action, "dropped");
        assert.deepEqual(await store.get(1n, bad.deviceId), { ...bad, failingSinceMs: since, failedSends: 1 }, "the 503 cut short by the stop neither removes nor restarts");
      } finally {
        release();
      }
    });

    it("blames no endpoint of an app (APNs topic) that APNs refuses while it delivers to another app's (our settings for that app)", async () => {
      const appA = pushEndpoint({ userId: 2n, deviceId: 20n, kind: "apns", address: "a".repeat(64), apnsTopic: "chat.app.a" });
      const appB = pushEndpoint({ userId: 2n, deviceId: 21n, kind: "apns", address: "b".repeat(64), apnsTopic: "chat.app.b" });
      await store.put(appA);
      await store.put(appB);
      const disallowed: SendOutcome = { ok: false, gone: false, retryable: false, status: 400, reason: "APNs answered 400 TopicDisallowed" };
      await notifier.stop();
      let aDone = () => {};
      let aTold = new Promise<void>((r) => (aDone = r));
      notifier = new Notifier({
        queue: {} as MessageQueue,
        endpoints: store,
        providers: { apns: { kind: "apns", send: async (e) => (e.deviceId === appA.deviceId ? { ok: true } : (await aTold, disallowed)) } },
        now: () => now,
        options: { collapseWindowMs: WINDOW, maxAttempts: 1 },
        onResult: (r) => {
          results.push(r);
          if (r.endpoint.deviceId !== appA.deviceId) return;
          aDone();
          aTold = new Promise<void>((r) => (aDone = r));
        },
      });
      for (const [i, text] of ["first", "second"].entries()) {
        seq++;
        const message = { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: 0 };
        notifier.accept({ userId: 2n, senderName: "Bob", channelTitle: "", message });
        mock.timers.tick(WINDOW);
        await settled(() => results.length === 2 * (i + 1) && notifier.pending === 0, `both apps' sends of ${text}`);
        assert.equal(results.at(-1)!.endpoint.deviceId, appB.deviceId);
        assert.equal(results.at(-1)!.action, "dropped");
        now += 8 * DAY;
      }
      assert.deepEqual(await store.get(2n, appB.deviceId), appB, "kept, and not failing");
    });

    it("removes none whose failing streak a delivery ended while a failed send to it was under way", async () => {
      await store.markFailing(1n, bad.deviceId, bad.address, now - 8 * DAY);
      let release = () => {};
      const otherChat = new Promise<SendOutcome>((r) => (release = () => r(refused)));
      await renotifyOn((n) => (n.data.channelId === "501" ? otherChat : { ok: true }));
      try {
        accept("first");
        notifier.accept({ ...lastAccepted!, message: { ...lastAccepted!.message, messageId: 9001n, channelId: 501n } });
        mock.timers.tick(WINDOW);
        // Both fan-outs read the endpoint failing for 8 days; chat 500's push to it goes through.
        await settled(() => results.some((r) => r.endpoint.deviceId === bad.deviceId), "the bad device's send of chat 500");
        assert.equal((await store.get(1n, bad.deviceId))?.failingSinceMs, undefined, "the delivery ended the streak");
        release();
        await settled(() => results.length === 4 && notifier.pending === 0, "every send");
        assert.equal(results[3]!.action, "dropped");
        assert.deepEqual(await store.get(1n, bad.deviceId), { ...bad, failingSinceMs: now, failedSends: 1 }, "kept, failing since this failure");
      } finally {
        release();
      }
    });
  });

  it("reports itself unhealthy while every notification's fan-out fails (the endpoint store down), and healthy after one goes through", async () => {
    let now = 0;
    let storeDown = true;
    const endpoints = {
      listForUser: async () => {
        if (storeDown) throw new Error("endpoint store unreachable");
        return [endpoint];
      },
      removeIfAddress: async () => false,
    } as unknown as PushEndpointStore;
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n), { ok: true }) };
    await notifier.stop();
    // One try each: what counts is that every fan-out fails.
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: { web_push: provider }, now: () => now, options: { collapseWindowMs: WINDOW, maxAttempts: 1 } });
    const healthy = () => notifier.health.check().then(() => true, () => false);

    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => notifier.pending === 0, "the failed fan-out");
    now += 31_000;
    assert.equal(await healthy(), false, "a fan-out failing for longer than the stall time shows in /healthz");
    storeDown = false;
    accept("second");
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the notification once the store answers");
    assert.equal(await healthy(), true);
  });

  it("times a failing fan-out's stall on the monotonic clock: a wall clock stepped a minute forward fakes none", async () => {
    let wall = 0;
    let mono = 0;
    const endpoints = {
      listForUser: async () => {
        throw new Error("endpoint store unreachable");
      },
      removeIfAddress: async () => false,
    } as unknown as PushEndpointStore;
    await notifier.stop();
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: {}, now: () => wall, monotonicNow: () => mono, options: { collapseWindowMs: WINDOW, maxAttempts: 1 } });
    const healthy = () => notifier.health.check().then(() => true, () => false);

    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => notifier.pending === 0, "the failed fan-out");
    wall += 60_000;
    mono += 1_000;
    assert.equal(await healthy(), true, "one second of failures is no stall, whatever the wall clock says");
    mono += 31_000;
    assert.equal(await healthy(), false, "31 s of them is");
  });

  it("reads the endpoint store again, with backoff, when it is away at a window's close: the push goes once it answers; a stop ends the wait", async () => {
    const skips: SkipReason[] = [];
    let failures = 2;
    let asked = 0;
    const endpoints = {
      listForUser: async () => {
        asked++;
        if (failures-- > 0) throw new Error("endpoint store unreachable");
        return [endpoint];
      },
      removeIfAddress: async () => false,
    } as unknown as PushEndpointStore;
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n), { ok: true }) };
    await notifier.stop();
    const options = { collapseWindowMs: WINDOW, backoffBaseMs: 100, backoffMaxMs: 100 };
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: { web_push: provider }, onSkipped: (r) => skips.push(r), options });
    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => asked === 1, "the first read");
    mock.timers.tick(100);
    await settled(() => asked === 2, "the second read");
    mock.timers.tick(100);
    await settled(() => sent.length === 1 && notifier.pending === 0, "the push once the store answers");

    failures = Infinity;
    accept("second");
    mock.timers.tick(WINDOW);
    await settled(() => asked === 4, "the next window's first read");
    await notifier.stop();
    assert.deepEqual([sent.length, notifier.pending, skips], [1, 0, ["stopped"]]);
  });

  it("a message after a window closed opens a window of its own: one more notification, at the end of that window", async () => {
    accept("first");
    mock.timers.tick(500);
    accept("second");
    mock.timers.tick(WINDOW - 501);
    await drain();
    assert.equal(sent.length, 0, "nothing before the first window closes");
    mock.timers.tick(1);
    await settled(() => sent.length === 1, "the first window's notification");
    assert.deepEqual(shown(sent[0]), ["2 new messages, the latest: second", "2", String(seq)]);

    // The window closed a second ago: this message is not the old notification's, and not sent at once either.
    mock.timers.tick(1_000);
    accept("later");
    await drain();
    assert.equal(sent.length, 1, "a message after the window waits for a window of its own");
    assert.equal(notifier.pending, 1, "held in a new window, not dropped");
    mock.timers.tick(WINDOW - 1);
    await drain();
    assert.equal(sent.length, 1, "the new window lasts the whole collapse window from its first message");
    mock.timers.tick(1);
    await settled(() => sent.length === 2, "the new window's notification");
    assert.deepEqual(shown(sent[1]), ["later", "1", String(seq)], "counts only its own window's messages");
    assert.equal(sent[1]!.collapseKey, sent[0]!.collapseKey, "replaces the old one if it is still undelivered");

    // Nothing else is due: no second copy of either notification.
    mock.timers.runAll();
    await drain();
    assert.equal(sent.length, 2);
    assert.equal(notifier.pending, 0);
  });

  it("a message that arrives while the closed window's notification is still being sent opens a new window", async () => {
    let release!: () => void;
    listGate = new Promise<void>((r) => (release = r));
    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => listed === 1, "the first window's flush to be under way");
    accept("during the send");
    release();
    await settled(() => sent.length === 1, "the first window's notification");
    assert.deepEqual(shown(sent[0]), ["first", "1", String(seq - 1n)], "closed windows take no more messages");
    listGate = undefined;
    await drain();
    assert.equal(sent.length, 1);
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 2, "the new window's notification");
    assert.deepEqual(shown(sent[1]), ["during the send", "1", String(seq)]);
    mock.timers.runAll();
    await drain();
    assert.equal(sent.length, 2);
    assert.equal(notifier.pending, 0);
  });

  it("shows a reaction that came after a message of the window as the latest (a change has no seq of its own)", async () => {
    accept("hello");
    seq++;
    notifier.accept({
      userId: 1n,
      senderName: "Bob",
      channelTitle: "",
      message: { messageId: 1000n + seq, channelId: 500n, seq: 0n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: "👍", sentAtMs: 1, targetSeq: 3n, reaction: true },
    });
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the window's notification");
    assert.deepEqual([sent[0]!.body, sent[0]!.data.type, sent[0]!.data.count], ["2 new messages, the latest: Reacted 👍 to your message", "reaction", "2"]);
  });

  it("counts a message the queue delivers twice within a window once", async () => {
    accept("first");
    const again = { ...lastAccepted! };
    notifier.accept(again); // a redelivery of the same record
    accept("second");
    notifier.accept(again);
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the window's notification");
    assert.deepEqual(shown(sent[0]), ["2 new messages, the latest: second", "2", String(seq)]);
  });

  it("sends nothing for a record that comes again after its window closed (a batch published again, a redelivery), for that user only", async () => {
    accept("first");
    const again = { ...lastAccepted!, message: { ...lastAccepted!.message, text: "" } };
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the window's notification");
    notifier.accept(again); // while the notification is still being sent
    await drain();
    mock.timers.tick(WINDOW);
    await drain();
    notifier.accept(again); // after it went, a window later
    mock.timers.tick(WINDOW);
    await drain();
    assert.deepEqual(sent.map(shown), [["first", "1", String(seq)]], "no second push, with no text or any other");
    assert.equal(notifier.pending, 0, "the repeat is not held either");

    notifier.accept({ ...again, userId: 2n, message: { ...again.message, text: "first" } }); // the same message, another recipient
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 2, "the other recipient's notification");
  });

  it("sends nothing for a record that comes again within the repeat window by the monotonic clock, the wall clock stepped an hour forward meanwhile (NTP)", async () => {
    let wall = 1_767_225_600_000;
    let mono = 0;
    await notifier.stop();
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n), { ok: true }) };
    const endpoints = { listForUser: async () => [endpoint], removeIfAddress: async () => false } as unknown as PushEndpointStore;
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: { web_push: provider }, now: () => wall, monotonicNow: () => mono, options: { collapseWindowMs: WINDOW } });
    accept("first");
    const again = { ...lastAccepted! };
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the window's notification");
    wall += 3_600_000;
    mono += WINDOW;
    notifier.accept(again); // a batch published again, a minute later
    mock.timers.tick(WINDOW);
    await drain();
    assert.deepEqual(sent.map(shown), [["first", "1", String(seq)]], "no second push");
  });

  it("sends nothing for a message deleted before its record came (the emptied inbox copy a batch handled again hands on)", async () => {
    const skips: SkipReason[] = [];
    await notifier.stop();
    const endpoints = { listForUser: async () => [endpoint], removeIfAddress: async () => false } as unknown as PushEndpointStore;
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n), { ok: true }) };
    notifier = new Notifier({ queue: {} as MessageQueue, endpoints, providers: { web_push: provider }, onSkipped: (r) => skips.push(r), options: { collapseWindowMs: WINDOW } });
    accept("");
    notifier.accept({ ...lastAccepted!, message: { ...lastAccepted!.message, messageId: 9_999n, text: "gone", deleted: true } });
    mock.timers.tick(WINDOW);
    await drain();
    assert.deepEqual(sent, [], "no push with an empty text, nor of a deleted message");
    assert.equal(notifier.pending, 0);
    assert.deepEqual(skips, ["deleted", "deleted"]);
    accept("still there");
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1, "the next message's notification");
  });

  it("a device whose check fails neither holds up nor skips the user's other devices", async () => {
    const devices = [10n, 11n, 12n].map((deviceId) => ({ ...endpoint, deviceId, address: `https://push.example/${deviceId}` }));
    const to: Id[] = [];
    const errors: unknown[] = [];
    await notifier.stop();
    notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints: { listForUser: async () => devices, removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: { web_push: { kind: "web_push", send: async (e) => (to.push(e.deviceId), { ok: true }) } },
      isDeviceActive: async (_u, d) => {
        if (d === 11n) throw new Error("accounts unreachable");
        return true;
      },
      options: { collapseWindowMs: WINDOW },
      logger: { warn: (o: { err: unknown }) => errors.push(o.err) } as never,
    });
    accept("hello");
    mock.timers.tick(WINDOW);
    await settled(() => to.length === 2 && notifier.pending === 0, "the other devices' pushes");
    assert.deepEqual(to.sort(), [10n, 12n]);
    assert.equal(errors.length, 1, "the failure is logged");
  });

  it("drops a retry of a chat's notification once a newer one of that chat went to the device: the older never replaces it", async () => {
    const tries: string[] = [];
    // The first try answers 500 with a Retry-After (retry in 10 s), the rest are taken. A 500's holds
    // that retry alone; a 429's would hold the newer window's first try too.
    await renotify(async (_e, n) =>
      (tries.push(n.body), tries.length === 1 ? { ok: false, gone: false, retryable: true, retryAfterMs: 10_000, status: 500, reason: "try later" } : (sent.push(n), { ok: true })),
    );
    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1 && notifier.pending === 1, "the first try, waiting to retry");
    accept("second");
    mock.timers.tick(WINDOW);
    await settled(() => sent.length === 1 && notifier.pending === 0, "the newer window's notification, and the older one's retry given up");
    mock.timers.runAll();
    await drain();
    assert.deepEqual(sent.map((n) => n.body), ["second"], "the device shows the newest message, not the retried older one");
  });

  it("sends a chat's newer notification to a device only once its older one's send ended: taken after it, the older never replaces it", async () => {
    const started: string[] = [];
    /** The push service took each in this order: the last one taken is what the device keeps. */
    const taken: string[] = [];
    let answerFirst!: () => void;
    const firstAnswered = new Promise<void>((r) => (answerFirst = r));
    // The first send is slow (a push service that takes it seconds later); the others are quick.
    await renotify(async (_e, n) => {
      started.push(n.body);
      if (started.length === 1) await firstAnswered;
      taken.push(n.body);
      return { ok: true };
    });
    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => started.length === 1, "the first window's send, under way");
    accept("second");
    mock.timers.tick(WINDOW);
    await drain();
    answerFirst();
    await settled(() => taken.length === 2 && notifier.pending === 0, "both sends");
    assert.deepEqual(taken, ["first", "second"], "the newer notification is the last the push service took");
  });

  it("sends a chat's windows in the order they closed when the older one's endpoint read is slow: the older never goes last", async () => {
    let reads = 0;
    let answerFirstRead!: () => void;
    const firstRead = new Promise<void>((r) => (answerFirstRead = r));
    // The first window's read is slow (a store node restarting); the second's is answered at once.
    await renotify(
      async (_e, n) => (sent.push(n), { ok: true }),
      async () => {
        if (++reads === 1) await firstRead;
        return [endpoint];
      },
    );
    accept("first");
    mock.timers.tick(WINDOW);
    await settled(() => reads === 1, "the first window's read, under way");
    accept("second");
    mock.timers.tick(WINDOW);
    await drain();
    answerFirstRead();
    await settled(() => notifier.pending === 0 && sent.length > 0, "the windows' pushes");
    assert.equal(sent.at(-1)?.body, "second", "the device is left with the newest window's notification");
  });

  it("gives a batch waiting for room its turn when the last send ends and the queued pushes it held were of a batch lost meanwhile", async () => {
    let handler!: BatchHandler;
    const queue = {
      subscribe: async (_group: string, _topic: string, h: BatchHandler) => ((handler = h), { stop: async () => {} }),
    } as unknown as MessageQueue;
    const hosts = new Map<Id, PushEndpoint>([
      [1n, pushEndpoint({ userId: 1n, deviceId: 10n, address: "https://push.example/a" })],
      [2n, pushEndpoint({ userId: 2n, deviceId: 20n, address: "https://push.example/b" })],
      [3n, pushEndpoint({ userId: 3n, deviceId: 30n, address: "https://other.example/c" })],
    ]);
    const skips: SkipReason[] = [];
    const bodies: string[] = [];
    let answerFirst!: () => void;
    const firstAnswered = new Promise<void>((r) => (answerFirst = r));
    await notifier.stop();
    notifier = new Notifier({
      queue,
      endpoints: { listForUser: async (u: Id) => [hosts.get(u)!], removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: {
        web_push: {
          kind: "web_push",
          send: async (_e, n) => {
            bodies.push(n.body);
            if (bodies.length === 1) await firstAnswered;
            return { ok: true };
          },
        },
      },
      onSkipped: (r) => skips.push(r),
      // One send at a time, and room for two: the first in flight and two queued behind it fill it.
      options: { collapseWindowMs: WINDOW, concurrency: 1, maxPending: 2 },
    });
    await notifier.start();
    const request = (userId: Id, text: string): NotificationRequest => {
      seq++;
      return {
        userId,
        senderName: "Bob",
        channelTitle: "",
        message: { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now() },
      };
    };
    const lost = new AbortController();
    for (const u of [1n, 2n, 3n]) notifier.accept(request(u, `to ${u}`), lost.signal);
    mock.timers.tick(WINDOW);
    await settled(() => bodies.length === 1 && notifier.pending === 3, "one send under way, two queued behind it");
    // The consumer learns the batch's commit is lost: the next owner sends the queued two.
    lost.abort();
    const record = { topic: Topics.notifications, partition: 0, offset: 9n, key: "4", value: encodeNotificationRequested(request(4n, "later")) };
    let taken = false;
    void handler([record] as unknown as QueueRecord[], { revoked: new AbortController().signal, lost: new AbortController().signal }).then(() => (taken = true));
    await drain();
    assert.equal(taken, false, "the batch waits for room");
    hosts.set(4n, pushEndpoint({ userId: 4n, deviceId: 40n, address: "https://push.example/d" }));
    answerFirst();
    await settled(() => taken, "the batch taken once the send ended and the lost pushes were given up");
    assert.deepEqual(skips, ["reassigned", "reassigned"]);
    mock.timers.tick(WINDOW);
    await settled(() => bodies.includes("later") && notifier.pending === 0, "the batch's push");
  });

  /** The notifier of these tests, reporting what it skips, whose push service answers each try with `answer`. */
  async function notifierAnswering(answer: (tries: number) => SendOutcome, skips: SkipReason[]): Promise<PushNotification[]> {
    const tries: PushNotification[] = [];
    await notifier.stop();
    notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints: { listForUser: async () => [endpoint], get: async () => endpoint, removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: { web_push: { kind: "web_push", send: async (_e, n) => (tries.push(n), answer(tries.length)) } },
      onSkipped: (r) => skips.push(r),
      options: { collapseWindowMs: WINDOW },
    });
    return tries;
  }

  // A batch whose commit the consumer knows will not happen (its partition moved, or the group dropped
  // it) is read again by the partition's next owner, which notifies the chat: sent from here as well,
  // the push came twice.
  it("sends nothing from a batch the consumer lost uncommitted before the window closed; read here again, it is sent once", async () => {
    const skips: SkipReason[] = [];
    const tries = await notifierAnswering(() => ({ ok: true }), skips);
    const batch = new AbortController();
    accept("first", batch.signal);
    const again = lastAccepted!;
    batch.abort();
    mock.timers.tick(WINDOW);
    await drain();
    assert.deepEqual([tries.length, skips, notifier.pending], [0, ["reassigned"], 0]);
    notifier.accept(again, new AbortController().signal); // the partition came back here
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1 && notifier.pending === 0, "the notification of the batch read again");
    mock.timers.runAll();
    await drain();
    assert.equal(tries.length, 1);
  });

  it("gives up a retry whose batch the consumer lost since the first try; read here again, it is sent", async () => {
    const skips: SkipReason[] = [];
    const tries = await notifierAnswering((n) => (n === 1 ? { ok: false, gone: false, retryable: true, status: 503, reason: "unavailable" } : { ok: true }), skips);
    const batch = new AbortController();
    accept("first", batch.signal);
    const again = lastAccepted!;
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1 && notifier.pending === 1, "the first try, waiting to retry");
    batch.abort();
    mock.timers.runAll();
    await settled(() => notifier.pending === 0, "the retry to end");
    assert.deepEqual([tries.length, skips], [1, ["reassigned"]]);
    notifier.accept(again, new AbortController().signal);
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 2 && notifier.pending === 0, "the notification of the batch read again");
  });

  it("a delivered push whose batch the consumer lost afterwards is not sent again when the batch is read here again", async () => {
    const tries = await notifierAnswering(() => ({ ok: true }), []);
    const batch = new AbortController();
    accept("first", batch.signal);
    const again = lastAccepted!;
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1 && notifier.pending === 0, "the push");
    batch.abort();
    notifier.accept(again, new AbortController().signal);
    mock.timers.runAll();
    await drain();
    assert.deepEqual([tries.length, notifier.pending], [1, 0]);
  });

  it("a retry reads the device's endpoint again: no preview asked meanwhile hides the text, a mute or an unsubscription stops it", async () => {
    const retryable = { ok: false, gone: false, retryable: true, status: 503, reason: "unavailable" } as const;
    for (const change of ["hidePreview", "muted", "removed"] as const) {
      let current: PushEndpoint | undefined = endpoint;
      const tries: PushNotification[] = [];
      const skipped: SkipReason[] = [];
      await notifier.stop();
      notifier = new Notifier({
        queue: {} as MessageQueue,
        endpoints: {
          listForUser: async () => (current ? [current] : []),
          get: async () => current,
          removeIfAddress: async () => false,
        } as unknown as PushEndpointStore,
        providers: { web_push: { kind: "web_push", send: async (_e, n) => (tries.push(n), tries.length === 1 ? retryable : { ok: true }) } },
        onSkipped: (reason) => skipped.push(reason),
        options: { collapseWindowMs: WINDOW },
      });
      accept("a secret");
      mock.timers.tick(WINDOW);
      await settled(() => tries.length === 1 && notifier.pending === 1, "the first try, waiting to retry");
      if (change === "removed") current = undefined;
      else current = { ...endpoint, [change]: true };
      mock.timers.runAll();
      await settled(() => notifier.pending === 0, "the retry to end");
      if (change === "hidePreview") assert.deepEqual(tries.map((n) => n.body), ["a secret", "New message"], change);
      else assert.deepEqual([tries.length, skipped], [1, [change === "muted" ? "muted" : "no_endpoint"]], change);
    }
  });

  /**
   * A notifier whose push service takes one request at a time and holds the
   * first until released; `clock.now` is its clock, `online` what it is told
   * of the user.
   */
  async function behindSlowService(online: () => boolean) {
    const clock = { now: 0 };
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const tries: string[] = [];
    const skipped: SkipReason[] = [];
    await notifier.stop();
    notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints: { listForUser: async () => [endpoint], get: async () => endpoint, removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: { web_push: { kind: "web_push", send: async (_e, n) => (tries.push(n.body), tries.length === 1 && (await held), { ok: true }) } },
      isOnline: async () => online(),
      onSkipped: (reason) => skipped.push(reason),
      now: () => clock.now,
      options: { collapseWindowMs: WINDOW, perHostConcurrency: 1 },
    });
    const accept = (channelId: bigint, text: string) =>
      notifier.accept({ userId: 1n, senderName: "Bob", channelTitle: "", message: { messageId: 9000n + channelId, channelId, seq: 1n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: text, text, sentAtMs: 0 } });
    return { clock, release, tries, skipped, accept };
  }

  it("asks again whether a first try that waited behind a slow push service is still due: not to a user who came online meanwhile", async () => {
    let online = false;
    const { clock, release, tries, skipped, accept } = await behindSlowService(() => online);
    accept(600n, "held");
    accept(601n, "waiting");
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1 && notifier.pending === 2, "the first in flight, the second waiting for the host");
    // The user opens the app while the push service keeps the first for 6 s.
    clock.now += 6_000;
    online = true;
    release();
    await settled(() => notifier.pending === 0, "both done");
    assert.deepEqual(tries, ["held"], "the push that waited went to a user already online");
    assert.deepEqual(skipped, ["online"]);
  });

  it("sends a first try that waited and is still due, before the ones queued after it", async () => {
    const { clock, release, tries, accept } = await behindSlowService(() => false);
    for (const [channelId, text] of [[700n, "one"], [701n, "two"], [702n, "three"]] as const) accept(channelId, text);
    mock.timers.tick(WINDOW);
    await settled(() => tries.length === 1, "the first in flight");
    clock.now += 6_000;
    release();
    await settled(() => notifier.pending === 0, "all sent");
    assert.deepEqual(tries, ["one", "two", "three"]);
  });

  it("honours a Retry-After longer than backoffMaxMs", async () => {
    const at: number[] = [];
    let now = 0;
    await notifier.stop();
    notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints: { listForUser: async () => [endpoint], removeIfAddress: async () => false } as unknown as PushEndpointStore,
      providers: {
        web_push: {
          kind: "web_push",
          send: async () => (at.push(now), at.length === 1 ? { ok: false, gone: false, retryable: true, retryAfterMs: 120_000, status: 429, reason: "slow down" } : { ok: true }),
        },
      },
      options: { collapseWindowMs: WINDOW, backoffBaseMs: 1_000, backoffMaxMs: 60_000 },
    });
    accept("hello");
    mock.timers.tick(WINDOW);
    await settled(() => at.length === 1 && notifier.pending === 1, "the first try, waiting to retry");
    now = 119_999;
    mock.timers.tick(119_999);
    await drain();
    assert.equal(at.length, 1, "not retried before the push service allows");
    now = 120_000;
    mock.timers.tick(1);
    await settled(() => at.length === 2, "the retry");
  });
});
