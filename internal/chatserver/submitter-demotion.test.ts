import assert from "node:assert/strict";
import type { MemberRole, StoredMessage } from "../model/types.js";
import { GROUP, groupSubmitter } from "./group-submitter.test-support.js";

const BOB = 2n;
const CAROL = { userId: 3n, deviceId: 31n };

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

/**
 * A group of Alice (owner), Bob and Carol (admin), whose roles the test
 * changes as the api's SetMemberRole does, while Carol's delete of Bob's
 * message waits in her device's line behind a reply whose target is still
 * being read: its role was read before the change, its publish comes after.
 */
function group() {
  const roles = new Map<bigint, MemberRole>([[1n, "owner"], [BOB, "member"], [CAROL.userId, "admin"]]);
  let carolReads = 0;
  const bobs: StoredMessage = { channelId: GROUP, seq: 1n, messageId: 50n, senderUserId: BOB, senderDeviceId: 21n, clientMsgId: "q", text: "question", sentAtMs: 1 };
  let answerTarget: (() => void) | undefined;
  let held = false;
  const { s, published } = groupSubmitter({
    roster: roles,
    pick: (m) => m.clientMsgId,
    onMemberRead: (userId) => {
      if (userId === CAROL.userId) carolReads++;
    },
    log: {
      // The first read of a message waits for answerTarget; the others are answered at once.
      get: async () => {
        if (!held) {
          held = true;
          await new Promise<void>((r) => (answerTarget = r));
        }
        return bobs;
      },
    },
  });
  return {
    published,
    setRole: (userId: bigint, role: MemberRole) => roles.set(userId, role),
    release: () => answerTarget!(),
    /** Carol's delete of Bob's message, checked while she is an admin, waiting behind a reply of hers. */
    async deleteWaiting() {
      await s.submit(CAROL, { channelId: GROUP, clientMsgId: "w", text: "warm-up" });
      published.length = 0;
      const reply = s.submit(CAROL, { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n });
      await until(() => answerTarget !== undefined);
      const reads = carolReads;
      const del = s.submit(CAROL, { channelId: GROUP, clientMsgId: "d", text: "", deleteSeq: 1n });
      // Her membership and her role both read.
      await until(() => carolReads >= reads + 2);
      return { reply, del };
    },
  };
}

describe("QueueSubmitter, an admin's delete while they are demoted", () => {
  it("refuses the delete of another's message once its sender is no admin, publishing nothing of it", async () => {
    const g = group();
    const { reply, del } = await g.deleteWaiting();
    g.setRole(CAROL.userId, "member");
    g.release();
    const refused = assert.rejects(del, (e: Error & { code?: string }) => e.code === "permission_denied");
    await reply;
    await refused;
    assert.deepStrictEqual(g.published, ["r"]);
  });

  it("still publishes it for an admin who stays one", async () => {
    const g = group();
    const { reply, del } = await g.deleteWaiting();
    g.release();
    await Promise.all([reply, del]);
    assert.deepStrictEqual(g.published, ["r", "d"]);
  });
});
