// A Notifier on the embedded queue and store, pushing to a loopback Web Push
// service, for the tests of what reaches a push still held (collapsing or
// waiting to retry). Call inside a mocha `describe`: it adds the hooks.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PushReceiver, type TestSubscription } from "../../test/support/push-receiver.js";
import type { Id, StoredMessage } from "../model/types.js";
import { topicSpecs, Topics } from "../pipeline/topics.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { Notifier, type NotifierOptions, type SendResult, type SkipReason } from "./notifier.js";
import { encodeNotificationRequested } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

export interface HeldPushHarness {
  receiver: PushReceiver;
  notifier: Notifier | undefined;
  /** Every send's outcome and every skip, in order, since the test began. */
  results: SendResult[];
  skips: SkipReason[];
  /** Until when each `${userId}:${channelId}` is muted (channelMutedUntil). */
  mutes: Map<string, number>;
  startNotifier(options: Partial<NotifierOptions>): Promise<Notifier>;
  register(userId: Id, deviceId: Id, sub: TestSubscription, hidePreview?: boolean): Promise<void>;
  /** A record on the notifications topic, keyed by the user as the pipeline keys it. */
  publish(userId: Id, value: Uint8Array): Promise<void>;
  /** A message of `channelId` to `userId`'s notifier; its seq. */
  notify(userId: Id, channelId: Id, text: string, extra?: Partial<StoredMessage>, mentioned?: boolean): Promise<bigint>;
  /** A change (edit, delete, reaction taken back) of what `targetSeq` names, with the next seq's ids. */
  change(channelId: Id, targetSeq: bigint, extra: Partial<StoredMessage>): StoredMessage;
}

export function heldPushHarness(name: string): HeldPushHarness {
  let dir: string;
  let db: SqliteDatabase;
  let queue: SqliteQueue;
  let endpoints: SqlitePushEndpointStore;
  let provider: WebPushProvider;
  let seq = 0n;
  const h: HeldPushHarness = {
    receiver: undefined as unknown as PushReceiver,
    notifier: undefined,
    results: [],
    skips: [],
    mutes: new Map(),
    async startNotifier(options) {
      h.notifier = new Notifier({
        queue,
        endpoints,
        providers: { web_push: provider },
        onSkipped: (reason) => h.skips.push(reason),
        onResult: (r) => h.results.push(r),
        channelMutedUntil: async (userId, channelId) => h.mutes.get(`${userId}:${channelId}`),
        options: { backoffBaseMs: 50, backoffMaxMs: 200, timeoutMs: 2_000, ...options },
      });
      await h.notifier.start();
      return h.notifier;
    },
    async register(userId, deviceId, sub, hidePreview = false) {
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
    },
    publish: (userId, value) => queue.publish(Topics.notifications, [{ key: String(userId), value }]),
    async notify(userId, channelId, text, extra = {}, mentioned = false) {
      seq++;
      const message = { messageId: 1000n + seq, channelId, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text, sentAtMs: Date.now(), ...extra };
      await h.publish(userId, encodeNotificationRequested({ userId, senderName: "Bob", channelTitle: "", message, mentioned }));
      return seq;
    },
    change(channelId, targetSeq, extra) {
      seq++;
      return { messageId: 1000n + seq, channelId, seq: 0n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: "", sentAtMs: Date.now(), targetSeq, ...extra };
    },
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), `${name}-`));
    db = openDatabase(":memory:");
    endpoints = new SqlitePushEndpointStore(db);
    queue = new SqliteQueue({ path: join(dir, "queue.db") });
    await queue.ensureTopics(topicSpecs(2));
    h.receiver = await new PushReceiver().start();
    provider = new WebPushProvider({ vapid: loadOrCreateVapidKeys(join(dir, "vapid.json")), subject: "mailto:ops@chat.test", allowLocalEndpoints: true });
    h.results = [];
    h.skips = [];
    h.mutes = new Map();
  });
  afterEach(async () => {
    await h.notifier?.stop();
    h.notifier = undefined;
    await provider.close();
    await h.receiver.stop();
    await queue.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return h;
}
