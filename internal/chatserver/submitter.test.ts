import assert from "node:assert/strict";
import { RETRY_AFTER_HEADER, toConnectError } from "../api/errors.js";
import { BlockCache } from "../accounts/blocks.js";
import type { ChannelStore } from "../channels/store.js";
import type { IdGenerator } from "../ids/snowflake.js";
import { MAX_EDITS_PER_MESSAGE } from "../messages/changes.js";
import type { MessageLog } from "../messages/log.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import type { MemberRole, StoredMessage } from "../model/types.js";
import { decodeSubmitted } from "../pipeline/records.js";
import type { MessageQueue, OutgoingRecord } from "../queue/port.js";
import { MemorySendClaims } from "../sendclaims/memory.js";
import type { SendClaims } from "../sendclaims/port.js";
import { QueueSubmitter } from "./submitter.js";

const CHANNEL = 10n;
const ALICE = { userId: 1n, deviceId: 11n };

/** A direct channel of Alice and Bob; the log and the queue as the test drives them. */
function submitter(
  log: Partial<MessageLog>,
  publish: MessageQueue["publish"],
  claims?: SendClaims,
  firstId = 100n,
  blocks?: BlockCache,
  kind: "direct" | "group" = "direct",
  role: MemberRole = "member",
) {
  const channels = {
    getChannel: async () => ({ channelId: CHANNEL, kind, title: "", createdAtMs: 1, createdBy: 1n }),
    listMembers: async () => [{ userId: 1n }, { userId: 2n }],
    getMember: async (_c: bigint, userId: bigint) => ({ channelId: CHANNEL, userId, role, joinedAtMs: 1, readSeq: 0n }),
    directChannelOf: async () => CHANNEL,
  } as unknown as ChannelStore;
  let id = firstId;
  const ids = { next: () => ++id } as unknown as IdGenerator;
  // No edits of any message unless the test says otherwise (the edit limit's count).
  const withEdits = { editsOf: async () => [], ...log } as MessageLog;
  return new QueueSubmitter({ queue: { publish } as MessageQueue, channels, log: withEdits, ids, claims, blocks });
}

const send = { channelId: CHANNEL, clientMsgId: "c1", text: "hi" };

describe("QueueSubmitter", () => {
  it("publishes the api's note with no membership check, under its own key, and refuses a client's send under such a key", async () => {
    const published: OutgoingRecord[] = [];
    const notMember = { getMember: async () => undefined, getChannel: async () => undefined, listMembers: async () => [] } as unknown as ChannelStore;
    let id = 500n;
    const s = new QueueSubmitter({
      queue: { publish: async (_t: string, rs: OutgoingRecord[]) => void published.push(...rs) } as MessageQueue,
      channels: notMember, log: {} as MessageLog, ids: { next: () => ++id } as unknown as IdGenerator,
    });
    // One who left is no longer a member, and the note of it is theirs.
    assert.deepStrictEqual(await s.note(ALICE, CHANNEL, { kind: "member_left", userIds: [] }), { messageId: 501n, duplicate: false });
    const note = decodeSubmitted(published[0]!.value);
    assert.deepStrictEqual([note.clientMsgId, note.text, note.note, published[0]!.key], ["note:501", "", { kind: "member_left", userIds: [] }, String(CHANNEL)]);
    await assert.rejects(s.submit(ALICE, { ...send, clientMsgId: "note:777" }), (e: Error & { code?: string }) =>
      e.code === "invalid_argument" && /must not start with "note:"/.test(e.message));
    assert.equal(published.length, 1);
  });

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

  describe("one device's sends to a channel, checked concurrently", () => {
    /** A group whose first membership read waits for the test; the rest answer at once. */
    function slowFirstCheck() {
      let calls = 0;
      let answerFirst!: (ok: boolean) => void;
      const row = (userId: bigint) => ({ channelId: CHANNEL, userId, role: "member", joinedAtMs: 1, readSeq: 0n });
      const channels = {
        getChannel: async () => ({ channelId: CHANNEL, kind: "group", title: "g", createdAtMs: 1, createdBy: 1n }),
        listMembers: async () => [{ userId: 1n }, { userId: 2n }],
        getMember: (_c: bigint, userId: bigint) =>
          ++calls === 1
            ? new Promise((resolve, reject) => (answerFirst = (ok) => (ok ? resolve(row(userId)) : reject(new Error("read timed out")))))
            : Promise.resolve(row(userId)),
      } as unknown as ChannelStore;
      const published: string[] = [];
      let id = 100n;
      const s = new QueueSubmitter({
        queue: { publish: async (_t: string, rs: readonly OutgoingRecord[]) => void published.push(...rs.map((r) => decodeSubmitted(r.value).text)) } as MessageQueue,
        channels,
        log: { findByClientMsgId: async () => undefined } as unknown as MessageLog,
        ids: { next: () => ++id } as unknown as IdGenerator,
      });
      return {
        s,
        published,
        answerFirst: (ok: boolean) => answerFirst(ok),
        /** The first send learns the channel is a group (no getMember); the next ones read the member row. */
        async warmUp() {
          await s.submit({ userId: 1n, deviceId: 13n }, { channelId: CHANNEL, clientMsgId: "w", text: "warm-up" });
          published.length = 0;
        },
      };
    }
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };

    it("are published in the order the device sent them, whichever check answers first", async () => {
      const { s, published, answerFirst, warmUp } = slowFirstCheck();
      await warmUp();
      const first = s.submit(ALICE, { channelId: CHANNEL, clientMsgId: "m1", text: "Hi" });
      const second = s.submit(ALICE, { channelId: CHANNEL, clientMsgId: "m2", text: "how are you?" });
      // Another device's send is not held up by this one's.
      await s.submit({ userId: 1n, deviceId: 12n }, { channelId: CHANNEL, clientMsgId: "m1", text: "from the tablet" });
      await turns(5);
      assert.deepStrictEqual(published, ["from the tablet"], "the second send waits for the first");
      answerFirst(true);
      await Promise.all([first, second]);
      assert.deepStrictEqual(published, ["from the tablet", "Hi", "how are you?"]);
    });

    it("go on when an earlier one is refused", async () => {
      const { s, published, answerFirst, warmUp } = slowFirstCheck();
      await warmUp();
      const first = s.submit(ALICE, { channelId: CHANNEL, clientMsgId: "m1", text: "Hi" });
      const second = s.submit(ALICE, { channelId: CHANNEL, clientMsgId: "m2", text: "how are you?" });
      answerFirst(false);
      await assert.rejects(first, /not accepted/);
      await second;
      assert.deepStrictEqual(published, ["how are you?"]);
      // Nothing is left waiting: a later send publishes at once.
      await s.submit(ALICE, { channelId: CHANNEL, clientMsgId: "m3", text: "?" });
      assert.deepStrictEqual(published, ["how are you?", "?"]);
    });
  });

  it("answers a resend of a stored message with the stored id (its extra record the sequencer drops)", async () => {
    const stored = { messageId: 7n } as StoredMessage;
    const s = submitter({ findByClientMsgId: async () => stored }, async () => {});
    assert.deepStrictEqual(await s.submit(ALICE, send), { messageId: 7n, duplicate: true });
  });

  it("is no duplicate when the dedup read, slower than the pipeline, finds this very send stored", async () => {
    let stored: StoredMessage | undefined;
    let answerRead!: () => void;
    const s = submitter(
      { findByClientMsgId: () => new Promise((r) => (answerRead = () => r(stored))) },
      async (_t, rs) => void (stored = { messageId: decodeSubmitted(rs[0]!.value).messageId } as StoredMessage),
    );
    const ack = s.submit(ALICE, send);
    await new Promise((r) => setImmediate(r));
    answerRead();
    assert.deepStrictEqual(await ack, { messageId: 101n, duplicate: false });
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

  // Refused with no retry time: the api answered no chat-retry-after-ms, a session's Error frame a retry of 0.
  it("refuses a send or a note whose publish failed with an engine outage's retry time", async () => {
    const publishFails = submitter({ findByClientMsgId: async () => undefined }, () => Promise.reject(new Error("kafka away")));
    const retryOnApi = (e: unknown) => toConnectError(e).metadata.get(RETRY_AFTER_HEADER);
    assert.equal(retryOnApi(await publishFails.submit(ALICE, send).catch((e: unknown) => e)), String(ENGINE_RETRY_AFTER_MS), "a send");
    assert.equal(retryOnApi(await publishFails.note(ALICE, CHANNEL, { kind: "member_left", userIds: [] }).catch((e: unknown) => e)), String(ENGINE_RETRY_AFTER_MS), "a note");
  });

  it("refuses a send in a direct chat where either blocked the other, publishing nothing and minting the resend afresh", async () => {
    let blockers: bigint[] = [2n];
    let bobDeleted = false;
    let published = 0;
    const user = (userId: bigint) => ({ userId, username: bobDeleted ? "" : "bob", displayName: "", passwordHash: "", createdAtMs: 1 });
    const blocks = new BlockCache({ blockersBetween: async () => blockers, getUser: async (id) => user(id) }, { ttlMs: 0 });
    const s = submitter({ findByClientMsgId: async () => undefined }, async () => void published++, undefined, 100n, blocks);
    await assert.rejects(s.submit(ALICE, send), (e: Error & { code?: string }) => e.code === "blocked" && /this user blocked you/.test(e.message));
    blockers = [1n];
    await assert.rejects(s.submit(ALICE, send), (e: Error) => /you blocked this user/.test(e.message));
    // A deleted account blocks the peers of its direct chats: they are told it is gone.
    [blockers, bobDeleted] = [[2n], true];
    await assert.rejects(s.submit(ALICE, send), (e: Error & { code?: string }) => e.code === "not_found" && e.message === "this account was deleted");
    assert.equal(published, 0);
    bobDeleted = false;
    blockers = [];
    assert.deepStrictEqual(await s.submit(ALICE, send), { messageId: 104n, duplicate: false }, "the refusals were not remembered as the send's outcome");
    assert.equal(published, 1);
  });

  it("lets a sender delete their own message in a blocked direct chat, and nothing else", async () => {
    const blocks = new BlockCache({ blockersBetween: async () => [2n], getUser: async (userId) => ({ userId, username: "bob", displayName: "", passwordHash: "", createdAtMs: 1 }) }, { ttlMs: 0 });
    const mine: StoredMessage = { messageId: 50n, channelId: CHANNEL, seq: 4n, senderUserId: ALICE.userId, senderDeviceId: 11n, clientMsgId: "x", text: "old", sentAtMs: 1 };
    let published = 0;
    const s = submitter({ get: async () => mine }, async () => void published++, undefined, 100n, blocks);
    assert.deepStrictEqual(await s.submit(ALICE, { ...send, text: "", deleteSeq: 4n }), { messageId: 101n, duplicate: false });
    for (const cmd of [{ ...send, clientMsgId: "e", text: "new", editSeq: 4n }, { ...send, clientMsgId: "r", text: "👍", reactSeq: 4n }]) {
      await assert.rejects(s.submit(ALICE, cmd), (e: Error & { code?: string }) => e.code === "blocked");
    }
    assert.equal(published, 1);
  });

  it("refuses a reply, a reaction or an edit naming a missing message in a blocked direct chat as blocked, not as not found (as chatd does)", async () => {
    const blocks = new BlockCache({ blockersBetween: async () => [2n], getUser: async (userId) => ({ userId, username: "bob", displayName: "", passwordHash: "", createdAtMs: 1 }) }, { ttlMs: 0 });
    const s = submitter({ get: async () => undefined, findByClientMsgId: async () => undefined }, async () => {}, undefined, 100n, blocks);
    for (const named of [{ replyToSeq: 9n, text: "re" }, { reactSeq: 9n, text: "👍" }, { editSeq: 9n, text: "x" }]) {
      await assert.rejects(s.submit(ALICE, { ...send, clientMsgId: `n${Object.keys(named)[0]}`, ...named }), (e: Error & { code?: string }) => e.code === "blocked", Object.keys(named)[0]);
    }
  });

  // Taking back one's ❤️ is taking one's own words back, as a delete is: refused as a reaction, it stayed on
  // the blocker's message for good after the falling-out.
  it("lets a member take back their reaction in a blocked direct chat, and make no other", async () => {
    const blocks = new BlockCache({ blockersBetween: async () => [2n], getUser: async (userId) => ({ userId, username: "bob", displayName: "", passwordHash: "", createdAtMs: 1 }) }, { ttlMs: 0 });
    const theirs: StoredMessage = { messageId: 50n, channelId: CHANNEL, seq: 4n, senderUserId: 2n, senderDeviceId: 21n, clientMsgId: "x", text: "old", sentAtMs: 1,
      reactions: [{ userId: ALICE.userId, emoji: "❤️" }] };
    const out: ReturnType<typeof decodeSubmitted>[] = [];
    const s = submitter({ get: async () => theirs, findChange: async () => undefined }, async (_t, rs) => void out.push(...rs.map((r) => decodeSubmitted(r.value))), undefined, 100n, blocks);
    assert.deepStrictEqual(await s.submit(ALICE, { ...send, clientMsgId: "back", text: "", reactSeq: 4n }), { messageId: 101n, duplicate: false });
    await assert.rejects(s.submit(ALICE, { ...send, clientMsgId: "again", text: "👍", reactSeq: 4n }), (e: Error & { code?: string }) => e.code === "blocked");
    assert.deepStrictEqual(out.map((m) => [m.targetSeq, m.reaction, m.text]), [[4n, true, ""]]);
  });

  describe("edits, deletes, replies and reactions", () => {
    const stored = (senderUserId: bigint, over: Partial<StoredMessage> = {}): StoredMessage => ({
      messageId: 50n, channelId: CHANNEL, seq: 4n, senderUserId, senderDeviceId: 21n, clientMsgId: "x", text: "old", sentAtMs: 1, ...over,
    });
    const records = (into: ReturnType<typeof decodeSubmitted>[]) => async (_topic: string, rs: readonly OutgoingRecord[]) =>
      void into.push(...rs.map((r) => decodeSubmitted(r.value)));

    it("publishes an edit of the sender's own message as a change of its seq, looked up among changes by its key", async () => {
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      const s = submitter({ get: async () => stored(ALICE.userId), findChange: async () => undefined, findByClientMsgId: async () => assert.fail("not a message") }, records(out));
      assert.deepStrictEqual(await s.submit(ALICE, { ...send, text: "new", editSeq: 4n }), { messageId: 101n, duplicate: false });
      assert.deepStrictEqual(out.map((m) => [m.targetSeq, m.deleted, m.text]), [[4n, undefined, "new"]]);
    });

    it("refuses an edit of another's message, of a deleted one or of none, publishing nothing", async () => {
      let published = 0;
      const cases: [StoredMessage | undefined, string, RegExp][] = [
        [stored(2n), "permission_denied", /only its sender can edit/],
        [stored(ALICE.userId, { deleted: true, text: "" }), "not_found", /was deleted/],
        [undefined, "not_found", /no message with seq 4/],
      ];
      for (const [target, code, message] of cases) {
        const s = submitter({ get: async () => target }, async () => void published++);
        await assert.rejects(s.submit(ALICE, { ...send, editSeq: 4n }), (e: Error & { code?: string }) => e.code === code && message.test(e.message));
      }
      assert.equal(published, 0);
    });

    it("publishes an edit or a reaction that reads as changing nothing, acked as any: the Sequencer, which has applied the changes queued before it, tells", async () => {
      const published: OutgoingRecord[] = [];
      const liked = stored(ALICE.userId, { text: "hi", reactions: [{ userId: ALICE.userId, emoji: "👍" }] });
      const s = submitter({ get: async () => liked, findChange: async () => undefined }, async (_t, rs) => void published.push(...rs));
      assert.equal((await s.submit(ALICE, { ...send, clientMsgId: "e", text: "hi", editSeq: 4n })).duplicate, false);
      assert.equal((await s.submit(ALICE, { ...send, clientMsgId: "r", text: "👍", reactSeq: 4n })).duplicate, false);
      assert.equal(published.length, 2);
    });

    it("tells a non-member nothing of a channel's messages: the seq an edit, delete, reply or reaction names is refused as not a member, even when its read answers first", async () => {
      // The membership read answers only after the named message's read has answered (not found).
      let lookedUp!: () => void;
      const targetRead = new Promise<void>((r) => (lookedUp = r));
      const afterTarget = async () => {
        await targetRead;
        await new Promise((r) => setImmediate(r));
      };
      const channels = {
        getChannel: async () => ({ channelId: CHANNEL, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
        listMembers: async () => (await afterTarget(), [{ channelId: CHANNEL, userId: 2n, role: "owner", joinedAtMs: 1, readSeq: 0n }]),
        getMember: async () => (await afterTarget(), undefined),
      } as unknown as ChannelStore;
      const log = {
        get: async () => (lookedUp(), undefined),
        editsOf: async () => [],
        findChange: async () => undefined,
        findByClientMsgId: async () => undefined,
      } as unknown as MessageLog;
      let id = 100n;
      const s = new QueueSubmitter({ queue: { publish: async () => assert.fail("published") } as unknown as MessageQueue, channels, log, ids: { next: () => ++id } as unknown as IdGenerator });
      for (const named of [{ editSeq: 999n }, { deleteSeq: 999n, text: "" }, { replyToSeq: 999n }, { reactSeq: 999n, text: "👍" }]) {
        await assert.rejects(s.submit({ userId: 3n, deviceId: 31n }, { ...send, ...named }), (e: Error & { code?: string }) =>
          e.code === "not_a_member", JSON.stringify(Object.keys(named)));
      }
    });

    it("refuses an edit of a message edited MAX_EDITS_PER_MESSAGE times already, publishing nothing, and still takes its delete", async () => {
      const edits = (n: number) => async (_c: bigint, _s: bigint, limit?: number) => Array.from({ length: Math.min(n, limit ?? n) }, (_, i) => 1000n + BigInt(i));
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      const under = submitter({ get: async () => stored(ALICE.userId), editsOf: edits(MAX_EDITS_PER_MESSAGE - 1), findChange: async () => undefined }, records(out));
      await under.submit(ALICE, { ...send, text: "the last edit there may be", editSeq: 4n });
      const full = submitter({ get: async () => stored(ALICE.userId), editsOf: edits(500_000), findChange: async () => undefined }, records(out));
      await assert.rejects(full.submit(ALICE, { ...send, clientMsgId: "one more", text: "one more", editSeq: 4n }), (e: Error & { code?: string }) =>
        e.code === "limit_reached" && e.message === `message 4 was edited ${MAX_EDITS_PER_MESSAGE} times, the most a message can be: send a new one`);
      await full.submit(ALICE, { ...send, clientMsgId: "gone", text: "", deleteSeq: 4n });
      assert.deepStrictEqual(out.map((m) => [m.clientMsgId, m.deleted]), [["c1", undefined], ["gone", true]]);
    });

    it("lets a group's admin or owner delete anyone's message; a member, or anyone in a direct chat, only their own", async () => {
      const del = { ...send, text: "", deleteSeq: 4n };
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      for (const role of ["admin", "owner"] as const) {
        const s = submitter({ get: async () => stored(2n) }, records(out), undefined, 100n, undefined, "group", role);
        await s.submit(ALICE, { ...del, clientMsgId: role });
      }
      assert.deepStrictEqual(out.map((m) => [m.targetSeq, m.deleted, m.text]), [[4n, true, ""], [4n, true, ""]]);
      const member = submitter({ get: async () => stored(2n) }, records(out), undefined, 100n, undefined, "group", "member");
      await assert.rejects(member.submit(ALICE, del), (e: Error & { code?: string }) => e.code === "permission_denied");
      const own = submitter({ get: async () => stored(ALICE.userId) }, records(out));
      await own.submit(ALICE, del);
      assert.equal(out.length, 3);
    });

    it("publishes a reply with the seq it answers once that message is read, and refuses one to a missing or deleted message", async () => {
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      const s = submitter({ get: async () => stored(2n), findByClientMsgId: async () => undefined }, records(out));
      assert.deepStrictEqual(await s.submit(ALICE, { ...send, replyToSeq: 4n }), { messageId: 101n, duplicate: false });
      assert.deepStrictEqual(out.map((m) => [m.replyToSeq, m.targetSeq, m.text]), [[4n, undefined, "hi"]]);
      for (const [target, message] of [[undefined, /no message with seq 4/], [stored(2n, { deleted: true, text: "" }), /was deleted/]] as const) {
        const refused = submitter({ get: async () => target }, async () => assert.fail("not published"));
        await assert.rejects(refused.submit(ALICE, { ...send, replyToSeq: 4n }), (e: Error & { code?: string }) => e.code === "not_found" && message.test(e.message));
      }
    });

    it("publishes anyone's reaction to a message not deleted, or its taking back, as a change", async () => {
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      const s = submitter({ get: async () => stored(2n), findChange: async () => undefined, findByClientMsgId: async () => assert.fail("not a message") }, records(out));
      assert.deepStrictEqual(await s.submit(ALICE, { ...send, text: "👍🏽", reactSeq: 4n }), { messageId: 101n, duplicate: false });
      await s.submit(ALICE, { ...send, clientMsgId: "back", text: "", reactSeq: 4n });
      assert.deepStrictEqual(out.map((m) => [m.targetSeq, m.reaction, m.deleted, m.text]), [[4n, true, undefined, "👍🏽"], [4n, true, undefined, ""]]);
      const gone = submitter({ get: async () => stored(2n, { deleted: true, text: "" }) }, async () => assert.fail("not published"));
      await assert.rejects(gone.submit(ALICE, { ...send, text: "👍", reactSeq: 4n }), (e: Error & { code?: string }) => e.code === "not_found");
    });

    it("publishes a reaction's emoji in its one spelling: ❤ and ❤️ are one reaction in the cluster too", async () => {
      const out: ReturnType<typeof decodeSubmitted>[] = [];
      const s = submitter({ get: async () => stored(2n), findChange: async () => undefined, findByClientMsgId: async () => assert.fail("not a message") }, records(out));
      const sent = { ...send, text: "\u2764", reactSeq: 4n };
      await s.submit(ALICE, sent);
      await s.submit(ALICE, { ...send, clientMsgId: "again", text: "\u2764\uFE0F", reactSeq: 4n });
      await s.submit(ALICE, { ...send, clientMsgId: "joined", text: "👍\u200D", reactSeq: 4n });
      assert.deepStrictEqual(out.map((m) => m.text), ["\u2764\uFE0F", "\u2764\uFE0F", "👍"]);
      assert.equal(sent.text, "\u2764", "the session's frame is left as it was");
    });

    it("answers a resend of a stored change with the change's id (its extra record the sequencer drops by its key)", async () => {
      const s = submitter({ get: async () => stored(ALICE.userId), findChange: async () => 77n }, async () => {});
      assert.deepStrictEqual(await s.submit(ALICE, { ...send, text: "new", editSeq: 4n }), { messageId: 77n, duplicate: true });
    });

    it("acks with the stored id a resend that a check the first copy passed now refuses: its target deleted since, the sender gone", async () => {
      const deleted = stored(2n, { deleted: true, text: "" });
      const del = submitter({ get: async () => stored(ALICE.userId, { deleted: true, text: "" }), findChange: async () => 60n }, async () => assert.fail("not published"));
      assert.deepStrictEqual(await del.submit(ALICE, { ...send, text: "", deleteSeq: 4n }), { messageId: 60n, duplicate: true });
      const reply = submitter({ get: async () => deleted, findByClientMsgId: async () => stored(ALICE.userId, { messageId: 70n, seq: 5n }) }, async () => assert.fail("not published"));
      assert.deepStrictEqual(await reply.submit(ALICE, { ...send, replyToSeq: 4n }), { messageId: 70n, duplicate: true });
      const left = new QueueSubmitter({
        queue: { publish: async () => assert.fail("not published") } as unknown as MessageQueue,
        channels: { getMember: async () => undefined, getChannel: async () => undefined, listMembers: async () => [] } as unknown as ChannelStore,
        log: { findByClientMsgId: async () => stored(ALICE.userId, { messageId: 80n }) } as unknown as MessageLog,
        ids: { next: () => 900n } as unknown as IdGenerator,
      });
      assert.deepStrictEqual(await left.submit(ALICE, send), { messageId: 80n, duplicate: true }, "sent, then left the group");
      // A refusal of a send never stored stands.
      const fresh = submitter({ get: async () => deleted, findByClientMsgId: async () => undefined }, async () => assert.fail("not published"));
      await assert.rejects(fresh.submit(ALICE, { ...send, replyToSeq: 4n }), (e: Error & { code?: string }) => e.code === "not_found");
    });

    it("refuses a reaction that is not one emoji, before any read", async () => {
      const s = submitter({ get: async () => assert.fail("not read") }, async () => assert.fail("not published"));
      for (const text of ["ok", "👍👍", " 👍", "👍 ", "a👍", "x".repeat(40)]) {
        await assert.rejects(s.submit(ALICE, { ...send, text, reactSeq: 4n }), (e: Error & { code?: string }) => e.code === "invalid_argument" && /one emoji/.test(e.message), text);
      }
      await assert.rejects(s.submit(ALICE, { ...send, text: "👍", reactSeq: 4n, deleteSeq: 4n }), /at most one of edit_seq, delete_seq and react_seq/);
      await assert.rejects(s.submit(ALICE, { ...send, text: "👍", reactSeq: 4n, replyToSeq: 3n }), /reply_to_seq is for a new message/);
    });

    it("refuses a delete with text, and an edit and a delete at once, before any read", async () => {
      const s = submitter({ get: async () => assert.fail("not read") }, async () => assert.fail("not published"));
      await assert.rejects(s.submit(ALICE, { ...send, deleteSeq: 4n }), /text must be empty/);
      await assert.rejects(s.submit(ALICE, { ...send, editSeq: 4n, deleteSeq: 4n }), /at most one of edit_seq, delete_seq and react_seq/);
      await assert.rejects(s.submit(ALICE, { ...send, editSeq: 4n, replyToSeq: 3n }), /reply_to_seq is for a new message/);
    });
  });

  describe("with claims shared by the chat servers", () => {
    const notStored = { findByClientMsgId: async () => undefined };
    /** What a server published, as the Sequencer would read it. */
    const recorder = (into: bigint[]) => async (_topic: string, records: readonly OutgoingRecord[]) =>
      void into.push(...records.map((r) => decodeSubmitted(r.value).messageId));

    it("gives a resend through another chat server, before the first copy is stored, the first copy's id", async () => {
      const claims = new MemorySendClaims(60_000);
      const [onA, onB]: bigint[][] = [[], []];
      const a = submitter(notStored, recorder(onA), claims, 100n);
      const b = submitter(notStored, recorder(onB), claims, 500n);
      assert.deepStrictEqual(await a.submit(ALICE, send), { messageId: 101n, duplicate: false });
      // The device lost A (its ack, or A itself) and resends through B.
      assert.deepStrictEqual(await b.submit(ALICE, send), { messageId: 101n, duplicate: true });
      // B's copy goes out under A's id, so the Sequencer stores one message by that id whichever copy comes first.
      assert.deepStrictEqual([onA, onB], [[101n], [101n]]);
      assert.deepStrictEqual(await b.submit(ALICE, { ...send, clientMsgId: "c2" }), { messageId: 502n, duplicate: false });
    });

    it("publishes under the claimed id even when the first server's copy never became durable", async () => {
      const claims = new MemorySendClaims(60_000);
      const onB: bigint[] = [];
      const a = submitter(notStored, async () => assert.fail("kafka away from A"), claims, 100n);
      await assert.rejects(a.submit(ALICE, send), (e: Error & { code?: string }) => e.code === "unavailable");
      const b = submitter(notStored, recorder(onB), claims, 500n);
      assert.deepStrictEqual(await b.submit(ALICE, send), { messageId: 101n, duplicate: true });
      assert.deepStrictEqual(onB, [101n]);
    });

    it("keeps its own id when the claims cannot be reached: the send is not held up", async () => {
      const away: SendClaims = { claim: async () => assert.fail("redis away"), close: async () => {} };
      const published: bigint[] = [];
      const s = submitter(notStored, recorder(published), away);
      assert.deepStrictEqual(await s.submit(ALICE, send), { messageId: 101n, duplicate: false });
      assert.deepStrictEqual(published, [101n]);
    });
  });
});
