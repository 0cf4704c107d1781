import { createHash, randomBytes } from "node:crypto";
import type { AccountStore } from "../accounts/store.js";
import { ChatError } from "../model/errors.js";
import type { Id, RefreshTokenRecord } from "../model/types.js";

export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 3_600_000;

/** What the store keys a refresh token by: a leaked table holds no usable tokens. */
export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

/**
 * Refresh tokens are 32 random bytes (base64url), single-use: every refresh
 * takes the old one out of the store and issues a new one.
 */
export class RefreshTokens {
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly accounts: AccountStore,
    options: { ttlMs?: number; now?: () => number } = {},
  ) {
    this.ttlMs = options.ttlMs ?? REFRESH_TOKEN_TTL_MS;
    this.now = options.now ?? Date.now;
  }

  async issue(userId: Id, deviceId: Id): Promise<{ token: string; expiresAtMs: number }> {
    const token = randomBytes(32).toString("base64url");
    const expiresAtMs = this.now() + this.ttlMs;
    await this.accounts.putRefreshToken(hashRefreshToken(token), { userId, deviceId, expiresAtMs });
    return { token, expiresAtMs };
  }

  /** Consumes the token and issues its successor for the same device. */
  async rotate(token: string): Promise<{ record: RefreshTokenRecord; token: string; expiresAtMs: number }> {
    if (token.length === 0 || token.length > 256) throw new ChatError("unauthenticated", "invalid refresh token");
    const record = await this.accounts.takeRefreshToken(hashRefreshToken(token));
    if (!record) throw new ChatError("unauthenticated", "refresh token is unknown or already used; sign in again");
    if (record.expiresAtMs <= this.now()) throw new ChatError("unauthenticated", "refresh token expired; sign in again");
    const device = await this.accounts.getDevice(record.userId, record.deviceId);
    if (!device || device.revoked) throw new ChatError("unauthenticated", "device was signed out; sign in again");
    const next = await this.issue(record.userId, record.deviceId);
    return { record, ...next };
  }
}
