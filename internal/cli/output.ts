import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Message } from "../../gen/es/chat/v1/types_pb.js";
import { displayWidth, padEnd, truncated } from "./width.js";

/**
 * Control characters (C0 but tab and newline, DEL, C1) shown as U+FFFD: a
 * text, a name or a title is someone else's words, and an escape sequence
 * in them would otherwise drive the reader's terminal (retitle it, hide
 * lines, fake a prompt). The bidi embeddings, overrides and isolates are
 * shown as <U+202E>, where they were: a terminal that applies bidi (GNOME's)
 * showed "invoice\u202egpj.exe" as "invoice exe.jpg" and reordered the rest of
 * the line, the sender's name with it. The marks (U+200E, U+200F, U+061C)
 * stay: right-to-left writing needs them, and they only set the direction
 * of the punctuation beside them, not of whole runs of text.
 */
export function printable(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "\ufffd")
    .replace(/[\u202a-\u202e\u2066-\u2069]/g, (c) => `<U+${c.charCodeAt(0).toString(16).toUpperCase()}>`);
}

export function out(line: string): void {
  process.stdout.write(`${printable(line)}\n`);
}

export function warn(line: string): void {
  process.stderr.write(`${printable(line)}\n`);
}

/**
 * For scripts: JSON escapes the C0 controls itself, and a script gets every other character as it was sent.
 * DEL and the C1 controls (U+009B is CSI, U+009D OSC) are escaped here, as JSON allows: raw, they drove a
 * terminal the output was read on as their ESC forms would, and escaped they parse back the same. So are
 * U+2028 and U+2029, which JSON leaves raw: a script splitting lines as Python's splitlines() does broke
 * one message's line in two at them, neither of which parsed. And the bidi controls `printable` shows
 * escaped: a line read at a terminal (`| less`, a log) was reordered by them as a printed one was.
 */
export function json(value: unknown): void {
  const line = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  process.stdout.write(`${line.replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}\n`);
}

/**
 * Later lines of a text indented under the first; a CRLF ends a line too (another client's text may have them), not a \r shown as U+FFFD.
 * So do U+2028 and U+2029: a script splitting lines as Python's splitlines() does took what followed one for a line of its own.
 */
export function indented(text: string): string {
  const lines = text.split(/\r?\n|[\u2028\u2029]/);
  return `${lines[0]}${lines.slice(1).map((l) => `\n    ${l}`).join("")}`;
}

export function iso(ts: Message["sentAt"]): string | null {
  return ts ? new Date(timestampMs(ts)).toISOString() : null;
}

export function table(rows: string[][]): string {
  // Measured as printed: a control character in a name takes the column of the U+FFFD that stands for it.
  const cells = rows.map((r) => r.map(printable));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => displayWidth(r[i] ?? ""))));
  return cells.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : padEnd(cell, widths[i]!))).join("  ").trimEnd()).join("\n");
}

/**
 * A text on one line, in at most `max` columns as printed: cut after its bidi controls are shown as their
 * <U+202E> markers, which take 8 columns each; cut before, the column ran past `max` by 7 for each.
 */
export function oneLine(text: string, max: number): string {
  return truncated(printable(text.replace(/\s+/g, " ").trim()), max);
}
