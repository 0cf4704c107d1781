/**
 * SendClaims decides, across chat servers, which message id a send gets. The
 * first server to take a send claims its key (sender, device, channel,
 * client_msg_id) with the id it minted; a resend of it through another chat
 * server, while the first copy is still on its way through the pipeline,
 * gets that id back and is published under it, so whichever copy the
 * Sequencer stores, the device's ack names the stored message. Claims expire:
 * by then the MessageLog answers for what was stored.
 *
 * Adapters: redis (distributed), memory (tests, and one process).
 */
export interface SendClaims {
  /** Claims `key` for `messageId`; resolves to the id that holds the key: this one, or an earlier claim's. */
  claim(key: string, messageId: bigint): Promise<bigint>;
  close(): Promise<void>;
}

/** One send's key: client_msg_id is unique per device, so the device is part of it. */
export function sendKey(userId: bigint, deviceId: bigint, channelId: bigint, clientMsgId: string): string {
  return `${userId}/${deviceId}/${channelId}/${clientMsgId}`;
}
