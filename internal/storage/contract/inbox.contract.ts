import assert from "node:assert/strict";
import type { Inbox } from "../../messages/inbox.js";
import { withinTextBytes } from "../../messages/page-bytes.js";
import type { StoredMessage } from "../../model/types.js";
import { AWKWARD_SHORT_TEXTS, longAwkwardText, uniqueId, uniqueName, type MakeStore, type StoreHandle } from "./helpers.js";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));

/** Declares the Inbox contract; every adapter runs it unchanged. */
export function inboxContract(makeStore: MakeStore<Inbox>): void {
  describe("Inbox contract", function () {
    let h: StoreHandle<Inbox>;
    let inbox: Inbox;
    before(async () => {
      h = await makeStore();
      inbox = h.store;
    });
    after(async () => h?.close());

    let channelSeq = 0n;
    const message = (over: Partial<StoredMessage> = {}): StoredMessage => ({
      messageId: uniqueId(),
      channelId: uniqueId(),
      senderUserId: uniqueId(),
      senderDeviceId: uniqueId(),
      clientMsgId: uniqueName("c-"),
      text: "hi there",
      sentAtMs: 1_767_225_600_000,
      seq: ++channelSeq,
      ...over,
    });
    const fill = async (userId: bigint, n: number): Promise<StoredMessage[]> => {
      const ms: StoredMessage[] = [];
      for (let i = 0; i < n; i++) {
        const m = message({ text: `m${i + 1}` });
        await inbox.append(userId, m);
        ms.push(m);
      }
      return ms;
    };

    describe("append", () => {
      it("gives a new user's first message inboxSeq 1 and stores a full copy", async () => {
        const u = uniqueId();
        const m = message();
        assert.deepStrictEqual(await inbox.append(u, m), { entry: { inboxSeq: 1n, message: m }, duplicate: false });
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [{ inboxSeq: 1n, message: m }]);
      });

      it("numbers many appends gap-free from 1, per user", async () => {
        const [u, v] = [uniqueId(), uniqueId()];
        const got: bigint[] = [];
        for (let i = 0; i < 300; i++) {
          const m = message();
          got.push((await inbox.append(u, m)).entry.inboxSeq);
          if (i % 2 === 0) await inbox.append(v, m);
        }
        assert.deepStrictEqual(got, Array.from({ length: 300 }, (_, i) => BigInt(i + 1)));
        assert.equal(await inbox.head(u), 300n);
        assert.equal(await inbox.head(v), 150n);
      });

      it("appends in flight together take seqs in call order; a repeat among them is the first copy", async () => {
        const u = uniqueId();
        const ms = Array.from({ length: 20 }, () => message());
        const calls = [...ms.slice(0, 10), ms[3]!, ...ms.slice(10)];
        const results = await Promise.all(calls.map((m) => inbox.append(u, m)));
        assert.deepStrictEqual(results.map((r) => r.entry.inboxSeq), [...range(1, 10), 4n, ...range(11, 20)]);
        assert.deepStrictEqual(results.map((r) => r.duplicate), calls.map((_, i) => i === 10));
        assert.deepStrictEqual((await inbox.readAfter(u, 0n, 100)).map((e) => e.message), ms);
      });

      it("a message already in the inbox comes back with duplicate = true and no new seq", async () => {
        const u = uniqueId();
        const m = message();
        await inbox.append(u, message());
        await inbox.append(u, m);
        assert.deepStrictEqual(await inbox.append(u, { ...m, text: "changed" }), {
          entry: { inboxSeq: 2n, message: m },
          duplicate: true,
        });
        assert.equal(await inbox.head(u), 2n);
        assert.equal((await inbox.append(u, message())).entry.inboxSeq, 3n);
      });

      it("keeps a change entry (an edit or a delete: targetSeq, no seq), an edited or deleted copy and a reply whole", async () => {
        const u = uniqueId();
        const edit = message({ seq: 0n, targetSeq: 41n, text: "new text" });
        const del = message({ seq: 0n, targetSeq: 42n, text: "", deleted: true });
        const edited = message({ text: "was edited", editedAtMs: 1_767_225_660_000 });
        const gone = message({ text: "", deleted: true });
        const reply = message({ text: "re", replyToSeq: 3n });
        const note = message({ text: "", note: { kind: "member_left", userIds: [7n] } });
        for (const m of [edit, del, edited, gone, reply, note]) await inbox.append(u, m);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [edit, del, edited, gone, reply, note].map((m, i) => ({ inboxSeq: BigInt(i + 1), message: m })));
        // The newest entry (kept apart on Cassandra) is whole too, and clears what the one before it had.
        assert.deepStrictEqual(await inbox.readAfter(u, 5n, 10), [{ inboxSeq: 6n, message: note }]);
        const plain = message({ text: "plain" });
        await inbox.append(u, plain);
        assert.deepStrictEqual(await inbox.readAfter(u, 6n, 10), [{ inboxSeq: 7n, message: plain }]);
      });

      it("keeps a reaction's entry whole: the emoji, or none when taken back, told apart from an edit", async () => {
        const u = uniqueId();
        const react = message({ seq: 0n, targetSeq: 7n, text: "👨‍👩‍👧‍👦", reaction: true });
        const takeBack = message({ seq: 0n, targetSeq: 7n, text: "", reaction: true });
        const edit = message({ seq: 0n, targetSeq: 7n, text: "👍" });
        for (const m of [react, takeBack, edit]) await inbox.append(u, m);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [react, takeBack, edit].map((m, i) => ({ inboxSeq: BigInt(i + 1), message: m })));
        // The newest-entry row (Cassandra) clears the flag of the entry before it.
        assert.deepStrictEqual(await inbox.readAfter(u, 2n, 10), [{ inboxSeq: 3n, message: edit }]);
        await inbox.append(u, react);
        assert.deepStrictEqual(await inbox.readAfter(u, 2n, 10), [{ inboxSeq: 3n, message: edit }]);
      });

      it("empties the text of the named entries of one user's inbox only, keeping every other field; idempotent", async () => {
        const [u, other] = [uniqueId(), uniqueId()];
        const target = message({ text: "secret" });
        const edit = message({ seq: 0n, targetSeq: target.seq, text: "secret, edited" });
        const kept = message({ text: "stays" });
        for (const m of [target, edit, kept]) {
          await inbox.append(u, m);
          await inbox.append(other, m);
        }
        await inbox.emptyTexts(u, [target.messageId, edit.messageId, uniqueId()]);
        await inbox.emptyTexts(u, [target.messageId]);
        await inbox.emptyTexts(u, []);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [
          { inboxSeq: 1n, message: { ...target, text: "" } },
          { inboxSeq: 2n, message: { ...edit, text: "" } },
          { inboxSeq: 3n, message: kept },
        ]);
        assert.deepStrictEqual((await inbox.readAfter(other, 0n, 10)).map((e) => e.message.text), ["secret", "secret, edited", "stays"]);
        assert.equal(await inbox.head(u), 3n);
      });

      it("marks the deleted message's entry deleted as it empties it, its edits' entries only emptied, in one user's inbox; idempotent", async () => {
        const [u, other] = [uniqueId(), uniqueId()];
        const target = message({ text: "secret" });
        const edit = message({ seq: 0n, targetSeq: target.seq, text: "secret, edited" });
        const kept = message({ text: "stays" });
        for (const m of [target, edit, kept]) {
          await inbox.append(u, m);
          await inbox.append(other, m);
        }
        const del = message({ seq: 0n, targetSeq: target.seq, text: "", deleted: true });
        await inbox.append(u, del);
        await inbox.emptyTexts(u, [target.messageId, edit.messageId], [target.messageId]);
        await inbox.emptyTexts(u, [target.messageId], [target.messageId]);
        // Named only as deleted (a caller that left it out of the ids), or never in this inbox: the same.
        await inbox.emptyTexts(u, [], [target.messageId, uniqueId()]);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [
          { inboxSeq: 1n, message: { ...target, text: "", deleted: true } },
          { inboxSeq: 2n, message: { ...edit, text: "" } },
          { inboxSeq: 3n, message: kept },
          { inboxSeq: 4n, message: del },
        ]);
        assert.deepStrictEqual((await inbox.readAfter(other, 0n, 10)).map((e) => [e.message.text, e.message.deleted]), [
          ["secret", undefined], ["secret, edited", undefined], ["stays", undefined],
        ]);
        assert.equal(await inbox.head(u), 4n);
      });

      it("one message goes into many inboxes, each with its own seq", async () => {
        const [u, v] = [uniqueId(), uniqueId()];
        await fill(u, 2);
        const m = message();
        assert.equal((await inbox.append(u, m)).entry.inboxSeq, 3n);
        assert.deepStrictEqual(await inbox.append(v, m), { entry: { inboxSeq: 1n, message: m }, duplicate: false });
      });

      it("texts come back identical, up to the maximum length", async () => {
        const u = uniqueId();
        const texts = [...AWKWARD_SHORT_TEXTS, longAwkwardText()];
        for (const text of texts) await inbox.append(u, message({ text }));
        const got = await inbox.readAfter(u, 0n, 100);
        assert.equal(got.length, texts.length);
        got.forEach((e, i) => {
          assert.ok(Buffer.from(e.message.text, "utf8").equals(Buffer.from(texts[i]!, "utf8")));
          assert.equal(e.message.text, texts[i]);
        });
      });
    });

    describe("readAfter", () => {
      it("returns entries after the seq, ascending, at most limit", async () => {
        const u = uniqueId();
        const ms = await fill(u, 10);
        const entry = (i: number) => ({ inboxSeq: BigInt(i + 1), message: ms[i]! });
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 3), [entry(0), entry(1), entry(2)]);
        assert.deepStrictEqual(await inbox.readAfter(u, 7n, 10), [entry(7), entry(8), entry(9)]);
        assert.deepStrictEqual(await inbox.readAfter(u, 10n, 10), []);
        assert.deepStrictEqual(await inbox.readAfter(u, 50n, 10), []);
      });

      it("reading page by page visits every entry once", async () => {
        const u = uniqueId();
        const ms = await fill(u, 17);
        const seen: StoredMessage[] = [];
        let after = 0n;
        for (;;) {
          const page = await inbox.readAfter(u, after, 4);
          if (page.length === 0) break;
          seen.push(...page.map((e) => e.message));
          after = page[page.length - 1]!.inboxSeq;
        }
        assert.deepStrictEqual(seen, ms);
      });

      it("only reads the user's own inbox", async () => {
        const [u, v] = [uniqueId(), uniqueId()];
        await fill(u, 3);
        assert.deepStrictEqual(await inbox.readAfter(v, 0n, 10), []);
      });

      it("with textBytes, stops past the budget: what withinTextBytes keeps, then the entry after it", async () => {
        const u = uniqueId();
        const long = "😀".repeat(500); // 3,000 bytes by utf8BytesAtMost; "short" is 15
        const ms: StoredMessage[] = [];
        for (let i = 0; i < 10; i++) {
          const m = message({ text: i === 4 ? "short" : long });
          await inbox.append(u, m);
          ms.push(m);
        }
        const read = async (after: bigint, limit: number, textBytes: number) =>
          (await inbox.readAfter(u, after, limit, textBytes)).map((e) => e.inboxSeq);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10, 7_000), ms.slice(0, 3).map((m, i) => ({ inboxSeq: BigInt(i + 1), message: m })));
        assert.deepStrictEqual(await read(0n, 10, 6_000), range(1, 3), "two texts exactly at the budget fit");
        assert.deepStrictEqual(await read(0n, 10, 100), range(1, 2), "the first entry whatever its size, then the next");
        assert.deepStrictEqual(await read(3n, 10, 6_100), range(4, 7), "a short text costs its own size");
        assert.deepStrictEqual(await read(0n, 2, 1 << 20), range(1, 2), "the limit still holds");
        assert.deepStrictEqual(await read(7n, 10, 1 << 20), range(8, 10), "under the budget, to the end");
        assert.deepStrictEqual(await read(9n, 10, 100), [10n], "the last entry, alone");
        // A reader that keeps withinTextBytes of each read visits every entry once.
        const seen: StoredMessage[] = [];
        for (let after = 0n; ; ) {
          const got = await inbox.readAfter(u, after, 10, 7_000);
          if (got.length === 0) break;
          const page = withinTextBytes(got, (e) => e.message, 7_000);
          assert.ok(got.length <= page.length + 1, `read ${got.length} to send ${page.length}`);
          seen.push(...page.map((e) => e.message));
          after = page[page.length - 1]!.inboxSeq;
        }
        assert.deepStrictEqual(seen, ms);
      });
    });

    describe("head", () => {
      it("is 0n for an empty inbox and the highest seq after appends", async () => {
        const u = uniqueId();
        assert.equal(await inbox.head(u), 0n);
        await fill(u, 4);
        assert.equal(await inbox.head(u), 4n);
      });
    });

    describe("device cursors", () => {
      it("start at 0n", async () => {
        assert.equal(await inbox.getCursor(uniqueId(), uniqueId()), 0n);
      });

      it("move forward only", async () => {
        const [u, d] = [uniqueId(), uniqueId()];
        await inbox.advanceCursor(u, d, 3n);
        assert.equal(await inbox.getCursor(u, d), 3n);
        await inbox.advanceCursor(u, d, 2n);
        assert.equal(await inbox.getCursor(u, d), 3n);
        await inbox.advanceCursor(u, d, 3n);
        assert.equal(await inbox.getCursor(u, d), 3n);
        await inbox.advanceCursor(u, d, 8n);
        assert.equal(await inbox.getCursor(u, d), 8n);
        await inbox.advanceCursor(u, d, 0n);
        assert.equal(await inbox.getCursor(u, d), 8n);
      });

      it("are dropped one device at a time", async () => {
        const [u, d1, d2] = [uniqueId(), uniqueId(), uniqueId()];
        await inbox.advanceCursor(u, d1, 5n);
        await inbox.advanceCursor(u, d2, 2n);
        await inbox.dropCursor(u, d1);
        assert.deepStrictEqual([await inbox.getCursor(u, d1), await inbox.getCursor(u, d2)], [0n, 2n]);
        await inbox.dropCursor(u, uniqueId()); // a device with no cursor: nothing to do
      });

      it("are independent per device and per user", async () => {
        const [u, v, d1, d2] = [uniqueId(), uniqueId(), uniqueId(), uniqueId()];
        await inbox.advanceCursor(u, d1, 5n);
        await inbox.advanceCursor(u, d2, 2n);
        await inbox.advanceCursor(v, d1, 9n);
        assert.deepStrictEqual(
          [await inbox.getCursor(u, d1), await inbox.getCursor(u, d2), await inbox.getCursor(v, d1), await inbox.getCursor(v, d2)],
          [5n, 2n, 9n, 0n],
        );
      });
    });
  });
}
