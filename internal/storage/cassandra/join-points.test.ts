import assert from "node:assert/strict";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import type { ChannelRecord, Id, MemberRecord } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraChannelStore } from "./index.js";
import type { Db } from "./session.js";

/** A Db whose requests to Cassandra (single statements and batches alike) are counted. */
function countingRequests(db: Db) {
  const count = { requests: 0 };
  const counted = <F extends (...a: never[]) => unknown>(f: F) =>
    ((...a: Parameters<F>) => {
      count.requests++;
      return f.apply(db.client, a);
    }) as unknown as F;
  const client = Object.create(db.client, {
    execute: { value: counted(db.client.execute) },
    batch: { value: counted(db.client.batch) },
  }) as Db["client"];
  return { db: Object.create(db, { client: { value: client } }) as Db, count };
}

describe("cassandra: moving the join points of an add's joiners", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  const group = async (channels: CassandraChannelStore, joiners: number, joinedSeq?: (i: number) => bigint | undefined) => {
    const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1, createdBy: uniqueId() };
    const owner: MemberRecord = { channelId: c.channelId, userId: c.createdBy, role: "owner", joinedAtMs: 1, readSeq: 0n };
    const users: Id[] = Array.from({ length: joiners }, () => uniqueId());
    const members = users.map((userId, i): MemberRecord => {
      const seq = joinedSeq?.(i);
      return { channelId: c.channelId, userId, role: "member", joinedAtMs: 2 + i, readSeq: 0n, ...(seq === undefined ? {} : { joinedSeq: seq }) };
    });
    await channels.createGroup(c, [owner, ...members]);
    return { c, owner, users };
  };
  const joinPoints = async (channels: CassandraChannelStore, channelId: Id) =>
    new Map((await channels.listMembers(channelId)).map((m) => [m.userId, m.joinedSeq]));

  it("moves 100 joiners in one request, not one Paxos round each", async () => {
    const { db, count } = countingRequests(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const { c, owner, users } = await group(channels, 100);
    count.requests = 0;
    await channels.markJoined(c.channelId, users, 7n);
    // One lightweight transaction per joiner before: 100 requests, 100 rounds.
    assert.equal(count.requests, 1);
    const points = await joinPoints(channels, c.channelId);
    for (const u of users) assert.equal(points.get(u), 7n);
    assert.equal(points.get(owner.userId), undefined);
  });

  it("with one of 100 removed meanwhile and one already past the note, moves the rest and writes neither", async () => {
    const { db, count } = countingRequests(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const { c, users } = await group(channels, 100, (i) => (i === 70 ? 9n : undefined));
    const removed = users[50]!;
    await channels.removeMember(c.channelId, removed);
    count.requests = 0;
    await channels.markJoined(c.channelId, users, 7n);
    // The refused batch, the read of who is still behind, the batch of those.
    assert.equal(count.requests, 3);
    assert.equal(await channels.getMember(c.channelId, removed), undefined);
    const points = await joinPoints(channels, c.channelId);
    assert.equal(points.has(removed), false);
    assert.equal(points.get(users[70]!), 9n);
    for (const u of users) if (u !== removed && u !== users[70]) assert.equal(points.get(u), 7n, `joiner ${u}`);
    assert.equal(points.size, 100);
  });

  it("moves nothing back when a batch is done again, and more joiners than one batch all move", async () => {
    const { db, count } = countingRequests(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const { c, users } = await group(channels, 150);
    await channels.markJoined(c.channelId, users, 7n);
    count.requests = 0;
    // The Sequencer's batch done again after a restart, and an older note stored late.
    await channels.markJoined(c.channelId, users, 7n);
    await channels.markJoined(c.channelId, users, 5n);
    // Per batch of 100: refused, then the read that finds nobody behind; no joiner one by one.
    assert.equal(count.requests, 8);
    const points = await joinPoints(channels, c.channelId);
    for (const u of users) assert.equal(points.get(u), 7n);
  });
});
