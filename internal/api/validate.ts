import { ChatError } from "../model/errors.js";
import { atMostMaxId, MAX_ID, type Id } from "../model/types.js";

/** Request checks with messages meant for the client developer. */

function invalid(message: string): never {
  throw new ChatError("invalid_argument", message);
}

const USERNAME = /^[a-z0-9_.]{3,32}$/i;

/** Whether `s` could be some account's username. */
export const isUsername = (s: string): boolean => USERNAME.test(s);

export function username(s: string): string {
  if (!isUsername(s)) invalid("username must be 3 to 32 characters of a-z, 0-9, '_' and '.'");
  return s;
}

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024;

/**
 * Characters are code points, as for every other length of the contract:
 * four emoji are not a password of eight. Past twice the maximum in UTF-16
 * units nothing is counted: a code point is at most two.
 */
const passwordLength = (s: string): number => (s.length > 2 * PASSWORD_MAX ? Infinity : [...s].length);

/** Longer than any password sign-up takes: it is no account's, and is refused before it is hashed. */
export const passwordTooLong = (s: string): boolean => passwordLength(s) > PASSWORD_MAX;

export function password(s: string): string {
  const length = passwordLength(s);
  if (length < PASSWORD_MIN) invalid(`password must be at least ${PASSWORD_MIN} characters`);
  if (length > PASSWORD_MAX) invalid(`password must be at most ${PASSWORD_MAX} characters`);
  return s;
}

/**
 * Embeddings, overrides and isolates reorder the text shown after them: in a
 * name or a title they make one person's look like another's ("\u202Eevil"
 * shows as "live"). The marks (U+200E, U+200F, U+061C) are left: a name in a
 * right-to-left script may need them, and they reorder nothing but neutrals.
 */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/u;
/**
 * Something a reader sees: not only spaces, format characters (zero-width
 * ones), combining marks, or the letters and symbols that draw nothing (the
 * Hangul fillers, the blank braille pattern), from which other apps' "blank
 * names" are made; nor default ignorable code points not yet assigned
 * (U+E0080), which a renderer shows as nothing too.
 */
const VISIBLE = /[^\s\p{Z}\p{Cf}\p{M}\p{Default_Ignorable_Code_Point}\u115F\u1160\u3164\uFFA0\u2800]/u;
/** Line and paragraph separators break a name over lines as a newline would, yet are no control characters. */
const LINE_BREAKS = /[\u2028\u2029]/u;

/** Trimmed, 1..max code points, something visible, no control characters. */
export function text(field: string, s: string, max: number): string {
  const t = s.trim();
  const len = [...t].length;
  if (len < 1 || len > max) invalid(`${field} must be 1 to ${max} characters`);
  if (/\p{Cc}/u.test(t)) invalid(`${field} must not contain control characters`);
  if (LINE_BREAKS.test(t)) invalid(`${field} must not contain line or paragraph separators (U+2028, U+2029)`);
  if (BIDI_CONTROLS.test(t)) invalid(`${field} must not contain bidirectional embedding, override or isolate characters (U+202A to U+202E, U+2066 to U+2069)`);
  if (!VISIBLE.test(t)) invalid(`${field} must contain a visible character, not only spaces or zero-width ones`);
  return t;
}

export const displayName = (s: string) => text("display_name", s, 64);
export const groupTitle = (s: string) => text("title", s, 128);

export { MAX_ID };

export function id(field: string, v: Id): Id {
  if (v === 0n) invalid(`${field} is required`);
  if (v > MAX_ID) invalid(`${field} must be at most ${MAX_ID}`);
  return v;
}

/** Non-zero, at most MAX_ID, de-duplicated, at most max. */
export function ids(field: string, vs: readonly Id[], max: number): Id[] {
  if (vs.length > max) invalid(`${field} may hold at most ${max} ids`);
  for (const v of vs) {
    if (v === 0n) invalid(`${field} must not contain 0`);
    if (v > MAX_ID) invalid(`${field} must not contain ids above ${MAX_ID}`);
  }
  return [...new Set(vs)];
}

/**
 * A seq that bounds a page or a scan, as far as a seq can go: past MAX_ID
 * there are no messages, so the answer is the one MAX_ID gets.
 */
export const bound = atMostMaxId;

const INVITE_CODE = /^[A-Za-z0-9_-]{22}$/;

/** An invite code as GetInviteLink makes them (16 random bytes, base64url); anything else is no code at all. */
export function inviteCode(s: string): string {
  if (!INVITE_CODE.test(s)) invalid("code must be the 22 characters of an invite link's code");
  return s;
}

/** 0 means the default; larger than max is clamped. */
export function limit(v: number, dflt: number, max: number): number {
  return v === 0 ? dflt : Math.min(v, max);
}
