import type { Id, InboxEntry, NewMessage, StoredMessage } from "../model/types.js";

export interface WrittenMessage {
  /** The stored message: the new one with its seq, or the one already stored under its idempotency key. */
  message: StoredMessage;
  /** True when (channelId, senderUserId, clientMsgId) was already stored; then `entries` is empty. */
  duplicate: boolean;
  /**
   * The new inbox entries, one per member given, in the order given; a
   * change's `notify` on the entry of the member it is pushed to
   * (`notifiedOfChange`).
   */
  entries: { userId: Id; entry: InboxEntry; notify?: boolean }[];
}

/**
 * MessageWriter stores a message in its channel's log and a copy in every
 * member's inbox as one durable unit. It is the embedded engines' shortcut
 * through the pipeline: where one process owns every channel and every inbox
 * there is no partition to hand the work to, so the Sequencer's and the
 * InboxWriter's steps become one transaction, and an acked message is in every
 * inbox as soon as it is acked. Adapter: sqlite.
 */
export interface MessageWriter {
  /**
   * A change (`message.targetSeq` set) is applied to its target as
   * `MessageLog.amend` does and copied to every member's inbox, as one unit;
   * it takes no seq (0n in the result). A change that does not apply (target
   * missing or deleted, or, for an edit, changed later) is refused with ChatError `not_found`
   * and nothing is written. A change is deduplicated as a message is, by
   * (channel, sender, device, client_msg_id): a resend returns the stored
   * change with duplicate = true. A delete also empties the text of the
   * target's copies in the members' inboxes.
   */
  write(message: NewMessage, memberIds: readonly Id[]): Promise<WrittenMessage>;
}
