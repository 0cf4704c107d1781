import assert from "node:assert/strict";
import { MAX_TEXT_CODE_POINTS } from "../model/types.js";
import { validateSend } from "./validate.js";

const send = (text: string, over: { editSeq?: bigint; replyToSeq?: bigint } = {}) => ({ clientMsgId: "c", channelId: 7n, text, ...over });
const tooLong = (e: unknown) => (e as { code?: string }).code === "text_too_long";

describe("validateSend: the text limit, for every kind of send that carries text", () => {
  it("refuses 100,000 code points in a message, a reply and an edit, and takes 99,999", () => {
    assert.equal(MAX_TEXT_CODE_POINTS, 100_000);
    for (const over of [{}, { replyToSeq: 1n }, { editSeq: 1n }]) {
      assert.throws(() => validateSend(send("x".repeat(100_000), over)), tooLong, JSON.stringify(over, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
      validateSend(send("x".repeat(99_999), over));
    }
  });

  it("counts code points, not UTF-16 units: 99,999 emoji pass, 100,000 do not", () => {
    validateSend(send("😀".repeat(99_999)));
    assert.throws(() => validateSend(send("😀".repeat(100_000))), tooLong);
  });
});

describe("validateSend: client_msg_id", () => {
  const withKey = (clientMsgId: string) => ({ clientMsgId, channelId: 7n, text: "hi" });
  const invalid = (e: unknown) => (e as { code?: string }).code === "invalid_argument";

  it("takes 1 to 64 characters, counted as code points (64 emoji are 128 UTF-16 units)", () => {
    validateSend(withKey("a"));
    validateSend(withKey("a".repeat(64)));
    validateSend(withKey("😀".repeat(64)));
    assert.throws(() => validateSend(withKey("")), invalid);
    assert.throws(() => validateSend(withKey("a".repeat(65))), invalid);
    assert.throws(() => validateSend(withKey("😀".repeat(65))), invalid);
  });
});

describe("validateSend: text and client_msg_id are valid Unicode", () => {
  const invalid = (e: unknown) => (e as { code?: string; message?: string }).code === "invalid_argument" && /lone surrogate/.test((e as Error).message);

  it("refuses a lone surrogate (a JSON frame's escape), which storing would turn into U+FFFD, and takes a pair", () => {
    assert.throws(() => validateSend(send("hi \ud800")), invalid);
    assert.throws(() => validateSend(send("\udc00 there", { editSeq: 1n })), invalid);
    assert.throws(() => validateSend({ clientMsgId: "c\ud83d", channelId: 7n, text: "hi" }), invalid);
    validateSend(send("hi \ud83d\ude00"));
    validateSend({ clientMsgId: "😀", channelId: 7n, text: "hi" });
  });
});

describe("validateSend: a text that shows nothing is empty", () => {
  const empty = (e: unknown) => (e as { code?: string }).code === "text_empty";

  it("refuses zero-width and other invisible characters alone, in a message, a reply and an edit, as it refuses spaces", () => {
    for (const over of [{}, { replyToSeq: 1n }, { editSeq: 1n }]) {
      for (const text of [" ", "\u200b", "\u200b\u200d\u2060", " \u200c ", "\u3164", "\u2800\u2800", "\u0301", "\u202e", "\u00ad", "\u0000", "\u001b\u0007", "\u{E0080}\u2065"]) {
        assert.throws(() => validateSend(send(text, over)), empty, JSON.stringify(text));
      }
    }
  });

  it("takes a text with anything visible in it, however much around it shows nothing", () => {
    for (const text of ["\u200bhi\u200b", "👨‍👩‍👧", "e\u0301", "\u05D3\u200F", "\u3164\uAC00", "\u0000x"]) validateSend(send(text));
  });

  it("takes a text of a format character that draws a sign (an end of ayah, a number sign), and emoji of every kind", () => {
    // Cf, yet each drawn as a mark of its own: refused as blank before, "۝" alone was TEXT_EMPTY.
    for (const text of ["\u06DD", "\u0600", "\u070F", "\u08E2", "\u{110BD}", "1\uFE0F\u20E3", "#\uFE0F\u20E3", "🇯🇵", "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}", "🏻"]) {
      validateSend(send(text));
    }
  });
});

describe("validateSend: a reaction's emoji in one spelling", () => {
  const react = (text: string) => validateSend({ clientMsgId: "c", channelId: 7n, text, reactSeq: 3n }).text;
  const u = (s: string) => [...s].map((c) => c.codePointAt(0)!.toString(16)).join(" ");

  it("gives a text-default emoji its emoji presentation, however it was spelled: ❤ and ❤️ are one reaction", () => {
    for (const text of ["\u2764", "\u2764\uFE0F", "\u2764\uFE0E", "\u2764\uFE0F\uFE0F", "\u2764\u200D", "\u2764\uFE0F\u200D"]) assert.equal(u(react(text)), u("\u2764\uFE0F"), u(text));
    assert.equal(u(react("\u00A9")), u("\u00A9\uFE0F"));
  });

  it("drops a variation selector or a joiner after an emoji drawn as one anyway", () => {
    for (const text of ["👍\uFE0F", "👍\uFE0E", "👍\u200D", "👍\u200D\u200D"]) assert.equal(u(react(text)), u("👍"), u(text));
  });

  it("leaves keycaps, flags, ZWJ sequences and skin tones as keyboards send them, and makes their other spellings that one", () => {
    const same: [string, string[]][] = [
      ["1\uFE0F\u20E3", ["1\u20E3", "1\uFE0E\u20E3"]],
      ["#\uFE0F\u20E3", ["#\u20E3"]],
      ["🇯🇵", ["🇯🇵\uFE0F"]],
      ["🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}", []],
      ["👨‍👩‍👧‍👦", ["👨‍👩‍👧‍👦\u200D"]],
      ["👍🏽", ["👍\uFE0F🏽"]],
      ["\u261D🏽", ["\u261D\uFE0F🏽"]],
      ["🏳\uFE0F\u200D🌈", ["🏳\u200D🌈"]],
      ["\u2764\uFE0F\u200D🔥", ["\u2764\u200D🔥"]],
      ["👁\uFE0F\u200D🗨\uFE0F", ["👁\u200D🗨", "👁\uFE0F\u200D🗨"]],
      ["⛹🏽\u200D\u2640\uFE0F", ["⛹🏽\u200D\u2640"]],
    ];
    for (const [canonical, others] of same) {
      assert.equal(u(react(canonical)), u(canonical), `${u(canonical)} unchanged`);
      for (const other of others) assert.equal(u(react(other)), u(canonical), u(other));
    }
  });

  it("keeps taking a reaction back empty, and touches no message's text", () => {
    assert.equal(react(""), "");
    // The session hands its decoded frame and reads it again for the ack.
    const frame = { clientMsgId: "c", channelId: 7n, text: "\u2764", reactSeq: 3n };
    assert.equal(validateSend(frame).text, "\u2764\uFE0F");
    assert.equal(frame.text, "\u2764", "the command passed is left as it was");
    assert.equal(validateSend(send("\u2764")).text, "\u2764");
    assert.equal(validateSend(send("\u2764", { editSeq: 2n })).text, "\u2764");
  });

  it("refuses what is no emoji once its selectors and joiners are gone, and a text padded past the limit", () => {
    for (const text of ["\uFE0F", "\u200D", "\uFE0F\u200D", "a\uFE0F", "👍" + "\uFE0F".repeat(64)]) {
      assert.throws(() => react(text), (e: unknown) => (e as { code?: string }).code === "invalid_argument", u(text));
    }
  });

  // One grapheme cluster with a pictograph in it was taken for an emoji: 👍 under 30 stacked accents (a
  // chip towering over the row), 👍 with an invisible grapheme joiner or tag characters after it (a second
  // 👍 chip, as the trailing ZWJ made), and any letter, space or blank filler in a keycap.
  it("refuses one cluster that is no emoji: marks or invisible characters after an emoji, a keycap of no digit", () => {
    for (const text of [
      "👍" + "\u0301".repeat(30),
      "👍\u0301",
      "👍\u034F",
      "👍\u{E0041}\u{E0042}",
      "👍\u{E0067}\u{E0062}\u{E007F}",
      "a\u20E3",
      " \u20E3",
      "\u3164\u20E3",
      "\u00A9\u20E3",
      "👍\u20E3",
      "\u20E3",
    ]) {
      assert.throws(() => react(text), (e: unknown) => (e as { code?: string }).code === "invalid_argument", u(text));
    }
  });

  it("still takes every kind of emoji: flags, keycaps, skin tones, hair, ZWJ sequences old and new, a pictograph newer than this runtime", () => {
    for (const text of ["🇯🇵", "🇦", "1\uFE0F\u20E3", "*\u20E3", "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", "🏴\u200D\u2620\uFE0F",
      "🧑🏻\u200D\u2764\uFE0F\u200D💋\u200D🧑🏼", "👨\u200D🦰", "🐦\u200D🔥", "\u{1FAE9}", "\u{1FADF}", "👨‍👩‍👧‍👦", "\u261D🏽"]) {
      react(text);
    }
  });
});
