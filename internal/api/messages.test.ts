import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import type { ReceiptEvent } from "../../gen/es/chat/v1/session_pb.js";
import { PAGE_TEXT_BYTES } from "../messages/page-bytes.js";
import { utf8BytesAtMost } from "../model/types.js";
import { SEARCH_SCAN_TEXT_BYTES } from "./messages-service.js";
import { SqliteMessageLog } from "../storage/sqlite/message-log.js";
import { ChatError } from "../model/errors.js";
import { rpcError, TestApi, type TestUser } from "./testkit.js";

describe("api: MessageService", () => {
  let api: TestApi;
  let a: TestUser;
  let b: TestUser;
  let channelId: bigint;
  beforeEach(async () => {
    api = await TestApi.start();
    a = await api.signUp();
    b = await api.signUp();
    channelId = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
  });
  afterEach(async () => api.close());

  /** How many entries or messages each store read returns: a page of long texts should cost what it sends, not its limit. */
  function countReads(): number[] {
    const reads: number[] = [];
    const { inbox, messages: log } = api.storage;
    const [readAfter, page] = [inbox.readAfter.bind(inbox), log.page.bind(log)];
    inbox.readAfter = async (...args) => {
      const got = await readAfter(...args);
      reads.push(got.length);
      return got;
    };
    log.page = async (...args) => {
      const got = await page(...args);
      reads.push(got.length);
      return got;
    };
    return reads;
  }

  async function sendMany(n: number) {
    for (let i = 1; i <= n; i++) {
      await (i % 2 ? a : b).c.messages.sendMessage({ channelId, clientMsgId: `m${i}`, text: `text ${i}` });
    }
  }

  it("refuses a text of 100,000 code points in SendMessage, as a send and as an edit, with TEXT_TOO_LONG", async () => {
    const text = "x".repeat(100_000);
    for (const err of [
      await rpcError(() => a.c.messages.sendMessage({ channelId, clientMsgId: "long", text })),
      await rpcError(async () => {
        await a.c.messages.sendMessage({ channelId, clientMsgId: "short", text: "hi" });
        await a.c.messages.sendMessage({ channelId, clientMsgId: "long-edit", text, editSeq: 1n });
      }),
    ]) {
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(err.chatCode, "ERROR_CODE_TEXT_TOO_LONG");
    }
  });

  it("sends idempotently by client_msg_id", async () => {
    const first = await a.c.messages.sendMessage({ channelId, clientMsgId: "k1", text: "hi" });
    const again = await a.c.messages.sendMessage({ channelId, clientMsgId: "k1", text: "hi" });
    assert.equal(first.duplicate, false);
    assert.equal(again.duplicate, true);
    assert.equal(again.messageId, first.messageId);
    const empty = await rpcError(() => a.c.messages.sendMessage({ channelId, clientMsgId: "k2", text: "  " }));
    assert.equal(empty.code, Code.InvalidArgument);
    assert.equal(empty.chatCode, "ERROR_CODE_TEXT_EMPTY");
    // Nothing visible is empty too: a zero-width space, a Hangul filler.
    const blank = await rpcError(() => a.c.messages.sendMessage({ channelId, clientMsgId: "k3", text: "\u200b\u3164" }));
    assert.equal(blank.chatCode, "ERROR_CODE_TEXT_EMPTY");
  });

  it("pages history backward from the newest and forward from an anchor", async () => {
    await sendMany(7);
    const seqs = (ms: { seq: bigint }[]) => ms.map((m) => Number(m.seq));

    const newest = await a.c.messages.listMessages({ channelId, limit: 3 });
    assert.deepEqual(seqs(newest.messages), [7, 6, 5]);
    assert.equal(newest.hasMore, true);
    assert.equal(newest.messages[0]!.text, "text 7");
    assert.equal(newest.messages[0]!.senderUserId, a.userId);
    const older = await a.c.messages.listMessages({ channelId, anchorSeq: 5n, limit: 3, direction: PageDirection.BACKWARD });
    assert.deepEqual(seqs(older.messages), [4, 3, 2]);
    const oldest = await a.c.messages.listMessages({ channelId, anchorSeq: 2n, limit: 3 });
    assert.deepEqual(seqs(oldest.messages), [1]);
    assert.equal(oldest.hasMore, false);

    const fwd = await b.c.messages.listMessages({ channelId, anchorSeq: 3n, limit: 2, direction: PageDirection.FORWARD });
    assert.deepEqual(seqs(fwd.messages), [4, 5]);
    assert.equal(fwd.hasMore, true);
    const rest = await b.c.messages.listMessages({ channelId, anchorSeq: 5n, direction: PageDirection.FORWARD });
    assert.deepEqual(seqs(rest.messages), [6, 7]);
    assert.equal(rest.hasMore, false);

    const all = await a.c.messages.listMessages({ channelId, limit: 10_000 });
    assert.equal(all.messages.length, 7, "limit is clamped, not refused");
    // A direction this server does not know (a newer client's) is refused, not taken for backward.
    const unknown = await rpcError(() => a.c.messages.listMessages({ channelId, anchorSeq: 3n, direction: 7 as PageDirection }));
    assert.equal(unknown.code, Code.InvalidArgument);
    assert.match(unknown.rawMessage, /direction/);
  });

  describe("searching a channel", () => {
    /** Appends straight to the log: history long enough to pass the scan budget, quickly. */
    async function history(texts: (i: number) => string, n: number) {
      for (let i = 1; i <= n; i++) {
        await api.storage.messages.append({
          messageId: BigInt(1_000_000 + i),
          channelId,
          senderUserId: a.userId,
          senderDeviceId: a.deviceId,
          clientMsgId: `h${i}`,
          text: texts(i),
          sentAtMs: i,
        });
      }
    }
    const seqs = (ms: { seq: bigint }[]) => ms.map((m) => Number(m.seq));

    it("finds the messages with every word, in any case, newest first, in pages", async () => {
      await history((i) => (i % 3 === 0 ? `Lunch at the CAFÉ #${i}` : i % 3 === 1 ? `lunch #${i}` : `dinner #${i}`), 9);
      const first = await b.c.messages.searchMessages({ channelId, query: "  café   LUNCH ", limit: 2 });
      assert.deepEqual(seqs(first.messages), [9, 6]);
      assert.equal(first.nextBeforeSeq, 6n);
      const rest = await b.c.messages.searchMessages({ channelId, query: "café lunch", beforeSeq: first.nextBeforeSeq });
      assert.deepEqual(seqs(rest.messages), [3]);
      assert.equal(rest.nextBeforeSeq, 0n, "the scan reached the first message");
      assert.deepEqual(seqs((await b.c.messages.searchMessages({ channelId, query: "ﬁsh" })).messages), [], "nothing matches: an empty page");
    });

    it("folds case as Unicode does: ß is ss, a word-final ς is σ, İ is i", async () => {
      await history((i) => ["Treffen in der STRASSE", "Die Straße ist zu", "ΟΔΟΣΤΡΩΜΑ βρεγμένο", "Η ΟΔΟΣ είναι κλειστή", "İSTANBUL'da buluşalım", "ẞ"][i - 1]!, 6);
      const find = async (query: string) => seqs((await b.c.messages.searchMessages({ channelId, query })).messages);
      assert.deepEqual(await find("straße"), [2, 1], "ß and SS are one word, whichever the query has");
      assert.deepEqual(await find("STRASSE"), [2, 1]);
      assert.deepEqual(await find("ss"), [6, 2, 1], "the capital ẞ too");
      assert.deepEqual(await find("ΟΔΟΣ"), [4, 3], "a query ending in Σ finds the word it begins");
      assert.deepEqual(await find("οδος"), [4, 3]);
      assert.deepEqual(await find("istanbul"), [5], "İ is the i typed without it");
    });

    it("reads past characters that show nothing: a soft hyphen, a zero-width space, an emoji's variation selector", async () => {
      await history((i) => ["Mittag\u00ADessen um eins", "see you at lun\u200Bch", "love it ❤️", "love it too ❤"][i - 1]!, 4);
      const find = async (query: string) => seqs((await b.c.messages.searchMessages({ channelId, query })).messages);
      assert.deepEqual(await find("mittagessen"), [1]);
      assert.deepEqual(await find("lunch"), [2]);
      assert.deepEqual(await find("❤"), [4, 3], "the heart with or without its emoji selector");
      assert.deepEqual(await find("❤️"), [4, 3]);
      const none = await rpcError(() => b.c.messages.searchMessages({ channelId, query: "\u200B\u00AD" }));
      assert.deepEqual([none.code, none.rawMessage], [Code.InvalidArgument, "query must have at least one word"]);
    });

    it("says nothing older is left when the page ends at what the caller cleared", async () => {
      await history((i) => `lunch ${i}`, 4);
      await b.c.channels.clearHistory({ channelId, throughSeq: 2n });
      const page = await b.c.messages.searchMessages({ channelId, query: "lunch", limit: 2 });
      assert.deepEqual([seqs(page.messages), page.nextBeforeSeq], [[4, 3], 0n], "seq 3 is the oldest b has");
      const older = await b.c.messages.searchMessages({ channelId, query: "lunch", limit: 2, beforeSeq: 4n });
      assert.deepEqual([seqs(older.messages), older.nextBeforeSeq], [[3], 0n]);
    });

    it("scans at most 2,000 messages a call and says where to go on", async () => {
      await history((i) => (i === 5 ? "the needle" : `hay ${i}`), 2_300);
      const first = await a.c.messages.searchMessages({ channelId, query: "needle" });
      assert.deepEqual(first.messages, []);
      assert.equal(first.nextBeforeSeq, 301n, "2,000 scanned back from 2,300");
      const next = await a.c.messages.searchMessages({ channelId, query: "needle", beforeSeq: first.nextBeforeSeq });
      assert.deepEqual(seqs(next.messages), [5]);
      assert.equal(next.nextBeforeSeq, 0n);
    });

    it("scans at most SEARCH_SCAN_TEXT_BYTES of text a call and says where to go on", async () => {
      const long = "hay ".repeat(24_000); // 96,000 code points, under the limit
      await history((i) => (i === 1 ? `${long}needle` : long), 40);
      const perCall = Math.floor(SEARCH_SCAN_TEXT_BYTES / utf8BytesAtMost(long));
      const reads = countReads();
      const first = await a.c.messages.searchMessages({ channelId, query: "needle" });
      assert.deepEqual(first.messages, []);
      assert.equal(first.nextBeforeSeq, BigInt(40 - perCall + 1));
      assert.deepEqual(reads, [perCall + 1], "the scanned messages and the one past the budget, not a page of 200");
      let next = first.nextBeforeSeq;
      let calls = 1;
      let hit: bigint[] = [];
      while (next !== 0n) {
        const page = await a.c.messages.searchMessages({ channelId, query: "needle", beforeSeq: next });
        hit = [...hit, ...page.messages.map((m) => m.seq)];
        next = page.nextBeforeSeq;
        calls++;
      }
      assert.deepEqual([hit, calls], [[1n], Math.ceil(40 / perCall)]);
    });

    it("counts a text as long as it folds to: what NFKC makes 18 times longer costs 18 times the scan", async () => {
      const wide = "\uFDFA".repeat(5_000); // each folds to 18 letters and spaces
      await history(() => wide, 40);
      const perCall = Math.floor(SEARCH_SCAN_TEXT_BYTES / utf8BytesAtMost(wide.normalize("NFKC")));
      assert.ok(perCall > 1 && perCall < 40);
      const first = await a.c.messages.searchMessages({ channelId, query: "needle" });
      assert.equal(first.nextBeforeSeq, BigInt(40 - perCall + 1));
    });

    it("answers at most about a megabyte of text, as a page of history, and the next call starts at the first left out", async () => {
      const long = "hay ".repeat(24_000); // 96,000 code points, under the limit
      await history(() => long, 15);
      const perPage = Math.floor(PAGE_TEXT_BYTES / utf8BytesAtMost(long));
      assert.ok(perPage > 1 && perPage < 15);
      const pages: number[][] = [];
      for (let beforeSeq = 0n, first = true; first || beforeSeq !== 0n; first = false) {
        const page = await a.c.messages.searchMessages({ channelId, query: "hay", limit: 100, beforeSeq });
        pages.push(seqs(page.messages));
        beforeSeq = page.nextBeforeSeq;
      }
      assert.deepEqual(pages[0], [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1].slice(0, perPage));
      assert.deepEqual(pages.flat(), [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1], "every match once, none skipped");
    });

    it("refuses non-members and empty or overlong queries", async () => {
      const stranger = await api.signUp();
      assert.equal((await rpcError(() => stranger.c.messages.searchMessages({ channelId, query: "x" }))).code, Code.PermissionDenied);
      const empty = await rpcError(() => a.c.messages.searchMessages({ channelId, query: "   " }));
      assert.deepEqual([empty.code, empty.rawMessage], [Code.InvalidArgument, "query must have at least one word"]);
      const long = await rpcError(() => a.c.messages.searchMessages({ channelId, query: "a".repeat(257) }));
      assert.equal(long.code, Code.InvalidArgument);
    });
  });

  it("stops a page of history or of the inbox at about a megabyte of text, saying there is more", async () => {
    const long = "hay ".repeat(24_000); // 96,000 code points, under the limit
    for (let i = 1; i <= 15; i++) await a.c.messages.sendMessage({ channelId, clientMsgId: `long${i}`, text: long });
    const perPage = Math.floor(PAGE_TEXT_BYTES / utf8BytesAtMost(long));
    assert.ok(perPage > 1 && perPage < 15);
    const reads = countReads();
    const pages: number[] = [];
    for (let anchorSeq = 0n, more = true; more; ) {
      const page = await b.c.messages.listMessages({ channelId, limit: 200, anchorSeq });
      pages.push(page.messages.length);
      [anchorSeq, more] = [page.messages.at(-1)!.seq, page.hasMore];
    }
    const inbox: number[] = [];
    for (let afterInboxSeq = 0n, more = true; more; ) {
      const page = await b.c.messages.syncInbox({ limit: 1000, afterInboxSeq });
      inbox.push(page.entries.length);
      [afterInboxSeq, more] = [page.entries.at(-1)!.inboxSeq, page.hasMore];
    }
    const expected = [...Array<number>(Math.floor(15 / perPage)).fill(perPage), 15 % perPage].filter((n) => n > 0);
    assert.deepEqual(pages, expected);
    assert.deepEqual(inbox, expected);
    // Every page but the last read the entry after it too (has_more), and nothing further.
    const readPerPage = expected.map((n, i) => (i < expected.length - 1 ? n + 1 : n));
    assert.deepEqual(reads, [...readPerPage, ...readPerPage]);
  });

  it("syncs the inbox after a cursor, with head and has_more", async () => {
    await sendMany(5);
    const s1 = await b.c.messages.syncInbox({ limit: 2 });
    assert.deepEqual(s1.entries.map((e) => e.inboxSeq), [1n, 2n]);
    assert.equal(s1.headInboxSeq, 5n);
    assert.equal(s1.hasMore, true);
    assert.equal(s1.entries[0]!.message?.text, "text 1");
    const s2 = await b.c.messages.syncInbox({ afterInboxSeq: 2n });
    assert.deepEqual(s2.entries.map((e) => e.inboxSeq), [3n, 4n, 5n]);
    assert.equal(s2.hasMore, false);
    const none = await b.c.messages.syncInbox({ afterInboxSeq: 5n });
    assert.deepEqual(none.entries, []);
    assert.equal(none.headInboxSeq, 5n);
  });

  it("marks read forward only, capped at the newest message, and pushes receipts", async () => {
    await sendMany(4);
    api.sessions.pushes = [];
    assert.equal((await b.c.messages.markRead({ channelId, seq: 3n })).readSeq, 3n);
    assert.equal((await b.c.messages.markRead({ channelId, seq: 1n })).readSeq, 3n, "never backward");
    assert.equal((await b.c.messages.markRead({ channelId, seq: 99n })).readSeq, 4n, "never past the newest");

    // b sent 2 and 4, so the others were shown b at 4 already: reading to 3 tells them nothing (it was a
    // receipt that moved b back), nor does one that moved nothing; b's own devices hear each, as the realtime path has it.
    const receipts = api.sessions.framesOf("receipt").map((r) => [r.userIds, (r.frame.kind.value as ReceiptEvent).seq]);
    assert.deepEqual(receipts, [[[b.userId], 3n], [[b.userId], 3n], [[a.userId, b.userId], 4n]]);
    const ev = api.sessions.framesOf("receipt")[2]!.frame.kind.value as ReceiptEvent;
    assert.deepEqual([ev.channelId, ev.userId, ev.seq], [channelId, b.userId, 4n]);

    const ch = (await b.c.channels.describeChannel({ channelId })).channel!;
    assert.equal(ch.readSeq, 4n);
    assert.equal(ch.unreadCount, 0n);

    const outsider = await api.signUp();
    assert.equal((await rpcError(() => outsider.c.messages.markRead({ channelId, seq: 1n }))).code, Code.PermissionDenied);
  });

  // With the routes unreadable every MarkRead of every user was a line of its own.
  it("warns of a receipt whose push fails once, not once per MarkRead", async () => {
    await api.close();
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warned.push(msg), error: () => {}, info: () => {}, debug: () => {}, child: () => logger };
    api = await TestApi.start({ logger: logger as never });
    a = await api.signUp();
    b = await api.signUp();
    channelId = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    await sendMany(10);
    api.sessions.pushToUsers = () => Promise.reject(new Error("routes could not be read"));
    for (let seq = 1n; seq <= 10n; seq++) assert.equal((await b.c.messages.markRead({ channelId, seq })).readSeq, seq);
    assert.deepEqual(warned.filter((m) => m === "receipt push failed"), ["receipt push failed"]);
  });

  // The position was stored before the member list failed to read: the retry moved nothing, so it went to
  // the reader alone, and the peer was never told of it live.
  it("tells the other members on the retry of a read mark whose member list could not be read once it was stored", async () => {
    await sendMany(3); // a: 1, 3; b: 2
    const { channels } = api.storage;
    const listMembers = channels.listMembers.bind(channels);
    let fails = 1;
    channels.listMembers = async (...args) => {
      if (fails-- > 0) throw new ChatError("unavailable", "member list away", 100);
      return listMembers(...args);
    };
    api.sessions.pushes = [];
    assert.equal((await rpcError(() => b.c.messages.markRead({ channelId, seq: 3n }))).code, Code.Unavailable);
    assert.equal((await b.c.messages.markRead({ channelId, seq: 3n })).readSeq, 3n);
    assert.deepEqual(api.sessions.framesOf("receipt").map((r) => r.userIds), [[a.userId, b.userId]]);
    // Told once: a repeat moves nothing and goes to the reader alone.
    await b.c.messages.markRead({ channelId, seq: 3n });
    assert.deepEqual(api.sessions.framesOf("receipt").map((r) => r.userIds), [[a.userId, b.userId], [b.userId]]);
  });

  it("never pushes the other members a receipt below what ListMembers shows them of the reader", async () => {
    await sendMany(3); // a: 1, 3; b: 2
    assert.equal((await a.c.messages.markRead({ channelId, seq: 3n })).readSeq, 3n);
    const shownOfA = async () => (await b.c.channels.listMembers({ channelId })).members.find((m) => m.userId === a.userId)!.readSeq;
    assert.equal(await shownOfA(), 3n);
    api.sessions.pushes = [];
    // Below a's own stored position: nothing moved, nothing told to b.
    await a.c.messages.markRead({ channelId, seq: 1n });
    assert.equal(await shownOfA(), 3n);
    for (const r of api.sessions.framesOf("receipt")) {
      const seq = (r.frame.kind.value as ReceiptEvent).seq;
      assert.ok(!r.userIds.includes(b.userId) || seq >= 3n, `b was pushed a's receipt at ${seq}, below the 3 ListMembers shows`);
    }
    await b.c.messages.sendMessage({ channelId, clientMsgId: "x", text: "four" });
    await a.c.messages.sendMessage({ channelId, clientMsgId: "y", text: "five" });
    api.sessions.pushes = [];
    assert.equal((await a.c.messages.markRead({ channelId, seq: 4n })).readSeq, 4n);
    assert.equal(await shownOfA(), 5n);
    assert.deepEqual(api.sessions.framesOf("receipt").map((r) => r.userIds), [[a.userId]], "a's own 5 shows a further already");
  });

  it("a read mark reads the channel's member list once (whom to tell) and no other member's messages", async () => {
    await sendMany(3); // a: 1, 3; b: 2
    const { channels, messages: log } = api.storage;
    const calls = { listMembers: 0, newestBySender: 0 };
    const [listMembers, newestBySender] = [channels.listMembers.bind(channels), log.newestBySender.bind(log)];
    channels.listMembers = async (...args) => (calls.listMembers++, listMembers(...args));
    log.newestBySender = async (...args) => (calls.newestBySender++, newestBySender(...args));
    api.sessions.pushes = [];
    assert.equal((await b.c.messages.markRead({ channelId, seq: 3n })).readSeq, 3n);
    assert.deepEqual(calls, { listMembers: 1, newestBySender: 0 });
    assert.deepEqual(api.sessions.framesOf("receipt").map((r) => r.userIds.length), [2], "a moved receipt still goes to both");
  });

  it("a moved read mark reads the channel's newest message once: the store's read that capped it, asked again of whether the reader sent after it", async () => {
    await sendMany(3); // a: 1, 3; b: 2
    // On the prototype: the channel store caps by a log of its own, beside the api's.
    const latest = SqliteMessageLog.prototype.latest;
    let reads = 0;
    SqliteMessageLog.prototype.latest = function (this: SqliteMessageLog, ...args) {
      reads++;
      return latest.apply(this, args);
    };
    try {
      assert.equal((await b.c.messages.markRead({ channelId, seq: 2n })).readSeq, 2n);
    } finally {
      SqliteMessageLog.prototype.latest = latest;
    }
    assert.equal(reads, 1);
    // a's 3 is after b's 2, and not b's own: the receipt still goes to both.
    assert.deepEqual(api.sessions.framesOf("receipt").map((r) => r.userIds.length), [2]);
  });

  describe("uint64 values past the stores' signed 64 bits", () => {
    const HUGE = (1n << 64n) - 1n;

    it("refuses ids past 2^63-1 with invalid_argument naming the field", async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["channel_id", () => a.c.channels.describeChannel({ channelId: HUGE })],
        ["channel_id", () => a.c.messages.listMessages({ channelId: HUGE })],
        ["channel_id", () => a.c.messages.sendMessage({ channelId: HUGE, clientMsgId: "k", text: "x" })],
        ["edit_seq", () => a.c.messages.sendMessage({ channelId, clientMsgId: "k", text: "x", editSeq: HUGE })],
        ["delete_seq", () => a.c.messages.sendMessage({ channelId, clientMsgId: "k", text: "", deleteSeq: HUGE })],
        ["reply_to_seq", () => a.c.messages.sendMessage({ channelId, clientMsgId: "k", text: "x", replyToSeq: HUGE })],
        ["react_seq", () => a.c.messages.sendMessage({ channelId, clientMsgId: "k", text: "👍", reactSeq: HUGE })],
        ["user_id", () => a.c.channels.openDirect({ userId: HUGE })],
        ["member_user_ids", () => a.c.channels.createGroup({ title: "t", memberUserIds: [HUGE] })],
        ["user_ids", () => a.c.users.getUsers({ userIds: [b.userId, HUGE] })],
        ["user_ids", () => a.c.presence.getPresence({ userIds: [HUGE] })],
        ["user_id", () => a.c.users.blockUser({ userId: HUGE })],
        ["user_id", () => a.c.users.unblockUser({ userId: HUGE })],
        ["user_id", () => a.c.users.removeFriend({ userId: HUGE })],
        ["device_id", () => a.c.auth.revokeDevice({ deviceId: HUGE })],
      ];
      for (const [field, call] of calls) {
        const e = await rpcError(call);
        assert.equal(e.code, Code.InvalidArgument, `${field}: ${e.rawMessage}`);
        assert.match(e.rawMessage, new RegExp(`^${field} `));
      }
      const token = Buffer.from(`0:1:${HUGE}`).toString("base64url");
      assert.equal((await rpcError(() => a.c.channels.listChannels({ pageToken: token }))).code, Code.InvalidArgument);
    });

    it("reads a page or scan bound past 2^63-1 as one past every seq", async () => {
      await sendMany(3);
      const newest = await a.c.messages.listMessages({ channelId, anchorSeq: HUGE });
      assert.deepEqual(newest.messages.map((m) => m.seq), [3n, 2n, 1n]);
      const after = await a.c.messages.listMessages({ channelId, anchorSeq: HUGE, direction: PageDirection.FORWARD });
      assert.deepEqual([after.messages, after.hasMore], [[], false]);
      const found = await a.c.messages.searchMessages({ channelId, query: "text", beforeSeq: HUGE });
      assert.deepEqual(found.messages.map((m) => m.seq), [3n, 2n, 1n]);
      const synced = await b.c.messages.syncInbox({ afterInboxSeq: HUGE });
      assert.deepEqual([synced.entries, synced.headInboxSeq, synced.expiredThrough], [[], 3n, 0n]);
      assert.equal((await b.c.messages.markRead({ channelId, seq: HUGE })).readSeq, 3n);
      const cleared = (await b.c.channels.clearHistory({ channelId, throughSeq: HUGE })).channel!;
      assert.equal(cleared.clearedThroughSeq, 3n);
    });
  });
});
