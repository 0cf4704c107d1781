import assert from "node:assert/strict";
import { countingDb, scratchCassandra } from "../../../test/support/cassandra.js";
import type { ChannelRecord, Id, NewMessage, StoredMessage, UserRecord } from "../../model/types.js";
import { coMembersOf } from "../../presence/audience.js";
import { uniqueId, uniqueName } from "../contract/helpers.js";
import { CassandraAccountStore, CassandraChannelStore, CassandraMessageLog } from "./index.js";

/** What a list of a user's chats reads, by the request: a user in hundreds of chats cost hundreds of reads a call. */
describe("cassandra: the reads of a list of chats", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const BUCKET = 1000;
  const T = 1_767_225_600_000;

  const msg = (channelId: Id, i: number): NewMessage => ({
    messageId: uniqueId(), channelId, senderUserId: uniqueId(), senderDeviceId: 1n, clientMsgId: `c${i}`, text: `hi ${i}`, sentAtMs: T + i,
  });

  it("reads the newest messages of many channels a hundred at a time (texts ten at a time), schema 1's heads only for those missing", async () => {
    const log = new CassandraMessageLog(storage().db, BUCKET);
    const withMessages = Array.from({ length: 120 }, () => uniqueId());
    await Promise.all(withMessages.map((id, i) => log.append(msg(id, i))));
    // A head from before schema 2 (in channel_heads alone), and a channel with none.
    const old = uniqueId();
    const oldHead: StoredMessage = { ...msg(old, 500), seq: 7n };
    await storage().client.execute(
      `UPDATE ${storage().db.t("channel_heads")} SET last_seq = ?, message_id = ?, sender_user_id = ?, sender_device_id = ?,
         client_msg_id = ?, text = ?, sent_at_ms = ? WHERE channel_id = ?`,
      [oldHead.seq, oldHead.messageId, oldHead.senderUserId, oldHead.senderDeviceId, oldHead.clientMsgId, oldHead.text, BigInt(oldHead.sentAtMs), old],
      { prepare: true });
    const empty = uniqueId();
    const ids = [old, ...withMessages, empty];

    const { db, count } = countingDb(storage().db);
    const counted = new CassandraMessageLog(db, BUCKET);
    const sentAt = await counted.latestSentAt(ids);
    // 121 channels: 2 reads of channel_newest, 1 of channel_heads for the 2 it lacks (244 before).
    assert.equal(count.reads, 3);
    count.reads = 0;
    const latest = await counted.latest(ids);
    // 13 reads of ten newest rows, 1 of channel_heads.
    assert.equal(count.reads, 14);

    // What one channel at a time tells.
    const one = new CassandraMessageLog(storage().db, BUCKET);
    const each = new Map((await Promise.all(ids.map(async (id) => [id, (await one.latest([id])).get(id)] as const))).filter(([, m]) => m));
    assert.equal(each.size, 121);
    assert.deepStrictEqual(latest, each);
    assert.deepStrictEqual(sentAt, new Map([...each].map(([id, m]) => [id, m!.sentAtMs])));
    assert.deepStrictEqual(latest.get(old), oldHead);
  });

  it("reads a page's channels, member counts and direct pairs a hundred channels at a time", async () => {
    const channels = new CassandraChannelStore(storage().db, storage().messages);
    const ids: Id[] = [];
    for (let i = 0; i < 120; i++) {
      const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: `g${i}`, createdAtMs: T, createdBy: uniqueId() };
      await channels.createGroup(c, [
        { channelId: c.channelId, userId: c.createdBy, role: "owner", joinedAtMs: T, readSeq: 0n },
        { channelId: c.channelId, userId: uniqueId(), role: "member", joinedAtMs: T + 1, readSeq: 0n },
      ]);
      ids.push(c.channelId);
    }
    const { db, count } = countingDb(storage().db);
    const counted = new CassandraChannelStore(db, storage().messages);
    assert.equal((await counted.getChannels(ids)).size, 120);
    assert.equal(count.reads, 2);
    assert.deepStrictEqual(new Set((await counted.memberCounts(ids)).values()), new Set([2]));
    assert.equal(count.reads, 4);
    assert.ok([...(await counted.listMembersOf(ids)).values()].every((m) => m.length === 2));
    assert.equal(count.reads, 6);
  });
});

describe("cassandra: the reads of a user's co-members (presence audiences, GetPresence)", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  it("reads the counts and rosters of a user's chats a hundred chats at a time, leaving out those past maxMembers", async () => {
    const channels = new CassandraChannelStore(storage().db, storage().messages);
    const me = uniqueId();
    const others: Id[] = [];
    const group = async (members: Id[]) => {
      const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1, createdBy: me };
      await channels.createGroup(c, [me, ...members].map((userId, i) => ({ channelId: c.channelId, userId, role: i === 0 ? "owner" : "member", joinedAtMs: 1 + i, readSeq: 0n })));
    };
    for (let i = 0; i < 119; i++) {
      others.push(uniqueId());
      await group([others[i]!]);
    }
    const crowd = [uniqueId(), uniqueId()];
    await group(crowd);

    const { db, count } = countingDb(storage().db);
    const counted = new CassandraChannelStore(db, storage().messages);
    assert.deepStrictEqual(await coMembersOf(counted, me, 2), new Set(others));
    // The index and 2 reads of member rows, then 2 of counts and 2 of rosters (242 before).
    assert.equal(count.reads, 7);
    assert.deepStrictEqual(await coMembersOf(counted, me), new Set([...others, ...crowd]));
  });
});

describe("cassandra: the reads of many users' profiles and presence settings (ListFriends, GetUsers, GetPresence)", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  it("reads them a hundred users at a time, in the order asked", async () => {
    const accounts = new CassandraAccountStore(storage().db);
    const users: UserRecord[] = [];
    for (let i = 0; i < 120; i++) {
      const u: UserRecord = { userId: uniqueId(), username: uniqueName("u_"), displayName: `u${i}`, passwordHash: "h", createdAtMs: 1 };
      await accounts.createUser(u);
      if (i % 2 === 0) await accounts.setPresenceVisibility(u.userId, "friends");
      users.push(u);
    }
    const ids = [uniqueId(), ...users.map((u) => u.userId).reverse()];

    const { db, count } = countingDb(storage().db);
    const counted = new CassandraAccountStore(db);
    assert.deepStrictEqual(await counted.getUsers(ids), [...users].reverse());
    // A read per user before.
    assert.equal(count.reads, 2);
    const settings = await counted.getPresenceVisibility(ids);
    assert.equal(count.reads, 4);
    assert.deepStrictEqual(settings, new Map(users.filter((_, i) => i % 2 === 0).map((u) => [u.userId, "friends"])));
  });
});
