import assert from "node:assert/strict";
import type { ChannelStore } from "../channels/store.js";
import type { IdGenerator } from "../ids/snowflake.js";
import type { MessageLog } from "../messages/log.js";
import type { StoredMessage } from "../model/types.js";
import type { MessageQueue } from "../queue/port.js";
import { QueueSubmitter } from "./submitter.js";

const CHANNEL = 10n;
const ALICE = { userId: 1n, deviceId: 11n };

/** A direct channel of Alice and Bob; the log and the queue as the test drives them. */
function submitter(log: Pick<MessageLog, "findByClientMsgId">, publish: MessageQueue["publish"]) {
  const channels = {
    getChannel: async () => ({ channelId: CHANNEL, kind: "direct", title: "", createdAtMs: 1, createdBy: 1n }),
    listMembers: async () => [{ userId: 1n }, { userId: 2n }],
  } as unknown as ChannelStore;
  let id = 100n;
  const ids = { next: () => ++id } as unknown as IdGenerator;
  return new QueueSubmitter({ queue: { publish } as MessageQueue, channels, log: log as MessageLog, ids });
}

const send = { channelId: CHANNEL, clientMsgId: "c1", text: "hi" };

describe("QueueSubmitter", () => {
  it("publishes without waiting for the dedup read: the ack costs one round trip", async () => {
    let published = 0;
    let answerRead!: (m: StoredMessage | undefined) => void;
    const s = submitter(
      { findByClientMsgId: () => new Promise((r) => (answerRead = r)) },
      async () => void published++,
    );
    const ack = s.submit(ALICE, send);
    await new Promise((r) => setImmediate(r));
    assert.equal(published, 1, "the publish waited for the dedup read");
    answerRead(undefined);
    assert.deepStrictEqual(await ack, { messageId: 101n, duplicate: false });
  });

  it("answers a resend of a stored message with the stored id (its extra record the sequencer drops)", async () => {
    const stored = { messageId: 7n } as StoredMessage;
    const s = submitter({ findByClientMsgId: async () => stored }, async () => {});
    assert.deepStrictEqual(await s.submit(ALICE, send), { messageId: 7n, duplicate: true });
  });

  it("keeps the same clientMsgId from two devices of one user apart: both published, each looked up by its device", async () => {
    const looked: bigint[] = [];
    let published = 0;
    const s = submitter(
      { findByClientMsgId: async (_c, _u, deviceId) => void looked.push(deviceId) },
      async () => void published++,
    );
    const web = { userId: ALICE.userId, deviceId: 12n };
    const [phone, fromWeb] = await Promise.all([s.submit(ALICE, send), s.submit(web, send)]);
    assert.deepStrictEqual([phone, fromWeb], [{ messageId: 101n, duplicate: false }, { messageId: 102n, duplicate: false }]);
    assert.equal(published, 2);
    assert.deepStrictEqual(looked, [11n, 12n]);
    assert.deepStrictEqual(await s.submit(web, send), { messageId: 102n, duplicate: true }, "the web's own resend");
  });

  it("acks a published send when only the dedup read failed, and refuses one whose publish failed", async () => {
    const readFails = submitter({ findByClientMsgId: async () => assert.fail("storage away") }, async () => {});
    assert.deepStrictEqual(await readFails.submit(ALICE, send), { messageId: 101n, duplicate: false });
    const publishFails = submitter({ findByClientMsgId: async () => undefined }, async () => assert.fail("kafka away"));
    await assert.rejects(publishFails.submit(ALICE, send), (e: Error & { code?: string }) => e.code === "unavailable");
  });
});
