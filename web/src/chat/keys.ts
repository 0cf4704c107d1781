/** A map key for an id (a chat's, a user's): bigints are compared by value only as strings. */
export const key = (id: bigint) => id.toString();

/** A quoted message's key: its chat and seq. */
export const quoteKey = (channelId: bigint, seq: bigint) => `${channelId}:${seq}`;

export function newClientMsgId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
