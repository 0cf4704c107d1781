import assert from "node:assert/strict";
import type { MessageLog } from "../messages/log.js";
import type { MemberRole, StoredMessage } from "../model/types.js";
import type { SendClaims } from "../sendclaims/port.js";
import { GROUP, groupSubmitter } from "./group-submitter.test-support.js";

const BOB = { userId: 2n, deviceId: 21n };

/**
 * A group of Alice and Bob whose roster the test changes, as the api's
 * removal does (its store step, then its note), while a send of Bob's is
 * between its membership read and its publish.
 */
function group(log: Partial<MessageLog> = {}, claims?: SendClaims) {
  const roster = new Map<bigint, MemberRole>([[1n, "owner"], [BOB.userId, "member"]]);
  let memberReads = 0;
  const { s, published } = groupSubmitter({ roster, pick: (m) => m.text, log, onMemberRead: () => memberReads++, claims });
  return {
    s,
    published,
    memberReads: () => memberReads,
    remove: (userId: bigint) => roster.delete(userId),
    /** The first send learns the channel is a group: later ones read the sender's member row. */
    warmUp: async () => {
      await s.submit(BOB, { channelId: GROUP, clientMsgId: "w", text: "warm-up" });
      published.length = 0;
    },
  };
}

/**
 * The group, warmed up, whose log holds a reply's target read until `answerTarget()`; `reads` is
 * the member reads so far. The reply is sent by `sendReply`, so that a test can send more in the same tick.
 */
async function groupWithTargetReadHung() {
  let answer!: (m: StoredMessage) => void;
  let targetAsked = false;
  const g = group({
    get: () => {
      targetAsked = true;
      return new Promise<StoredMessage>((r) => (answer = r));
    },
  });
  await g.warmUp();
  return {
    g,
    reads: g.memberReads(),
    targetAsked: () => targetAsked,
    answerTarget: () => answer({ channelId: GROUP, seq: 1n, messageId: 50n, senderUserId: 1n, senderDeviceId: 11n, clientMsgId: "q", text: "question", sentAtMs: 1 }),
    sendReply: () => g.s.submit(BOB, { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n }),
  };
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

describe("QueueSubmitter, a group's sender removed while the send waits", () => {
  it("refuses a reply whose target's read outlasted the membership read, when the sender was removed meanwhile", async () => {
    const { g, reads, targetAsked, answerTarget, sendReply } = await groupWithTargetReadHung();
    const reply = sendReply();
    await until(() => targetAsked() && g.memberReads() > reads);
    // The removal lands (the api's store step; its note follows into the queue) while the target is read.
    g.remove(BOB.userId);
    answerTarget();
    await assert.rejects(reply, (e: Error & { code?: string }) => e.code === "not_a_member");
    assert.deepStrictEqual(g.published, [], "published after the sender's removal, to be sequenced after its note");
  });

  it("refuses a send that waited in its device's line behind a slower check, when the sender was removed meanwhile", async () => {
    const { g, reads, targetAsked, answerTarget, sendReply } = await groupWithTargetReadHung();
    const reply = sendReply();
    const plain = g.s.submit(BOB, { channelId: GROUP, clientMsgId: "p", text: "plain" });
    // Both membership reads answered: the plain send, checked, waits for the reply ahead of it.
    await until(() => targetAsked() && g.memberReads() >= reads + 2);
    g.remove(BOB.userId);
    answerTarget();
    for (const sent of [reply, plain]) await assert.rejects(sent, (e: Error & { code?: string }) => e.code === "not_a_member");
    assert.deepStrictEqual(g.published, []);
  });

  it("refuses a plain send whose send claim outlasted the membership read, when the sender was removed meanwhile", async () => {
    // The claim (Redis in the cluster) answers once the test says so; the first, the warm-up's, at once.
    let held = false;
    let answer!: () => void;
    const claims: SendClaims = {
      claim: async (_key, messageId) => {
        if (held) await new Promise<void>((r) => (answer = r));
        return messageId;
      },
      close: async () => {},
    };
    const g = group({}, claims);
    await g.warmUp();
    held = true;
    const reads = g.memberReads();
    const plain = g.s.submit(BOB, { channelId: GROUP, clientMsgId: "p", text: "plain" });
    await until(() => g.memberReads() > reads && answer !== undefined);
    // Let the membership read's answer be taken before the removal lands.
    await new Promise((r) => setImmediate(r));
    g.remove(BOB.userId);
    answer();
    await assert.rejects(plain, (e: Error & { code?: string }) => e.code === "not_a_member");
    assert.deepStrictEqual(g.published, [], "published after the sender's removal, to be sequenced after its note");
  });

  it("reads the roster once for a plain send whose send claim answered before its membership read", async () => {
    const claims: SendClaims = { claim: async (_key, messageId) => messageId, close: async () => {} };
    const g = group({}, claims);
    await g.warmUp();
    const reads = g.memberReads();
    await g.s.submit(BOB, { channelId: GROUP, clientMsgId: "p", text: "plain" });
    assert.equal(g.memberReads() - reads, 1);
    assert.deepStrictEqual(g.published, ["plain"]);
  });

  it("reads the roster once for a plain send with nothing ahead of it", async () => {
    const g = group();
    await g.warmUp();
    const reads = g.memberReads();
    await g.s.submit(BOB, { channelId: GROUP, clientMsgId: "p", text: "plain" });
    assert.equal(g.memberReads() - reads, 1);
    assert.deepStrictEqual(g.published, ["plain"]);
  });
});
