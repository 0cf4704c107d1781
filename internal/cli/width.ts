/**
 * How many columns a text takes in a terminal, so that tables line up
 * whatever script their names are in. A string's length counts UTF-16
 * units: a Chinese name of three characters takes six columns, an emoji
 * made of five code points (a family, a flag) takes two, an accent added
 * to a letter none.
 */

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * East Asian Wide and Fullwidth code points (Unicode's EastAsianWidth.txt,
 * W and F), but for the emoji among them, which `clusterWidth` tells by
 * their presentation: sorted, inclusive, as [first, last] pairs.
 */
const WIDE: ReadonlyArray<readonly [number, number]> = [
  [0x1100, 0x115f], // Hangul Jamo, leading consonants (the vowels and finals that follow join them: no width of their own)
  [0x2329, 0x232a], // angle brackets
  [0x2e80, 0x303e], // CJK radicals, Kangxi radicals, ideographic description, CJK symbols and punctuation (the ideographic space)
  [0x3041, 0x3247], // Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, Kanbun, CJK strokes, enclosed CJK
  [0x3250, 0x4dbf], // enclosed CJK, CJK compatibility, CJK unified ideographs extension A
  [0x4e00, 0xa4cf], // CJK unified ideographs, Yi
  [0xa960, 0xa97f], // Hangul Jamo extended A
  [0xac00, 0xd7a3], // Hangul syllables
  [0xf900, 0xfaff], // CJK compatibility ideographs
  [0xfe10, 0xfe19], // vertical forms
  [0xfe30, 0xfe6f], // CJK compatibility forms, small form variants
  [0xff00, 0xff60], // fullwidth forms
  [0xffe0, 0xffe6], // fullwidth signs
  [0x16fe0, 0x16fe4], // ideographic symbols
  [0x17000, 0x18cff], // Tangut, Khitan
  [0x1aff0, 0x1b2ff], // Kana supplements, Nushu
  [0x1f200, 0x1f2ff], // enclosed ideographic supplement
  [0x20000, 0x3fffd], // CJK unified ideographs extensions B and later, compatibility supplement
];

function isWide(cp: number): boolean {
  let lo = 0;
  let hi = WIDE.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [first, last] = WIDE[mid]!;
    if (cp < first) hi = mid - 1;
    else if (cp > last) lo = mid + 1;
    else return true;
  }
  return false;
}

/** One user-perceived character's columns: what follows its first code point (accents, joiners, selectors) adds none. */
function clusterWidth(cluster: string): number {
  // An emoji shown as one (by default, or asked for with VS16, or a keycap or a flag) takes two, however many code points it is made of.
  if (/\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|\u20E3|\p{Regional_Indicator}{2}/u.test(cluster)) return 2;
  const cp = cluster.codePointAt(0)!;
  // A mark or format character alone (a combining accent with nothing before it, a zero-width space or joiner) takes no column.
  if (/^[\p{Mn}\p{Me}\p{Cf}]/u.test(cluster)) return 0;
  return isWide(cp) ? 2 : 1;
}

export function displayWidth(text: string): number {
  let n = 0;
  for (const { segment } of graphemes.segment(text)) n += clusterWidth(segment);
  return n;
}

/** `text` padded with spaces to `width` columns (as it is, when it takes that many or more). */
export function padEnd(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - displayWidth(text)));
}

/** The marker a printed text shows a bidi control as ("<U+202E>", output.ts's `printable`). */
const MARKER = /(<U\+[0-9A-F]{4,6}>)/;

/** A text's pieces that are cut whole: each character, and each marker. */
function* units(text: string): Generator<string> {
  for (const [i, part] of text.split(MARKER).entries()) {
    // split puts the markers it captured at the odd places.
    if (i % 2 === 1) yield part;
    else for (const { segment } of graphemes.segment(part)) yield segment;
  }
}

/**
 * `text` in at most `max` columns, cut (with "…") between whole characters: half an emoji or an accent
 * without its letter is noise. So is half a "<U+202E>" marker: it is cut before or kept whole.
 */
export function truncated(text: string, max: number): string {
  if (displayWidth(text) <= max) return text;
  let cut = "";
  let width = 0;
  for (const unit of units(text)) {
    width += displayWidth(unit);
    if (width > max - 1) break;
    cut += unit;
  }
  return `${cut}…`;
}
