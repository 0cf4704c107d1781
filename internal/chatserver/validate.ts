import { ChatError } from "../model/errors.js";
import { MAX_CLIENT_MSG_ID_LENGTH, MAX_TEXT_CODE_POINTS } from "../model/types.js";
import type { SendCommand } from "../messages/submit.js";

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

export function validateSend(cmd: SendCommand): void {
  if (cmd.clientMsgId.length === 0 || cmd.clientMsgId.length > MAX_CLIENT_MSG_ID_LENGTH) {
    throw new ChatError("invalid_argument", `client_msg_id must be 1 to ${MAX_CLIENT_MSG_ID_LENGTH} characters`);
  }
  if (cmd.channelId === 0n) throw new ChatError("invalid_argument", "channel_id is required");
  if (cmd.editSeq && cmd.deleteSeq) throw new ChatError("invalid_argument", "set at most one of edit_seq and delete_seq");
  if (cmd.replyToSeq && (cmd.editSeq || cmd.deleteSeq)) {
    throw new ChatError("invalid_argument", "reply_to_seq is for a new message, not an edit or a delete");
  }
  if (cmd.deleteSeq) {
    if (cmd.text.length > 0) throw new ChatError("invalid_argument", "text must be empty when deleting a message (delete_seq)");
    return;
  }
  if (cmd.text.trim().length === 0) throw new ChatError("text_empty", "text is empty");
  if (codePointsAtLeast(cmd.text, MAX_TEXT_CODE_POINTS)) {
    throw new ChatError("text_too_long", `text must be shorter than ${MAX_TEXT_CODE_POINTS} code points`);
  }
}
