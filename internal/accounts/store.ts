import { DEFAULT_PRESENCE_VISIBILITY, type DeviceRecord, type Id, type PresenceVisibility, type RefreshTokenRecord, type UserRecord } from "../model/types.js";

export interface RefreshTokenTake {
  record: RefreshTokenRecord;
  /** The token had been taken before: it is being used a second time. */
  reused: boolean;
  /**
   * On a reuse, when the token was first taken and the hash of the token
   * issued in its place, as that take recorded them: what tells a client
   * retrying after a lost reply from a second holder. Either may be missing
   * (a token taken before they were kept, or a successor a retry took), and
   * a take that lost a race to another gets the winner's (a client's retry
   * sent while its first request was under way is a retry all the same).
   */
  usedAtMs?: number;
  successorHash?: string;
  /**
   * How long before this take the first one was, measured on the store's
   * own clock where it keeps one (Cassandra's: api processes share no
   * clock, and the taker's against `usedAtMs`, another api's, judged the
   * reuse grace by their skew). Missing where the store has none of its own
   * (SQLite: one process, whose clock wrote `usedAtMs`).
   */
  usedAgoMs?: number;
}

/** A refresh token's use: when, and the hash of the token the caller will issue in its place. */
export interface RefreshTokenUse {
  atMs: number;
  successorHash: string;
  /**
   * When set, the take also stores the successor (same user and device,
   * expiring then), with the take itself, unless the token taken had expired
   * by `atMs`: a caller that fails after the take (a store timeout, a crash)
   * leaves a successor that its client's retry, within the reuse grace, can
   * take, instead of none, which would sign the device out.
   */
  successorExpiresAtMs?: number;
}

/**
 * An account deletion recorded before its account is marked deleted, kept
 * until its final pass has run: what the deletion sweeper finishes when the
 * process that ran it died in between (internal/api/deletion-sweeper.ts).
 */
export interface PendingDeletion {
  userId: Id;
  /** The device that asked: the one the sweep's notes of leaving its groups name. */
  deviceId: Id;
  /** When it was recorded; also which attempt of the deletion it is (removePendingDeletion). */
  atMs: number;
  /**
   * Whom to tell the account is offline that a later pass may no longer
   * find: its friends, recorded before the friendships are dropped. Those
   * told are read when the offline notice goes out, and a sweep finishing a
   * deletion whose process died finds no friendship left to read them from.
   * Left out when none (ascending when listed).
   */
  tellOffline?: readonly Id[];
}

/**
 * AccountStore keeps users, their devices, refresh tokens and the friend
 * graph. Adapters: sqlite (embedded), cassandra (distributed).
 */
export interface AccountStore {
  /** Throws ChatError("already_exists") when the lower-cased username is taken. */
  createUser(user: UserRecord): Promise<void>;
  findUserByUsername(username: string): Promise<UserRecord | undefined>;
  getUser(userId: Id): Promise<UserRecord | undefined>;
  /** Unknown ids are left out; order follows the input. */
  getUsers(userIds: readonly Id[]): Promise<UserRecord[]>;
  /** Usernames starting with the lower-cased prefix, alphabetical. */
  searchUsers(prefix: string, limit: number): Promise<UserRecord[]>;
  updateDisplayName(userId: Id, displayName: string): Promise<void>;
  /** Replaces the password hash of an existing user (an unknown user is not created). */
  updatePasswordHash(userId: Id, passwordHash: string): Promise<void>;
  /**
   * Deletes an account's identity but keeps its row, so the messages it sent
   * keep a sender: the username is released (another user may sign up with
   * it, findUserByUsername no longer finds this one) and leaves search;
   * username, display name and password hash become empty (isDeletedUser).
   * Devices, friends, memberships and the rest are the caller's to remove.
   * Deleting again, or an unknown user, does nothing.
   */
  deleteUser(userId: Id): Promise<void>;
  /**
   * Records the account's deletion as pending, replacing a record of an
   * earlier attempt (cut short before the mark): a sweep that read that one
   * and drops it (removePendingDeletion with its atMs) leaves this one. The
   * earlier record's tellOffline is kept, with this one's added: friends an
   * attempt cut short had dropped are no longer found by the next. Returns
   * the tellOffline now recorded.
   */
  putPendingDeletion(pending: PendingDeletion): Promise<Id[]>;
  /** Pending deletions recorded at or before `recordedBy`, at most `limit` (oldest first where the store can tell). */
  listPendingDeletions(recordedBy: number, limit: number): Promise<PendingDeletion[]>;
  /** Removes the account's pending deletion if it is still the one recorded at `atMs` (a later attempt's stays). */
  removePendingDeletion(userId: Id, atMs: number): Promise<void>;
  /** Each user's presence setting; users who never chose one are left out (they have the default). */
  getPresenceVisibility(userIds: readonly Id[]): Promise<Map<Id, PresenceVisibility>>;
  setPresenceVisibility(userId: Id, visibility: PresenceVisibility): Promise<void>;

  createDevice(device: DeviceRecord): Promise<void>;
  getDevice(userId: Id, deviceId: Id): Promise<DeviceRecord | undefined>;
  listDevices(userId: Id): Promise<DeviceRecord[]>;
  touchDevice(userId: Id, deviceId: Id, atMs: number): Promise<void>;
  /**
   * Marks the device revoked and its refresh tokens used (no use time, no
   * successor): a take of one is refused as a reuse, which finds the device
   * signed out and can say why (its account deleted), instead of finding
   * nothing. The marks hold ids and an expiry only, and go when they would have expired.
   */
  revokeDevice(userId: Id, deviceId: Id): Promise<void>;
  /**
   * Deletes a revoked device's row (a device not revoked is left alone). Only
   * for a device none of whose access tokens can still be valid: with no row,
   * a device reads as never signed out.
   */
  forgetDevice(userId: Id, deviceId: Id): Promise<void>;

  /** Tokens are stored by a hash, never in clear. */
  putRefreshToken(tokenHash: string, record: RefreshTokenRecord): Promise<void>;
  /**
   * Takes a refresh token out: it is single-use. The first take gets the
   * record with `reused: false`; the token is then remembered as used until
   * it would have expired, with `use` (the mark is one write), and every
   * later take (racing ones included) gets the record with `reused: true`
   * and, from the mark, that use's time and successor, a take that lost a
   * race for the token itself too. The caller can then sign the
   * device out: one of two holders of the token is a thief. Undefined for a
   * token never issued, or forgotten once it would have expired.
   */
  takeRefreshToken(tokenHash: string, use: RefreshTokenUse): Promise<RefreshTokenTake | undefined>;
  /**
   * A used token presented again by a client whose reply was lost: takes
   * its successor `successorHash` if it is still unused (marked used with no
   * successor of its own: it never reached anyone who should hold it, so a
   * later use of it is a second holder's) and moves the used token's mark on
   * to `next.successorHash`, which the caller then issues (stored with the
   * take when `next.successorExpiresAtMs` is set), so that a further
   * retry finds it. False when the successor is no longer there to take: used (the chain moved on), taken by a racing
   * retry, or marked used with its device's sign-out.
   */
  takeSuccessor(tokenHash: string, successorHash: string, next: RefreshTokenUse): Promise<boolean>;
  /** The user a refresh token, unused or used, was issued to; undefined for one never issued or forgotten. Writes nothing. */
  refreshTokenOwner(tokenHash: string): Promise<Id | undefined>;
  /**
   * A used token's mark, as a reuse of it is answered (`usedAtMs` missing for
   * one marked at its device's sign-out, `successorHash` for one a retry took
   * or marked so): how a retry that lost a race to another for the successor
   * follows the mark the winner moved on. Undefined for a token unused, never
   * issued or forgotten. Writes nothing.
   */
  refreshTokenMark(tokenHash: string): Promise<Pick<RefreshTokenTake, "usedAtMs" | "successorHash"> | undefined>;

  /**
   * A pending request from one user to another (directed). True when this
   * call stored it, false when it was waiting already: only the call that
   * stored it may withdraw it (the pending limit's second look).
   */
  putFriendRequest(fromUserId: Id, toUserId: Id, atMs: number): Promise<boolean>;
  deleteFriendRequest(fromUserId: Id, toUserId: Id): Promise<void>;
  hasFriendRequest(fromUserId: Id, toUserId: Id): Promise<boolean>;
  /** Both directions: { fromUserId, toUserId } with userId on one side. */
  listFriendRequests(userId: Id): Promise<{ fromUserId: Id; toUserId: Id; atMs: number }[]>;
  /** Symmetric; also deletes pending requests between the two. */
  addFriendship(a: Id, b: Id, atMs: number): Promise<void>;
  removeFriendship(a: Id, b: Id): Promise<void>;
  areFriends(a: Id, b: Id): Promise<boolean>;
  listFriends(userId: Id): Promise<Id[]>;

  /**
   * `userId` blocks `blockedUserId` (directed; blocking again keeps one block
   * and its first time). The store keeps only the block: what a block undoes
   * (a friendship, pending requests) is the caller's to remove. True when
   * this call stored the block, false when it was there already: only the
   * call that stored it may take it back (the block limit's second look).
   */
  putBlock(userId: Id, blockedUserId: Id, atMs: number): Promise<boolean>;
  deleteBlock(userId: Id, blockedUserId: Id): Promise<void>;
  /** Whom the user blocked, with when, newest first (ties by user id). */
  listBlocks(userId: Id): Promise<{ userId: Id; atMs: number }[]>;
  /**
   * Who blocked the user, by user id, a page at a time: at most `limit`,
   * those after `after` (from the first when unset). Anyone may block a user,
   * so all of them have no bound: what asks about some users asks
   * blockersAmong instead.
   */
  listBlockers(userId: Id, page: { after?: Id; limit: number }): Promise<Id[]>;
  /**
   * Of `among`, those who blocked the user, by user id: what an add or a
   * presence audience checks, reading the rows of those users alone.
   */
  blockersAmong(userId: Id, among: readonly Id[]): Promise<Id[]>;
  /** Which of the pair blocked the other: none, one or both of them. */
  blockersBetween(a: Id, b: Id): Promise<Id[]>;
}

/**
 * Whether a device was signed out (logout, revocation, a reused refresh
 * token). A device with no row was never stored, as for tokens a benchmark
 * signs itself with the server's key: not signed out.
 */
export async function isRevoked(accounts: AccountStore, userId: Id, deviceId: Id): Promise<boolean> {
  return (await accounts.getDevice(userId, deviceId))?.revoked === true;
}

/** What a device of a deleted account is refused with: "signed out" alone sent its user looking for a cause. */
export const ACCOUNT_DELETED = "signed out: the account was deleted";

/**
 * As isRevoked, saying why for a device of a deleted account (ACCOUNT_DELETED); true for a
 * device signed out otherwise. The account is read only for a device signed out.
 */
export async function signedOutReason(accounts: AccountStore, userId: Id, deviceId: Id): Promise<boolean | typeof ACCOUNT_DELETED> {
  if (!(await isRevoked(accounts, userId, deviceId))) return false;
  const user = await accounts.getUser(userId);
  return user === undefined || isDeletedUser(user) ? ACCOUNT_DELETED : true;
}

/** A stored device still signed in: the notifier pushes to no other (a missing row is a device deleted with its account). */
export async function isActiveDevice(accounts: AccountStore, userId: Id, deviceId: Id): Promise<boolean> {
  const device = await accounts.getDevice(userId, deviceId);
  return device !== undefined && !device.revoked;
}

/** An account deleted with deleteUser: a row kept only as the sender of old messages. */
export function isDeletedUser(user: UserRecord): boolean {
  return user.username === "";
}

/** Who may see the user's presence: their setting, or the default when they never chose. */
export async function presenceVisibility(accounts: AccountStore, userId: Id): Promise<PresenceVisibility> {
  return (await accounts.getPresenceVisibility([userId])).get(userId) ?? DEFAULT_PRESENCE_VISIBILITY;
}
