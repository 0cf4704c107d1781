import assert from "node:assert/strict";
import { countingDb, scratchCassandra } from "../../test/support/cassandra.js";
import type { ChannelStore } from "../channels/store.js";
import type { MessageLog } from "../messages/log.js";
import type { Id } from "../model/types.js";
import { uniqueId } from "../storage/contract/helpers.js";
import { CassandraAccountStore, CassandraChannelStore, CassandraInbox, CassandraMessageLog } from "../storage/cassandra/index.js";
import type { ApiDeps } from "./deps.js";
import { TestApi } from "./testkit.js";

const CHATS = 150;
const T = Date.UTC(2026, 4, 1);
/** The same chats for each store: ids, peers, messages and read positions. */
const chats = Array.from({ length: CHATS }, (_, i) => ({ channelId: uniqueId(), peer: uniqueId(), direct: i % 6 === 0, i }));

/** Chats of `me` with an unread count of 1 (their own message in between), 2, or 0 (theirs last); some read in part. */
async function seed(me: Id, channels: ChannelStore, log: MessageLog): Promise<void> {
  const one = async ({ channelId, peer, direct, i }: (typeof chats)[number]) => {
    const meta = { channelId, title: direct ? "" : `g${i}`, createdAtMs: T, createdBy: me };
    if (direct) await channels.getOrCreateDirect({ ...meta, kind: "direct" }, me, peer);
    else await channels.createGroup({ ...meta, kind: "group" }, [
      { channelId, userId: me, role: "owner", joinedAtMs: T, readSeq: 0n },
      { channelId, userId: peer, role: "member", joinedAtMs: T + 1, readSeq: 0n },
    ]);
    const senders = [[peer, me, peer], [peer, peer], [peer, me]][i % 3]!;
    for (const [k, sender] of senders.entries()) {
      // Activity in an order of its own, not the order made.
      const sentAtMs = T + ((i * 37) % CHATS) * 1000 + k;
      await log.append({ messageId: uniqueId(), channelId, senderUserId: sender, senderDeviceId: 1n, clientMsgId: `c${k}`, text: `${i}.${k}`, sentAtMs });
    }
    if (i % 5 === 0) await channels.advanceReadSeq(channelId, me, 1n);
  };
  for (let at = 0; at < chats.length; at += 25) await Promise.all(chats.slice(at, at + 25).map(one));
}

/** Every page of the caller's list, as the fields a client shows, with the caller's own id left out. */
async function listed(api: TestApi, limit: number) {
  const u = await api.signUp("alice");
  await seed(u.userId, api.deps.channels, api.deps.log);
  const pages = [];
  let pageToken = "";
  do {
    const page = await u.c.channels.listChannels({ limit, pageToken });
    pages.push(page.channels.map((c) => [c.channelId, c.kind, c.title, c.memberCount, c.peerUserId, c.lastSeq, c.lastMessage?.text, c.unreadCount, c.readSeq]));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return { u, pages };
}

describe("api: the reads of ListChannels", function () {
  this.timeout(120_000);
  const cassandra = scratchCassandra();

  it("on Cassandra reads a user's chats by the hundred and a page's by the page, in lists the same as on SQLite", async () => {
    const s = cassandra();
    const { db, count } = countingDb(s.db);
    const log = new CassandraMessageLog(db, s.schema.bucketSize);
    const overrides: Partial<ApiDeps> = { accounts: new CassandraAccountStore(db), channels: new CassandraChannelStore(db, log), log, inbox: new CassandraInbox(db, s.schema.bucketSize) };
    const [onCassandra, onSqlite] = await Promise.all([TestApi.start(overrides), TestApi.start()]);
    try {
      const [c, q] = [await listed(onCassandra, 7), await listed(onSqlite, 7)];
      assert.equal(c.pages.flat().length, CHATS);
      assert.deepStrictEqual(c.pages, q.pages);
      assert.deepEqual(new Set(c.pages.flat().map((row) => row[7])), new Set([0n, 1n, 2n]), "unread counts of every kind");

      count.reads = 0;
      await c.u.c.channels.listChannels({ limit: 10 });
      // 150 chats, a page of 10: memberships (3), mutes and places (2), when each was last active (2), the page's
      // newest messages, channels, counts and pairs (4), and the caller's own newest message per unread chat (at most 10).
      // About 190 before: a read per chat, and several per chat of the page.
      assert.ok(count.reads <= 21, `${count.reads} requests`);
    } finally {
      await Promise.all([onCassandra.close(), onSqlite.close()]);
    }
  });
});
