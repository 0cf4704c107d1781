import type { Id } from "../model/types.js";

export interface SendCommand {
  clientMsgId: string;
  channelId: Id;
  text: string;
}

export interface Sender {
  userId: Id;
  deviceId: Id;
}

export interface SubmitResult {
  messageId: Id;
  /** True when this clientMsgId had already been accepted. */
  duplicate: boolean;
}

/**
 * MessageSubmitter validates a send (membership, size, idempotency key) and
 * hands it to the message-sync queue; it resolves only once the queue has
 * made it durable, which is the moment the sender may be acked.
 */
export interface MessageSubmitter {
  submit(sender: Sender, command: SendCommand): Promise<SubmitResult>;
}
