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
    return ch && ch.lastSeq === BigInt(BURST + 1) ? ch : undefined;
  }, "the burst and the note in the history", 30_000, 50);
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
  });
});
