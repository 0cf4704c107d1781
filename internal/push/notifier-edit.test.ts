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
import { encodeNotificationEdit, encodeNotificationRequested, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

/** An edit while the push of its message collapses or waits to retry (a loopback Web Push service). */
describe("Notifier edits of messages whose push is still held", function () {
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
    dir = mkdtempSync(join(tmpdir(), "notifier-edit-"));
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

  async function register(userId: Id, deviceId: Id, sub: TestSubscription, hidePreview = false): Promise<void> {
    await endpoints.put({
      userId,
      deviceId,
      kind: "web_push",
      address: sub.endpoint,
      p256dh: sub.p256dh,
      auth: sub.auth,
      apnsTopic: "",
      hidePreview,
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

  /** An edit of `targetSeq` in `channelId` to `text`, told to `userId`'s notifier. */
  async function edit(userId: Id, channelId: Id, targetSeq: bigint, text: string): Promise<Uint8Array> {
    seq++;
    const change: StoredMessage = { messageId: 1000n + seq, channelId, seq: 0n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now(), targetSeq };
    const record = encodeNotificationEdit({ userId, edit: change });
    await publish(userId, record);
    return record;
  }

  it("pushes the edited text of a message edited within its collapse window, cut as any preview, and none to a no-preview device", async () => {
    const sub = receiver.subscribe();
    const hidden = receiver.subscribe();
    await register(1n, 10n, sub);
    await register(1n, 11n, hidden, true);
    // Long enough that each record below is read well before its window closes.
    await startNotifier({ collapseWindowMs: 1_500 });
    const typo = await notify(1n, 500n, "teh secret plan");
    const first = await edit(1n, 500n, typo, "the secret plan");
    await edit(1n, 500n, typo, "the secret plan!");
    // The first edit again (a batch published again): the newer stays.
    await publish(1n, first);
    // A flag across the preview's end: cut before it, not inside.
    const long = await notify(1n, 600n, "short");
    await edit(1n, 600n, long, `${"a".repeat(118)}\u{1F1EB}\u{1F1F7} and more`);
    // Nothing for a chat the user has nothing pending in, nor for anyone else's.
    await edit(1n, 700n, 1n, "edited");
    await edit(2n, 500n, typo, "not user 1's");
    await waitFor(() => receiver.deliveredTo(sub).length === 2 && receiver.deliveredTo(hidden).length === 2, "the pushes of both chats");
    await notifier!.idle();
    const bodies = (s: TestSubscription) => receiver.deliveredTo(s).map((p) => `${p.topic}: ${p.json!.body}`).sort();
    assert.deepEqual(bodies(sub), ["c500: the secret plan!", `c600: ${"a".repeat(118)}…`]);
    assert.deepEqual(bodies(hidden), ["c500: New message", "c600: New message"], "no preview, edited or not");
  });

  it("retries a push with the text of an edit that came while it waited for its backoff", async () => {
    const sub = receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // The retry 1.5 to 3 s after the first try: the edit, read at once, comes before it.
    await startNotifier({ collapseWindowMs: 300, backoffBaseMs: 3_000, backoffMaxMs: 3_000 });
    await notify(1n, 500n, "kept");
    const later = await notify(1n, 500n, "see you at 5");
    await waitFor(() => results.length === 1, "the first try");
    assert.equal(results[0]!.action, "retry");
    assert.equal(receiver.pushesTo(sub)[0]!.json!.body, "2 new messages, the latest: see you at 5");
    await edit(1n, 500n, later, "see you at 6");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the retry");
    await notifier!.idle();
    const json = receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count, json.seq], ["2 new messages, the latest: see you at 6", "2", String(later)]);
    assert.equal(receiver.pushesTo(sub).length, 2);
  });
});
