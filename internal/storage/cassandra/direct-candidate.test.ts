import assert from "node:assert/strict";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { waitFor } from "../../../test/support/wait.js";
import { QueueSubmitter } from "../../chatserver/submitter.js";
import type { IdGenerator } from "../../ids/snowflake.js";
import type { ChannelRecord, Id, NewMessage } from "../../model/types.js";
import { decodeInboxAppend, encodeSubmitted } from "../../pipeline/records.js";
import { Sequencer } from "../../pipeline/sequencer.js";
import { ConsumerGroups, Topics } from "../../pipeline/topics.js";
import type { MessageQueue, OutgoingRecord, QueueRecord } from "../../queue/port.js";
import { SqliteQueue } from "../../queue/sqlite.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraChannelStore } from "./index.js";
import type { Db } from "./session.js";

/**
 * A direct chat's candidate is written (channel and pair) before its pair is
 * claimed, and the loser of two opens at once deletes its own after. A send
 * read in between once left the chat server (and the Sequencer) keeping that
 * pair for good: every later send to the candidate's id was accepted into a
 * channel that no longer exists, and stored there.
 */
describe("cassandra: a direct chat's candidate that lost its creation race", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const direct = (createdBy: Id): ChannelRecord => ({ channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy });

  /**
   * Opens the pair's chat with `candidate` while the peer's open with `rival`
   * wins the claim first; `inWindow` runs while the candidate is written and
   * not yet deleted (it is checked to be readable then).
   */
  async function loseRace(a: Id, b: Id, candidate: ChannelRecord, rival: ChannelRecord, inWindow: () => Promise<void>) {
    const st = storage();
    const racing = Object.create(st.db) as Db;
    racing.lwt = async (...args: Parameters<Db["lwt"]>) => {
      await st.channels.getOrCreateDirect(rival, b, a);
      assert.equal((await st.channels.getChannel(candidate.channelId))?.kind, "direct", "the candidate is readable in its window");
      await inWindow();
      return st.db.lwt(...args);
    };
    const got = await new CassandraChannelStore(racing, st.messages).getOrCreateDirect(candidate, a, b);
    assert.equal(got.channelId, rival.channelId);
    assert.equal(await st.channels.getChannel(candidate.channelId), undefined, "the loser deleted its candidate");
  }

  it("the chat server refuses a send to it, in its window and after, and keeps no pair for it", async () => {
    const st = storage();
    const [a, b] = [uniqueId(), uniqueId()];
    const published: OutgoingRecord[] = [];
    const submitter = new QueueSubmitter({
      queue: { publish: async (_t: string, rs: OutgoingRecord[]) => void published.push(...rs) } as unknown as MessageQueue,
      channels: st.channels,
      log: st.messages,
      ids: { next: () => uniqueId() } as unknown as IdGenerator,
    });
    const alice = { userId: a, deviceId: 1n };
    const send = (channelId: Id, clientMsgId: string) => submitter.submit(alice, { channelId, clientMsgId, text: "hi" }).then(() => "accepted", (e: { code?: string }) => e.code);
    const [candidate, rival] = [direct(a), direct(b)];
    let during: string | undefined;
    await loseRace(a, b, candidate, rival, async () => {
      during = await send(candidate.channelId, "in-window");
    });
    assert.equal(during, "not_a_member", "a send while the candidate is still there");
    assert.equal(await send(candidate.channelId, "after"), "not_a_member", "a send once it is gone");
    assert.equal(published.length, 0);
    // The pair's own chat takes sends, and its pair is kept from then on.
    assert.equal(await send(rival.channelId, "real"), "accepted");
    assert.equal(published.length, 1);
  });

  it("the Sequencer stores no record for it, sent in its window or after, and sequences the pair's own chat", async () => {
    const st = storage();
    const [a, b] = [uniqueId(), uniqueId()];
    const queue = new SqliteQueue({ path: ":memory:" });
    await queue.ensureTopics([{ topic: Topics.submitted, partitions: 1 }, { topic: Topics.inbox, partitions: 1 }]);
    const copies: QueueRecord[] = [];
    const sub = await queue.subscribe("test-inbox-reader", Topics.inbox, async (rs) => void copies.push(...rs));
    const sequencer = new Sequencer({ queue, log: st.messages, channels: st.channels });
    await sequencer.start();
    const message = (channelId: Id): NewMessage => ({
      messageId: uniqueId(), channelId, senderUserId: a, senderDeviceId: 1n, clientMsgId: `c${uniqueId()}`, text: "hi", sentAtMs: Date.now(),
    });
    const sequence = async (...ms: NewMessage[]) => {
      await queue.publish(Topics.submitted, ms.map((m) => ({ key: String(m.channelId), value: encodeSubmitted(m) })));
      await waitFor(async () => (await queue.consumerLag(ConsumerGroups.sequencer, Topics.submitted)) === 0, "the records sequenced");
    };
    try {
      const [candidate, rival] = [direct(a), direct(b)];
      await loseRace(a, b, candidate, rival, () => sequence(message(candidate.channelId)));
      const real = message(rival.channelId);
      await sequence(message(candidate.channelId), real);
      await waitFor(() => copies.length >= 2, "the pair's message copied to both inboxes");
      assert.equal((await st.messages.latest([candidate.channelId])).get(candidate.channelId), undefined, "nothing stored under the candidate");
      assert.equal((await st.messages.latest([rival.channelId])).get(rival.channelId)?.messageId, real.messageId);
      const told = copies.map((r) => decodeInboxAppend(r.value));
      assert.deepEqual(told.map((c) => c.message.messageId), [real.messageId, real.messageId]);
      assert.deepEqual(told.map((c) => c.userId).sort(), [a, b].sort());
    } finally {
      await sequencer.stop();
      await sub.stop();
      await queue.close();
    }
  });
});
