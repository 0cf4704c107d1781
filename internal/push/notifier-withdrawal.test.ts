import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PushReceiver, type TestSubscription } from "../../test/support/push-receiver.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id, StoredMessage } from "../model/types.js";
import { topicSpecs, Topics } from "../pipeline/topics.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { Notifier, type NotifierOptions, type SendResult, type SkipReason } from "./notifier.js";
import { encodeNotificationRequested, encodeNotificationWithdrawal, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

/** A delete, or a reaction taken back, while the push it withdraws collapses or waits to retry (a loopback Web Push service). */
describe("Notifier withdrawals (deletes, reactions taken back)", function () {
  this.timeout(30_000);
  let dir: string;
  let db: SqliteDatabase;
  let queue: SqliteQueue;
  let endpoints: SqlitePushEndpointStore;
  let receiver: PushReceiver;
  let provider: WebPushProvider;
  let notifier: Notifier | undefined;
  let results: SendResult[];
  let skips: SkipReason[];
  let seq = 0n;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "notifier-withdrawal-"));
    db = openDatabase(":memory:");
    endpoints = new SqlitePushEndpointStore(db);
    queue = new SqliteQueue({ path: join(dir, "queue.db") });
    await queue.ensureTopics(topicSpecs(2));
    receiver = await new PushReceiver().start();
    provider = new WebPushProvider({ vapid: loadOrCreateVapidKeys(join(dir, "vapid.json")), subject: "mailto:ops@chat.test", allowLocalEndpoints: true });
    results = [];
    skips = [];
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

  async function startNotifier(options: Partial<NotifierOptions>): Promise<Notifier> {
    notifier = new Notifier({
      queue,
      endpoints,
      providers: { web_push: provider },
      onSkipped: (reason) => skips.push(reason),
      onResult: (r) => results.push(r),
      options: { backoffBaseMs: 50, backoffMaxMs: 200, timeoutMs: 2_000, ...options },
    });
    await notifier.start();
    return notifier;
  }

  async function register(userId: Id, deviceId: Id, sub: TestSubscription): Promise<void> {
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
    });
  }

  const publish = (userId: Id, value: Uint8Array) => queue.publish(Topics.notifications, [{ key: String(userId), value }]);

  /** A message of `channelId` to `userId`'s notifier; its seq. */
  async function notify(userId: Id, channelId: Id, text: string, extra: Partial<StoredMessage> = {}): Promise<bigint> {
    seq++;
    const req: NotificationRequest = {
      userId,
      senderName: "Bob",
      channelTitle: "",
      message: { messageId: 1000n + seq, channelId, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now(), ...extra },
    };
    await publish(userId, encodeNotificationRequested(req));
    return seq;
  }

  /** A change of `channelId` withdrawing what names `targetSeq`: a delete unless `extra` says otherwise. */
  async function withdraw(userId: Id, channelId: Id, targetSeq: bigint, extra: Partial<StoredMessage> = { deleted: true }): Promise<void> {
    seq++;
    const withdrawal: StoredMessage = { messageId: 1000n + seq, channelId, seq: 0n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: "", sentAtMs: Date.now(), targetSeq, ...extra };
    await publish(userId, encodeNotificationWithdrawal({ userId, withdrawal }));
  }

  it("pushes nothing for a message deleted, or a reaction taken back, within its collapse window, and the rest of a window without the deleted one", async () => {
    const sub = receiver.subscribe();
    await register(1n, 10n, sub);
    // Long enough that each record below is read well before its window closes.
    await startNotifier({ collapseWindowMs: 1_500 });
    const oops = await notify(1n, 500n, "oops, wrong chat");
    await withdraw(1n, 500n, oops);
    await notify(1n, 600n, "first");
    const second = await notify(1n, 600n, "second, which I take back");
    await withdraw(1n, 600n, second);
    await notify(1n, 700n, "👍", { seq: 0n, targetSeq: 12n, reaction: true });
    await withdraw(1n, 700n, 12n, { reaction: true });
    // Nothing at all for a chat the user has nothing pending in, nor anyone else's.
    await withdraw(1n, 800n, 1n);
    await withdraw(2n, 600n, 1n);
    await waitFor(() => receiver.deliveredTo(sub).length >= 1, "the push of what is left");
    await notifier!.idle();
    const pushes = receiver.pushesTo(sub);
    assert.deepEqual(
      pushes.map((p) => [p.topic, p.json!.body, p.json!.count, p.json!.seq]),
      [["c600", "first", "1", String(second - 1n)]],
      "one push, of the message left, counted alone",
    );
    assert.deepEqual(skips, ["deleted", "deleted"], "the two windows left with nothing");

    // A record of the deleted message that comes again (a batch published again) is not pushed either.
    await publish(
      1n,
      encodeNotificationRequested({
        userId: 1n,
        senderName: "Bob",
        channelTitle: "",
        message: { messageId: 1000n + oops, channelId: 500n, seq: oops, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${oops}`, text: "oops, wrong chat", sentAtMs: Date.now() },
      }),
    );
    await notify(1n, 900n, "marker");
    await waitFor(() => receiver.deliveredTo(sub).length === 2, "the marker's push");
    await notifier!.idle();
    assert.deepEqual(receiver.pushesTo(sub).map((p) => p.json!.body), ["first", "marker"]);
  });

  it("gives up a retry waiting for its backoff when its message is deleted, at the delete", async () => {
    const sub = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // A retry far off: given up at the delete, not when its backoff ends.
    await startNotifier({ collapseWindowMs: 50, backoffBaseMs: 20_000, backoffMaxMs: 20_000 });
    const only = await notify(1n, 500n, "only");
    await waitFor(() => results.length === 1, "the first try");
    assert.equal(results[0]!.action, "retry");
    await withdraw(1n, 500n, only);
    await waitFor(() => notifier!.pending === 0, "the retry given up");
    assert.deepEqual(skips, ["deleted"]);
    assert.equal(receiver.pushesTo(sub).length, 1, "only the failed first try");
  });

  it("retries a collapsed push with what a delete left of it: the count and the preview of the rest", async () => {
    const sub = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // The retry 1.5 to 3 s after the first try: the delete, read at once, comes before it.
    await startNotifier({ collapseWindowMs: 300, backoffBaseMs: 3_000, backoffMaxMs: 3_000 });
    await notify(1n, 500n, "kept");
    const later = await notify(1n, 500n, "deleted later");
    await waitFor(() => results.length === 1, "the first try");
    assert.equal(results[0]!.action, "retry");
    assert.equal(receiver.pushesTo(sub)[0]!.json!.body, "2 new messages, the latest: deleted later");
    await withdraw(1n, 500n, later);
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the retry");
    await notifier!.idle();
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count, json.seq], ["kept", "1", String(later - 1n)]);
    assert.equal(receiver.pushesTo(sub).length, 2);
  });
});
