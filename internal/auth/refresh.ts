import { createHash, randomBytes } from "node:crypto";
import { ACCOUNT_DELETED, isDeletedUser, type AccountStore, type RefreshTokenTake, type RefreshTokenUse } from "../accounts/store.js";
import { ChatError, ContendedError } from "../model/errors.js";
import type { Id, RefreshTokenRecord } from "../model/types.js";

export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 3_600_000;
/**
 * How long after a refresh token's first use presenting it again counts as a
 * retry after a lost reply rather than a second holder (Auth0's and Okta's
 * "reuse interval"): long enough for a phone to notice a dropped connection
 * and try again, short enough that a copy stolen later is caught.
 */
export const REFRESH_REUSE_GRACE_MS = 60_000;

/** What the store keys a refresh token by: a leaked table holds no usable tokens. */
export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

/** A device of a deleted account is told so, not only that it was signed out. */
const deviceSignedOut = (why: true | typeof ACCOUNT_DELETED) =>
  new ChatError("unauthenticated", why === ACCOUNT_DELETED ? ACCOUNT_DELETED : "device was signed out; sign in again");

function newToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}

/** What `retried` answers for a retry that lost the successor to a racing one still under way. */
const RACING = Symbol("racing retry");
/** Retries of one token in flight at once that a loser follows, at most: more is a flood, not a phone. */
const MAX_RACING_RETRIES = 8;

/**
 * Refresh tokens are 32 random bytes (base64url), single-use: every refresh
 * takes the old one out of the store and issues a new one. A token used a
 * second time means two holders, one of them a thief (OAuth 2.0 Security BCP,
 * refresh token rotation): the device is signed out through `onReuse`, which
 * also ends the thief's session, and the owner signs in again.
 *
 * Except for a retry after a lost reply: a phone whose connection dropped
 * after the server rotated its token presents the old one again. Within
 * `reuseGraceMs` of the first use, while the successor issued then is still
 * unused, the successor is taken (so the chain keeps one live token) and a
 * new one issued in its place. The successor taken counts as used: it never
 * reached its owner as far as the server knows, so whoever presents it later
 * is a second holder. A retry racing the first use's take (sent while it was
 * still under way) is answered the same way: the store gives the loser the
 * winner's mark. A reuse after the grace, or once the successor was used
 * (whoever holds it moved the chain on), still signs
 * the device out; one of a device signed out already is refused as that.
 */
export class RefreshTokens {
  private readonly ttlMs: number;
  private readonly reuseGraceMs: number;
  private readonly now: () => number;
  private readonly onReuse?: (record: RefreshTokenRecord) => Promise<void>;

  constructor(
    private readonly accounts: AccountStore,
    options: {
      ttlMs?: number;
      /** 0 turns the grace off: every second use signs the device out. */
      reuseGraceMs?: number;
      now?: () => number;
      onReuse?: (record: RefreshTokenRecord) => Promise<void>;
    } = {},
  ) {
    this.ttlMs = options.ttlMs ?? REFRESH_TOKEN_TTL_MS;
    this.reuseGraceMs = options.reuseGraceMs ?? REFRESH_REUSE_GRACE_MS;
    this.now = options.now ?? Date.now;
    this.onReuse = options.onReuse;
  }

  async issue(userId: Id, deviceId: Id): Promise<{ token: string; expiresAtMs: number }> {
    const { token, hash } = newToken();
    const expiresAtMs = this.now() + this.ttlMs;
    await this.accounts.putRefreshToken(hash, { userId, deviceId, expiresAtMs });
    return { token, expiresAtMs };
  }

  /**
   * The user `token` was issued to, read without taking it: each rotation
   * stores a row kept for the token's life, so a caller can hold the user to
   * a rate before rotating.
   */
  async owner(token: string): Promise<Id | undefined> {
    if (token.length === 0 || token.length > 256) return undefined;
    return this.accounts.refreshTokenOwner(hashRefreshToken(token));
  }

  /** Consumes the token and issues its successor for the same device. */
  async rotate(token: string): Promise<{ record: RefreshTokenRecord; token: string; expiresAtMs: number }> {
    if (token.length === 0 || token.length > 256) throw new ChatError("unauthenticated", "invalid refresh token");
    const tokenHash = hashRefreshToken(token);
    // Made before the take, so that the take's mark names it in the same write.
    const next = newToken();
    const atMs = this.now();
    const expiresAtMs = atMs + this.ttlMs;
    // The successor is stored with the take: a failure after it (a store
    // timeout, a crash) then leaves one that the client's retry takes, rather
    // than none, which would read as a second holder and sign the device out.
    const use = { atMs, successorHash: next.hash, successorExpiresAtMs: expiresAtMs };
    const taken = await this.accounts.takeRefreshToken(tokenHash, use);
    if (!taken) throw new ChatError("unauthenticated", "refresh token is unknown or already used; sign in again");
    const { record } = taken;
    if (record.expiresAtMs <= atMs) throw new ChatError("unauthenticated", "refresh token expired; sign in again");
    const retry = taken.reused ? await this.retried(tokenHash, taken, use) : true;
    if (retry !== true) {
      // A device signed out already (a logout or a revocation while a reply was lost, a reuse
      // before) has nothing left to sign out: telling it "used twice" would raise a thief alarm,
      // and count one, for a client that only retried.
      const signedOut = await this.signedOut(record);
      if (signedOut) throw deviceSignedOut(signedOut);
      if (retry === RACING) throw new ContendedError("a refresh with this token is still under way; try again in a moment");
      await this.onReuse?.(record);
      throw new ChatError("unauthenticated", "refresh token was already used: the device is signed out for safety; sign in again");
    }
    // A successor stored for a device signed out is never issued, and refused if ever presented.
    const signedOut = await this.signedOut(record);
    if (signedOut) throw deviceSignedOut(signedOut);
    return { record, token: next.token, expiresAtMs };
  }

  /** Whether the device is signed out (also with no row: forgotten after its sign-out), ACCOUNT_DELETED with its account. */
  private async signedOut({ userId, deviceId }: RefreshTokenRecord): Promise<boolean | typeof ACCOUNT_DELETED> {
    const device = await this.accounts.getDevice(userId, deviceId);
    if (device && !device.revoked) return false;
    const user = await this.accounts.getUser(userId);
    return user === undefined || isDeletedUser(user) ? ACCOUNT_DELETED : true;
  }

  /**
   * Whether a reused token is a retry after a lost reply, whose successor is
   * then taken in favour of `next.successorHash`. The grace runs from the first use, not
   * from the last retry, so retries cannot keep a stolen copy usable.
   *
   * Retries racing each other (a phone's, each sent as the one before timed
   * out on a slow store; tabs of a browser without Web Locks) race for the
   * successor too: a loser follows the mark the winner moved on to the token
   * it issued, as a retry after the winner's would, and the last answered
   * holds the one live token. RACING when the winner has taken the successor
   * but not yet moved the mark (Cassandra: a write after the take): the
   * client is told to try again, not signed out.
   */
  private async retried(tokenHash: string, taken: RefreshTokenTake, next: RefreshTokenUse): Promise<boolean | typeof RACING> {
    if (taken.usedAtMs === undefined || taken.successorHash === undefined) return false;
    // A grace of 0 is none, also for a reuse within the same millisecond.
    // On the store's clock when it measured it: this process's clock against the one that wrote
    // usedAtMs judged retries by their skew.
    const elapsedMs = taken.usedAgoMs ?? next.atMs - taken.usedAtMs;
    if (this.reuseGraceMs <= 0 || elapsedMs > this.reuseGraceMs) return false;
    let successor = taken.successorHash;
    for (let hop = 0; hop < MAX_RACING_RETRIES; hop++) {
      if (await this.accounts.takeSuccessor(tokenHash, successor, next)) return true;
      const moved = (await this.accounts.refreshTokenMark(tokenHash))?.successorHash;
      if (moved === undefined || moved === successor) break;
      successor = moved;
    }
    // Used by whoever held it, it names a successor of its own; taken by a retry, none.
    const taker = await this.accounts.refreshTokenMark(successor);
    return taker?.usedAtMs !== undefined && taker.successorHash === undefined ? RACING : false;
  }
}

