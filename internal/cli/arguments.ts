import { CliError, MAX_ID } from "./client.js";
import { warn } from "./output.js";
import { readStdin } from "./prompt.js";

/** The words of a text as typed, or stdin (without its last newline) for "-". */
export async function textArgument(words: string[]): Promise<string> {
  const text = words.join(" ");
  // At a terminal "-" waits for typing, which looked like a hang to whoever did not know how it ends.
  if (text === "-" && process.stdin.isTTY) warn("Type the text; end it with Ctrl+D on a line of its own (Ctrl+C cancels).");
  return withoutCr(text === "-" ? (await readStdin()).replace(/\r?\n$/, "") : text);
}

/**
 * A text with the \r of each CRLF line ending taken out: a file saved on
 * Windows, piped in or pasted as "$(cat file)", kept one at the end of every
 * line, which readers saw as a stray character (U+FFFD here).
 */
function withoutCr(text: string): string {
  return text.replace(/\r(?=\n|$)/g, "");
}

/** A message's seq as typed: the #number that history shows. */
export function seqArgument(raw: string, option?: string): bigint {
  if (!/^\d+$/.test(raw) || BigInt(raw) === 0n || BigInt(raw) > MAX_ID) throw new CliError(`${option ? `${option}: ` : ""}"${raw}" is not a message's seq (the #number that history shows)`, 2);
  return BigInt(raw);
}

export function intOption(raw: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  // Plain digits only: Number() takes "" and " " as 0, "0x10" as 16 and "1e2" as 100.
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`${name} must be an integer from ${min} to ${max}`, 2);
  return n;
}

/** `by`: where the address came from, as the error names it. */
export function normalizeServer(raw: string, by = "--server"): string {
  let u: URL;
  try {
    u = new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`${by}: "${raw}" is not a URL`, 2);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new CliError(`${by} must be an http:// or https:// URL`, 2);
  return u.origin;
}

/** `by`: where the address came from, as the error names it. */
export function normalizeWs(raw: string | undefined, by: string): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`${by}: "${raw}" is not a URL`, 2);
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new CliError(`${by} must be a ws:// or wss:// URL (the realtime WebSocket, as ws://host:8090/ws), not "${raw}"`, 2);
  return u.toString();
}
