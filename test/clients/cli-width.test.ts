import assert from "node:assert/strict";
import { displayWidth, padEnd, truncated } from "../../internal/cli/width.js";

describe("chat-cli display width", () => {
  it("counts the columns a terminal gives each character, not its UTF-16 units", () => {
    const cases: Array<[string, number]> = [
      ["alice", 5],
      ["王小明", 6], // CJK ideographs: two each
      ["さくら", 6], // Hiragana
      ["한국어", 6], // Hangul syllables
      ["\u1112\u1161\u11ab", 2], // the same syllable made of conjoining Jamo: one character
      ["ＡＢ", 4], // fullwidth Latin
      ["\u3000", 2], // the ideographic space
      ["café", 4],
      ["cafe\u0301", 4], // e and a combining accent: one column
      ["📌 Trip", 7], // an emoji of two UTF-16 units: two columns
      ["👍🏽", 2], // with a skin tone
      ["👨‍👩‍👧", 2], // a family: five code points joined
      ["🇯🇵", 2], // a flag: two regional indicators
      ["❤️", 2], // a text symbol asked to show as emoji (VS16)
      ["❤", 1], // the same symbol as text
      ["1️⃣", 2], // a keycap
      ["a\u200bb", 2], // a zero-width space
      ["", 0],
    ];
    for (const [text, width] of cases) assert.equal(displayWidth(text), width, JSON.stringify(text));
  });

  it("pads to a column whatever the script", () => {
    assert.equal(padEnd("王小明", 8), "王小明  ");
    assert.equal(padEnd("📌 Trip", 8), "📌 Trip ");
    assert.equal(padEnd("toolong", 3), "toolong");
  });

  it("cuts a text to its columns between whole characters", () => {
    assert.equal(truncated("short", 10), "short");
    assert.equal(truncated("王小明王小明", 6), "王小…", "two wide characters and the ellipsis fit in six columns, not five characters");
    assert.equal(truncated("ab👨‍👩‍👧cd", 5), "ab👨‍👩‍👧…", "the family whole");
    assert.equal(truncated("ab👨‍👩‍👧cd", 4), "ab…", "or not at all");
    assert.equal(truncated("cafe\u0301s and more", 5), "cafe\u0301…", "the accent stays with its letter");
    assert.equal(truncated("ab<U+202E>cdefghijk", 12), "ab<U+202E>c…", "a bidi control's marker whole");
    assert.equal(truncated("ab<U+202E>cdefghijk", 9), "ab…", "or not at all");
  });
});
