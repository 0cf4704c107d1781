import type { AccountStore, PendingDeletion, RefreshTokenTake, RefreshTokenUse } from "../../accounts/store.js";
import type { DeviceRecord, Id, Platform, PresenceVisibility, RefreshTokenRecord, UserRecord } from "../../model/types.js";
import { prepare, translateError, type SqliteDatabase } from "./database.js";

type Row = Record<string, unknown>;

/** pending_deletions.tell_offline: ids in decimal, space-separated; NULL for none (and in rows from before migration 25). */
const idsOfCell = (cell: unknown): Id[] => (typeof cell === "string" && cell !== "" ? cell.split(" ").map(BigInt) : []);
/** Ascending, each once. */
const sortedIds = (ids: readonly Id[]): Id[] => [...new Set(ids)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

const toUser = (r: Row): UserRecord => ({
  userId: r.user_id as bigint,
  username: r.username as string,
  displayName: r.display_name as string,
  passwordHash: r.password_hash as string,
  createdAtMs: Number(r.created_at_ms),
});

const toDevice = (r: Row): DeviceRecord => ({
  userId: r.user_id as bigint,
  deviceId: r.device_id as bigint,
  name: r.name as string,
  platform: r.platform as Platform,
  createdAtMs: Number(r.created_at_ms),
  lastSeenAtMs: Number(r.last_seen_at_ms),
  revoked: r.revoked === 1n,
});

const toTokenRecord = (r: Row): RefreshTokenRecord => ({
  userId: r.user_id as bigint,
  deviceId: r.device_id as bigint,
  expiresAtMs: Number(r.expires_at_ms),
});

/** A used token's mark: either part missing where the row has none (a sign-out's mark, one a retry took). */
const toTokenMark = (r: Row): Pick<RefreshTokenTake, "usedAtMs" | "successorHash"> => ({
  ...(r.used_at_ms !== null && { usedAtMs: Number(r.used_at_ms) }),
  ...(r.successor_hash !== null && { successorHash: r.successor_hash as string }),
});

// Above every code point, so [prefix, prefix + this) spans the prefix's range.
const PREFIX_END = "\u{10FFFF}";
/** Below every id: where a page of blockers with no `after` starts (as the Cassandra adapter, whose bigint is signed). */
const MIN_ID = -(2n ** 63n);

function build(db: SqliteDatabase) {
  const p = (sql: string) => prepare(db, sql);
  const s = {
    insertUser: p(`INSERT INTO users (user_id, username, username_lower, display_name, password_hash, created_at_ms)
                   VALUES (?, ?, ?, ?, ?, ?)`),
    // username <> '': a deleted user's placeholder name (below) is no name to find.
    userByName: p("SELECT * FROM users WHERE username_lower = ? AND username <> ''"),
    userById: p("SELECT * FROM users WHERE user_id = ?"),
    searchUsers: p(`SELECT * FROM users WHERE username_lower >= ? AND username_lower < ? AND username <> ''
                    ORDER BY username_lower LIMIT ?`),
    // username <> '': a change landing after the account's deletion (a request in flight) must not
    // give the deleted account a name or a password again.
    updateDisplayName: p("UPDATE users SET display_name = ? WHERE user_id = ? AND username <> ''"),
    updatePasswordHash: p("UPDATE users SET password_hash = ? WHERE user_id = ? AND username <> ''"),
    // username_lower is UNIQUE and NOT NULL: freeing the name takes a placeholder
    // unique per user, and '#' is outside a username's alphabet, so it clashes
    // with no real name.
    deleteUser: p(`UPDATE users SET username = '', username_lower = '#deleted:' || user_id,
                   display_name = '', password_hash = '' WHERE user_id = ?`),
    // Its last seen goes with the account (SqliteLastSeenLog writes none for a deleted one).
    forgetLastSeen: p("DELETE FROM presence_last_seen WHERE user_id = ?"),
    putPending: p("INSERT OR REPLACE INTO pending_deletions (user_id, device_id, at_ms, tell_offline) VALUES (?, ?, ?, ?)"),
    pendingTell: p("SELECT tell_offline FROM pending_deletions WHERE user_id = ?"),
    pending: p("SELECT user_id, device_id, at_ms, tell_offline FROM pending_deletions WHERE at_ms <= ? ORDER BY at_ms, user_id LIMIT ?"),
    dropPending: p("DELETE FROM pending_deletions WHERE user_id = ? AND at_ms = ?"),

    insertDevice: p(`INSERT INTO devices (user_id, device_id, name, platform, created_at_ms, last_seen_at_ms, revoked)
                     VALUES (?, ?, ?, ?, ?, ?, ?)`),
    device: p("SELECT * FROM devices WHERE user_id = ? AND device_id = ?"),
    devices: p("SELECT * FROM devices WHERE user_id = ? ORDER BY device_id"),
    touchDevice: p("UPDATE devices SET last_seen_at_ms = ? WHERE user_id = ? AND device_id = ?"),
    revokeDevice: p("UPDATE devices SET revoked = 1 WHERE user_id = ? AND device_id = ?"),
    forgetDevice: p("DELETE FROM devices WHERE user_id = ? AND device_id = ? AND revoked = 1"),
    visibility: p("SELECT visibility FROM presence_settings WHERE user_id = ?"),
    setVisibility: p(`INSERT INTO presence_settings (user_id, visibility) VALUES (?, ?)
                      ON CONFLICT (user_id) DO UPDATE SET visibility = excluded.visibility`),
    // With no use time nor successor: no retry takes anything after them (OR IGNORE keeps a racing take's mark).
    markDeviceTokensUsed: p(`INSERT OR IGNORE INTO used_refresh_tokens (token_hash, user_id, device_id, expires_at_ms)
                             SELECT token_hash, user_id, device_id, expires_at_ms FROM refresh_tokens WHERE user_id = ? AND device_id = ?`),
    deleteDeviceTokens: p("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?"),

    putToken: p(`INSERT OR REPLACE INTO refresh_tokens (token_hash, user_id, device_id, expires_at_ms)
                 VALUES (?, ?, ?, ?)`),
    takeToken: p("DELETE FROM refresh_tokens WHERE token_hash = ? RETURNING user_id, device_id, expires_at_ms"),
    markUsed: p(`INSERT OR REPLACE INTO used_refresh_tokens (token_hash, user_id, device_id, expires_at_ms, used_at_ms, successor_hash)
                 VALUES (?, ?, ?, ?, ?, ?)`),
    usedToken: p("SELECT user_id, device_id, expires_at_ms, used_at_ms, successor_hash FROM used_refresh_tokens WHERE token_hash = ?"),
    moveSuccessor: p("UPDATE used_refresh_tokens SET successor_hash = ? WHERE token_hash = ? AND successor_hash = ?"),
    forgetUsed: p("DELETE FROM used_refresh_tokens WHERE expires_at_ms < ?"),
    tokenOwner: p(`SELECT user_id FROM refresh_tokens WHERE token_hash = ?
                   UNION ALL SELECT user_id FROM used_refresh_tokens WHERE token_hash = ? LIMIT 1`),

    putRequest: p(`INSERT INTO friend_requests (from_user_id, to_user_id, at_ms) VALUES (?, ?, ?)
                   ON CONFLICT (from_user_id, to_user_id) DO UPDATE SET at_ms = excluded.at_ms`),
    deleteRequest: p("DELETE FROM friend_requests WHERE from_user_id = ? AND to_user_id = ?"),
    hasRequest: p("SELECT 1 FROM friend_requests WHERE from_user_id = ? AND to_user_id = ?"),
    listRequests: p(`SELECT from_user_id, to_user_id, at_ms FROM friend_requests WHERE from_user_id = ?
                     UNION ALL
                     SELECT from_user_id, to_user_id, at_ms FROM friend_requests WHERE to_user_id = ? AND from_user_id <> ?
                     ORDER BY at_ms, from_user_id, to_user_id`),
    insertFriend: p("INSERT OR IGNORE INTO friendships (user_id, friend_user_id, since_ms) VALUES (?, ?, ?)"),
    deleteFriend: p("DELETE FROM friendships WHERE user_id = ? AND friend_user_id = ?"),
    areFriends: p("SELECT 1 FROM friendships WHERE user_id = ? AND friend_user_id = ?"),
    friends: p("SELECT friend_user_id FROM friendships WHERE user_id = ? ORDER BY friend_user_id"),

    // OR IGNORE: blocking again keeps the first block's time.
    putBlock: p("INSERT OR IGNORE INTO blocks (user_id, blocked_user_id, at_ms) VALUES (?, ?, ?)"),
    deleteBlock: p("DELETE FROM blocks WHERE user_id = ? AND blocked_user_id = ?"),
    blocks: p("SELECT blocked_user_id, at_ms FROM blocks WHERE user_id = ? ORDER BY at_ms DESC, blocked_user_id"),
    blockers: p("SELECT user_id FROM blocks WHERE blocked_user_id = ? AND user_id > ? ORDER BY user_id LIMIT ?"),
    blocked: p("SELECT 1 FROM blocks WHERE user_id = ? AND blocked_user_id = ?"),
    blockersBetween: p(`SELECT user_id FROM blocks
                        WHERE (user_id = ? AND blocked_user_id = ?) OR (user_id = ? AND blocked_user_id = ?)
                        ORDER BY user_id`),
  };
  // One transaction: of racing takes, one deletes the token and marks it
  // used before any other can look, so every other one sees the mark.
  const takeTokenTx = db.transaction((tokenHash: string, use: RefreshTokenUse, nowMs: number): RefreshTokenTake | undefined => {
    s.forgetUsed.run(nowMs);
    const fresh = s.takeToken.get(tokenHash) as Row | undefined;
    if (fresh) {
      s.markUsed.run(tokenHash, fresh.user_id, fresh.device_id, fresh.expires_at_ms, use.atMs, use.successorHash);
      if (use.successorExpiresAtMs !== undefined && Number(fresh.expires_at_ms) > use.atMs) {
        s.putToken.run(use.successorHash, fresh.user_id, fresh.device_id, use.successorExpiresAtMs);
      }
      return { record: toTokenRecord(fresh), reused: false };
    }
    const used = s.usedToken.get(tokenHash) as Row | undefined;
    if (!used) return undefined;
    return { record: toTokenRecord(used), reused: true, ...toTokenMark(used) };
  });
  // One transaction too: of racing retries, one takes the successor and the
  // others find it gone.
  const takeSuccessorTx = db.transaction((tokenHash: string, successorHash: string, next: RefreshTokenUse): boolean => {
    const successor = s.takeToken.get(successorHash) as Row | undefined;
    if (!successor) return false;
    s.markUsed.run(successorHash, successor.user_id, successor.device_id, successor.expires_at_ms, next.atMs, null);
    s.moveSuccessor.run(next.successorHash, tokenHash, successorHash);
    if (next.successorExpiresAtMs !== undefined) s.putToken.run(next.successorHash, successor.user_id, successor.device_id, next.successorExpiresAtMs);
    return true;
  });
  const revokeTx = db.transaction((userId: Id, deviceId: Id) => {
    s.revokeDevice.run(userId, deviceId);
    s.markDeviceTokensUsed.run(userId, deviceId);
    s.deleteDeviceTokens.run(userId, deviceId);
  });
  const addFriendshipTx = db.transaction((a: Id, b: Id, atMs: number) => {
    s.insertFriend.run(a, b, atMs);
    s.insertFriend.run(b, a, atMs);
    s.deleteRequest.run(a, b);
    s.deleteRequest.run(b, a);
  });
  const removeFriendshipTx = db.transaction((a: Id, b: Id) => {
    s.deleteFriend.run(a, b);
    s.deleteFriend.run(b, a);
  });
  const deleteUserTx = db.transaction((userId: Id) => {
    s.deleteUser.run(userId);
    s.forgetLastSeen.run(userId);
  });
  // Read and written in one transaction: an earlier attempt's ids are kept (AccountStore.putPendingDeletion).
  const putPendingTx = db.transaction((d: PendingDeletion): Id[] => {
    const earlier = s.pendingTell.get(d.userId) as Row | undefined;
    const tell = sortedIds([...idsOfCell(earlier?.tell_offline), ...(d.tellOffline ?? [])]);
    s.putPending.run(d.userId, d.deviceId, d.atMs, tell.length > 0 ? tell.join(" ") : null);
    return tell;
  });
  return { ...s, takeTokenTx, takeSuccessorTx, revokeTx, addFriendshipTx, removeFriendshipTx, deleteUserTx, putPendingTx };
}

export class SqliteAccountStore implements AccountStore {
  private readonly s: ReturnType<typeof build>;

  /** Prepares every statement once; share one Database between all stores. */
  constructor(
    db: SqliteDatabase,
    private readonly now: () => number = Date.now,
  ) {
    this.s = build(db);
  }

  async createUser(u: UserRecord): Promise<void> {
    try {
      this.s.insertUser.run(u.userId, u.username, u.username.toLowerCase(), u.displayName, u.passwordHash, u.createdAtMs);
    } catch (e) {
      translateError(e, `user ${u.username}`);
    }
  }

  async findUserByUsername(username: string): Promise<UserRecord | undefined> {
    const r = this.s.userByName.get(username.toLowerCase()) as Row | undefined;
    return r && toUser(r);
  }

  async getUser(userId: Id): Promise<UserRecord | undefined> {
    const r = this.s.userById.get(userId) as Row | undefined;
    return r && toUser(r);
  }

  async getUsers(userIds: readonly Id[]): Promise<UserRecord[]> {
    const out: UserRecord[] = [];
    for (const id of userIds) {
      const r = this.s.userById.get(id) as Row | undefined;
      if (r) out.push(toUser(r));
    }
    return out;
  }

  async searchUsers(prefix: string, limit: number): Promise<UserRecord[]> {
    if (limit <= 0) return []; // SQLite reads a negative LIMIT as "no limit"
    const lo = prefix.toLowerCase();
    return (this.s.searchUsers.all(lo, lo + PREFIX_END, limit) as Row[]).map(toUser);
  }

  async updateDisplayName(userId: Id, displayName: string): Promise<void> {
    this.s.updateDisplayName.run(displayName, userId);
  }

  async updatePasswordHash(userId: Id, passwordHash: string): Promise<void> {
    this.s.updatePasswordHash.run(passwordHash, userId);
  }

  async deleteUser(userId: Id): Promise<void> {
    this.s.deleteUserTx.immediate(userId);
  }

  async putPendingDeletion(d: PendingDeletion): Promise<Id[]> {
    return this.s.putPendingTx.immediate(d);
  }

  async listPendingDeletions(recordedBy: number, limit: number): Promise<PendingDeletion[]> {
    if (limit <= 0) return [];
    return (this.s.pending.all(recordedBy, limit) as Row[]).map((r) => {
      const tell = idsOfCell(r.tell_offline);
      return {
        userId: r.user_id as bigint,
        deviceId: r.device_id as bigint,
        atMs: Number(r.at_ms),
        ...(tell.length > 0 ? { tellOffline: tell } : {}),
      };
    });
  }

  async removePendingDeletion(userId: Id, atMs: number): Promise<void> {
    this.s.dropPending.run(userId, atMs);
  }

  async createDevice(d: DeviceRecord): Promise<void> {
    try {
      this.s.insertDevice.run(d.userId, d.deviceId, d.name, d.platform, d.createdAtMs, d.lastSeenAtMs, d.revoked ? 1 : 0);
    } catch (e) {
      translateError(e, `device ${d.deviceId}`);
    }
  }

  async getDevice(userId: Id, deviceId: Id): Promise<DeviceRecord | undefined> {
    const r = this.s.device.get(userId, deviceId) as Row | undefined;
    return r && toDevice(r);
  }

  async listDevices(userId: Id): Promise<DeviceRecord[]> {
    return (this.s.devices.all(userId) as Row[]).map(toDevice);
  }

  async touchDevice(userId: Id, deviceId: Id, atMs: number): Promise<void> {
    this.s.touchDevice.run(atMs, userId, deviceId);
  }

  async revokeDevice(userId: Id, deviceId: Id): Promise<void> {
    this.s.revokeTx.immediate(userId, deviceId);
  }

  async forgetDevice(userId: Id, deviceId: Id): Promise<void> {
    this.s.forgetDevice.run(userId, deviceId);
  }

  async putRefreshToken(tokenHash: string, r: RefreshTokenRecord): Promise<void> {
    this.s.putToken.run(tokenHash, r.userId, r.deviceId, r.expiresAtMs);
  }

  async takeRefreshToken(tokenHash: string, use: RefreshTokenUse): Promise<RefreshTokenTake | undefined> {
    return this.s.takeTokenTx.immediate(tokenHash, use, this.now());
  }

  async takeSuccessor(tokenHash: string, successorHash: string, next: RefreshTokenUse): Promise<boolean> {
    return this.s.takeSuccessorTx.immediate(tokenHash, successorHash, next);
  }

  async refreshTokenMark(tokenHash: string): Promise<Pick<RefreshTokenTake, "usedAtMs" | "successorHash"> | undefined> {
    const used = this.s.usedToken.get(tokenHash) as Row | undefined;
    return used && toTokenMark(used);
  }

  async refreshTokenOwner(tokenHash: string): Promise<Id | undefined> {
    return (this.s.tokenOwner.get(tokenHash, tokenHash) as Row | undefined)?.user_id as bigint | undefined;
  }

  async putFriendRequest(fromUserId: Id, toUserId: Id, atMs: number): Promise<boolean> {
    // One synchronous step: no other call of this process runs between the look and the write.
    const waiting = this.s.hasRequest.get(fromUserId, toUserId) !== undefined;
    this.s.putRequest.run(fromUserId, toUserId, atMs);
    return !waiting;
  }

  async deleteFriendRequest(fromUserId: Id, toUserId: Id): Promise<void> {
    this.s.deleteRequest.run(fromUserId, toUserId);
  }

  async hasFriendRequest(fromUserId: Id, toUserId: Id): Promise<boolean> {
    return this.s.hasRequest.get(fromUserId, toUserId) !== undefined;
  }

  async listFriendRequests(userId: Id): Promise<{ fromUserId: Id; toUserId: Id; atMs: number }[]> {
    return (this.s.listRequests.all(userId, userId, userId) as Row[]).map((r) => ({
      fromUserId: r.from_user_id as bigint,
      toUserId: r.to_user_id as bigint,
      atMs: Number(r.at_ms),
    }));
  }

  async addFriendship(a: Id, b: Id, atMs: number): Promise<void> {
    this.s.addFriendshipTx.immediate(a, b, atMs);
  }

  async removeFriendship(a: Id, b: Id): Promise<void> {
    this.s.removeFriendshipTx.immediate(a, b);
  }

  async areFriends(a: Id, b: Id): Promise<boolean> {
    return this.s.areFriends.get(a, b) !== undefined;
  }

  async getPresenceVisibility(userIds: readonly Id[]): Promise<Map<Id, PresenceVisibility>> {
    const out = new Map<Id, PresenceVisibility>();
    for (const id of userIds) {
      const r = this.s.visibility.get(id) as Row | undefined;
      if (r) out.set(id, r.visibility as PresenceVisibility);
    }
    return out;
  }

  async setPresenceVisibility(userId: Id, visibility: PresenceVisibility): Promise<void> {
    this.s.setVisibility.run(userId, visibility);
  }

  async listFriends(userId: Id): Promise<Id[]> {
    return (this.s.friends.all(userId) as Row[]).map((r) => r.friend_user_id as bigint);
  }

  async putBlock(userId: Id, blockedUserId: Id, atMs: number): Promise<boolean> {
    return this.s.putBlock.run(userId, blockedUserId, atMs).changes > 0;
  }

  async deleteBlock(userId: Id, blockedUserId: Id): Promise<void> {
    this.s.deleteBlock.run(userId, blockedUserId);
  }

  async listBlocks(userId: Id): Promise<{ userId: Id; atMs: number }[]> {
    return (this.s.blocks.all(userId) as Row[]).map((r) => ({ userId: r.blocked_user_id as bigint, atMs: Number(r.at_ms) }));
  }

  async listBlockers(userId: Id, page: { after?: Id; limit: number }): Promise<Id[]> {
    if (page.limit <= 0) return [];
    return (this.s.blockers.all(userId, page.after ?? MIN_ID, page.limit) as Row[]).map((r) => r.user_id as bigint);
  }

  async blockersAmong(userId: Id, among: readonly Id[]): Promise<Id[]> {
    return [...new Set(among)].filter((id) => this.s.blocked.get(id, userId) !== undefined).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  }

  async blockersBetween(a: Id, b: Id): Promise<Id[]> {
    return (this.s.blockersBetween.all(a, b, b, a) as Row[]).map((r) => r.user_id as bigint);
  }
}
