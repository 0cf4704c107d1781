import assert from "node:assert/strict";
import type { InboxEntry } from "../../gen/es/chat/v1/types_pb.js";
import { signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { startRole, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** What a syncing device learns of an entry: which message or change it is, its text, and whether it says deleted. */
const seen = (e: InboxEntry) => {
  const m = e.message!;
  return { seq: m.seq, targetSeq: m.targetSeq, text: m.text, deleted: m.deleted, edited: m.editedAt !== undefined };
};

/**
 * A message edited, then deleted while other messages come after it: what
 * a member's device syncing from its cursor sees, page by page, must be the
 * same in chatd and the cluster. The message's own copy says deleted in its
 * place (a device that stops after it shows it deleted, not as an empty
 * bubble); its edit's copy keeps its place with no text; the rest is as sent.
 */
async function deletedWhileOthersFollow(url: string): Promise<void> {
  const [a, x] = await Promise.all(["a", "x"].map((p) => signUp(url, `dc${p}`)));
  const channelId = (await a!.api.channels.createGroup({ title: "deletes", memberUserIds: [x!.userId] })).channel!.channelId;
  const send = (u: TestUser, clientMsgId: string, fields: { text?: string; editSeq?: bigint; deleteSeq?: bigint }) =>
    u.api.messages.sendMessage({ channelId, clientMsgId, text: "", ...fields });
  // The group's creation may leave a note in x's inbox first: everything is read after x's inbox head as it stands now.
  const start = (await x!.api.messages.syncInbox({ afterInboxSeq: 0n, limit: 1 })).headInboxSeq;
  await send(a!, "one", { text: "one" }); // seq 1
  await send(a!, "two", { text: "two" }); // seq 2
  // In the cluster a send is stored a moment after its ack: the edit and the delete must find seq 1 stored.
  const inboxOf = async (u: TestUser, limit = 1000) => (await u.api.messages.syncInbox({ afterInboxSeq: start, limit })).entries;
  await waitFor(async () => (await inboxOf(x!)).length >= 2, "both messages in x's inbox", 30_000, 20);
  await send(a!, "edit one", { text: "one, edited", editSeq: 1n });
  await waitFor(async () => (await inboxOf(x!)).length >= 3, "the edit in x's inbox", 30_000, 20);
  await send(a!, "three", { text: "three" }); // seq 3
  await send(a!, "delete one", { deleteSeq: 1n });
  await send(a!, "four", { text: "four" }); // seq 4
  // Done once the last message is in and nothing of the deleted text is left (the cluster empties the copies a moment
  // after appending the delete).
  const all = await waitFor(async () => {
    const es = await inboxOf(x!);
    const done = es.some((e) => e.message!.seq === 4n) && es.every((e) => !e.message!.text.startsWith("one"));
    return done ? es : undefined;
  }, "the delete applied in x's inbox and seq 4 after it", 30_000, 20);
  assert.deepEqual(all.map(seen), [
    { seq: 1n, targetSeq: 0n, text: "", deleted: true, edited: false },
    { seq: 2n, targetSeq: 0n, text: "two", deleted: false, edited: false },
    { seq: 0n, targetSeq: 1n, text: "", deleted: false, edited: false },
    { seq: 3n, targetSeq: 0n, text: "three", deleted: false, edited: false },
    { seq: 0n, targetSeq: 1n, text: "", deleted: true, edited: false },
    { seq: 4n, targetSeq: 0n, text: "four", deleted: false, edited: false },
  ]);
  // A device that syncs one entry at a time and stops after the first page shows the message deleted, not blank.
  const first = await inboxOf(x!, 1);
  assert.deepEqual(first.map(seen), [{ seq: 1n, targetSeq: 0n, text: "", deleted: true, edited: false }]);
  // The sender's own inbox has the same copies.
  assert.deepEqual((await inboxOf(a!)).map(seen), all.map(seen));
}

describe("a deleted message's inbox copies, alike in chatd and the cluster", function () {
  this.timeout(120_000);

  describe("in the cluster: api and pipeline on the real engines", () => {
    const { env } = useDeployment("dc");
    let url = "";
    before(async () => {
      const common = { ...env, CHAT_KAFKA_PARTITIONS: "2", CHAT_OPS_PORT: "0", CHAT_API_CALLS_PER_SEC: "0", CHAT_SENDS_PER_SEC: "0" };
      url = String((await startRole("api", common)).info.http);
      await startRole("pipeline", common);
    });

    it("marks the message's own copy deleted where a syncing device finds it, its edit's copy only emptied", async () => {
      await deletedWhileOthersFollow(url);
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

    it("marks the message's own copy deleted where a syncing device finds it, its edit's copy only emptied", async () => {
      await deletedWhileOthersFollow(chatd!.httpUrl);
    });
  });
});
