import type { SendClaims } from "./port.js";

/**
 * Claims in one process's memory, each dropped `ttlMs` after it was made
 * (swept as claims are made, so memory stays bounded by the send rate).
 */
export class MemorySendClaims implements SendClaims {
  /** Insertion order is expiry order: every claim lives the same ttl. */
  private readonly claims = new Map<string, { messageId: bigint; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async claim(key: string, messageId: bigint): Promise<bigint> {
    const now = this.now();
    for (const [k, c] of this.claims) {
      if (c.expiresAt > now) break;
      this.claims.delete(k);
    }
    const held = this.claims.get(key);
    if (held) return held.messageId;
    this.claims.set(key, { messageId, expiresAt: now + this.ttlMs });
    return messageId;
  }

  async close(): Promise<void> {
    this.claims.clear();
  }
}
