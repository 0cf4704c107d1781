import type { ChannelStore } from "../channels/store.js";
import { ChatError } from "../model/errors.js";
import type { Id, NewMessage, StoredMessage } from "../model/types.js";
import type { MessageLog } from "./log.js";
import type { SendCommand, Sender } from "./submit.js";

/**
 * Refuses an edit, a delete, a reply or a reaction the sender may not make:
 * the message it names must be a message of the channel that is not
 * deleted; only its sender edits it; its sender, or an admin or the owner of
 * its group, deletes it; anyone answers it or reacts to it. A plain send
 * passes untouched, with no read. Membership is the caller's check, as for
 * any send.
 *
 * This reads the current state; the MessageLog's single writer orders the
 * changes that race past it (a delete and an edit at once: the edit finds
 * the message deleted and is dropped, never resurrecting the text).
 */
export async function checkNamedMessage(log: MessageLog, channels: ChannelStore, sender: Sender, cmd: SendCommand): Promise<void> {
  const seq = cmd.editSeq || cmd.deleteSeq || cmd.replyToSeq || cmd.reactSeq;
  if (!seq) return;
  const target = await log.get(cmd.channelId, seq);
  if (!target) throw new ChatError("not_found", `no message with seq ${seq} in this channel`);
  if (target.deleted) throw new ChatError("not_found", `message ${seq} was deleted`);
  // Anyone who may send here may answer, or react to, any message of the channel.
  if (cmd.replyToSeq || cmd.reactSeq) return;
  if (target.senderUserId === sender.userId) return;
  if (cmd.editSeq) throw new ChatError("permission_denied", "only its sender can edit a message");
  // Direct chats have no admins: both members are plain members.
  const role = (await channels.getMember(cmd.channelId, sender.userId))?.role;
  if (role !== "admin" && role !== "owner") {
    throw new ChatError("permission_denied", "only its sender, or an admin of the group, can delete a message");
  }
}

/**
 * Who hears of this change by a push when none of their devices is online:
 * the author of a message someone else reacted to (not when a reaction is
 * taken back). Nobody for an edit or a delete: a device learns those at its
 * next sync.
 */
export function notifiedOfChange(change: NewMessage, target: StoredMessage): Id | undefined {
  if (!change.reaction || change.text === "" || target.senderUserId === change.senderUserId) return undefined;
  return target.senderUserId;
}
