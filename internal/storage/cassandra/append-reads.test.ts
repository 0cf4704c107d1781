import assert from "node:assert/strict";
import { countingByTable, scratchCassandra } from "../../../test/support/cassandra.js";
import type { Id, StoredMessage } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraInbox, CassandraMessageLog } from "./index.js";

/**
 * What an inbox writer's batch reads: a group message is appended to a
 * hundred members' inboxes at once, and each append reads its dedup row and
 * its head. One request per member for each made a group message cost 200
 * reads on top of its writes.
 */
describe("cassandra: the reads of the inbox appends of one batch", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const T = 1_767_225_600_000;
  const msg = (channelId: Id, seq: bigint): StoredMessage => ({
    messageId: uniqueId(), channelId, seq, senderUserId: uniqueId(), senderDeviceId: 1n, clientMsgId: `c${seq}`, text: `hi ${seq}`, sentAtMs: T,
  });

  it("reads the heads of a sequencer batch's channels a hundred channels per IN read", async () => {
    const { db, count } = countingByTable(storage().db);
    const log = new CassandraMessageLog(db, 1000);
    const channels = Array.from({ length: 150 }, () => uniqueId());
    const send = (channelId: Id, i: number) => ({
      messageId: uniqueId(), channelId, senderUserId: 5n, senderDeviceId: 1n, clientMsgId: `s${i}`, text: `hi ${i}`, sentAtMs: T,
    });
    await Promise.all(channels.map((c) => log.append(send(c, 1))));
    count.clear();
    const stored = await Promise.all(channels.map((c) => log.append(send(c, 2))));
    // 150 channels: 2 head reads (was 150); the dedup rows are still read one send at a time.
    assert.equal(count.get("SELECT channel_newest"), 2);
    assert.equal(count.get("SELECT message_dedup_by_device"), 150);
    assert.deepStrictEqual(stored.map((s) => [s.message.seq, s.duplicate]), channels.map(() => [2n, false]));
  });

  it("reads the members' dedup rows and heads a hundred members per IN read, and still finds each repeat", async () => {
    const { db, count } = countingByTable(storage().db);
    const inbox = new CassandraInbox(db, 1000);
    const members = Array.from({ length: 150 }, () => uniqueId());
    const channelId = uniqueId();
    const first = msg(channelId, 1n);
    await Promise.all(members.map((u) => inbox.append(u, first)));
    // One member's inbox moved on elsewhere (another writer): its head is read ahead of the cache.
    const ahead = members[7]!;
    const other = new CassandraInbox(storage().db, 1000);
    const elsewhere = msg(uniqueId(), 1n);
    await other.append(ahead, first);
    await other.append(ahead, elsewhere);

    count.clear();
    const second = msg(channelId, 2n);
    const appended = await Promise.all(members.map((u) => inbox.append(u, second)));
    assert.deepStrictEqual(
      Object.fromEntries(count),
      // 150 members: 2 reads of each (was 150 of each); the member found ahead reads its dedup row again.
      { "SELECT inbox_dedup": 3, "SELECT inbox_newest": 2, "INSERT inbox_newest": 150 },
    );
    assert.deepStrictEqual(
      appended.map((a) => [a.entry.inboxSeq, a.duplicate]),
      members.map((u) => [u === ahead ? 3n : 2n, false]),
    );
    // Appended again (a retried batch): every member's copy is found where it is.
    const again = await Promise.all(members.map((u) => inbox.append(u, second)));
    assert.deepStrictEqual(
      again.map((a) => [a.entry.inboxSeq, a.duplicate]),
      members.map((u) => [u === ahead ? 3n : 2n, true]),
    );
    assert.deepStrictEqual((await inbox.readAfter(ahead, 0n, 10)).map((e) => e.message.messageId), [first.messageId, elsewhere.messageId, second.messageId]);
  });

  it("reads the dedup rows of two messages' members in one turn one IN read per message, and tells the repeat from the new one", async () => {
    const { db, count } = countingByTable(storage().db);
    const inbox = new CassandraInbox(db, 1000);
    const again = Array.from({ length: 40 }, () => uniqueId());
    const fresh = Array.from({ length: 40 }, () => uniqueId());
    const repeated = msg(uniqueId(), 1n);
    const added = msg(uniqueId(), 1n);
    // Every member's head in the writer's cache: their appends read their dedup rows in the same turn.
    const before = msg(uniqueId(), 1n);
    await Promise.all([...again.map((u) => inbox.append(u, repeated)), ...fresh.map((u) => inbox.append(u, before))]);

    count.clear();
    const appended = await Promise.all([...again.map((u) => inbox.append(u, repeated)), ...fresh.map((u) => inbox.append(u, added))]);
    assert.equal(count.get("SELECT inbox_dedup"), 2);
    assert.deepStrictEqual(
      appended.map((a) => [a.entry.message.messageId, a.entry.inboxSeq, a.duplicate]),
      [...again.map(() => [repeated.messageId, 1n, true]), ...fresh.map(() => [added.messageId, 2n, false])],
    );
  });
});
