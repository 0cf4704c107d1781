import assert from "node:assert/strict";
import { countingByTable, scratchCassandra } from "../../../test/support/cassandra.js";
import { waitFor } from "../../../test/support/wait.js";
import type { NewMessage } from "../../model/types.js";
import { encodeSubmitted } from "../../pipeline/records.js";
import { Sequencer } from "../../pipeline/sequencer.js";
import { ConsumerGroups, Topics } from "../../pipeline/topics.js";
import { SqliteQueue } from "../../queue/sqlite.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraMessageLog } from "./index.js";

/**
 * What the Sequencer reads of the log for an edit or a reaction. It read the
 * target to tell a change that changes nothing, then the log read it again
 * to apply it: two reads of the same row per change. The log now judges the
 * change on the read it applies it on (amendIfChanges).
 */
describe("cassandra: the reads of a change through the Sequencer", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const [ALICE, BOB] = [uniqueId(), uniqueId()];

  async function sequencerOnCountedLog() {
    const { db, count } = countingByTable(storage().db);
    const channelId = uniqueId();
    await storage().channels.createGroup({ channelId, kind: "group", title: "g", createdAtMs: 1, createdBy: ALICE }, [
      { channelId, userId: ALICE, role: "owner", joinedAtMs: 1, readSeq: 0n },
      { channelId, userId: BOB, role: "member", joinedAtMs: 1, readSeq: 0n },
    ]);
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.submitted, partitions: 1 }, { topic: Topics.inbox, partitions: 1 }]);
    let published = 0;
    const sub = await queue.subscribe("test-inbox-reader", Topics.inbox, async (rs) => void (published += rs.length));
    const sequencer = new Sequencer({ queue, log: new CassandraMessageLog(db, 1000), channels: storage().channels });
    await sequencer.start();
    let n = 0;
    const message = (over: Partial<NewMessage> = {}): NewMessage => ({
      messageId: uniqueId(), channelId, senderUserId: ALICE, senderDeviceId: 1n, clientMsgId: `c${n++}`, text: "hi", sentAtMs: Date.now(), ...over,
    });
    return {
      count,
      message,
      /** Sequences the record and waits until it is done; answers how many inbox copies it made. */
      async sequence(m: NewMessage): Promise<number> {
        const before = published;
        count.clear();
        await queue.publish(Topics.submitted, [{ key: String(channelId), value: encodeSubmitted(m) }]);
        await waitFor(async () => (await queue.consumerLag(ConsumerGroups.sequencer, Topics.submitted)) === 0, "the record sequenced");
        await waitFor(async () => (await queue.consumerLag("test-inbox-reader", Topics.inbox)) === 0, "its copies read");
        return published - before;
      },
      async stop() {
        await sequencer.stop();
        await sub.stop();
        await queue.close();
      },
    };
  }

  it("reads an edit's and a reaction's target once, with the changes that change nothing told from that read", async () => {
    const p = await sequencerOnCountedLog();
    try {
      assert.equal(await p.sequence(p.message({ text: "hi" })), 2);
      const reads = () => Object.fromEntries([...p.count].filter(([k]) => k.startsWith("SELECT")));
      // The target, the channel's head (is it the newest?) and the change's send key, side by side.
      const oneOfEach = { "SELECT messages": 1, "SELECT channel_newest": 1, "SELECT change_dedup": 1 };
      assert.equal(await p.sequence(p.message({ text: "hi!", targetSeq: 1n })), 2);
      assert.deepStrictEqual(reads(), oneOfEach, "an edit");
      assert.equal(await p.sequence(p.message({ senderUserId: BOB, text: "👍", targetSeq: 1n, reaction: true })), 2);
      assert.deepStrictEqual(reads(), oneOfEach, "a reaction");
      // Those that change nothing go nowhere, told from the same one read; the edit writes nothing.
      assert.equal(await p.sequence(p.message({ text: "hi!", targetSeq: 1n })), 0);
      assert.deepStrictEqual(Object.fromEntries(p.count), oneOfEach, "an edit to the same text");
      assert.equal(await p.sequence(p.message({ senderUserId: BOB, text: "👍", targetSeq: 1n, reaction: true })), 0);
      assert.deepStrictEqual(reads(), oneOfEach, "the same reaction again");
    } finally {
      await p.stop();
    }
  });
});
