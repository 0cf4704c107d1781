import { randomBytes } from "node:crypto";

/**
 * A new invite code: 16 random bytes in base64url (22 characters), never
 * starting with "-". A code is pasted on command lines, where a leading "-"
 * reads as an option (chat-cli join -6E2F… failed so); drawing again costs
 * one time in 64 and leaves well over 127 random bits.
 */
export function newInviteCode(): string {
  for (;;) {
    const code = randomBytes(16).toString("base64url");
    if (!code.startsWith("-")) return code;
  }
}
