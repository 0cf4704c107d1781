import assert from "node:assert/strict";
import type { MessageLog } from "../../messages/log.js";
import { withinTextBytes } from "../../messages/page-bytes.js";
import type { ChannelNote, NewMessage, StoredMessage } from "../../model/types.js";
import { AWKWARD_SHORT_TEXTS, longAwkwardText, uniqueId, uniqueName, type MakeStore, type StoreHandle } from "./helpers.js";

/** Declares the MessageLog contract; every adapter runs it unchanged. */
export function messageLogContract(makeStore: MakeStore<MessageLog>): void {
  describe("MessageLog contract", function () {
    let h: StoreHandle<MessageLog>;
    let log: MessageLog;
    before(async () => {
      h = await makeStore();
      log = h.store;
    });
    after(async () => h?.close());

    const msg = (channelId: bigint, over: Partial<NewMessage> = {}): NewMessage => ({
      messageId: uniqueId(),
      channelId,
      senderUserId: uniqueId(),
      senderDeviceId: uniqueId(),
      clientMsgId: uniqueName("c-"),
      text: "hello",
      sentAtMs: 1_767_225_600_000,
      ...over,
    });
    /** Appends n messages to a fresh channel; returns them as stored. */
    const fill = async (n: number): Promise<{ channelId: bigint; stored: StoredMessage[] }> => {
      const channelId = uniqueId();
      const stored: StoredMessage[] = [];
      for (let i = 0; i < n; i++) stored.push((await log.append(msg(channelId, { text: `m${i + 1}` }))).message);
      return { channelId, stored };
    };
    const seqs = (ms: StoredMessage[]) => ms.map((m) => m.seq);
    const range = (from: number, to: number, step = 1) => {
      const out: bigint[] = [];
      for (let i = from; step > 0 ? i <= to : i >= to; i += step) out.push(BigInt(i));
      return out;
    };

    describe("append", () => {
      it("stores the message with seq 1 in a new channel, fields intact", async () => {
        const m = msg(uniqueId());
        const r = await log.append(m);
        assert.deepStrictEqual(r, { message: { ...m, seq: 1n }, duplicate: false });
        assert.deepStrictEqual(await log.page(m.channelId, { anchorSeq: 0n, direction: "forward", limit: 10 }), [
          { ...m, seq: 1n },
        ]);
      });

      it("numbers many appends gap-free from 1, per channel", async () => {
        const [c1, c2] = [uniqueId(), uniqueId()];
        const got1: bigint[] = [];
        const got2: bigint[] = [];
        for (let i = 0; i < 300; i++) {
          got1.push((await log.append(msg(c1))).message.seq);
          if (i % 3 === 0) got2.push((await log.append(msg(c2))).message.seq);
        }
        assert.deepStrictEqual(got1, range(1, 300));
        assert.deepStrictEqual(got2, range(1, 100));
        const all = await log.page(c1, { anchorSeq: 0n, direction: "forward", limit: 1000 });
        assert.deepStrictEqual(seqs(all), range(1, 300));
      });

      it("appends in flight together take seqs in call order; a resend among them gets the first copy", async () => {
        const channelId = uniqueId();
        const ms = Array.from({ length: 12 }, (_, i) => msg(channelId, { text: `m${i + 1}` }));
        const resend = { ...ms[2]!, messageId: uniqueId(), text: "again" };
        const calls = [...ms.slice(0, 6), resend, ...ms.slice(6)];
        const results = await Promise.all(calls.map((m) => log.append(m)));
        assert.deepStrictEqual(results.map((r) => r.message.seq), [...range(1, 6), 3n, ...range(7, 12)]);
        assert.deepStrictEqual(results[6], { message: { ...ms[2]!, seq: 3n }, duplicate: true });
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 100 }),
          ms.map((m, i) => ({ ...m, seq: BigInt(i + 1) })));
      });

      it("a repeated (channel, sender, device, clientMsgId) returns the stored one with duplicate = true", async () => {
        const channelId = uniqueId();
        const first = msg(channelId);
        const stored = (await log.append(first)).message;
        const retry = { ...first, messageId: uniqueId(), text: "different", sentAtMs: first.sentAtMs + 5 };
        assert.deepStrictEqual(await log.append(retry), { message: stored, duplicate: true });
        const next = await log.append(msg(channelId));
        assert.equal(next.message.seq, 2n, "a duplicate must not use up a seq");
        assert.deepStrictEqual(seqs(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 })), [
          1n,
          2n,
        ]);
      });

      it("the same clientMsgId from another sender or in another channel is a new message", async () => {
        const channelId = uniqueId();
        const first = msg(channelId);
        await log.append(first);
        const otherSender = await log.append({ ...first, messageId: uniqueId(), senderUserId: uniqueId() });
        assert.deepStrictEqual([otherSender.duplicate, otherSender.message.seq], [false, 2n]);
        const otherChannel = await log.append({ ...first, messageId: uniqueId(), channelId: uniqueId() });
        assert.deepStrictEqual([otherChannel.duplicate, otherChannel.message.seq], [false, 1n]);
      });

      it("the same clientMsgId from two devices of one sender is two messages; each device's resend is its own duplicate", async () => {
        // client_msg_id is unique per sending device (session.proto): a phone
        // and a web client both counting from "1" must not swallow each other.
        const channelId = uniqueId();
        const phone = msg(channelId, { clientMsgId: "1", text: "from the phone" });
        const web = { ...phone, messageId: uniqueId(), senderDeviceId: uniqueId(), text: "from the web" };
        const a = await log.append(phone);
        const b = await log.append(web);
        assert.deepStrictEqual(b, { message: { ...web, seq: 2n }, duplicate: false });
        assert.deepStrictEqual(await log.append({ ...web, messageId: uniqueId(), text: "web again" }), { message: b.message, duplicate: true });
        assert.deepStrictEqual(await log.append({ ...phone, messageId: uniqueId() }), { message: a.message, duplicate: true });
        assert.deepStrictEqual(await log.findByClientMsgId(channelId, phone.senderUserId, phone.senderDeviceId, "1"), a.message);
        assert.deepStrictEqual(await log.findByClientMsgId(channelId, phone.senderUserId, web.senderDeviceId, "1"), b.message);
        assert.equal(await log.findByClientMsgId(channelId, phone.senderUserId, uniqueId(), "1"), undefined);
        assert.deepStrictEqual((await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 })).map((m) => m.text),
          ["from the phone", "from the web"]);
      });

      it("two devices' same clientMsgId in flight together take two seqs; a resend among them gets its own device's", async () => {
        const channelId = uniqueId();
        const phone = msg(channelId, { clientMsgId: "1" });
        const web = { ...phone, messageId: uniqueId(), senderDeviceId: uniqueId(), text: "web" };
        const results = await Promise.all([phone, web, { ...phone, messageId: uniqueId() }, { ...web, messageId: uniqueId() }]
          .map((m) => log.append(m)));
        assert.deepStrictEqual(results.map((r) => [r.message.seq, r.duplicate]), [[1n, false], [2n, false], [1n, true], [2n, true]]);
        assert.deepStrictEqual(results.map((r) => r.message.messageId), [phone.messageId, web.messageId, phone.messageId, web.messageId]);
      });

      it("texts come back identical: emoji, astral, combining, RTL, NUL, empty", async () => {
        const channelId = uniqueId();
        for (const text of AWKWARD_SHORT_TEXTS) {
          const m = msg(channelId, { text });
          const stored = (await log.append(m)).message;
          assert.equal((await log.findByClientMsgId(channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId))?.text, text);
          assert.equal(stored.text, text);
        }
      });

      it("a text of the maximum length comes back byte-identical", async () => {
        const text = longAwkwardText();
        const m = msg(uniqueId(), { text });
        await log.append(m);
        const [got] = await log.page(m.channelId, { anchorSeq: 0n, direction: "backward", limit: 1 });
        assert.ok(got);
        assert.equal(got.text.length, text.length);
        assert.ok(Buffer.from(got.text, "utf8").equals(Buffer.from(text, "utf8")));
        assert.equal(got.text, text);
      });
    });

    describe("findByClientMsgId", () => {
      it("finds by (channel, sender, device, clientMsgId) and nothing else", async () => {
        const m = msg(uniqueId());
        const stored = (await log.append(m)).message;
        assert.deepStrictEqual(await log.findByClientMsgId(m.channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId), stored);
        assert.equal(await log.findByClientMsgId(m.channelId, uniqueId(), m.senderDeviceId, m.clientMsgId), undefined);
        assert.equal(await log.findByClientMsgId(m.channelId, m.senderUserId, uniqueId(), m.clientMsgId), undefined);
        assert.equal(await log.findByClientMsgId(uniqueId(), m.senderUserId, m.senderDeviceId, m.clientMsgId), undefined);
        assert.equal(await log.findByClientMsgId(m.channelId, m.senderUserId, m.senderDeviceId, uniqueName("c-")), undefined);
      });
    });

    describe("page", () => {
      it("backward from 0n starts at the newest, newest first", async () => {
        const { channelId, stored } = await fill(10);
        const got = await log.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 4 });
        assert.deepStrictEqual(got, stored.slice(6).reverse());
      });

      it("backward is exclusive of the anchor and stops at seq 1", async () => {
        const { channelId, stored } = await fill(10);
        assert.deepStrictEqual(
          seqs(await log.page(channelId, { anchorSeq: 7n, direction: "backward", limit: 3 })),
          range(6, 4, -1),
        );
        assert.deepStrictEqual(
          await log.page(channelId, { anchorSeq: 3n, direction: "backward", limit: 10 }),
          stored.slice(0, 2).reverse(),
        );
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 1n, direction: "backward", limit: 10 }), []);
        assert.deepStrictEqual(
          seqs(await log.page(channelId, { anchorSeq: 100n, direction: "backward", limit: 2 })),
          [10n, 9n],
        );
      });

      it("forward is exclusive of the anchor, oldest first", async () => {
        const { channelId, stored } = await fill(10);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 3 }), stored.slice(0, 3));
        assert.deepStrictEqual(
          seqs(await log.page(channelId, { anchorSeq: 7n, direction: "forward", limit: 10 })),
          range(8, 10),
        );
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 10n, direction: "forward", limit: 10 }), []);
      });

      it("walking backward page by page visits every message once", async () => {
        const { channelId, stored } = await fill(23);
        const seen: StoredMessage[] = [];
        let anchor = 0n;
        for (;;) {
          const p = await log.page(channelId, { anchorSeq: anchor, direction: "backward", limit: 5 });
          if (p.length === 0) break;
          seen.push(...p);
          anchor = p[p.length - 1]!.seq;
        }
        assert.deepStrictEqual(seen, [...stored].reverse());
      });

      it("with textBytes, stops past the budget: what withinTextBytes keeps, then the message after it", async () => {
        const channelId = uniqueId();
        const long = "😀".repeat(500); // 3,000 bytes by utf8BytesAtMost; "short" is 15
        const stored: StoredMessage[] = [];
        for (let i = 0; i < 10; i++) stored.push((await log.append(msg(channelId, { text: i === 4 ? "short" : long }))).message);
        const page = async (anchorSeq: bigint, direction: "backward" | "forward", limit: number, textBytes: number) =>
          seqs(await log.page(channelId, { anchorSeq, direction, limit, textBytes }));
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10, textBytes: 7_000 }), stored.slice(0, 3));
        assert.deepStrictEqual(await page(0n, "backward", 10, 7_000), range(10, 8, -1));
        assert.deepStrictEqual(await page(0n, "backward", 10, 6_000), range(10, 8, -1), "two texts exactly at the budget fit");
        assert.deepStrictEqual(await page(0n, "forward", 10, 100), range(1, 2), "the first message whatever its size, then the next");
        assert.deepStrictEqual(await page(8n, "backward", 10, 6_100), range(7, 4, -1), "a short text costs its own size");
        assert.deepStrictEqual(await page(3n, "forward", 10, 6_100), range(4, 7));
        assert.deepStrictEqual(await page(0n, "forward", 2, 1 << 20), range(1, 2), "the limit still holds");
        assert.deepStrictEqual(await page(7n, "forward", 10, 1 << 20), range(8, 10), "under the budget, to the end");
        assert.deepStrictEqual(await page(2n, "backward", 10, 100), [1n], "the first message, alone");
        // A reader that keeps withinTextBytes of each page visits every message once.
        const seen: StoredMessage[] = [];
        for (let anchorSeq = 0n; ; ) {
          const got = await log.page(channelId, { anchorSeq, direction: "backward", limit: 10, textBytes: 7_000 });
          if (got.length === 0) break;
          const kept = withinTextBytes(got, (m) => m, 7_000);
          assert.ok(got.length <= kept.length + 1, `read ${got.length} to send ${kept.length}`);
          seen.push(...kept);
          anchorSeq = kept[kept.length - 1]!.seq;
        }
        assert.deepStrictEqual(seen, [...stored].reverse());
      });

      it("an unknown channel has no pages", async () => {
        for (const direction of ["backward", "forward"] as const) {
          assert.deepStrictEqual(await log.page(uniqueId(), { anchorSeq: 0n, direction, limit: 10 }), []);
        }
      });
    });

    describe("lastSentBy", () => {
      it("finds the newest seq a sender sent within the window, and nothing outside it", async () => {
        const channelId = uniqueId();
        const [me, other] = [uniqueId(), uniqueId()];
        // me at 1..3, 150 and 152; other everywhere else up to 160 (past a bucket boundary).
        for (let i = 1; i <= 160; i++) {
          const mine = i <= 3 || i === 150 || i === 152;
          await log.append(msg(channelId, { senderUserId: mine ? me : other }));
        }
        assert.equal(await log.lastSentBy(channelId, me, 1n, 160n), 152n);
        assert.equal(await log.lastSentBy(channelId, me, 1n, 151n), 150n);
        assert.equal(await log.lastSentBy(channelId, me, 100n, 149n), undefined);
        assert.equal(await log.lastSentBy(channelId, me, 0n, 2n), 2n);
        assert.equal(await log.lastSentBy(channelId, other, 1n, 160n), 160n);
        assert.equal(await log.lastSentBy(channelId, uniqueId(), 1n, 160n), undefined);
        assert.equal(await log.lastSentBy(uniqueId(), me, 1n, 160n), undefined);
      });

      it("counts a note as its actor's, but not a join by link's: its joiner read nothing before it", async () => {
        const channelId = uniqueId();
        const [joiner, other] = [uniqueId(), uniqueId()];
        await log.append(msg(channelId, { senderUserId: other }));
        await log.append(msg(channelId, { senderUserId: joiner }));
        await log.append(msg(channelId, { senderUserId: joiner, text: "", note: { kind: "joined_by_invite", userIds: [] } }));
        await log.append(msg(channelId, { senderUserId: joiner, text: "", note: { kind: "title_changed", userIds: [], title: "t" } }));
        await log.append(msg(channelId, { senderUserId: joiner, text: "", note: { kind: "joined_by_invite", userIds: [] } }));
        assert.equal(await log.lastSentBy(channelId, joiner, 1n, 5n), 4n);
        assert.equal(await log.lastSentBy(channelId, joiner, 1n, 3n), 2n);
        assert.equal(await log.lastSentBy(channelId, joiner, 3n, 3n), undefined);
      });
    });

    describe("newestBySender", () => {
      it("finds each sender's newest seq within the window, a note counting as its actor's but a join by link left out", async () => {
        const channelId = uniqueId();
        const [me, other, noter, joiner] = [uniqueId(), uniqueId(), uniqueId(), uniqueId()];
        // me at 1, 2 and 150; noter only notes (3 and 154); joiner only the note of their join (155); other
        // everywhere else up to 160 (past a bucket boundary).
        const notes = new Map<number, ChannelNote>([
          [3, { kind: "title_changed", userIds: [], title: "t" }],
          [154, { kind: "members_added", userIds: [uniqueId()] }],
          [155, { kind: "joined_by_invite", userIds: [] }],
        ]);
        for (let i = 1; i <= 160; i++) {
          const sender = i <= 2 || i === 150 ? me : i === 3 || i === 154 ? noter : i === 155 ? joiner : other;
          const note = notes.get(i);
          await log.append(msg(channelId, { senderUserId: sender, ...(note ? { text: "", note } : {}) }));
        }
        const sorted = (m: Map<bigint, bigint>) => [...m].sort((a, b) => (a[1] < b[1] ? -1 : 1));
        assert.deepStrictEqual(sorted(await log.newestBySender(channelId, 1n, 160n)), [[me, 150n], [noter, 154n], [other, 160n]]);
        assert.deepStrictEqual(sorted(await log.newestBySender(channelId, 0n, 3n)), [[me, 2n], [noter, 3n]]);
        assert.deepStrictEqual(sorted(await log.newestBySender(channelId, 151n, 159n)), [[noter, 154n], [other, 159n]]);
        assert.deepStrictEqual(sorted(await log.newestBySender(channelId, 155n, 155n)), []);
        assert.deepStrictEqual(sorted(await log.newestBySender(uniqueId(), 1n, 160n)), []);
      });
    });

    describe("replies", () => {
      it("keep what they answer everywhere the message is read, through an edit; the next message answers nothing", async () => {
        const { channelId, stored } = await fill(1);
        const reply = (await log.append(msg(channelId, { text: "re", replyToSeq: 1n }))).message;
        assert.equal(reply.replyToSeq, 1n);
        assert.deepStrictEqual(await log.get(channelId, 2n), reply);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 }), [stored[0], reply]);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), reply);
        assert.deepStrictEqual(await log.findByClientMsgId(channelId, reply.senderUserId, reply.senderDeviceId, reply.clientMsgId), reply);
        const edit = msg(channelId, { senderUserId: reply.senderUserId, text: "re, edited", targetSeq: 2n, sentAtMs: reply.sentAtMs + 1 });
        assert.deepStrictEqual(await log.amend(edit), { ...reply, text: "re, edited", editedAtMs: edit.sentAtMs });
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), { ...reply, text: "re, edited", editedAtMs: edit.sentAtMs });
        const plain = (await log.append(msg(channelId, { text: "plain" }))).message;
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), plain);
        assert.equal("replyToSeq" in plain, false);
      });
    });

    describe("notes", () => {
      it("keep what they tell everywhere the message is read; the next message carries none", async () => {
        const { channelId } = await fill(1);
        const note = { kind: "members_added" as const, userIds: [uniqueId(), uniqueId()] };
        const stored = (await log.append(msg(channelId, { text: "", note }))).message;
        assert.deepStrictEqual(stored.note, note);
        assert.deepStrictEqual(await log.get(channelId, 2n), stored);
        assert.deepStrictEqual((await log.page(channelId, { anchorSeq: 1n, direction: "forward", limit: 10 }))[0], stored);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), stored);
        const titled = (await log.append(msg(channelId, { text: "", note: { kind: "title_changed", userIds: [], title: "new ✨" } }))).message;
        assert.deepStrictEqual((await log.get(channelId, 3n))?.note, { kind: "title_changed", userIds: [], title: "new ✨" });
        const role = (await log.append(msg(channelId, { text: "", note: { kind: "role_changed", userIds: [1n], role: "admin" } }))).message;
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 2n, direction: "forward", limit: 10 }), [titled, role]);
        const plain = (await log.append(msg(channelId, { text: "plain" }))).message;
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), plain);
        assert.equal("note" in plain, false);
      });
    });

    describe("changes (amend, get)", () => {
      const change = (target: StoredMessage, over: Partial<NewMessage> = {}): NewMessage =>
        msg(target.channelId, { senderUserId: target.senderUserId, text: "edited", sentAtMs: target.sentAtMs + 60_000, targetSeq: target.seq, ...over });

      it("get returns a stored message by seq, and nothing for a missing seq or channel", async () => {
        const { channelId, stored } = await fill(3);
        assert.deepStrictEqual(await log.get(channelId, 2n), stored[1]);
        assert.equal(await log.get(channelId, 4n), undefined);
        assert.equal(await log.get(uniqueId(), 1n), undefined);
      });

      it("an edit sets the text and editedAtMs; history, get and latest show it; the seq and the rest stay", async () => {
        const { channelId, stored } = await fill(3);
        const edit = change(stored[2]!, { text: "new text 😀" });
        const edited = { ...stored[2]!, text: "new text 😀", editedAtMs: edit.sentAtMs };
        assert.deepStrictEqual(await log.amend(edit), edited);
        assert.deepStrictEqual(await log.get(channelId, 3n), edited);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 }), [stored[0], stored[1], edited]);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), edited);
        // An edit of an older message leaves the newest alone.
        const older = change(stored[0]!, { text: "first, edited" });
        assert.deepStrictEqual(await log.amend(older), { ...stored[0]!, text: "first, edited", editedAtMs: older.sentAtMs });
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), edited);
      });

      it("a delete empties the text and sets deleted, everywhere the message is read", async () => {
        const { channelId, stored } = await fill(2);
        const del = change(stored[1]!, { text: "", deleted: true });
        const deleted = { ...stored[1]!, text: "", deleted: true };
        assert.deepStrictEqual(await log.amend(del), deleted);
        assert.deepStrictEqual(await log.get(channelId, 2n), deleted);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 10 }), [deleted, stored[0]]);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), deleted);
      });

      it("a deleted message takes no further change: an edit or another delete does not apply", async () => {
        const { channelId, stored } = await fill(1);
        const deleted = await log.amend(change(stored[0]!, { text: "", deleted: true }));
        assert.equal(await log.amend(change(stored[0]!, { text: "back from the dead" })), undefined);
        assert.equal(await log.amend(change(stored[0]!, { text: "", deleted: true })), undefined);
        assert.deepStrictEqual(await log.get(channelId, 1n), deleted);
      });

      it("the same change applied again returns the same result; an older change after a newer one does not apply", async () => {
        const { channelId, stored } = await fill(1);
        const first = change(stored[0]!, { text: "one" });
        const second = change(stored[0]!, { text: "two", sentAtMs: first.sentAtMs + 1_000 });
        assert.ok(second.messageId > first.messageId);
        const one = await log.amend(first);
        assert.deepStrictEqual(await log.amend(first), one);
        const two = { ...stored[0]!, text: "two", editedAtMs: second.sentAtMs };
        assert.deepStrictEqual(await log.amend(second), two);
        assert.equal(await log.amend(first), undefined);
        assert.deepStrictEqual(await log.amend(second), two);
        assert.deepStrictEqual(await log.get(channelId, 1n), two);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), two);
      });

      it("a change resent under a new id (its send key taken) never applies again, even after a later change; findChange answers the first id", async () => {
        const { channelId, stored } = await fill(1);
        const phone = change(stored[0]!, { text: "v1" });
        const web = change(stored[0]!, { text: "v2", senderDeviceId: uniqueId() });
        await log.amend(phone);
        const two = await log.amend(web);
        const resent = { ...phone, messageId: uniqueId() }; // minted again by a chat server that forgot the send
        assert.ok(resent.messageId > web.messageId);
        assert.equal(await log.amend(resent), undefined);
        assert.deepStrictEqual(await log.get(channelId, 1n), two);
        assert.equal(await log.findChange(channelId, phone.senderUserId, phone.senderDeviceId, phone.clientMsgId), phone.messageId);
        assert.equal(await log.findChange(channelId, phone.senderUserId, uniqueId(), phone.clientMsgId), undefined, "another device's key");

        // A reaction taken back, and the first one resent: it stays taken back.
        const like = msg(channelId, { text: "👍", sentAtMs: stored[0]!.sentAtMs + 1_000, targetSeq: 1n, reaction: true });
        await log.amend(like);
        await log.amend({ ...like, messageId: uniqueId(), clientMsgId: uniqueName("c-"), text: "" });
        assert.equal(await log.amend({ ...like, messageId: uniqueId() }), undefined);
        assert.equal("reactions" in (await log.get(channelId, 1n))!, false);
      });

      it("a delete applies after an edit minted later (acked as deleted for everyone, it wins), and ends the message's changes", async () => {
        const { channelId, stored } = await fill(1);
        const del = change(stored[0]!, { text: "", deleted: true });
        const laterEdit = change(stored[0]!, { text: "edited on another server" });
        assert.ok(laterEdit.messageId > del.messageId);
        await log.amend(laterEdit);
        const deleted = { ...stored[0]!, text: "", deleted: true };
        assert.deepStrictEqual(await log.amend(del), deleted);
        assert.equal(await log.amend(laterEdit), undefined, "the edit replayed after the delete");
        assert.deepStrictEqual(await log.amend(del), deleted, "the delete replayed");
        assert.deepStrictEqual(await log.get(channelId, 1n), deleted);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), deleted);
      });

      it("lists a message's edits oldest first, without deletes or edits that did not apply, and none of other messages", async () => {
        const { channelId, stored } = await fill(2);
        assert.deepStrictEqual(await log.editsOf(channelId, 1n), []);
        const e1 = change(stored[0]!, { text: "one" });
        const e2 = change(stored[0]!, { text: "two" });
        await log.amend(e2);
        await log.amend(e1); // older than e2: does not apply
        const e3 = change(stored[0]!, { text: "three" });
        await log.amend(e3);
        await log.amend(e3); // replayed
        await log.amend(change(stored[1]!, { text: "other" }));
        const del = change(stored[0]!, { text: "", deleted: true });
        await log.amend(del);
        assert.deepStrictEqual(await log.editsOf(channelId, 1n), [e2.messageId, e3.messageId]);
        assert.deepStrictEqual(await log.editsOf(channelId, 1n, 1), [e2.messageId], "the oldest, with a limit");
        assert.deepStrictEqual(await log.editsOf(channelId, 1n, 5), [e2.messageId, e3.messageId]);
        assert.equal((await log.editsOf(channelId, 2n)).length, 1);
        assert.deepStrictEqual(await log.editsOf(uniqueId(), 1n), []);
      });

      it("changes to a missing seq or channel do not apply", async () => {
        const { stored } = await fill(1);
        assert.equal(await log.amend(change({ ...stored[0]!, seq: 2n })), undefined);
        assert.equal(await log.amend(change({ ...stored[0]!, channelId: uniqueId() })), undefined);
      });

      it("changes in flight together apply in call order: an edit after a delete is dropped, whatever the timing", async () => {
        const { channelId, stored } = await fill(2);
        const results = await Promise.all([
          log.amend(change(stored[0]!, { text: "edit a" })),
          log.amend(change(stored[0]!, { text: "", deleted: true })),
          log.amend(change(stored[0]!, { text: "edit b" })),
          log.amend(change(stored[1]!, { text: "edit c" })),
        ]);
        assert.equal(results[0]?.text, "edit a");
        assert.equal(results[1]?.deleted, true);
        assert.equal(results[2], undefined);
        assert.equal(results[3]?.text, "edit c");
        assert.deepStrictEqual(await log.get(channelId, 1n), { ...stored[0]!, text: "", deleted: true });
      });

      it("an edited message keeps a maximum-length text byte-identical", async () => {
        const { channelId, stored } = await fill(1);
        const text = longAwkwardText().slice(0, -2);
        await log.amend(change(stored[0]!, { text }));
        assert.equal((await log.get(channelId, 1n))?.text, text);
      });

      it("appends after a change carry no trace of it; the newest is the new message", async () => {
        const { channelId, stored } = await fill(1);
        await log.amend(change(stored[0]!, { text: "", deleted: true }));
        const next = (await log.append(msg(channelId, { text: "after" }))).message;
        assert.deepStrictEqual(next.deleted, undefined);
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), next);
        assert.deepStrictEqual(await log.get(channelId, 2n), next);
      });
    });

    describe("reactions (amend with reaction)", () => {
      const react = (target: StoredMessage, userId: bigint, emoji: string): NewMessage =>
        msg(target.channelId, { senderUserId: userId, text: emoji, sentAtMs: target.sentAtMs + 1_000, targetSeq: target.seq, reaction: true });

      it("shows on the message in get and page, one per user by user id; latest and other messages show none", async () => {
        const { channelId, stored } = await fill(2);
        const [a, b] = [uniqueId(), uniqueId()];
        assert.deepStrictEqual(await log.amend(react(stored[0]!, b, "👍")), { ...stored[0]!, reactions: [{ userId: b, emoji: "👍" }] });
        const both = { ...stored[0]!, reactions: [{ userId: a, emoji: "👨‍👩‍👧‍👦" }, { userId: b, emoji: "👍" }] };
        assert.deepStrictEqual(await log.amend(react(stored[0]!, a, "👨‍👩‍👧‍👦")), both);
        assert.deepStrictEqual(await log.get(channelId, 1n), both);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 }), [both, stored[1]]);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 1 }), [stored[1]]);
        // The channel list's newest message goes without its reactions.
        await log.amend(react(stored[1]!, a, "😂"));
        assert.deepStrictEqual((await log.latest([channelId])).get(channelId), stored[1]);
      });

      it("a user's later reaction replaces theirs; an empty one takes it back; none left is no key at all", async () => {
        const { channelId, stored } = await fill(1);
        const [a, b] = [uniqueId(), uniqueId()];
        await log.amend(react(stored[0]!, a, "👍"));
        await log.amend(react(stored[0]!, b, "😮"));
        assert.deepStrictEqual(await log.amend(react(stored[0]!, a, "❤️")), { ...stored[0]!, reactions: [{ userId: a, emoji: "❤️" }, { userId: b, emoji: "😮" }] });
        assert.deepStrictEqual(await log.amend(react(stored[0]!, a, "")), { ...stored[0]!, reactions: [{ userId: b, emoji: "😮" }] });
        await log.amend(react(stored[0]!, b, ""));
        assert.deepStrictEqual(await log.get(channelId, 1n), stored[0]);
        assert.equal("reactions" in (await log.get(channelId, 1n))!, false);
        assert.deepStrictEqual(await log.amend(react(stored[0]!, b, "🙏")), { ...stored[0]!, reactions: [{ userId: b, emoji: "🙏" }] });
      });

      it("the same reaction again answers the same; an older one after a newer one (also a taken-back one) does not apply", async () => {
        const { channelId, stored } = await fill(1);
        const a = uniqueId();
        const first = react(stored[0]!, a, "👍");
        const second = react(stored[0]!, a, "");
        assert.ok(second.messageId > first.messageId);
        const one = await log.amend(first);
        assert.deepStrictEqual(await log.amend(first), one);
        assert.deepStrictEqual(await log.amend(second), stored[0]);
        assert.equal(await log.amend(first), undefined);
        assert.deepStrictEqual(await log.amend(second), stored[0]);
        assert.deepStrictEqual(await log.get(channelId, 1n), stored[0]);
      });

      it("stay through an edit; a deleted message shows none and takes none; they are not among its edits", async () => {
        const { channelId, stored } = await fill(1);
        const a = uniqueId();
        await log.amend(react(stored[0]!, a, "👍"));
        const edit = msg(channelId, { senderUserId: stored[0]!.senderUserId, text: "edited", sentAtMs: stored[0]!.sentAtMs + 2_000, targetSeq: 1n });
        const edited = { ...stored[0]!, text: "edited", editedAtMs: edit.sentAtMs, reactions: [{ userId: a, emoji: "👍" }] };
        assert.deepStrictEqual(await log.amend(edit), edited);
        assert.deepStrictEqual(await log.get(channelId, 1n), edited);
        assert.deepStrictEqual(await log.editsOf(channelId, 1n), [edit.messageId]);
        const deleted = { ...stored[0]!, text: "", deleted: true };
        assert.deepStrictEqual(await log.amend(msg(channelId, { senderUserId: a, text: "", targetSeq: 1n, deleted: true })), deleted);
        assert.equal(await log.amend(react(stored[0]!, a, "😢")), undefined);
        assert.deepStrictEqual(await log.get(channelId, 1n), deleted);
        assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 }), [deleted]);
      });

      it("to a missing seq or channel does not apply", async () => {
        const { stored } = await fill(1);
        assert.equal(await log.amend(react({ ...stored[0]!, seq: 2n }, uniqueId(), "👍")), undefined);
        assert.equal(await log.amend(react({ ...stored[0]!, channelId: uniqueId() }, uniqueId(), "👍")), undefined);
      });

      it("in flight together with edits and deletes apply in call order", async () => {
        const { channelId, stored } = await fill(1);
        const [a, b] = [uniqueId(), uniqueId()];
        const results = await Promise.all([
          log.amend(react(stored[0]!, a, "👍")),
          log.amend(react(stored[0]!, b, "❤️")),
          log.amend(msg(channelId, { senderUserId: a, text: "", targetSeq: 1n, deleted: true })),
          log.amend(react(stored[0]!, a, "😂")),
        ]);
        assert.deepStrictEqual(results[1]?.reactions, [{ userId: a, emoji: "👍" }, { userId: b, emoji: "❤️" }]);
        assert.equal(results[2]?.deleted, true);
        assert.equal(results[3], undefined);
      });
    });

    describe("amendIfChanges", () => {
      const change = (target: StoredMessage, over: Partial<NewMessage> = {}): NewMessage =>
        msg(target.channelId, { senderUserId: target.senderUserId, text: "edited", sentAtMs: target.sentAtMs + 60_000, targetSeq: target.seq, ...over });
      const react = (target: StoredMessage, userId: bigint, emoji: string): NewMessage => change(target, { senderUserId: userId, text: emoji, reaction: true });
      const keyOf = (m: NewMessage) => log.findChange(m.channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId);

      it("applies a change as amend does and says it changed the message", async () => {
        const { channelId, stored } = await fill(1);
        const a = uniqueId();
        const liked = { ...stored[0]!, reactions: [{ userId: a, emoji: "👍" }] };
        assert.deepStrictEqual(await log.amendIfChanges(react(stored[0]!, a, "👍")), { message: liked, changed: true });
        const edit = change(stored[0]!, { text: "new" });
        const edited = { ...liked, text: "new", editedAtMs: edit.sentAtMs };
        assert.deepStrictEqual(await log.amendIfChanges(edit), { message: edited, changed: true });
        assert.deepStrictEqual(await log.get(channelId, 1n), edited);
        const deleted = { ...stored[0]!, text: "", deleted: true };
        assert.deepStrictEqual(await log.amendIfChanges(change(stored[0]!, { text: "", deleted: true })), { message: deleted, changed: true });
        assert.equal(await log.amendIfChanges(change(stored[0]!, { text: "" })), undefined, "an edit of a deleted message");
        assert.equal(await log.amendIfChanges(change({ ...stored[0]!, seq: 2n })), undefined, "a missing seq");
      });

      it("tells an edit to the text the message has and stores it nowhere; a reaction its sender has, or taking back one they have not, is stored for its key", async () => {
        const { channelId, stored } = await fill(1);
        const [a, b] = [uniqueId(), uniqueId()];
        const liked = (await log.amend(react(stored[0]!, a, "👍")))!;
        const same = change(stored[0]!, { text: stored[0]!.text });
        assert.deepStrictEqual(await log.amendIfChanges(same), { message: liked, changed: false });
        assert.deepStrictEqual(await log.get(channelId, 1n), liked, "not marked edited");
        assert.deepStrictEqual(await log.editsOf(channelId, 1n), [], "not counted among its edits");
        assert.equal(await keyOf(same), undefined, "no key held");
        for (const noop of [react(stored[0]!, a, "👍"), react(stored[0]!, b, "")]) {
          assert.deepStrictEqual(await log.amendIfChanges(noop), { message: liked, changed: false });
          assert.equal(await keyOf(noop), noop.messageId, "its key held: a resend minted again is this one");
          assert.equal(await log.amendIfChanges({ ...noop, messageId: uniqueId() }), undefined, "that resend");
        }
        assert.deepStrictEqual(await log.get(channelId, 1n), liked);
      });

      it("judges each change after the changes called before it applied, in flight together", async () => {
        const { channelId, stored } = await fill(1);
        const a = uniqueId();
        const changed = async (ms: NewMessage[]) => (await Promise.all(ms.map((m) => log.amendIfChanges(m)))).map((r) => r?.changed);
        // Each of these changes nothing as the message was, and something after the one before it.
        assert.deepStrictEqual(
          await changed([change(stored[0]!, { text: "x" }), change(stored[0]!, { text: stored[0]!.text }), react(stored[0]!, a, "👍"), react(stored[0]!, a, "")]),
          [true, true, true, true],
        );
        // And each of these something as it was, nothing after the one before it.
        assert.deepStrictEqual(
          await changed([change(stored[0]!, { text: "y" }), change(stored[0]!, { text: "y" }), react(stored[0]!, a, "😂"), react(stored[0]!, a, "😂")]),
          [true, false, true, false],
        );
        assert.deepStrictEqual(await log.get(channelId, 1n), { ...stored[0]!, text: "y", editedAtMs: stored[0]!.sentAtMs + 60_000, reactions: [{ userId: a, emoji: "😂" }] });
      });

      it("counts the same change again (a retried record, its key its own) as changed: the state it finds may be its own doing", async () => {
        const { stored } = await fill(1);
        const a = uniqueId();
        const edit = change(stored[0]!, { text: "once" });
        const first = await log.amendIfChanges(edit);
        assert.equal(first?.changed, true);
        assert.equal(first?.again, undefined);
        // Said to be applied before: the sequencer counts a change once, however often its record comes.
        assert.deepStrictEqual(await log.amendIfChanges(edit), { ...first, again: true });
        const like = react(stored[0]!, a, "👍");
        assert.deepStrictEqual(await log.amendIfChanges(like).then((r) => [r?.changed, r?.again]), [true, undefined]);
        assert.deepStrictEqual(await log.amendIfChanges(like).then((r) => [r?.changed, r?.again]), [true, true]);
        const again = react(stored[0]!, a, "👍");
        assert.equal((await log.amendIfChanges(again))?.changed, false);
        assert.equal((await log.amendIfChanges(again))?.changed, true, "its retry, which cannot tell");
        const gone = change(stored[0]!, { text: "", deleted: true });
        assert.equal((await log.amendIfChanges(gone))?.again, undefined);
        assert.equal((await log.amendIfChanges(gone))?.again, true);
      });
    });

    describe("latest", () => {
      it("returns the newest message of each channel that has any", async () => {
        const a = await fill(3);
        const b = await fill(1);
        const empty = uniqueId();
        const got = await log.latest([a.channelId, empty, b.channelId]);
        assert.equal(got.size, 2);
        assert.deepStrictEqual(got.get(a.channelId), a.stored[2]);
        assert.deepStrictEqual(got.get(b.channelId), b.stored[0]);
        assert.equal(got.has(empty), false);
        assert.equal((await log.latest([])).size, 0);
      });

      it("latestSentAt tells when each channel's newest message was sent, as latest does, through an edit", async () => {
        const a = uniqueId();
        const b = uniqueId();
        const empty = uniqueId();
        const T = 1_767_225_600_000;
        await log.append(msg(a, { sentAtMs: T + 1 }));
        const newest = (await log.append(msg(a, { sentAtMs: T + 2, text: "😀".repeat(1000) }))).message;
        await log.append(msg(b, { sentAtMs: T + 3 }));
        await log.amend(msg(a, { senderUserId: newest.senderUserId, text: "edited", sentAtMs: T + 60_000, targetSeq: newest.seq }));
        assert.deepStrictEqual(await log.latestSentAt([a, empty, b]), new Map([[a, T + 2], [b, T + 3]]));
        const latest = await log.latest([a, b]);
        assert.deepStrictEqual([latest.get(a)?.sentAtMs, latest.get(b)?.sentAtMs], [T + 2, T + 3]);
        assert.equal((await log.latestSentAt([])).size, 0);
      });

      it("handles many channels at once", async () => {
        const chans = [];
        for (let i = 0; i < 50; i++) chans.push(await fill(1 + (i % 3)));
        const got = await log.latest(chans.map((c) => c.channelId));
        assert.equal(got.size, 50);
        for (const c of chans) assert.deepStrictEqual(got.get(c.channelId), c.stored[c.stored.length - 1]);
      });
    });
  });
}
