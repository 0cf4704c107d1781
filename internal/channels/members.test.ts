import assert from "node:assert/strict";
import { openDatabase, SqliteChannelStore, type SqliteDatabase } from "../storage/sqlite/index.js";
import type { ChannelRecord, Id, MemberRecord } from "../model/types.js";
import { ChannelMembers } from "./members.js";
import type { ChannelStore } from "./store.js";

/** A real store that counts the reads the message path makes. */
function counted(store: ChannelStore) {
  const reads = { listMembers: 0, getChannel: 0, getMember: 0 };
  const wrapped: ChannelStore = Object.create(store);
  wrapped.listMembers = (id) => (reads.listMembers++, store.listMembers(id));
  wrapped.getChannel = (id) => (reads.getChannel++, store.getChannel(id));
  wrapped.getMember = (id, u) => (reads.getMember++, store.getMember(id, u));
  const total = () => reads.listMembers + reads.getChannel + reads.getMember;
  return { wrapped, reads, total };
}

describe("ChannelMembers", () => {
  let db: SqliteDatabase;
  let store: SqliteChannelStore;
  let nextId = 1000n;
  const id = () => nextId++;
  const channel = (kind: "direct" | "group", by: Id): ChannelRecord => ({
    channelId: id(), kind, title: kind === "group" ? "g" : "", createdAtMs: 1, createdBy: by,
  });
  const member = (channelId: Id, userId: Id): MemberRecord => ({ channelId, userId, role: "member", joinedAtMs: 1, readSeq: 0n });

  beforeEach(() => {
    db = openDatabase(":memory:");
    store = new SqliteChannelStore(db);
  });
  afterEach(() => db.close());

  it("reads a direct channel's pair once and answers from memory after", async () => {
    const [a, b] = [id(), id()];
    const c = await store.getOrCreateDirect(channel("direct", a), a, b);
    const { wrapped, total } = counted(store);
    const members = new ChannelMembers(wrapped);
    assert.deepStrictEqual([...(await members.memberIds(c.channelId))].sort(), [a, b].sort());
    const afterFirst = total();
    for (let i = 0; i < 5; i++) {
      assert.equal((await members.memberIds(c.channelId)).length, 2);
      assert.equal(await members.isMember(c.channelId, a), true);
      assert.equal(await members.isMember(c.channelId, id()), false);
    }
    assert.equal(total(), afterFirst);
  });

  it("keeps a direct channel's pair only once the pair's claim names it, and takes no one in before", async () => {
    const [a, b] = [id(), id()];
    const c = await store.getOrCreateDirect(channel("direct", a), a, b);
    // As Cassandra reads a candidate before its claim lands, or one that lost the race to another channel.
    let claim: Id | undefined = id();
    const { wrapped, reads } = counted(store);
    wrapped.directChannelOf = async () => claim;
    const members = new ChannelMembers(wrapped);
    assert.deepStrictEqual(await members.memberIds(c.channelId), []);
    assert.equal(await members.isMember(c.channelId, a), false);
    assert.equal(await members.admits(c.channelId), false);
    assert.equal(members.knownMemberIds(c.channelId), undefined);
    claim = undefined;
    assert.equal(await members.isMember(c.channelId, a), false, "a claim still under way");
    claim = c.channelId;
    assert.equal(await members.isMember(c.channelId, a), true);
    const afterSettled = reads.listMembers + reads.getChannel;
    assert.equal(members.admits(c.channelId), true, "answered at once");
    assert.deepStrictEqual([...members.knownMemberIds(c.channelId)!].sort(), [a, b].sort());
    assert.equal(reads.listMembers + reads.getChannel, afterSettled);
  });

  it("admits a group by its kind alone, and no channel that does not exist", async () => {
    const owner = id();
    const g = channel("group", owner);
    await store.createGroup(g, [{ ...member(g.channelId, owner), role: "owner" }]);
    const { wrapped, reads } = counted(store);
    const members = new ChannelMembers(wrapped);
    assert.equal(await members.admits(g.channelId), true);
    assert.equal(members.admits(g.channelId), true, "answered at once");
    assert.deepStrictEqual([reads.getChannel, reads.listMembers], [1, 0]);
    assert.equal(await members.admits(id()), false);
  });

  it("reads a group's roster on every message, so joins and leaves show at once", async () => {
    const [owner, x, y] = [id(), id(), id()];
    const g = channel("group", owner);
    await store.createGroup(g, [{ ...member(g.channelId, owner), role: "owner" }, member(g.channelId, x)]);
    const { wrapped, reads } = counted(store);
    const members = new ChannelMembers(wrapped);
    assert.deepStrictEqual(await members.memberIds(g.channelId), [owner, x]);
    await store.addMembers(g.channelId, [member(g.channelId, y)], 100);
    assert.deepStrictEqual(await members.memberIds(g.channelId), [owner, x, y]);
    assert.equal(await members.isMember(g.channelId, x), true);
    await store.removeMember(g.channelId, x);
    assert.equal(await members.isMember(g.channelId, x), false);
    assert.deepStrictEqual(await members.memberIds(g.channelId), [owner, y]);
    // The kind is asked once; after that only the roster or the one member row.
    assert.equal(reads.getChannel, 1);
    assert.equal(reads.getMember, 2);
  });

  it("keeps asking about a channel it could not find", async () => {
    const { wrapped, reads } = counted(store);
    const members = new ChannelMembers(wrapped);
    const missing = id();
    assert.deepStrictEqual(await members.memberIds(missing), []);
    assert.equal(await members.isMember(missing, id()), false);
    assert.equal(reads.getChannel, 2);
  });

  it("remembers at most its capacity, dropping the least recently used", async () => {
    const pairs = await Promise.all([0, 1, 2].map(async () => {
      const [a, b] = [id(), id()];
      return (await store.getOrCreateDirect(channel("direct", a), a, b)).channelId;
    }));
    const { wrapped, reads } = counted(store);
    const members = new ChannelMembers(wrapped, 2);
    await members.memberIds(pairs[0]!);
    await members.memberIds(pairs[1]!);
    await members.memberIds(pairs[0]!); // now the most recent
    await members.memberIds(pairs[2]!); // evicts pairs[1]
    const before = reads.listMembers;
    await members.memberIds(pairs[0]!);
    assert.equal(reads.listMembers, before);
    await members.memberIds(pairs[1]!);
    assert.equal(reads.listMembers, before + 1);
  });
});
