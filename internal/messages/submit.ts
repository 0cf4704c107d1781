import type { ChannelNote, Id, NewMessage } from "../model/types.js";

export interface SendCommand {
  clientMsgId: string;
  channelId: Id;
  text: string;
  /** Edit the sender's own message with this seq instead of sending one (0n or absent: not an edit). */
  editSeq?: bigint;
  /** Delete the message with this seq for everyone; text must be empty (0n or absent: not a delete). */
  deleteSeq?: bigint;
  /** Send the message as a reply to the message with this seq (0n or absent: not a reply). */
  replyToSeq?: bigint;
  /** React to the message with this seq: text is the emoji, "" to take it back (0n or absent: not a reaction). */
  reactSeq?: bigint;
}

/**
 * Whether a block between a direct chat's pair refuses this send. A delete
 * is never refused: in a direct chat only a message's sender deletes it, and
 * taking one's own words back must stay possible after a falling-out. Nor is
 * taking back one's reaction (`react_seq` with no emoji), for the same
 * reason: refused, a ❤️ stayed on the blocker's message for good.
 */
export const blocksApplyTo = (cmd: SendCommand): boolean => !cmd.deleteSeq && !(cmd.reactSeq && cmd.text === "");

export interface Sender {
  userId: Id;
  deviceId: Id;
}

export interface SubmitResult {
  messageId: Id;
  /** True when this clientMsgId had already been accepted. */
  duplicate: boolean;
}

/** The message a send becomes once accepted: its id, who sent it, when. */
export function newMessage(messageId: Id, sender: Sender, cmd: SendCommand, sentAtMs: number): NewMessage {
  return {
    messageId,
    channelId: cmd.channelId,
    senderUserId: sender.userId,
    senderDeviceId: sender.deviceId,
    clientMsgId: cmd.clientMsgId,
    text: cmd.text,
    sentAtMs,
    ...(cmd.editSeq
      ? { targetSeq: cmd.editSeq }
      : cmd.deleteSeq
        ? { targetSeq: cmd.deleteSeq, deleted: true }
        : cmd.reactSeq
          ? { targetSeq: cmd.reactSeq, reaction: true }
          : {}),
    ...(cmd.replyToSeq ? { replyToSeq: cmd.replyToSeq } : {}),
  };
}

/**
 * MessageSubmitter validates a send (membership, size, idempotency key) and
 * hands it to the message-sync queue; it resolves only once the queue has
 * made it durable, which is the moment the sender may be acked.
 */
export interface MessageSubmitter {
  submit(sender: Sender, command: SendCommand): Promise<SubmitResult>;
  /**
   * Writes a note about the channel into its history and every member's
   * inbox, like a message from `sender`, with no membership check: the api
   * made the change the note tells of and vouches for it (one who left is no
   * longer a member). Clients cannot send notes.
   */
  note(sender: Sender, channelId: Id, note: ChannelNote): Promise<SubmitResult>;
}

/** The idempotency keys of notes; clients may not send under one (validateSend). */
export const NOTE_KEY_PREFIX = "note:";

/** A note as the message it travels as: no text, its own id as its idempotency key (the api writes each once). */
export function noteMessage(messageId: Id, sender: Sender, channelId: Id, note: ChannelNote, sentAtMs: number): NewMessage {
  return {
    messageId,
    channelId,
    senderUserId: sender.userId,
    senderDeviceId: sender.deviceId,
    clientMsgId: `${NOTE_KEY_PREFIX}${messageId}`,
    text: "",
    sentAtMs,
    note,
  };
}
