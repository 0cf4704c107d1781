import assert from "node:assert/strict";
import { countingDb, scratchCassandra } from "../../../test/support/cassandra.js";
import type { ChannelRecord, Id, MemberRecord } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraChannelStore } from "./index.js";

describe("cassandra: counting the groups of the users of an add", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  const group = async (channels: CassandraChannelStore, users: Id[]): Promise<ChannelRecord> => {
    const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1, createdBy: users[0]! };
    const member = (userId: Id, i: number): MemberRecord =>
      ({ channelId: c.channelId, userId, role: i === 0 ? "owner" : "member", joinedAtMs: 1 + i, readSeq: 0n });
    await channels.createGroup(c, users.map(member));
    return c;
  };

  it("reads once for all the users of an add while each is in fewer channels than the limit", async () => {
    const { db, count } = countingDb(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const users = Array.from({ length: 40 }, () => uniqueId());
    await group(channels, users);
    count.reads = 0;
    assert.deepEqual(await channels.inGroupsAtLeast(users, 2), []);
    // One read per user before: an add of 99 users cost 99 reads before its write and 99 after.
    assert.equal(count.reads, 1);
  });

  it("counts a user near the limit with a read per hundred of their channels, not two per channel", async () => {
    const { db, count } = countingDb(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const [near, other] = [uniqueId(), uniqueId()];
    for (let i = 0; i < 30; i++) await group(channels, [near]);
    const left = await group(channels, [other, near]);
    await channels.removeMember(left.channelId, near);
    count.reads = 0;
    assert.deepEqual(await channels.inGroupsAtLeast([near, other], 30), [near]);
    assert.equal(count.reads, 2);
    assert.deepEqual(await channels.inGroupsAtLeast([near, other], 31), []);
  });
});

describe("cassandra: reading a user's memberships", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  it("reads a user's member rows a hundred channels at a time, not one channel per read", async () => {
    const { db, count } = countingDb(storage().db);
    const channels = new CassandraChannelStore(db, storage().messages);
    const user = uniqueId();
    const joined: Id[] = [];
    for (let i = 0; i < 120; i++) {
      const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1, createdBy: user };
      await channels.createGroup(c, [{ channelId: c.channelId, userId: user, role: "owner", joinedAtMs: 1 + i, readSeq: 0n }]);
      joined.push(c.channelId);
    }
    count.reads = 0;
    const found = await channels.listMemberships(user);
    assert.deepEqual(found.map((m) => m.channelId), joined);
    // The index, then 100 + 20 channels: 121 reads before.
    assert.equal(count.reads, 3);
  });
});
