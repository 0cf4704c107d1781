import assert from "node:assert/strict";
import { Registry } from "prom-client";
import type { NewMessage } from "../model/types.js";
import { metricIn } from "../../test/support/metrics.js";
import { waitFor } from "../../test/support/wait.js";
import { SqliteQueue } from "../queue/sqlite.js";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import { pipelineMetrics } from "./metrics.js";
import { decodeInboxAppend, encodeSubmitted } from "./records.js";
import { Sequencer } from "./sequencer.js";
import { Topics } from "./topics.js";

const GROUP = 10n;
const [ALICE, BOB] = [1n, 2n];

let nextId = 7_100_000_000_000_000n;
const message = (over: Partial<NewMessage> = {}): NewMessage => {
  const messageId = nextId++;
  return { messageId, channelId: GROUP, senderUserId: ALICE, senderDeviceId: 11n, clientMsgId: `c${messageId}`, text: "hello", sentAtMs: Date.now(), ...over };
};

describe("Sequencer: chat_messages_sequenced_total for changes handed again", function () {
  this.timeout(60_000);
  let storage: SqliteStorage;
  beforeEach(async () => {
    storage = openSqliteStorage(":memory:");
    await storage.channels.createGroup({ channelId: GROUP, kind: "group", title: "g", createdAtMs: 1, createdBy: ALICE }, [
      { channelId: GROUP, userId: ALICE, role: "owner", joinedAtMs: 1, readSeq: 0n },
      { channelId: GROUP, userId: BOB, role: "member", joinedAtMs: 1, readSeq: 0n },
    ]);
  });
  afterEach(() => storage.close());

  // A batch retried after its publish to the inbox topic failed hands every change again: its fan-out is
  // done again, as a message's is, but it was applied (and counted) the first time.
  it("counts an edit, a reaction and a delete handed again (a retried batch) once each, as a message", async () => {
    const registry = new Registry();
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.submitted, partitions: 1 }, { topic: Topics.inbox, partitions: 1 }]);
    const published: bigint[] = [];
    const sub = await queue.subscribe("test-inbox-reader", Topics.inbox, async (rs) => void published.push(...rs.map((r) => decodeInboxAppend(r.value).message.messageId)));
    const sequencer = new Sequencer({ queue, log: storage.messages, channels: storage.channels, metrics: pipelineMetrics(registry) });
    await sequencer.start();
    const submit = (m: NewMessage) => queue.publish(Topics.submitted, [{ key: String(GROUP), value: encodeSubmitted(m) }]);
    const fannedOut = (m: NewMessage, times: number) =>
      waitFor(() => published.filter((id) => id === m.messageId).length === 2 * times, `${m.clientMsgId} fanned out ${times} times`);
    try {
      const first = message();
      await submit(first);
      await fannedOut(first, 1);
      const changes = [
        message({ targetSeq: 1n, text: "edited" }),
        message({ targetSeq: 1n, text: "👍", reaction: true, senderUserId: BOB, senderDeviceId: 21n }),
        message({ targetSeq: 1n, text: "", deleted: true }),
      ];
      for (const c of changes) {
        await submit(c);
        await fannedOut(c, 1);
        await submit(c);
        await fannedOut(c, 2);
      }
      assert.equal(metricIn(await registry.metrics(), "chat_messages_sequenced_total"), 4, "a message and three changes");
    } finally {
      await sequencer.stop();
      await sub.stop();
      await queue.close();
    }
  });
});
