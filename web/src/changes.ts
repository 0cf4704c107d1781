import type { Message } from "../../gen/es/chat/v1/types_pb.js";
import { tsMs } from "./format.js";

/**
 * An inbox entry that edits or deletes an earlier message (target_seq set,
 * no seq of its own) rather than adding one: it is never shown as a message
 * and never counts as unread.
 */
export const isChange = (m: Message): boolean => m.targetSeq !== 0n;

/** What a change carries: an edit's new text and time, or a delete. */
export type ChangeLike = Pick<Message, "text" | "deleted" | "sentAt">;

/**
 * The message as the change leaves it, as a new object (the same message
 * object may be both the chat list's last message and one of the open
 * chat's). A deleted message stays deleted: an edit that raced a delete
 * never brings the text back.
 */
export function applyChange(m: Message, change: ChangeLike): Message {
  if (m.deleted) return m;
  if (change.deleted) return { ...m, text: "", deleted: true };
  return { ...m, text: change.text, editedAt: change.sentAt };
}

/** Of two copies of one message, the one that has seen more changes. */
export function moreCurrent(have: Message, got: Message): Message {
  if (have.deleted !== got.deleted) return have.deleted ? have : got;
  return (tsMs(got.editedAt) ?? 0) > (tsMs(have.editedAt) ?? 0) ? got : have;
}
