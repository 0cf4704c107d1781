import assert from "node:assert/strict";
import { ChannelNoteKind } from "../../gen/es/chat/v1/types_pb.js";
import { signUp, type ApiClients, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { startRole, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** Messages sent at once just before the add: in the cluster they are acked once queued, and sequenced after. */
const BURST = 40;

/**
 * The chat list of one added to a group while messages sent just before the
 * add are still on their way (in the cluster: queued, not yet sequenced),
 * as chatd and the cluster must both show it: what came before their add,
 * the note of it included, is not unread; what came after it is.
 */
async function addedWhileMessagesInFlight(url: string): Promise<void> {
  const [owner, b, late] = await Promise.all(["o", "b", "l"].map((p) => signUp(url, `j${p}`)));
  const api = (u: TestUser | undefined): ApiClients => u!.api;
  const channelId = (await api(owner).channels.createGroup({ title: "joins", memberUserIds: [b!.userId] })).channel!.channelId;
  await Promise.all([...Array(BURST).keys()].map((i) => api(b).messages.sendMessage({ channelId, clientMsgId: `before-${i}`, text: `before ${i}` })));
  await api(owner).channels.addMembers({ channelId, userIds: [late!.userId] });
  const listed = async () => (await api(late).channels.listChannels({})).channels.find((ch) => ch.channelId === channelId);
  // Everything sent so far, and the note, is in the history.
  const settled = await waitFor(async () => {
    const ch = await listed();
    // In the cluster the note's writer moves the join point a moment after it stored the note.
    return ch && ch.lastSeq === BigInt(BURST + 1) && ch.readSeq === ch.lastSeq ? ch : undefined;
  }, "the burst and the note in the history, the join point at the note", 30_000, 50);
  assert.equal(settled.lastMessage?.note?.kind, ChannelNoteKind.MEMBERS_ADDED);
  // What came before their add is not theirs to catch up on, nor the note telling them they were added.
  assert.deepEqual([settled.unreadCount, settled.readSeq], [0n, BigInt(BURST + 1)]);
  const described = (await api(late).channels.describeChannel({ channelId })).channel!;
  assert.deepEqual([described.unreadCount, described.readSeq], [0n, BigInt(BURST + 1)]);
  // What is said after it is.
  await api(b).messages.sendMessage({ channelId, clientMsgId: "after", text: "welcome" });
  const after = await waitFor(async () => {
    const ch = await listed();
    return ch && ch.lastSeq === BigInt(BURST + 2) ? ch : undefined;
  }, "the welcome in the history", 30_000, 50);
  assert.deepEqual([after.unreadCount, after.lastMessage?.text], [1n, "welcome"]);

  // The same for one who joins by link: their own note is where they came in.
  const joiner = await signUp(url, "jj");
  const { code } = await api(owner).channels.getInviteLink({ channelId });
  await Promise.all([...Array(BURST).keys()].map((i) => api(b).messages.sendMessage({ channelId, clientMsgId: `again-${i}`, text: `again ${i}` })));
  await joiner.api.channels.joinByInvite({ code });
  const top = BigInt(2 * BURST + 3);
  const joined = await listedAt(joiner, channelId, top, top);
  assert.deepEqual([joined.lastMessage?.note?.kind, joined.unreadCount, joined.readSeq], [ChannelNoteKind.JOINED_BY_INVITE, 0n, top]);
}

/**
 * The channel as `u`'s list shows it once its newest seq is `seq` (in the cluster a send is stored a
 * moment after its ack) and, given `joinedAt`, their read floor is there (the note of their add or
 * join stored, its writer moves the join point a moment after).
 */
async function listedAt(u: TestUser, channelId: bigint, seq: bigint, joinedAt?: bigint) {
  return waitFor(async () => {
    const ch = (await u.api.channels.listChannels({})).channels.find((c) => c.channelId === channelId);
    return ch && ch.lastSeq === seq && (joinedAt === undefined || ch.readSeq === joinedAt) ? ch : undefined;
  }, `seq ${seq} in the list${joinedAt === undefined ? "" : `, read from ${joinedAt}`}`, 30_000, 50);
}

/**
 * One removed and added back, one who left, and a message deleted: the list
 * of each, as chatd and the cluster must both show it.
 */
async function removedAddedBackAndLeft(url: string): Promise<void> {
  const [owner, b, x, leaver] = await Promise.all(["o", "b", "x", "v"].map((p) => signUp(url, `r${p}`)));
  const say = (u: TestUser | undefined, text: string) => u!.api.messages.sendMessage({ channelId, clientMsgId: text, text });
  const channelId = (await owner!.api.channels.createGroup({ title: "again", memberUserIds: [b!.userId, x!.userId, leaver!.userId] })).channel!.channelId;
  await say(b, "one");
  await listedAt(x!, channelId, 1n);
  await x!.api.messages.markRead({ channelId, seq: 1n });
  await owner!.api.channels.removeMember({ channelId, userId: x!.userId }); // 2
  await say(b, "while x is out"); // 3
  await leaver!.api.channels.leaveGroup({ channelId }); // 4
  await say(b, "after the leaving"); // 5
  await owner!.api.channels.addMembers({ channelId, userIds: [x!.userId] }); // 6
  const back = await listedAt(x!, channelId, 6n, 6n);
  // Back, they read what was said while they were out (history), but none of it is unread, nor the note of their add.
  assert.deepEqual([back.unreadCount, back.readSeq, back.lastMessage?.note?.kind], [0n, 6n, ChannelNoteKind.MEMBERS_ADDED]);
  const history = (await x!.api.messages.listMessages({ channelId })).messages.map((m) => m.seq);
  assert.deepEqual(history, [6n, 5n, 4n, 3n, 2n, 1n]);
  // The one who left lists the group no more, and no later message reaches what they list.
  assert.equal((await leaver!.api.channels.listChannels({})).channels.some((c) => c.channelId === channelId), false);
  await say(b, "secret"); // 7
  const unreadSecret = await listedAt(x!, channelId, 7n);
  assert.deepEqual([unreadSecret.unreadCount, unreadSecret.lastMessage?.text], [1n, "secret"]);
  // Deleted, the newest shows deleted with no text, in the list as in the history.
  await b!.api.messages.sendMessage({ channelId, clientMsgId: "take it back", text: "", deleteSeq: 7n });
  const gone = await waitFor(async () => {
    const ch = (await x!.api.channels.listChannels({})).channels.find((c) => c.channelId === channelId);
    return ch?.lastMessage?.deleted ? ch : undefined;
  }, "the delete in the list", 30_000, 50);
  assert.deepEqual([gone.lastSeq, gone.lastMessage?.text, gone.lastMessage?.seq], [7n, "", 7n]);
  const described = (await x!.api.channels.describeChannel({ channelId })).channel!;
  assert.deepEqual([described.lastMessage?.deleted, described.lastMessage?.text, described.unreadCount], [true, "", gone.unreadCount]);
  // Removed and back once more: the join point is the newest note of their add, whatever the first one set.
  await owner!.api.channels.removeMember({ channelId, userId: x!.userId }); // 8
  await owner!.api.channels.addMembers({ channelId, userIds: [x!.userId] }); // 9
  const again = await listedAt(x!, channelId, 9n, 9n);
  assert.deepEqual([again.unreadCount, again.readSeq], [0n, 9n]);
}

/** An add naming many users while messages are queued: each of them starts at its note. */
async function manyAddedAtOnce(url: string): Promise<void> {
  const [owner, b] = await Promise.all(["o", "b"].map((p) => signUp(url, `m${p}`)));
  const added: TestUser[] = [];
  for (let i = 0; i < 30; i += 10) added.push(...(await Promise.all([...Array(10).keys()].map(() => signUp(url, "ma")))));
  const channelId = (await owner!.api.channels.createGroup({ title: "many", memberUserIds: [b!.userId] })).channel!.channelId;
  await Promise.all([...Array(BURST).keys()].map((i) => b!.api.messages.sendMessage({ channelId, clientMsgId: `m-${i}`, text: `m ${i}` })));
  await owner!.api.channels.addMembers({ channelId, userIds: added.map((u) => u.userId) });
  const top = BigInt(BURST + 1);
  const seen = await Promise.all(added.map(async (u) => {
    const ch = await listedAt(u, channelId, top, top);
    return [ch.unreadCount, ch.readSeq];
  }));
  assert.deepEqual(seen, added.map(() => [0n, top]));
}

describe("a member's chat list around their add, alike in chatd and the cluster", function () {
  this.timeout(180_000);

  describe("in the cluster: api and pipeline on the real engines", () => {
    const { env } = useDeployment("jn");
    let url = "";
    before(async () => {
      const common = { ...env, CHAT_KAFKA_PARTITIONS: "2", CHAT_OPS_PORT: "0", CHAT_API_CALLS_PER_SEC: "0", CHAT_SENDS_PER_SEC: "0" };
      url = String((await startRole("api", common)).info.http);
      await startRole("pipeline", common);
    });

    it("counts nothing from before the add as unread for the one added, messages still queued included", async () => {
      await addedWhileMessagesInFlight(url);
    });

    it("lists a member removed and added back, one who left, and a deleted newest message", async () => {
      await removedAddedBackAndLeft(url);
    });

    it("starts each of 30 users added at once at the note of their add", async () => {
      await manyAddedAtOnce(url);
    });
  });

  describe("in chatd: one process on SQLite", () => {
    let chatd: ChatdProcess | undefined;
    before(async () => {
      chatd = await startChatd({ env: { CHAT_API_CALLS_PER_SEC: "0", CHAT_SENDS_PER_SEC: "0" } });
    });
    after(async () => {
      await chatd?.stop();
      if (chatd) removeDataDir(chatd.dataDir);
    });

    it("counts nothing from before the add as unread for the one added", async () => {
      await addedWhileMessagesInFlight(chatd!.httpUrl);
    });

    it("lists a member removed and added back, one who left, and a deleted newest message", async () => {
      await removedAddedBackAndLeft(chatd!.httpUrl);
    });

    it("starts each of 30 users added at once at the note of their add", async () => {
      await manyAddedAtOnce(chatd!.httpUrl);
    });
  });
});
