import type { Message } from "../../gen/es/chat/v1/types_pb.js";
import { tsMs } from "./format.js";
import { withReaction } from "./reactions.js";

/**
 * An inbox entry that edits, deletes or reacts to an earlier message
 * (target_seq set, no seq of its own) rather than adding one: it is never
 * shown as a message and never counts as unread.
 */
export const isChange = (m: Message): boolean => m.targetSeq !== 0n;

/**
 * What a change carries: an edit's new text and time, a delete, or
 * (`reaction`) its sender's reaction, the text being the emoji or empty
 * when they took it back.
 */
export type ChangeLike = Pick<Message, "text" | "deleted" | "sentAt" | "reaction" | "senderUserId">;

/**
 * The message as the change leaves it, as a new object (the same message
 * object may be both the chat list's last message and one of the open
 * chat's). A deleted message stays deleted, with no reactions: an edit or
 * a reaction that raced a delete never brings anything back.
 */
export function applyChange(m: Message, change: ChangeLike): Message {
  if (m.deleted) return m;
  if (change.deleted) return { ...m, text: "", deleted: true, reactions: [] };
  if (change.reaction) return { ...m, reactions: withReaction(m.reactions, change.senderUserId, change.text) };
  return { ...m, text: change.text, editedAt: change.sentAt };
}

/** Of two copies of one message, the one that has seen more edits and deletes (the held one when they tie). */
export function moreCurrent(have: Message, got: Message): Message {
  if (have.deleted !== got.deleted) return have.deleted ? have : got;
  return (tsMs(got.editedAt) ?? 0) > (tsMs(have.editedAt) ?? 0) ? got : have;
}

/**
 * A change that arrived while `m` was being read, so `m` may or may not
 * show it already. An edit is kept only if newer than what `m` shows; a
 * reaction is applied all the same: it sets its sender's reaction, and the
 * ones that follow it (in order) leave that as the last of them says.
 */
export function applyLate(m: Message, change: ChangeLike): Message {
  return change.reaction ? applyChange(m, change) : moreCurrent(m, applyChange(m, change));
}

export type ChangeKind = "edit" | "delete" | "reaction";

/** Every id: nothing of any id applies to a deleted message. */
const EVERY_ID = (1n << 64n) - 1n;

/**
 * The ids below which my change of `kind` to message `seq` can no longer
 * apply once `entry`, a change of the same chat, has applied (0n when it
 * makes no difference). The server's rules: nothing applies to a deleted
 * message; edits are ordered by their ids, so an edit minted before the last
 * applied one is dropped; so are a person's reactions to one message; a
 * delete wins over any edit. In the cluster a change is acked once it is
 * queued and such a loser is dropped later, with no answer of its own, so
 * this is how a device learns its change will never come back.
 */
export function outdatedBelow(entry: Message, seq: bigint, kind: ChangeKind, me: bigint): bigint {
  if (entry.targetSeq !== seq) return 0n;
  if (entry.deleted) return EVERY_ID;
  if (entry.reaction) return kind === "reaction" && entry.senderUserId === me ? entry.messageId : 0n;
  return kind === "edit" ? entry.messageId : 0n;
}

/**
 * Whether a change still awaited is outdated: every change once its message
 * is deleted, acked or not; otherwise once acked under an id below the bar.
 */
export const isOutdated = (bar: bigint, ackedId: bigint | undefined): boolean =>
  bar === EVERY_ID || (ackedId !== undefined && ackedId < bar);
