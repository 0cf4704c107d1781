import assert from "node:assert/strict";
import type { StoredMessage } from "../../model/types.js";
import { applyChange, decodeChange, encodeChange, NO_CHANGE, type ChangeCell } from "./change-cell.js";

describe("change cell", () => {
  const edit = (over: Partial<ChangeCell> = {}): ChangeCell => ({
    seq: 42n,
    changedBy: (1n << 62n) + 7n,
    deleted: false,
    editedAtMs: 1_767_225_660_000,
    text: "new text 😀 e\u0301 مرحبا \u0000",
    ...over,
  });
  const message: StoredMessage = {
    messageId: 1n << 61n,
    channelId: 9n,
    senderUserId: 3n,
    senderDeviceId: 4n,
    clientMsgId: "c1",
    text: "original",
    sentAtMs: 1_767_225_600_000,
    seq: 42n,
  };
  // Cassandra keeps the greater value of two cells with one timestamp, as unsigned bytes.
  const wins = (a: Buffer, b: Buffer) => Buffer.compare(a, b) > 0;

  it("round-trips an edit, a delete, and a delete that keeps no edit time", () => {
    for (const c of [edit(), edit({ deleted: true, text: "" }), { seq: 1n, changedBy: 5n, deleted: true, text: "" }, edit({ text: "" })]) {
      assert.deepStrictEqual(decodeChange(encodeChange(c)), c);
    }
    const max = (1n << 64n) - 1n;
    assert.deepStrictEqual(decodeChange(encodeChange(edit({ seq: max, changedBy: max }))), edit({ seq: max, changedBy: max }));
  });

  it("keeps a text of the maximum length byte-identical", () => {
    const text = "👩‍👩‍👧‍👦".repeat(9_000) + "𝄞";
    const back = decodeChange(encodeChange(edit({ text })));
    assert.ok(Buffer.from(back!.text, "utf8").equals(Buffer.from(text, "utf8")));
  });

  it("reads no change from a missing cell or the empty cell of a head write", () => {
    assert.equal(decodeChange(null), undefined);
    assert.equal(decodeChange(undefined), undefined);
    assert.equal(decodeChange(NO_CHANGE), undefined);
  });

  it("refuses what it cannot read faithfully: a short cell, unknown flags, a negative id", () => {
    assert.throws(() => decodeChange(Buffer.alloc(10)), /shorter than its header/);
    const b = encodeChange(edit());
    b[17] = 0x80;
    assert.throws(() => decodeChange(b), /unknown flags/);
    assert.throws(() => encodeChange(edit({ changedBy: -1n })), RangeError);
    assert.throws(() => decodeChange("text"), TypeError);
  });

  it("orders cells of one message: a delete over any edit, then by change id whatever the text; any change beats a head's empty cell", () => {
    const ids = [1n, 255n, 256n, (1n << 53n) + 1n, 1n << 62n, (1n << 63n) - 1n];
    for (let i = 1; i < ids.length; i++) {
      for (const deleted of [false, true]) {
        const earlier = encodeChange(edit({ changedBy: ids[i - 1]!, text: "\u{10FFFF}".repeat(10), deleted }));
        const later = encodeChange(edit({ changedBy: ids[i]!, text: "", editedAtMs: 0, deleted }));
        assert.ok(wins(later, earlier), `${ids[i]} over ${ids[i - 1]}`);
      }
      const laterEdit = encodeChange(edit({ changedBy: ids[i]!, text: "\u{10FFFF}".repeat(10) }));
      const earlierDelete = encodeChange(edit({ changedBy: ids[i - 1]!, deleted: true, text: "" }));
      assert.ok(wins(earlierDelete, laterEdit), `the delete ${ids[i - 1]} over the edit ${ids[i]}`);
    }
    assert.ok(wins(encodeChange({ seq: 0n, changedBy: 0n, deleted: false, text: "" }), NO_CHANGE));
  });

  it("applies a change over the stored message, with the optional keys only when set", () => {
    assert.deepStrictEqual(applyChange(message, undefined), message);
    const e = edit();
    assert.deepStrictEqual(applyChange(message, e), { ...message, text: e.text, editedAtMs: e.editedAtMs });
    assert.deepStrictEqual(applyChange(message, { seq: 42n, changedBy: 8n, deleted: true, text: "" }), { ...message, text: "", deleted: true });
    const out = applyChange({ ...message, editedAtMs: 5, deleted: true }, { seq: 42n, changedBy: 8n, deleted: false, text: "x" });
    assert.deepStrictEqual(out, { ...message, text: "x" });
    assert.equal("deleted" in out || "editedAtMs" in out, false);
  });
});
