// The Notifier on the real Kafka of scripts/engines.sh: what a stop (a deploy) leaves committed, so
// that the notifier that takes over sends every push the stopped one did not, and none it did.
import assert from "node:assert/strict";
import { engineScope } from "../../test/support/engine-scope.js";
import { engineConfig } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { topicSpecs, Topics } from "../pipeline/topics.js";
import { KafkaQueue } from "../queue/kafka.js";
import type { MessageQueue } from "../queue/port.js";
import { openDatabase, type SqliteDatabase } from "../storage/sqlite/database.js";
import { Notifier, type NotifierOptions } from "./notifier.js";
import type { PushProvider } from "./port.js";
import { decodeNotificationRequested, encodeNotificationRequested, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";

describe("Notifier on Kafka: stopping and taking over", function () {
  this.timeout(120_000);
  const scope = engineScope(engineConfig(), "ntf");
  let db: SqliteDatabase;
  let endpoints: SqlitePushEndpointStore;
  let queue: KafkaQueue;
  const notifiers: Notifier[] = [];
  /** The text of every push sent, by any notifier of the test. */
  let sent: string[];
  let seq = 0n;

  before(async () => {
    queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, namespace: scope.env.CHAT_KAFKA_NAMESPACE });
    // One partition: the records of a test come in order, in as few batches as Kafka makes of them.
    await queue.ensureTopics(topicSpecs(1));
  });
  after(async () => {
    await queue.close();
    await scope.drop();
  });
  beforeEach(async () => {
    db = openDatabase(":memory:");
    endpoints = new SqlitePushEndpointStore(db);
    sent = [];
  });
  afterEach(async () => {
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    db.close();
  });

  const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n.body), { ok: true }) };

  async function startNotifier(options: Partial<NotifierOptions>): Promise<Notifier> {
    const n = new Notifier({ queue, endpoints, providers: { web_push: provider }, options: { collapseWindowMs: 60_000, ...options } });
    notifiers.push(n);
    await n.start();
    return n;
  }

  async function stop(n: Notifier): Promise<void> {
    notifiers.splice(notifiers.indexOf(n), 1);
    await n.stop();
  }

  /** Requests for users with a device each, in one publish (one batch, as Kafka hands them on). */
  async function notify(users: Id[], text: (u: Id) => string): Promise<void> {
    const requests = users.map((userId): NotificationRequest => {
      seq++;
      const message = { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: text(userId), sentAtMs: Date.now() };
      return { userId, senderName: "Bob", channelTitle: "", message };
    });
    for (const u of users) {
      await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: `https://push.example/${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    }
    await queue.publish(Topics.notifications, requests.map((r) => ({ key: "k", value: encodeNotificationRequested(r) })));
  }

  /** A notifier taking over sends `marker`'s push: it has read everything published before it. */
  async function takeOverPast(marker: string): Promise<void> {
    await startNotifier({ collapseWindowMs: 10 });
    await notify([999n], () => marker);
    await waitFor(() => sent.includes(marker), `the next notifier to reach ${marker}`, 60_000);
  }

  it("sends what it held at a stop once: the notifier taking over does not send it again", async () => {
    const first = await startNotifier({});
    await notify([1n, 2n], (u) => `held for ${u}`);
    await waitFor(() => first.pending === 2, "both requests held in their collapse windows", 60_000);
    await stop(first);
    assert.deepEqual(sent.sort(), ["held for 1", "held for 2"], "sent while stopping");
    await takeOverPast("marker 1");
    assert.deepEqual(sent.sort(), ["held for 1", "held for 2", "marker 1"]);
  });

  it("a batch that was waiting for room at a stop: none of it sent by the stopped notifier, all of it by the one taking over", async () => {
    const first = await startNotifier({ maxPending: 2 });
    await notify([1n], (u) => `for ${u}`);
    await waitFor(() => first.pending === 1, "the first request held", 60_000);
    // With room for one more, a batch of two: it must not be taken in part and left uncommitted.
    await notify([2n, 3n], (u) => `for ${u}`);
    await waitFor(() => first.pending >= 2, "the room filled", 60_000);
    await notify([4n, 5n], (u) => `for ${u}`);
    await stop(first);
    await takeOverPast("marker 2");
    assert.deepEqual(sent.sort(), ["for 1", "for 2", "for 3", "for 4", "for 5", "marker 2"], "each push once");
  });
});

describe("Notifier on Kafka: a rebalance while a batch waits for room", function () {
  this.timeout(120_000);
  const scope = engineScope(engineConfig(), "ntfrb");
  const brokers = engineConfig().kafkaBrokers;
  const namespace = scope.env.CHAT_KAFKA_NAMESPACE;
  const db = openDatabase(":memory:");
  const endpoints = new SqlitePushEndpointStore(db);
  const queues: KafkaQueue[] = [];
  const notifiers: Notifier[] = [];
  /** Lets the held push go (a stop waits for it). */
  let release = () => {};
  after(async () => {
    release();
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    await Promise.all(queues.map((q) => q.close()));
    db.close();
    await scope.drop();
  });

  function openQueue(clientId: string, commitIntervalMs?: number): KafkaQueue {
    const q = new KafkaQueue({ brokers, namespace, clientId, commitIntervalMs });
    queues.push(q);
    return q;
  }

  it("leaves the batch to the notifier the partition went to, which sends it at once; the first never sends it", async () => {
    // Kafka names a member after its client id, and the group's round-robin assigner gives its
    // one partition to the member named first: the second notifier.
    const [first, second] = [openQueue("chat-first"), openQueue("a-chat-second")];
    await first.ensureTopics(topicSpecs(1));
    const sent: string[] = [];
    const released = new Promise<void>((r) => (release = r));
    const provider: PushProvider = {
      kind: "web_push",
      send: async (_e, n) => {
        // The first push holds the first notifier's only room until the test lets it go.
        if (n.body === "for 1") await released;
        sent.push(n.body);
        return { ok: true };
      },
    };
    const handedToFirst: string[] = [];
    const watched: MessageQueue = {
      ensureTopics: (t) => first.ensureTopics(t),
      publish: (t, r) => first.publish(t, r),
      subscribe: (g, t, handler, o) =>
        first.subscribe(g, t, (records, batch) => {
          handedToFirst.push(...records.map((r) => decodeNotificationRequested(r.value).message.text));
          return handler(records, batch);
        }, o),
      close: () => first.close(),
    };
    let seq = 0n;
    const notify = async (userId: Id) => {
      seq++;
      await endpoints.put({ userId, deviceId: 10n, kind: "web_push", address: `https://push.example/${userId}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
      const message = { messageId: 1000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${seq}`, text: `for ${userId}`, sentAtMs: Date.now() };
      await first.publish(Topics.notifications, [{ key: "k", value: encodeNotificationRequested({ userId, senderName: "Bob", channelTitle: "", message }) }]);
    };
    const start = async (q: MessageQueue) => {
      const n = new Notifier({ queue: q, endpoints, providers: { web_push: provider }, options: { maxPending: 1, collapseWindowMs: 10 } });
      notifiers.push(n);
      await n.start();
      return n;
    };

    await start(watched);
    await notify(1n);
    await waitFor(() => handedToFirst.includes("for 1"), "the first request taken", 60_000);
    await notify(3n);
    await waitFor(() => handedToFirst.includes("for 3"), "the next batch handed on, to wait for room", 60_000);
    // Joining starts a rebalance, which the group ends once the first has rejoined.
    const joining = start(second);
    await waitFor(() => sent.includes("for 3"), "the second notifier to send the waiting batch while the first's room is still full", 30_000);
    await joining;
    release();
    await waitFor(() => sent.includes("for 1"), "the held push", 30_000);
    await notify(4n);
    await waitFor(() => sent.includes("for 4"), "a later push", 30_000);
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    assert.deepEqual(sent.sort(), ["for 1", "for 3", "for 4"], "each push once");
  });

  // The first notifier's commit had not gone out when the partition moved: the second reads the
  // request again and sends it. The first knew (its offsets dropped at the rejoin), and sent it too.
  it("sends nothing it holds from a batch whose commit the rebalance dropped: the notifier the partition went to sends it, once", async () => {
    // A commit interval that outlasts the test: only a rebalance ends the first's hold on its offsets.
    const [first, second] = [openQueue("chat-first-uncommitted", 60_000), openQueue("a-chat-second-uncommitted")];
    await first.ensureTopics(topicSpecs(1));
    const sent: string[] = [];
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n.body), { ok: true }) };
    const start = async (q: MessageQueue, collapseWindowMs: number) => {
      const n = new Notifier({ queue: q, endpoints, providers: { web_push: provider }, options: { collapseWindowMs } });
      notifiers.push(n);
      await n.start();
      return n;
    };
    const firstNotifier = await start(first, 60_000);
    await endpoints.put({ userId: 1n, deviceId: 10n, kind: "web_push", address: "https://push.example/1", p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    const message = { messageId: 5000n, channelId: 500n, seq: 1n, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: "c-uncommitted", text: "uncommitted", sentAtMs: Date.now() };
    await first.publish(Topics.notifications, [{ key: "k", value: encodeNotificationRequested({ userId: 1n, senderName: "Bob", channelTitle: "", message }) }]);
    await waitFor(() => firstNotifier.pending === 1, "the request held in the first's collapse window", 60_000);
    await start(second, 10);
    await waitFor(() => sent.includes("uncommitted"), "the second notifier to send the request read again", 30_000);
    // A deploy: the first sends what it holds, and closes its collapse windows to do so.
    notifiers.splice(notifiers.indexOf(firstNotifier), 1);
    await firstNotifier.stop();
    assert.deepEqual(sent, ["uncommitted"], "each push once");
  });
});
