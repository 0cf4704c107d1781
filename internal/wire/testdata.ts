import type { StoredMessage } from "../model/types.js";

/**
 * For encoding tests: a message whose fields take the encoders' harder paths
 * (ids above 2^53 and 2^63, multi-byte and astral text, a time with milliseconds).
 */
export const awkwardMessage: StoredMessage = {
  messageId: 1234567890123456789n,
  channelId: 9_000_000_000_000_000_001n,
  seq: 42n,
  senderUserId: 18_000_000_000_000_000_000n,
  senderDeviceId: 7n,
  clientMsgId: "c-1",
  text: "héllo 👋 ".repeat(20),
  sentAtMs: 1_764_000_000_123,
};
