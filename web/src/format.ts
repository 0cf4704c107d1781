import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";

export function tsMs(ts: Timestamp | undefined): number | undefined {
  return ts ? timestampMs(ts) : undefined;
}

const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const date = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const fullDate = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });

/** Midnight (local time) of the day `ms` falls on. */
export function startOfDay(ms: number): number {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** For the chat list: a time today, a weekday this week, a date before. */
export function shortWhen(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return "";
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / 86_400_000);
  if (days <= 0) return time.format(ms);
  if (days < 7) return day.format(ms);
  return date.format(ms);
}

export function clock(ms: number | undefined): string {
  return ms === undefined ? "" : time.format(ms);
}

export function dayLabel(ms: number, now = Date.now()): string {
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / 86_400_000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return fullDate.format(ms);
}

export function sameDay(a: number, b: number): boolean {
  return startOfDay(a) === startOfDay(b);
}

/** "last seen 5 minutes ago", "last seen yesterday at 18:02". */
export function lastSeen(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return "offline";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return "last seen just now";
  const m = Math.round(s / 60);
  if (m < 60) return `last seen ${m} minute${m === 1 ? "" : "s"} ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 12 && sameDay(ms, now)) return `last seen ${hrs} hour${hrs === 1 ? "" : "s"} ago`;
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / 86_400_000);
  if (days === 0) return `last seen today at ${time.format(ms)}`;
  if (days === 1) return `last seen yesterday at ${time.format(ms)}`;
  return `last seen ${date.format(ms)}`;
}

/** Unicode code points, the unit of the server's text limit. */
export function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** What a reader takes for one character each: an emoji of several code points (a family, a flag, a skin tone), a letter with its accents. */
export function characters(text: string): string[] {
  return Array.from(graphemes.segment(text), (s) => s.segment);
}

/**
 * The first `n` characters of `text`, and whether more follow, segmenting
 * only a beginning of it: all of a long text is work thrown away, and in the
 * V8 of Node 20 (Chrome 113's) segmenting takes time growing with the square
 * of the length, 2.6 s for 100,000 letters (Chromium 156: 13 ms), for a chat
 * list row or a quote of a long message, drawn again at each change.
 */
function leading(text: string, n: number): { chars: string[]; more: boolean } {
  // A character is rarely more than a few units; one of hundreds of accents takes a longer beginning.
  for (let len = n * 8; ; len *= 4) {
    const part = text.slice(0, len);
    const chars: string[] = [];
    // The n-th is whole once the one after it starts.
    for (const { segment } of graphemes.segment(part)) {
      if (chars.length === n) return { chars, more: true };
      chars.push(segment);
    }
    if (part.length === text.length) return { chars, more: false };
  }
}

/** One line of at most `max` characters, cut (with "…") between whole ones: half a family emoji shows as someone else. */
export function preview(text: string, max = 80): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  const { chars, more } = leading(oneLine, max);
  return more ? `${chars.slice(0, max - 1).join("")}…` : oneLine;
}

/**
 * A line of a long text around the first of `words` in it (as typed, case
 * aside), for a search hit: the whole text (up to 99,999 characters) stood
 * in the list of hits, one word of it wider than the page, and a match far
 * into it was off the part shown.
 */
export function excerpt(text: string, words: string[], max = 160): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  // "İ" lowers to two units ("i" and a dot): taken as "i", as the server's search folds it, every
  // index into the lowered text is one into the text too, and "istanbul" finds "İSTANBUL" here as there.
  const lowered = (s: string) => s.replaceAll("\u0130", "i").toLowerCase();
  const lower = lowered(oneLine);
  const found = words.map((w) => lower.indexOf(lowered(w))).filter((i) => i >= 0);
  const at = found.length > 0 ? Math.min(...found) : 0;
  // A little of what comes before the match, cut between whole characters.
  // (Where the character there starts, found from there: not by segmenting all before it, see `leading`.)
  const from = at > max / 4 ? graphemes.segment(oneLine).containing(Math.floor(at - max / 8))!.index : 0;
  return preview(from > 0 ? `…${oneLine.slice(from)}` : oneLine, max);
}
