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
 * takes the old one out of the store and issues a new one. A token used a
 * second time means two holders, one of them a thief (OAuth 2.0 Security BCP,
 * refresh token rotation): the device is signed out through `onReuse`, which
 * also ends the thief's session, and the owner signs in again.
 */
export class RefreshTokens {
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly onReuse?: (record: RefreshTokenRecord) => Promise<void>;

  constructor(
    private readonly accounts: AccountStore,
    options: { ttlMs?: number; now?: () => number; onReuse?: (record: RefreshTokenRecord) => Promise<void> } = {},
  ) {
    this.ttlMs = options.ttlMs ?? REFRESH_TOKEN_TTL_MS;
    this.now = options.now ?? Date.now;
    this.onReuse = options.onReuse;
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
    // The successor is made before the take, so that the take's mark names it in the same write.
    const next = randomBytes(32).toString("base64url");
    const atMs = this.now();
    const taken = await this.accounts.takeRefreshToken(hashRefreshToken(token), { atMs, successorHash: hashRefreshToken(next) });
    if (!taken) throw new ChatError("unauthenticated", "refresh token is unknown or already used; sign in again");
    const { record } = taken;
    if (record.expiresAtMs <= atMs) throw new ChatError("unauthenticated", "refresh token expired; sign in again");
    if (taken.reused) {
      await this.onReuse?.(record);
      throw new ChatError("unauthenticated", "refresh token was already used: the device is signed out for safety; sign in again");
    }
    const device = await this.accounts.getDevice(record.userId, record.deviceId);
    if (!device || device.revoked) throw new ChatError("unauthenticated", "device was signed out; sign in again");
    const expiresAtMs = atMs + this.ttlMs;
    await this.accounts.putRefreshToken(hashRefreshToken(next), { userId: record.userId, deviceId: record.deviceId, expiresAtMs });
    return { record, token: next, expiresAtMs };
  }
}
