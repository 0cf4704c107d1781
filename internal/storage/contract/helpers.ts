import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { isChatError, type ErrorCodeName } from "../../model/errors.js";
import { MAX_TEXT_CODE_POINTS } from "../../model/types.js";

/** What a contract suite gets from the engine under test. */
export interface StoreHandle<S> {
  store: S;
  close(): Promise<void>;
}
export type MakeStore<S> = () => Promise<StoreHandle<S>>;

// Time-based start plus random low bits: distinct across runs and processes
// sharing one persistent database, and above 2^53 so precision loss shows.
let nextId = (BigInt(Date.now()) << 20n) | BigInt(randomInt(1 << 20));

export function uniqueId(): bigint {
  return nextId++;
}

/** A lower-case token unique per call, usable in usernames and client ids. */
export function uniqueName(prefix = "u"): string {
  return `${prefix}${uniqueId().toString(36)}`;
}

export async function rejectsWith(p: Promise<unknown>, code: ErrorCodeName, messageIncludes?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isChatError(e, code), `expected ChatError(${code}), got ${String(e)}`);
    if (messageIncludes !== undefined) assert.ok(e.message.includes(messageIncludes), e.message);
    return true;
  });
}

/**
 * MAX_TEXT_CODE_POINTS code points (at least as long as any valid text), full
 * of the characters storage tends to mangle: astral emoji, ZWJ sequences, combining
 * marks, right-to-left script, NUL.
 */
export function longAwkwardText(): string {
  const pieces = ["😀", "👩‍👩‍👧‍👦", "e\u0301", "𝄞", "日本語", "مرحبا", "\u0000", "\t\n", "a"];
  const out: string[] = [];
  let codePoints = 0;
  for (let i = 0; codePoints < MAX_TEXT_CODE_POINTS; i++) {
    const piece = [...pieces[i % pieces.length]!];
    const take = piece.slice(0, MAX_TEXT_CODE_POINTS - codePoints);
    out.push(take.join(""));
    codePoints += take.length;
  }
  return out.join("");
}

export const AWKWARD_SHORT_TEXTS = ["😀", "👩‍👩‍👧‍👦 family", "e\u0301 ñ", "𝄞 music", "مرحبا 日本語", "", " "];
