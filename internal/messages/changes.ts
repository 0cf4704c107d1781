import type { ChannelStore } from "../channels/store.js";
import type { EnvReader } from "../config/env.js";
import { ChatError } from "../model/errors.js";
import type { Id, NewMessage, StoredMessage } from "../model/types.js";
import type { MessageLog } from "./log.js";
import type { SendCommand, Sender } from "./submit.js";

/**
 * How long after sending its sender may change a message (0: no limit):
 * operators who want WhatsApp's rules set 15 minutes for edits and two days
 * for deletes. A group's admins and owner delete any message at any time
 * (moderation knows no window).
 */
export interface ChangeWindows {
  editMs: number;
  deleteMs: number;
}

export const NO_CHANGE_WINDOWS: ChangeWindows = { editMs: 0, deleteMs: 0 };

/** CHAT_EDIT_WINDOW_S and CHAT_DELETE_WINDOW_S (README: "Configuration"). */
export function readChangeWindows(r: EnvReader): ChangeWindows {
  return {
    editMs: r.int("CHAT_EDIT_WINDOW_S", 0, 0, 10 * 365 * 86_400) * 1000,
    deleteMs: r.int("CHAT_DELETE_WINDOW_S", 0, 0, 10 * 365 * 86_400) * 1000,
  };
}

/**
 * How many times one message can be edited. Each edit is kept (its id among
 * the message's edits) and copied to every member's inbox as an entry of its
 * own, and a delete must find and empty every one of those copies in every
 * member's inbox: without a bound, one user editing one message in a loop
 * made each later delete of it cost edits x members writes (and its records
 * grew past what Kafka takes). People fix a message a handful of times; 100
 * leaves room for any real use while a delete stays at most 101 x members
 * inbox writes (10,100 in a full group). The check reads the count when the
 * edit is sent, so edits sent at the same moment can pass it together; the
 * delete's records are bounded apart from it (MAX_EMPTIED_PER_APPEND).
 */
export const MAX_EDITS_PER_MESSAGE = 100;

/** Whether the send is an edit, a delete or a reaction (stored as a change of its target, not as a message). */
export function isChangeSend(cmd: SendCommand): boolean {
  return Boolean(cmd.editSeq || cmd.deleteSeq || cmd.reactSeq);
}

/**
 * The id stored under the send's key (channel, sender, device,
 * client_msg_id): the message's, or the change's. A resend refused by a
 * check that the first copy passed (its target deleted since, the sender
 * left, a window closed) is still acked with it: it was stored.
 */
export async function storedUnderKey(log: MessageLog, sender: Sender, cmd: SendCommand): Promise<Id | undefined> {
  const key = [cmd.channelId, sender.userId, sender.deviceId, cmd.clientMsgId] as const;
  return isChangeSend(cmd) ? log.findChange(...key) : (await log.findByClientMsgId(...key))?.messageId;
}

const namedSeq = (cmd: SendCommand): bigint | undefined => cmd.editSeq || cmd.deleteSeq || cmd.replyToSeq || cmd.reactSeq;

/** Whether the send names another message (an edit, a delete, a reply, a reaction): only then has checkNamedMessage anything to check. */
export const namesMessage = (cmd: SendCommand): boolean => !!namedSeq(cmd);

/**
 * `named` (a checkNamedMessage), its refusal held until `senderCheck` (membership, blocks) has
 * answered, so that a sender who may not post is told that whatever message the send names: a
 * non-member would otherwise learn which seqs the channel holds, and the blocked would hear
 * not_found or blocked by which read answered first. Both submitters ask the two side by side.
 */
export function refusedAfterSenderCheck<T>(senderCheck: Promise<unknown> | undefined, named: Promise<T>): Promise<T> {
  return named.catch(async (e: unknown) => {
    await senderCheck;
    throw e;
  });
}

/**
 * Refuses an edit, a delete, a reply or a reaction the sender may not make:
 * the message it names must be a message of the channel that is not
 * deleted; only its sender edits it, at most MAX_EDITS_PER_MESSAGE times
 * (`limit_reached`); its sender, or an admin or the owner of
 * its group, deletes it; anyone answers it or reacts to it. A note about
 * the channel is nobody's to change or answer. A plain send
 * passes untouched, with no read. Membership is the caller's check, as for
 * any send.
 *
 * Resolves true when the change, allowed, would leave its target as it is
 * read now (`changesNothing`): an edit to the text the message has is then
 * not refused by the limit, as it would add no edit.
 *
 * This reads the current state; the MessageLog's single writer orders the
 * changes that race past it (a delete and an edit at once: the edit finds
 * the message deleted and is dropped, never resurrecting the text).
 * A delete allowed by the sender's role alone sets `found.byModerator`: the
 * role can be taken away before the write, which the caller then checks
 * again (isModerator) where it reads the roster again.
 */
export async function checkNamedMessage(
  log: MessageLog,
  channels: ChannelStore,
  sender: Sender,
  cmd: SendCommand,
  windows: ChangeWindows = NO_CHANGE_WINDOWS,
  nowMs: number = Date.now(),
  found: { byModerator?: boolean } = {},
): Promise<boolean> {
  const seq = namedSeq(cmd);
  if (!seq) return false;
  // An edit also counts the message's edits, in the same round trip.
  const [target, edits] = await Promise.all([
    log.get(cmd.channelId, seq),
    cmd.editSeq ? log.editsOf(cmd.channelId, seq, MAX_EDITS_PER_MESSAGE) : undefined,
  ]);
  if (!target) throw new ChatError("not_found", `no message with seq ${seq} in this channel`);
  if (target.deleted) throw new ChatError("not_found", `message ${seq} was deleted`);
  if (target.note) throw new ChatError("invalid_argument", `message ${seq} is a note about the chat: it cannot be edited, deleted, answered or reacted to`);
  // Anyone who may send here may answer, or react to, any message of the channel.
  if (cmd.replyToSeq) return false;
  const unchanged = changesNothing(changeOf(sender, cmd), target);
  if (cmd.reactSeq) return unchanged;
  if (target.senderUserId === sender.userId) {
    const [window, what] = cmd.editSeq ? [windows.editMs, "edited"] : [windows.deleteMs, "deleted for everyone"];
    if (window === 0 || nowMs - target.sentAtMs <= window) {
      if (!unchanged && edits && edits.length >= MAX_EDITS_PER_MESSAGE) {
        throw new ChatError("limit_reached", `message ${seq} was edited ${MAX_EDITS_PER_MESSAGE} times, the most a message can be: send a new one`);
      }
      return unchanged;
    }
    // Past their window, a group's admins may still delete their own message, as anyone's.
    if (cmd.deleteSeq && (await isModerator(channels, cmd.channelId, sender.userId))) {
      found.byModerator = true;
      return false;
    }
    throw new ChatError("permission_denied", `a message can only be ${what} within ${duration(window)} of sending it`);
  }
  if (cmd.editSeq) throw new ChatError("permission_denied", "only its sender can edit a message");
  if (!(await isModerator(channels, cmd.channelId, sender.userId))) throw notModerator();
  found.byModerator = true;
  return false;
}

/** The refusal of a delete of someone else's message by one who is not (or no longer) an admin or the owner of its group. */
export const notModerator = () => new ChatError("permission_denied", "only its sender, or an admin of the group, can delete a message");

/** What of a change decides whether it changes anything. */
export type ChangeLike = Pick<NewMessage, "senderUserId" | "text" | "deleted" | "reaction">;

const changeOf = (sender: Sender, cmd: SendCommand): ChangeLike => ({
  senderUserId: sender.userId,
  text: cmd.text,
  deleted: Boolean(cmd.deleteSeq),
  reaction: Boolean(cmd.reactSeq),
});

/**
 * Whether the change would leave `target` (as the log now has it) as it is:
 * an edit to the text it has, a reaction with the emoji its sender has on
 * it already, taking back a reaction its sender does not have. Such a
 * change is answered as made and copied to no inbox: clients retry, and a
 * repeat must not put an entry in the inbox of every member (up to 100) and
 * every one of their devices. A delete always changes something; nothing
 * applies to a deleted message (`NOT_FOUND`, or dropped by the log).
 */
export function changesNothing(change: ChangeLike, target: StoredMessage): boolean {
  if (target.deleted || change.deleted) return false;
  if (change.reaction) return (target.reactions?.find((r) => r.userId === change.senderUserId)?.emoji ?? "") === change.text;
  return change.text === target.text;
}

/** A group's admin or owner. Direct chats have no admins: both members are plain members. */
export async function isModerator(channels: ChannelStore, channelId: Id, userId: Id): Promise<boolean> {
  const role = (await channels.getMember(channelId, userId))?.role;
  return role === "admin" || role === "owner";
}

/** "15 minutes", "2 days", "90 seconds": the largest whole unit. */
function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  for (const [unit, size] of [["day", 86_400], ["hour", 3_600], ["minute", 60]] as const) {
    if (s >= size && s % size === 0) return `${s / size} ${unit}${s === size ? "" : "s"}`;
  }
  return `${s} second${s === 1 ? "" : "s"}`;
}

/**
 * Whose notifier hears of this change when none of their devices is online:
 * the author of a message someone else reacted to, pushed the reaction, or
 * told it was taken back (its push, if still held, is dropped). Nobody for an
 * edit: a device learns it at its next sync (a delete goes to every member's
 * notifier without a mark: each may hold the message's push).
 */
export function notifiedOfChange(change: NewMessage, target: StoredMessage): Id | undefined {
  if (!change.reaction || target.senderUserId === change.senderUserId) return undefined;
  return target.senderUserId;
}
