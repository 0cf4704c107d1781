// The Notifier on the real Kafka of scripts/engines.sh: a partition that moves to another notifier
// (one joining the group: a rolling deploy, a scale-up) while the first holds a committed request
// in its collapse window. The first alone can send it (its record is committed), and a delete of
// the message, coming after the move, reaches the other one, which holds nothing to take out.
import assert from "node:assert/strict";
import { engineScope } from "../../test/support/engine-scope.js";
import { engineConfig } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { ConsumerGroups, topicSpecs, Topics } from "../pipeline/topics.js";
import { KafkaQueue } from "../queue/kafka.js";
import { openDatabase } from "../storage/sqlite/database.js";
import { Notifier } from "./notifier.js";
import type { PushProvider } from "./port.js";
import { encodeNotificationChange, encodeNotificationRequested } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";

describe("Notifier on Kafka: a held push whose partition moves to another notifier", function () {
  this.timeout(120_000);
  const scope = engineScope(engineConfig(), "ntfmv");
  const brokers = engineConfig().kafkaBrokers;
  const namespace = scope.env.CHAT_KAFKA_NAMESPACE;
  const db = openDatabase(":memory:");
  const endpoints = new SqlitePushEndpointStore(db);
  const queues: KafkaQueue[] = [];
  const notifiers: Notifier[] = [];
  after(async () => {
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    await Promise.all(queues.map((q) => q.close()));
    db.close();
    await scope.drop();
  });

  it("sends it as the partition moves, not when its window closes, after a delete only the notifier the partition went to reads", async () => {
    // Kafka names a member after its client id, and the group's round-robin assigner gives the one
    // partition to the member named first: the second notifier.
    const [first, second] = ["chat-first-moved", "a-chat-second-moved"].map((clientId) => {
      const q = new KafkaQueue({ brokers, namespace, clientId });
      queues.push(q);
      return q;
    }) as [KafkaQueue, KafkaQueue];
    await first.ensureTopics(topicSpecs(1));
    const sent: string[] = [];
    const provider: PushProvider = { kind: "web_push", send: async (_e, n) => (sent.push(n.body), { ok: true }) };
    const start = async (q: KafkaQueue, collapseWindowMs: number) => {
      const n = new Notifier({ queue: q, endpoints, providers: { web_push: provider }, options: { collapseWindowMs } });
      notifiers.push(n);
      await n.start();
      return n;
    };
    const register = (userId: Id) =>
      endpoints.put({ userId, deviceId: 10n, kind: "web_push", address: `https://push.example/${userId}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    const message = (seq: bigint, text: string) => ({ messageId: 7000n + seq, channelId: 500n, seq, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c-moved-${seq}`, text, sentAtMs: Date.now() });
    await register(1n);
    await register(999n);

    // A window far longer than the test: only the move may end it.
    const firstNotifier = await start(first, 100_000);
    await first.publish(Topics.notifications, [{ key: "1", value: encodeNotificationRequested({ userId: 1n, senderName: "Bob", channelTitle: "", message: message(1n, "sent by mistake") }) }]);
    await waitFor(() => firstNotifier.pending === 1, "the request held in the first's collapse window", 60_000);
    // Committed: the notifier the partition goes to does not read it again.
    await waitFor(async () => (await first.consumerLag(ConsumerGroups.notifier, Topics.notifications)) === 0, "the request committed", 30_000);

    await start(second, 10);
    // Held on, it went out when its window closed, after a delete that only the second could read.
    await waitFor(() => sent.includes("sent by mistake"), "the first to send what it held as the partition moved", 30_000);
    const deleted = { ...message(2n, ""), seq: 0n, targetSeq: 1n, deleted: true };
    await first.publish(Topics.notifications, [
      { key: "1", value: encodeNotificationChange({ userId: 1n, withdrawal: deleted }) },
      { key: "999", value: encodeNotificationRequested({ userId: 999n, senderName: "Bob", channelTitle: "", message: message(3n, "marker") }) },
    ]);
    await waitFor(() => sent.includes("marker"), "the second notifier to read past the delete", 60_000);
    assert.equal(firstNotifier.pending, 0, "the first holds nothing of a partition it lost");
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    assert.deepEqual(sent, ["sent by mistake", "marker"], "each push once");
  });
});
