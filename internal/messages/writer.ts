import type { Id, InboxEntry, NewMessage, StoredMessage } from "../model/types.js";

export interface WrittenMessage {
  /** The stored message: the new one with its seq, or the one already stored under its idempotency key. */
  message: StoredMessage;
  /** True when (channelId, senderUserId, clientMsgId) was already stored; then `entries` is empty. */
  duplicate: boolean;
  /** The new inbox entries, one per member given, in the order given. */
  entries: { userId: Id; entry: InboxEntry }[];
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
  write(message: NewMessage, memberIds: readonly Id[]): Promise<WrittenMessage>;
}
