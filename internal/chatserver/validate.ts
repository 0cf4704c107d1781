import { ChatError } from "../model/errors.js";
import { MAX_CLIENT_MSG_ID_LENGTH, MAX_ID, MAX_REACTION_UNITS, MAX_TEXT_CODE_POINTS, type Id } from "../model/types.js";
import { NOTE_KEY_PREFIX, type SendCommand } from "../messages/submit.js";

/** Counts Unicode code points, stopping once `limit` is reached. */
export function codePointsAtLeast(text: string, limit: number): boolean {
  // Code points never outnumber UTF-16 units, so short texts need no count.
  if (text.length < limit) return false;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    if (++n >= limit) return true;
  }
  return false;
}

/** Refuses an id or seq no store can hold (above 2^63-1): it names nothing, and is the client's mistake, not an internal error. */
export function namesAtMostMaxId(field: string, id: Id): void {
  if (id > MAX_ID) throw new ChatError("invalid_argument", `${field} must be at most ${MAX_ID}`);
}

/**
 * Refuses a frame's channel_id of 0 (a field left unset: no channel at all,
 * told as the API tells it, not as a channel the user is not in) or above
 * 2^63-1.
 */
export function namesChannel(channelId: Id): void {
  if (channelId === 0n) throw new ChatError("invalid_argument", "channel_id is required");
  namesAtMostMaxId("channel_id", channelId);
}

/** Half of a surrogate pair alone: in a /u pattern a whole pair is one code point, and no match. */
const LONE_SURROGATE = /\p{Cs}/u;
/**
 * Something a reader sees, as a name must have (internal/api/validate.ts): a
 * text of zero-width characters, marks with no letter, control characters or
 * the Hangul fillers is a blank bubble (and a blank notification) to every
 * reader, empty as a text of spaces is. The prepended concatenation marks
 * (U+0600-0605, U+06DD end of ayah, ...) are format characters drawn as a
 * sign of their own, alone too: those are something to see.
 */
const VISIBLE = /[^\s\p{Z}\p{Cc}\p{Cf}\p{M}\p{Default_Ignorable_Code_Point}\u115F\u1160\u3164\uFFA0\u2800]|[\u0600-\u0605\u06DD\u070F\u0890\u0891\u08E2\u{110BD}\u{110CD}]/u;

/**
 * Checks a send, and returns it as it is to be stored: the same command but
 * for a reaction's emoji, which is put in its one spelling
 * (`canonicalReaction`). The command passed is not changed (a session hands
 * its decoded frame, which it reads again for the ack).
 */
export function validateSend(cmd: SendCommand): SendCommand {
  // Characters as the contract says: code points, so 64 emoji fit.
  if (cmd.clientMsgId.length === 0 || codePointsAtLeast(cmd.clientMsgId, MAX_CLIENT_MSG_ID_LENGTH + 1)) {
    throw new ChatError("invalid_argument", `client_msg_id must be 1 to ${MAX_CLIENT_MSG_ID_LENGTH} characters`);
  }
  // Only a JSON frame can carry one (a "\ud800" escape): stored as UTF-8 it became U+FFFD, so the
  // message kept was not the one acked, and a client matching its own by this key never found it.
  if (LONE_SURROGATE.test(cmd.clientMsgId)) throw new ChatError("invalid_argument", "client_msg_id is not valid Unicode: it holds a lone surrogate");
  // The server's notes go by "note:<id>" (noteMessage): a send under such a key could take a note's place in the dedup.
  if (cmd.clientMsgId.startsWith(NOTE_KEY_PREFIX)) {
    throw new ChatError("invalid_argument", `client_msg_id must not start with "${NOTE_KEY_PREFIX}": those are the server's own`);
  }
  namesChannel(cmd.channelId);
  // Field by field, not over arrays of them: this runs for every message.
  if (cmd.editSeq !== undefined) namesAtMostMaxId("edit_seq", cmd.editSeq);
  if (cmd.deleteSeq !== undefined) namesAtMostMaxId("delete_seq", cmd.deleteSeq);
  if (cmd.reactSeq !== undefined) namesAtMostMaxId("react_seq", cmd.reactSeq);
  if (cmd.replyToSeq !== undefined) namesAtMostMaxId("reply_to_seq", cmd.replyToSeq);
  if ((cmd.editSeq ? 1 : 0) + (cmd.deleteSeq ? 1 : 0) + (cmd.reactSeq ? 1 : 0) > 1) {
    throw new ChatError("invalid_argument", "set at most one of edit_seq, delete_seq and react_seq");
  }
  if (cmd.replyToSeq && (cmd.editSeq || cmd.deleteSeq || cmd.reactSeq)) {
    throw new ChatError("invalid_argument", "reply_to_seq is for a new message, not an edit, a delete or a reaction");
  }
  if (cmd.reactSeq) {
    if (cmd.text.length === 0) return cmd;
    const emoji = canonicalReaction(cmd.text);
    if (emoji === undefined || !isOneEmoji(emoji)) throw notOneEmoji();
    return emoji === cmd.text ? cmd : { ...cmd, text: emoji };
  }
  if (cmd.deleteSeq) {
    if (cmd.text.length > 0) throw deleteWithText();
    return cmd;
  }
  if (!VISIBLE.test(cmd.text)) throw new ChatError("text_empty", "text is empty: it has nothing visible, only spaces or zero-width characters");
  if (LONE_SURROGATE.test(cmd.text)) throw new ChatError("invalid_argument", "text is not valid Unicode: it holds a lone surrogate");
  const tooLong = tooLongText(cmd.text);
  if (tooLong) throw tooLong;
  return cmd;
}

/**
 * The refusal of a text of MAX_TEXT_CODE_POINTS or more, if this is one.
 * Asked before a send is charged to its sender's text budget too: a text
 * refused for its length (up to a frame of bytes) took a burst's worth of
 * the budget, so the sender's next, valid send was refused as well.
 */
export function tooLongText(text: string): ChatError | undefined {
  return codePointsAtLeast(text, MAX_TEXT_CODE_POINTS) ? new ChatError("text_too_long", `text must be shorter than ${MAX_TEXT_CODE_POINTS} code points`) : undefined;
}

const notOneEmoji = () => new ChatError("invalid_argument", "a reaction's text must be one emoji (or empty to take the reaction back)");
const deleteWithText = () => new ChatError("invalid_argument", "text must be empty when deleting a message (delete_seq)");

/**
 * The refusal of a send whose text no check could take, asked before the
 * send is charged to its sender's budgets (as validateSend would refuse it,
 * with no scan past its length): a text too long for any send, a reaction
 * longer than any spelling of one emoji, a delete with text. A text pasted
 * into a reaction or a delete took up to 400 KB of the text budget before
 * the submitter refused it, and the sender's next message was refused too.
 */
export function refusedUncharged(cmd: Pick<SendCommand, "text" | "editSeq" | "reactSeq" | "deleteSeq" | "replyToSeq">): ChatError | undefined {
  // A send of two kinds at once is validateSend's to refuse, saying so.
  if (!cmd.editSeq && !cmd.replyToSeq && !(cmd.reactSeq && cmd.deleteSeq)) {
    if (cmd.reactSeq && cmd.text.length > 2 * MAX_REACTION_UNITS) return notOneEmoji();
    if (cmd.deleteSeq && cmd.text.length > 0) return deleteWithText();
  }
  return tooLongText(cmd.text);
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });
// Pictographs (most emoji), regional-indicator flags, and keycaps (a digit, # or * with U+20E3).
const EMOJI = /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3/u;

/**
 * One emoji of UTS #51's "possible emoji" shape, in the spelling canonicalReaction leaves: pictographs
 * (with U+FE0F or a skin tone), joined by ZWJ; a flag's pair; a keycap of a digit, # or *; a tag sequence
 * of 🏴 (the only base Unicode gives one). A grapheme cluster alone let anything follow a pictograph:
 * 👍 under dozens of stacked accents, or with an invisible U+034F or tag characters after it (a second
 * 👍 chip), and a letter or a space in a keycap. A pictograph this runtime does not know yet is still one.
 */
const ELEMENT = String.raw`(?:\p{Regional_Indicator}{1,2}|[0-9#*]\uFE0F\u20E3|\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}|(?:\p{Extended_Pictographic}|(?![0-9#*])\p{Emoji})(?:\uFE0F|\p{Emoji_Modifier})?)`;
const EMOJI_SHAPE = new RegExp(String.raw`^${ELEMENT}(?:\u200D${ELEMENT})*$`, "u");

/** One grapheme cluster, short, that is an emoji: what clients show as one reaction. */
export function isOneEmoji(text: string): boolean {
  if (text.length > MAX_REACTION_UNITS || !EMOJI.test(text) || !EMOJI_SHAPE.test(text)) return false;
  const it = graphemes.segment(text)[Symbol.iterator]();
  const first = it.next();
  return !first.done && first.value.segment.length === text.length;
}

const VARIATION_SELECTORS = /[\uFE0E\uFE0F]/gu;
const TRAILING_JOINERS = /\u200D+$/u;
/** Drawn as text unless U+FE0F follows: ❤ © ☝ ⛹, the keycap digits, #, *. */
const TEXT_DEFAULT = /^(?=\p{Emoji})\P{Emoji_Presentation}$/u;
const MODIFIER = /^\p{Emoji_Modifier}$/u;

/**
 * A reaction's emoji in one spelling, so that one emoji is one reaction: the
 * web palette's ❤️ (U+2764 U+FE0F) and a keyboard's or chat-cli's ❤ (U+2764)
 * were two chips, counted apart in history. Every U+FE0E/U+FE0F is dropped,
 * then each text-default code point gets U+FE0F back unless a skin tone
 * follows it (Unicode's fully-qualified form: ❤️, 1️⃣, 🏳️‍🌈, ☝🏽), so it is
 * drawn as an emoji everywhere and keycaps, flags, ZWJ sequences and skin
 * tones sent as keyboards send them are kept as they are. A trailing ZWJ,
 * invisible, is dropped: "👍" + U+200D was a second 👍 chip. Undefined for a
 * text padded past any emoji's length (not worth the work).
 */
export function canonicalReaction(text: string): string | undefined {
  // Each code point of a reaction may carry one selector, so no spelling of one is longer than this.
  if (text.length > 2 * MAX_REACTION_UNITS) return undefined;
  const bare = [...text.replace(VARIATION_SELECTORS, "").replace(TRAILING_JOINERS, "")];
  let out = "";
  for (let i = 0; i < bare.length; i++) {
    out += bare[i];
    if (TEXT_DEFAULT.test(bare[i]!) && !(i + 1 < bare.length && MODIFIER.test(bare[i + 1]!))) out += "\uFE0F";
  }
  return out;
}
