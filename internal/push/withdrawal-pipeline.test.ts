import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PushReceiver, type TestSubscription } from "../../test/support/push-receiver.js";
import { waitFor } from "../../test/support/wait.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Inbox } from "../messages/inbox.js";
import type { Id, InboxEntry, StoredMessage } from "../model/types.js";
import { InboxWriter } from "../pipeline/inbox-writer.js";
import { encodeInboxAppends } from "../pipeline/records.js";
import { topicSpecs, Topics } from "../pipeline/topics.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { Notifier, type SkipReason } from "./notifier.js";
import { publishOfflineNotifications } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

/** Inboxes in memory, as the InboxWriter appends to them. */
function memoryInbox(): Inbox {
  const entries = new Map<Id, InboxEntry[]>();
  return {
    async append(userId, m) {
      const list = entries.get(userId) ?? [];
      entries.set(userId, list);
      const stored = list.find((e) => e.message.messageId === m.messageId);
      if (stored) return { entry: stored, duplicate: true };
      const entry = { inboxSeq: BigInt(list.length + 1), message: m };
      list.push(entry);
      return { entry, duplicate: false };
    },
    async readAfter(userId, afterSeq, limit) {
      return (entries.get(userId) ?? []).filter((e) => e.inboxSeq > afterSeq).slice(0, limit);
    },
    async head(userId) {
      return BigInt(entries.get(userId)?.length ?? 0);
    },
    async getCursor() {
      return 0n;
    },
    async advanceCursor() {},
    async dropCursor() {},
    async emptyTexts(userId, ids) {
      for (const e of entries.get(userId) ?? []) if (ids.includes(e.message.messageId)) e.message = { ...e.message, text: "" };
    },
  };
}

/** The distributed mode's path, on the embedded queue: InboxAppend → InboxWriter → NotificationRequested → Notifier → a loopback push service. */
describe("withdrawals through the InboxWriter and the notifier (the pipeline's adapters)", function () {
  this.timeout(30_000);
  let dir: string;
  let db: SqliteDatabase;
  let queue: SqliteQueue;
  let receiver: PushReceiver;
  let provider: WebPushProvider;
  let writer: InboxWriter;
  let notifier: Notifier;
  let endpoints: SqlitePushEndpointStore;
  let skips: SkipReason[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "withdrawal-pipeline-"));
    db = openDatabase(":memory:");
    endpoints = new SqlitePushEndpointStore(db);
    queue = new SqliteQueue({ path: join(dir, "queue.db") });
    await queue.ensureTopics(topicSpecs(2));
    receiver = await new PushReceiver().start();
    provider = new WebPushProvider({ vapid: loadOrCreateVapidKeys(join(dir, "vapid.json")), subject: "mailto:ops@chat.test", allowLocalEndpoints: true });
    skips = [];
    const accounts = { getUser: async (id: Id) => ({ id, username: `u${id}`, displayName: `User ${id}` }) } as unknown as AccountStore;
    const channels = { getChannel: async (id: Id) => ({ id, kind: "group", title: "Team" }) } as unknown as ChannelStore;
    // Nobody online: every member is notified.
    const sessions: SessionDirectory = {
      async pushToUsers() {},
      async closeDevice() {},
      async onlineUsers() {
        return new Set();
      },
    };
    writer = new InboxWriter({ queue, inbox: memoryInbox(), sessions, onOffline: publishOfflineNotifications({ queue, accounts, channels }) });
    // Long enough that every record below is read well before its window closes.
    notifier = new Notifier({ queue, endpoints, providers: { web_push: provider }, onSkipped: (r) => skips.push(r), options: { collapseWindowMs: 1_500 } });
    await writer.start();
    await notifier.start();
  });
  afterEach(async () => {
    await writer.stop();
    await notifier.stop();
    await provider.close();
    await receiver.stop();
    await queue.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function register(userId: Id, sub: TestSubscription): Promise<void> {
    await endpoints.put({ userId, deviceId: 10n * userId, kind: "web_push", address: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth, apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: Date.now() });
  }

  let id = 900n;
  /** A stored message or change of channel 7 by `sender`. */
  const stored = (sender: Id, text: string, more: Partial<StoredMessage> = {}): StoredMessage => {
    id++;
    return { messageId: id, channelId: 7n, seq: 0n, senderUserId: sender, senderDeviceId: 10n * sender, clientMsgId: `c${id}`, text, sentAtMs: Date.now(), ...more };
  };
  /** The Sequencer's InboxAppends of `m` for members 1, 2 and 3. */
  const append = (m: StoredMessage, emptied: Id[] = [], notify?: Id) => {
    const members = [1n, 2n, 3n];
    const values = encodeInboxAppends(members, m, emptied, notify);
    return queue.publish(Topics.inbox, members.map((u, i) => ({ key: String(u), value: values[i]! })));
  };

  it("pushes neither a message deleted nor a reaction taken back while their pushes collapse, and the rest of each window", async () => {
    const two = receiver.subscribe();
    const three = receiver.subscribe();
    await register(2n, two);
    await register(3n, three);
    const old = stored(2n, "an older message of user 2's", { seq: 1n });
    const wrong = stored(1n, "wrong chat, sorry", { seq: 2n });
    const kept = stored(1n, "standup at 10", { seq: 3n });
    await append(wrong);
    await append(kept);
    // Deleted by its sender; user 3 reacts to user 2's message and takes it back (both marked for user 2).
    await append(stored(1n, "", { targetSeq: 2n, deleted: true }), [wrong.messageId]);
    await append(stored(3n, "👍", { targetSeq: old.seq, reaction: true }), [], 2n);
    await append(stored(3n, "", { targetSeq: old.seq, reaction: true }), [], 2n);
    await waitFor(() => receiver.deliveredTo(two).length === 1 && receiver.deliveredTo(three).length === 1, "each user's push of what is left");
    await notifier.idle();
    const shown = (sub: TestSubscription) => receiver.pushesTo(sub).map((p) => [p.json!.type, p.json!.body, p.json!.count, p.json!.seq]);
    assert.deepEqual(shown(two), [["message", "standup at 10", "1", "3"]], "no reaction, nothing deleted");
    assert.deepEqual(shown(three), [["message", "standup at 10", "1", "3"]]);
    assert.deepEqual(skips, [], "each window kept a message: none dropped whole");
  });
});
