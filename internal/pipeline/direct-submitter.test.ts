import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { BlockCache } from "../accounts/blocks.js";
import { RETRY_AFTER_HEADER, toConnectError } from "../api/errors.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { IdGenerator } from "../ids/snowflake.js";
import { MAX_EDITS_PER_MESSAGE } from "../messages/changes.js";
import type { MessageWriter } from "../messages/writer.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import type { SendCommand, Sender } from "../messages/submit.js";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import { DirectSubmitter } from "./direct-submitter.js";

const GROUP = 10n;
const ALICE: Sender = { userId: 1n, deviceId: 11n };
const BOB: Sender = { userId: 2n, deviceId: 21n };

describe("DirectSubmitter", () => {
  let storage: SqliteStorage;
  let submitter: DirectSubmitter;
  let deps: () => ConstructorParameters<typeof DirectSubmitter>[0];
  beforeEach(async () => {
    storage = openSqliteStorage(":memory:");
    await storage.channels.createGroup({ channelId: GROUP, kind: "group", title: "g", createdAtMs: 1, createdBy: ALICE.userId }, [
      { channelId: GROUP, userId: ALICE.userId, role: "owner", joinedAtMs: 1, readSeq: 0n },
      { channelId: GROUP, userId: BOB.userId, role: "member", joinedAtMs: 1, readSeq: 0n },
    ]);
    let id = 1000n;
    const sessions = { pushToUsers: async () => {}, pushMany: async () => new Set(), closeDevice: async () => {}, onlineUsers: async () => new Set() };
    deps = () => ({
      channels: storage.channels,
      writer: storage.writer,
      log: storage.messages,
      ids: { next: () => ++id } as unknown as IdGenerator,
      sessions: sessions as unknown as SessionDirectory,
    });
    submitter = new DirectSubmitter(deps());
  });
  afterEach(() => storage.close());

  // A live delivery queued as an immediate from the commit's own immediate waited for the next turn,
  // every socket's input read first: under load, a turn of latency on every message.
  it("hands a commit's entries to the live sessions after the acks' continuations, in the commit's turn", async () => {
    const delivered: bigint[] = [];
    const sessions = { ...deps().sessions, pushEntries: (fresh: readonly { userId: bigint }[]) => (delivered.push(...fresh.map((f) => f.userId)), new Set<bigint>()) };
    const s = new DirectSubmitter({ ...deps(), sessions: sessions as unknown as SessionDirectory });
    await s.submit(ALICE, { channelId: GROUP, clientMsgId: "m", text: "hi" });
    assert.deepStrictEqual(delivered, [], "not before the send's own continuation (its ack)");
    await new Promise((r) => process.nextTick(r));
    assert.deepStrictEqual(delivered.sort(), [ALICE.userId, BOB.userId]);
  });

  it("acks with the stored id a resend that a check the first copy passed now refuses: its target deleted since, the sender gone", async () => {
    await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" });
    const del = { channelId: GROUP, clientMsgId: "d", text: "", deleteSeq: 1n };
    await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "m", text: "mine" });
    const deleted = await submitter.submit(ALICE, { ...del, deleteSeq: 2n });
    assert.deepStrictEqual(await submitter.submit(ALICE, { ...del, deleteSeq: 2n }), { messageId: deleted.messageId, duplicate: true }, "a delete's resend");

    const reply = { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n };
    const answered = await submitter.submit(ALICE, reply);
    await submitter.submit(BOB, { ...del, clientMsgId: "bd", deleteSeq: 1n });
    assert.deepStrictEqual(await submitter.submit(ALICE, reply), { messageId: answered.messageId, duplicate: true }, "a reply's resend after its target went");

    await storage.channels.removeMember(GROUP, BOB.userId);
    const bobs = await storage.messages.findByClientMsgId(GROUP, BOB.userId, BOB.deviceId, "q");
    assert.deepStrictEqual(await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" }), { messageId: bobs!.messageId, duplicate: true }, "sent, then left");
    await assert.rejects(submitter.submit(BOB, { channelId: GROUP, clientMsgId: "new", text: "after leaving" }), (e: Error & { code?: string }) => e.code === "not_a_member");
    await assert.rejects(submitter.submit(ALICE, { ...reply, clientMsgId: "r2" }), (e: Error & { code?: string }) => e.code === "not_found");
  });

  // Taking back one's ❤️ is taking one's own words back, as a delete is: refused as a reaction, it stayed on
  // the blocker's message in history and on every device for good after the falling-out.
  it("lets a member take back their reaction in a blocked direct chat, history and the other's inbox losing it; a new one stays refused", async () => {
    const dm = (await storage.channels.getOrCreateDirect({ channelId: 20n, kind: "direct", title: "", createdAtMs: 1, createdBy: ALICE.userId }, ALICE.userId, BOB.userId)).channelId;
    for (const u of [ALICE, BOB]) await storage.accounts.createUser({ userId: u.userId, username: `u${u.userId}`, displayName: "", passwordHash: "", createdAtMs: 1 });
    const s = new DirectSubmitter({ ...deps(), blocks: new BlockCache(storage.accounts, { ttlMs: 0 }) });
    await s.submit(BOB, { channelId: dm, clientMsgId: "m", text: "hi" });
    await s.submit(ALICE, { channelId: dm, clientMsgId: "love", text: "❤️", reactSeq: 1n });
    await storage.accounts.putBlock(BOB.userId, ALICE.userId, 2);
    await assert.rejects(s.submit(ALICE, { channelId: dm, clientMsgId: "like", text: "👍", reactSeq: 1n }), (e: Error & { code?: string }) => e.code === "blocked");
    assert.equal((await s.submit(ALICE, { channelId: dm, clientMsgId: "back", text: "", reactSeq: 1n })).duplicate, false);
    assert.equal((await storage.messages.get(dm, 1n))!.reactions, undefined, "history shows no reaction");
    const last = (await storage.inbox.readAfter(BOB.userId, 0n, 10)).at(-1)!.message;
    assert.deepStrictEqual([last.targetSeq, last.reaction, last.text], [1n, true, ""], "the blocker's devices are told");
  });

  // As the chat server's: a named message's refusal waits for the block's, so the blocked learn they are
  // blocked whatever they name, and one mode does not answer not_found where the other answers blocked.
  it("refuses a reply, a reaction or an edit naming a missing message in a blocked direct chat as blocked, not as not found", async () => {
    const dm = (await storage.channels.getOrCreateDirect({ channelId: 20n, kind: "direct", title: "", createdAtMs: 1, createdBy: ALICE.userId }, ALICE.userId, BOB.userId)).channelId;
    for (const u of [ALICE, BOB]) await storage.accounts.createUser({ userId: u.userId, username: `u${u.userId}`, displayName: "", passwordHash: "", createdAtMs: 1 });
    const s = new DirectSubmitter({ ...deps(), blocks: new BlockCache(storage.accounts, { ttlMs: 0 }) });
    await s.submit(BOB, { channelId: dm, clientMsgId: "m", text: "hi" });
    await storage.accounts.putBlock(BOB.userId, ALICE.userId, 2);
    for (const named of [{ replyToSeq: 9n, text: "re" }, { reactSeq: 9n, text: "👍" }, { editSeq: 9n, text: "x" }]) {
      await assert.rejects(s.submit(ALICE, { channelId: dm, clientMsgId: `n${Object.keys(named)[0]}`, ...named }), (e: Error & { code?: string }) => e.code === "blocked", Object.keys(named)[0]);
    }
  });

  it("refuses a send to a direct chat that is not its pair's (a candidate that lost its creation race), writing nothing, and keeps no pair for it", async () => {
    const dm = (await storage.channels.getOrCreateDirect({ channelId: 20n, kind: "direct", title: "", createdAtMs: 1, createdBy: ALICE.userId }, ALICE.userId, BOB.userId)).channelId;
    // As Cassandra reads a candidate between its rows and its lost claim: the pair's claim names another channel.
    let claim = 21n;
    const channels = Object.create(storage.channels) as typeof storage.channels;
    channels.directChannelOf = async () => claim;
    const s = new DirectSubmitter({ ...deps(), channels });
    for (const clientMsgId of ["m1", "m2"]) {
      await assert.rejects(s.submit(ALICE, { channelId: dm, clientMsgId, text: "hi" }), (e: Error & { code?: string }) => e.code === "not_a_member");
    }
    assert.deepStrictEqual([...(await storage.messages.latest([dm])).keys()], []);
    claim = dm;
    const sent = await s.submit(ALICE, { channelId: dm, clientMsgId: "m3", text: "hi" });
    assert.equal((await storage.messages.latest([dm])).get(dm)?.messageId, sent.messageId);
  });

  // Refused with no retry time: the api answered no chat-retry-after-ms, a session's Error frame a retry of 0.
  it("refuses a send whose write failed (the file locked) with an engine outage's retry time", async () => {
    const locked = { write: () => Promise.reject(new Database.SqliteError("database is locked", "SQLITE_BUSY")) } as unknown as MessageWriter;
    const failing = new DirectSubmitter({ ...deps(), writer: locked });
    const e = await failing.submit(ALICE, { channelId: GROUP, clientMsgId: "m", text: "hi" }).catch((x: unknown) => x);
    assert.equal((e as { code?: string }).code, "unavailable");
    assert.equal(toConnectError(e).metadata.get(RETRY_AFTER_HEADER), String(ENGINE_RETRY_AFTER_MS));
  });

  it(`refuses an edit of a message edited ${MAX_EDITS_PER_MESSAGE} times with limit_reached, and still deletes it, emptying every copy`, async () => {
    await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "m", text: "draft" });
    for (let i = 1; i <= MAX_EDITS_PER_MESSAGE; i++) await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: `e${i}`, text: `draft ${i}`, editSeq: 1n });
    await assert.rejects(submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "one more", text: "draft, again", editSeq: 1n }), (e: Error & { code?: string }) =>
      e.code === "limit_reached" && e.message === `message 1 was edited ${MAX_EDITS_PER_MESSAGE} times, the most a message can be: send a new one`);
    assert.equal((await storage.messages.get(GROUP, 1n))!.text, `draft ${MAX_EDITS_PER_MESSAGE}`);
    // An edit to the text it has would add no edit: answered, and nothing written.
    const same = await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "same", text: `draft ${MAX_EDITS_PER_MESSAGE}`, editSeq: 1n });
    assert.equal(same.duplicate, false);
    assert.equal((await storage.inbox.readAfter(BOB.userId, 0n, 1_000)).length, MAX_EDITS_PER_MESSAGE + 1);
    // A resend of an edit that was stored is still acked with its id.
    const last = await storage.messages.findChange(GROUP, ALICE.userId, ALICE.deviceId, `e${MAX_EDITS_PER_MESSAGE}`);
    assert.deepStrictEqual(await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: `e${MAX_EDITS_PER_MESSAGE}`, text: "x", editSeq: 1n }), { messageId: last, duplicate: true });
    await submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "d", text: "", deleteSeq: 1n });
    const inbox = await storage.inbox.readAfter(BOB.userId, 0n, 1_000);
    assert.equal(inbox.length, MAX_EDITS_PER_MESSAGE + 2);
    assert.deepEqual(inbox.filter((e) => e.message.text !== ""), [], "no text left in the sync queue");
  });

  describe("changes that change nothing", () => {
    const GROUP_CMD = { channelId: GROUP, text: "" };
    const entriesOf = async (userId: bigint) => (await storage.inbox.readAfter(userId, 0n, 1_000)).length;
    const ALICE_WEB: Sender = { userId: ALICE.userId, deviceId: 12n };

    it("acks an edit to the same text, the same reaction again and taking back none, copying them to no inbox; a resend gets the same answer", async () => {
      await submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "m", text: "hi" });
      await submitter.submit(BOB, { ...GROUP_CMD, clientMsgId: "like", text: "👍", reactSeq: 1n });
      const before = [await entriesOf(ALICE.userId), await entriesOf(BOB.userId)];
      const sends: [Sender, SendCommand][] = [
        [ALICE, { ...GROUP_CMD, clientMsgId: "same text", text: "hi", editSeq: 1n }],
        [BOB, { ...GROUP_CMD, clientMsgId: "like again", text: "👍", reactSeq: 1n }],
        [ALICE, { ...GROUP_CMD, clientMsgId: "take back none", text: "", reactSeq: 1n }],
      ];
      for (const [sender, cmd] of sends) {
        const ack = await submitter.submit(sender, cmd);
        assert.equal(ack.duplicate, false, cmd.clientMsgId);
        // A reaction is kept for its key; the edit nowhere (it would mark the message edited).
        const kept = await storage.messages.findChange(GROUP, sender.userId, sender.deviceId, cmd.clientMsgId);
        assert.equal(kept, cmd.reactSeq ? ack.messageId : undefined, `${cmd.clientMsgId}: its key`);
        assert.deepStrictEqual(await submitter.submit(sender, cmd), { messageId: ack.messageId, duplicate: true }, `${cmd.clientMsgId}: its resend`);
      }
      assert.deepEqual([await entriesOf(ALICE.userId), await entriesOf(BOB.userId)], before, "no inbox entry for anyone");
      const m = (await storage.messages.get(GROUP, 1n))!;
      assert.deepEqual([m.text, m.editedAtMs, m.reactions], ["hi", undefined, [{ userId: BOB.userId, emoji: "👍" }]]);
    });

    it("answers a resend of one the same even after a later change made it one that would change something, a reaction also after a restart", async () => {
      await submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "m", text: "hi" });
      await submitter.submit(BOB, { ...GROUP_CMD, clientMsgId: "like", text: "👍", reactSeq: 1n });
      const again = { ...GROUP_CMD, clientMsgId: "like again", text: "👍", reactSeq: 1n };
      const same = { ...GROUP_CMD, clientMsgId: "same", text: "hi", editSeq: 1n };
      const [liked, kept] = [await submitter.submit(BOB, again), await submitter.submit(ALICE, same)];
      await submitter.submit(BOB, { ...GROUP_CMD, clientMsgId: "unlike", text: "", reactSeq: 1n });
      await submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "edit", text: "hi?", editSeq: 1n });
      // The acks lost, sent again in order: the device's last word stands.
      assert.deepStrictEqual(await submitter.submit(BOB, again), { messageId: liked.messageId, duplicate: true });
      assert.deepStrictEqual(await submitter.submit(ALICE, same), { messageId: kept.messageId, duplicate: true });
      const restarted = new DirectSubmitter(deps());
      assert.deepStrictEqual(await restarted.submit(BOB, again), { messageId: liked.messageId, duplicate: true }, "a reaction's, after a restart");
      const m = (await storage.messages.get(GROUP, 1n))!;
      assert.deepEqual([m.text, m.reactions], ["hi?", undefined]);
    });

    it("copies to every inbox a change that reads as changing nothing while an earlier change of the same user is in flight: the device's order stands", async () => {
      await submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "m", text: "hi" });
      // Sent back to back: the second's check reads the message before the first is written.
      const changes = [
        submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "e1", text: "hi?", editSeq: 1n }),
        submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "e2", text: "hi", editSeq: 1n }),
        submitter.submit(ALICE_WEB, { ...GROUP_CMD, clientMsgId: "r1", text: "👍", reactSeq: 1n }),
        submitter.submit(ALICE_WEB, { ...GROUP_CMD, clientMsgId: "r2", text: "", reactSeq: 1n }),
      ];
      await Promise.all(changes);
      const m = (await storage.messages.get(GROUP, 1n))!;
      assert.deepEqual([m.text, m.reactions], ["hi", undefined]);
      assert.equal(await entriesOf(BOB.userId), 5, "the message and its four changes");
    });

    it("gives an edit to the same text and its resend racing it (two sessions of one device) one answer, and writes neither", async () => {
      await submitter.submit(ALICE, { ...GROUP_CMD, clientMsgId: "m", text: "hi" });
      const before = await entriesOf(BOB.userId);
      const same = { ...GROUP_CMD, clientMsgId: "same", text: "hi", editSeq: 1n };
      const [first, resend] = await Promise.all([submitter.submit(ALICE, same), submitter.submit(ALICE, same)]);
      assert.deepStrictEqual([first.duplicate, resend], [false, { messageId: first.messageId, duplicate: true }]);
      assert.equal(await entriesOf(BOB.userId), before, "no inbox entry");
      assert.equal((await storage.messages.get(GROUP, 1n))!.editedAtMs, undefined, "not marked edited");
    });

    it("refuses a delete of a deleted message, sent after it or racing it, writing nothing", async () => {
      await submitter.submit(BOB, { ...GROUP_CMD, clientMsgId: "m", text: "oops" });
      const del = { ...GROUP_CMD, clientMsgId: "d", deleteSeq: 1n };
      const answers = await Promise.allSettled([submitter.submit(ALICE, del), submitter.submit(BOB, del)]);
      const done = answers.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
      const refused = answers.flatMap((a) => (a.status === "rejected" ? [(a.reason as { code?: string }).code] : []));
      assert.deepEqual([done.length, refused], [1, ["not_found"]], "one of two racing deletes");
      await assert.rejects(submitter.submit(BOB, { ...del, clientMsgId: "d2" }), (e: Error & { code?: string }) => e.code === "not_found");
      assert.equal(await entriesOf(BOB.userId), 2, "the message and one delete");
    });
  });

  describe("a group's roster changing while a send is checked", () => {
    const CAROL = 3n;
    /** The channel seqs of the messages in the user's inbox (notes included), ascending. */
    const seqsOf = async (userId: bigint) => (await storage.inbox.readAfter(userId, 0n, 1_000)).map((e) => e.message.seq);
    /** The history's seqs from the first to the last of `seqs`: what a member from then until then holds, with no gap. */
    const span = (seqs: bigint[]) => Array.from({ length: seqs.length && Number(seqs.at(-1)! - seqs[0]!) + 1 }, (_, i) => seqs[0]! + BigInt(i));

    it("copies the send to the members as they are when it is stored: a member added meanwhile misses no message after joining", async () => {
      await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" });
      // The reply's check reads its target; the add and its note land meanwhile, as the api makes them.
      const reply = submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n });
      await storage.channels.addMembers(GROUP, [{ channelId: GROUP, userId: CAROL, role: "member", joinedAtMs: 2, readSeq: 0n }], 100);
      await submitter.note(ALICE, GROUP, { kind: "members_added", userIds: [CAROL] });
      await reply;
      await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "later", text: "later" });
      const carols = await seqsOf(CAROL);
      assert.deepStrictEqual(carols, span(carols), "no gap in Carol's copies");
      assert.equal(carols.at(-1), 4n);
    });

    it("copies it to no member removed meanwhile past their removal, and refuses it from a sender removed meanwhile", async () => {
      await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" });
      const reply = submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n });
      await storage.channels.removeMember(GROUP, BOB.userId);
      const removal = await submitter.note(ALICE, GROUP, { kind: "member_removed", userIds: [BOB.userId] });
      await reply;
      const removedAt = (await storage.messages.findByClientMsgId(GROUP, ALICE.userId, ALICE.deviceId, `note:${removal.messageId}`))!.seq;
      assert.deepStrictEqual((await seqsOf(BOB.userId)).filter((seq) => seq > removedAt), [], "nothing after Bob's removal");

      const own = submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "own", text: "my own", replyToSeq: 1n });
      await storage.channels.removeMember(GROUP, ALICE.userId);
      await assert.rejects(own, (e: Error & { code?: string }) => e.code === "not_a_member");
      assert.equal(await storage.messages.findByClientMsgId(GROUP, ALICE.userId, ALICE.deviceId, "own"), undefined);
    });
  });

  it("stores a device's sends in the order it sent them, though a reply's check reads more than a plain send's", async () => {
    await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" });
    const reply = submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "r", text: "yes", replyToSeq: 1n });
    const plain = submitter.submit(ALICE, { channelId: GROUP, clientMsgId: "p", text: "and another thing" });
    await Promise.all([reply, plain]);
    const page = await storage.messages.page(GROUP, { anchorSeq: 0n, direction: "forward", limit: 10 });
    assert.deepStrictEqual(
      [...page].sort((a, b) => Number(a.seq - b.seq)).map((m) => m.text),
      ["question", "yes", "and another thing"],
    );
  });
});
