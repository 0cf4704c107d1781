import { isDeletedUser, type AccountStore, type PendingDeletion, type RefreshTokenTake, type RefreshTokenUse } from "../../accounts/store.js";
import { ChatError } from "../../model/errors.js";
import type { DeviceRecord, Id, Platform, PresenceVisibility, RefreshTokenRecord, UserRecord } from "../../model/types.js";
import { big, FANOUT, inParts, mapLimit, ms, msCell, StorageUnavailable, type Db, type Row } from "./session.js";
import { UserSearch } from "./user-search.js";

const toUser = (r: Row): UserRecord => ({
  userId: big(r.get("user_id")),
  username: r.get("username") as string,
  displayName: r.get("display_name") as string,
  passwordHash: r.get("password_hash") as string,
  createdAtMs: ms(r.get("created_at_ms")),
});

/** The chain a token row belongs to: the hash of the token issued at sign-in; its own for a token an older build wrote. */
const chainOf = (r: Row, tokenHash: string): string => (r.get("chain") as string | null | undefined) ?? tokenHash;

const toTokenRecord = (r: Row): RefreshTokenRecord => ({
  userId: big(r.get("user_id")),
  deviceId: big(r.get("device_id")),
  expiresAtMs: ms(r.get("expires_at_ms")),
});

const toDevice = (r: Row): DeviceRecord => ({
  userId: big(r.get("user_id")),
  deviceId: big(r.get("device_id")),
  name: r.get("name") as string,
  platform: r.get("platform") as Platform,
  createdAtMs: ms(r.get("created_at_ms")),
  lastSeenAtMs: ms(r.get("last_seen_at_ms")),
  revoked: r.get("revoked") === true,
});

/** Partitions of pending_deletions (schema.ts); fixed for good, as a row's bucket is computed from its user id. */
export const PENDING_DELETION_BUCKETS = 16;
const pendingBucket = (userId: Id): number => Number(BigInt.asUintN(64, userId) % BigInt(PENDING_DELETION_BUCKETS));
/** A set<bigint> cell (null when empty, and in rows written before the column was added). */
const idsOfSet = (cell: unknown): Id[] => ((cell as unknown[] | null | undefined) ?? []).map(big);
/** Ascending, each once. */
const sortedIds = (ids: readonly Id[]): Id[] => [...new Set(ids)].sort(cmp);
/** Tries of putPendingDeletion against racing changes of the record before it gives up (throws). */
const PENDING_PUT_TRIES = 5;

/** A claim older than this without its user row was left by a creator that died. */
const STALE_CLAIM_MS = 60_000;
/** Refresh tokens outlive their expiry by this much (the auth layer checks expiry itself). */
const TOKEN_GRACE_S = 86_400;
const MAX_TTL_S = 10 * 365 * 86_400;

/**
 * AccountStore on Cassandra. Username uniqueness is an LWT claim in
 * `usernames`; refresh tokens are single-use through an LWT mark of their use; friend
 * requests, friendships and blocks are stored once per side so each user's
 * view is one partition, every write of them a Paxos round (see addFriendship
 * and putBlock).
 */
export class CassandraAccountStore implements AccountStore {
  private readonly q;
  private readonly search: UserSearch;

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    const t = (n: string) => db.t(n);
    this.search = new UserSearch(db);
    this.q = {
      claim: `INSERT INTO ${t("usernames")} (username_lower, user_id, reserved_at_ms) VALUES (?, ?, ?) IF NOT EXISTS`,
      takeOver: `UPDATE ${t("usernames")} SET user_id = ?, reserved_at_ms = ? WHERE username_lower = ? IF user_id = ?`,
      release: `DELETE FROM ${t("usernames")} WHERE username_lower = ? IF user_id = ?`,
      byName: `SELECT user_id FROM ${t("usernames")} WHERE username_lower = ?`,
      // Written once, before any change, and without a Paxos round (it goes
      // with the search rows): at the lowest timestamp, so that the
      // compare-and-sets that change or empty the row win over it whatever
      // the creator's clock said.
      insertUser: `INSERT INTO ${t("users")} (user_id, username, display_name, password_hash, created_at_ms)
                   VALUES (?, ?, ?, ?, ?) USING TIMESTAMP 1`,
      user: `SELECT user_id, username, display_name, password_hash, created_at_ms FROM ${t("users")} WHERE user_id = ?`,
      usersIn: `SELECT user_id, username, display_name, password_hash, created_at_ms FROM ${t("users")} WHERE user_id IN ?`,
      // username > '': an existing account not deleted (a missing row's null compares false, so none is made).
      displayName: `UPDATE ${t("users")} SET display_name = ? WHERE user_id = ? IF username > ''`,
      passwordHash: `UPDATE ${t("users")} SET password_hash = ? WHERE user_id = ? IF username > ''`,
      deleteUser: `UPDATE ${t("users")} SET username = '', display_name = '', password_hash = '' WHERE user_id = ? IF EXISTS`,

      // Compare-and-sets, all of them: the sweep's removal of a record left by an attempt cut short
      // before the mark must not take a retry's (IF at_ms), and a plain write's timestamp (the api's
      // clock) could land under that removal's tombstone (the ballot's).
      // tell_offline is added to, never replaced: an earlier attempt's ids stay (putPendingDeletion).
      putPending: `INSERT INTO ${t("pending_deletions")} (bucket, user_id, device_id, at_ms, tell_offline) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS`,
      movePending: `UPDATE ${t("pending_deletions")} SET device_id = ?, at_ms = ?, tell_offline = tell_offline + ? WHERE bucket = ? AND user_id = ? IF at_ms = ?`,
      dropPending: `DELETE FROM ${t("pending_deletions")} WHERE bucket = ? AND user_id = ? IF at_ms = ?`,
      pendingIn: `SELECT user_id, device_id, at_ms, tell_offline FROM ${t("pending_deletions")} WHERE bucket = ? LIMIT ?`,

      insertDevice: `INSERT INTO ${t("devices")} (user_id, device_id, name, platform, created_at_ms, last_seen_at_ms, revoked)
                     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
      device: `SELECT * FROM ${t("devices")} WHERE user_id = ? AND device_id = ?`,
      devices: `SELECT * FROM ${t("devices")} WHERE user_id = ?`,
      touch: `UPDATE ${t("devices")} SET last_seen_at_ms = ? WHERE user_id = ? AND device_id = ? IF EXISTS`,
      revoke: `UPDATE ${t("devices")} SET revoked = true WHERE user_id = ? AND device_id = ? IF EXISTS`,
      forget: `DELETE FROM ${t("devices")} WHERE user_id = ? AND device_id = ? IF revoked = true`,
      // A compare-and-set, so it finishes a timed-out create's Paxos round first (a plain delete could be
      // overtaken by it), and takes the row only as that create wrote it.
      dropDevice: `DELETE FROM ${t("devices")} WHERE user_id = ? AND device_id = ? IF created_at_ms = ?`,

      // At the lowest timestamp, as the user row: the take (a compare-and-set)
      // and a sign-out's delete must win over it whatever the writer's clock said.
      putToken: `INSERT INTO ${t("refresh_tokens")} (token_hash, user_id, device_id, expires_at_ms, chain) VALUES (?, ?, ?, ?, ?)
                 USING TTL ? AND TIMESTAMP 1`,
      // Keyed by the chain (the hash of the token issued at sign-in), so each refresh overwrites its
      // chain's row: a row per token, deleted at its take, left a tombstone per refresh in the
      // device's partition, which a sign-out read past.
      putTokenIndex: `INSERT INTO ${t("refresh_tokens_by_device")} (user_id, device_id, token_hash, current_hash, expires_at_ms)
                      VALUES (?, ?, ?, ?, ?) USING TTL ?`,
      token: `SELECT user_id, device_id, expires_at_ms, chain FROM ${t("refresh_tokens")} WHERE token_hash = ?`,
      deleteToken: `DELETE FROM ${t("refresh_tokens")} WHERE token_hash = ?`,
      // The take itself: of racing takes the one whose mark lands first has the token, and a loser
      // is answered that mark (its use time and successor), as a later reuse reads it. A mark
      // already there from a sign-out (markRevoked) refuses every take too.
      markFirst: `INSERT INTO ${t("used_refresh_tokens")} (token_hash, user_id, device_id, expires_at_ms, used_at_ms, successor_hash)
                  VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?`,
      // With how long ago the mark was written, on Cassandra's clocks alone: a take's mark is a Paxos
      // write, timestamped by its coordinator (markRevoked and moveSuccessor, plain writes, leave
      // used_at_ms alone). The api's own clock against another api's used_at_ms judged a retry by
      // their skew: 5 minutes ahead refused every retry, behind accepted replays past the grace.
      usedToken: `SELECT user_id, device_id, expires_at_ms, used_at_ms, successor_hash, WRITETIME(used_at_ms) AS used_at_us,
                  toUnixTimestamp(currentTimestamp()) AS now_ms FROM ${t("used_refresh_tokens")} WHERE token_hash = ?`,
      // No use time nor successor, so no retry takes anything after it; the columns left out keep a racing take's.
      markRevoked: `INSERT INTO ${t("used_refresh_tokens")} (token_hash, user_id, device_id, expires_at_ms) VALUES (?, ?, ?, ?) USING TTL ?`,
      moveSuccessor: `UPDATE ${t("used_refresh_tokens")} USING TTL ? SET successor_hash = ? WHERE token_hash = ?`,
      deviceTokens: `SELECT token_hash, current_hash, expires_at_ms FROM ${t("refresh_tokens_by_device")} WHERE user_id = ? AND device_id = ?`,
      unindexDevice: `DELETE FROM ${t("refresh_tokens_by_device")} WHERE user_id = ? AND device_id = ?`,

      putRequest: `INSERT INTO ${t("friend_requests")} (user_id, other_user_id, outgoing, at_ms) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
      moveRequest: `UPDATE ${t("friend_requests")} SET at_ms = ? WHERE user_id = ? AND other_user_id = ? AND outgoing = ? IF EXISTS`,
      deleteRequest: `DELETE FROM ${t("friend_requests")} WHERE user_id = ? AND other_user_id = ? AND outgoing = ? IF EXISTS`,
      request: `SELECT at_ms FROM ${t("friend_requests")} WHERE user_id = ? AND other_user_id = ? AND outgoing = true`,
      requestRow: `SELECT at_ms FROM ${t("friend_requests")} WHERE user_id = ? AND other_user_id = ? AND outgoing = ?`,
      requests: `SELECT other_user_id, outgoing, at_ms FROM ${t("friend_requests")} WHERE user_id = ?`,
      putFriend: `INSERT INTO ${t("friendships")} (user_id, friend_user_id, since_ms) VALUES (?, ?, ?) IF NOT EXISTS`,
      unfriend: `DELETE FROM ${t("friendships")} WHERE user_id = ? AND friend_user_id = ? IF EXISTS`,
      visibility: `SELECT visibility FROM ${t("presence_settings")} WHERE user_id = ?`,
      visibilityIn: `SELECT user_id, visibility FROM ${t("presence_settings")} WHERE user_id IN ?`,
      setVisibility: `INSERT INTO ${t("presence_settings")} (user_id, visibility) VALUES (?, ?)`,
      friend: `SELECT since_ms FROM ${t("friendships")} WHERE user_id = ? AND friend_user_id = ?`,
      friends: `SELECT friend_user_id FROM ${t("friendships")} WHERE user_id = ?`,

      putBlock: `INSERT INTO ${t("blocks")} (user_id, blocked_user_id, at_ms) VALUES (?, ?, ?) IF NOT EXISTS`,
      putBlocker: `INSERT INTO ${t("blockers")} (user_id, blocker_user_id) VALUES (?, ?) IF NOT EXISTS`,
      deleteBlock: `DELETE FROM ${t("blocks")} WHERE user_id = ? AND blocked_user_id = ? IF EXISTS`,
      deleteBlocker: `DELETE FROM ${t("blockers")} WHERE user_id = ? AND blocker_user_id = ? IF EXISTS`,
      block: `SELECT at_ms FROM ${t("blocks")} WHERE user_id = ? AND blocked_user_id = ?`,
      blocks: `SELECT blocked_user_id, at_ms FROM ${t("blocks")} WHERE user_id = ?`,
      blockers: `SELECT blocker_user_id FROM ${t("blockers")} WHERE user_id = ? AND blocker_user_id > ? LIMIT ?`,
      blockersAmong: `SELECT blocker_user_id FROM ${t("blockers")} WHERE user_id = ? AND blocker_user_id IN ?`,
    };
  }

  async createUser(u: UserRecord): Promise<void> {
    const lower = u.username.toLowerCase();
    try {
      await this.claimUsername(lower, u.userId);
    } catch (e) {
      // A claim that timed out may have landed, with no user row to follow:
      // given back (only if this user's), or the sign-up tried again (under
      // another id) was told the name is taken until the claim went stale.
      if (e instanceof StorageUnavailable && e.unknownOutcome) await this.db.lwt(this.q.release, [lower, u.userId]).catch(() => undefined);
      throw e;
    }
    try {
      // Logged: the user row and its search rows land together or not at all.
      await this.db.batch([
        { query: this.q.insertUser, params: [u.userId, u.username, u.displayName, u.passwordHash, msCell(u.createdAtMs)] },
        ...this.search.statements(lower, u.userId),
      ], { logged: true });
    } catch (e) {
      // A batch that timed out may still land (Cassandra replays its batch
      // log): the claim then stays, or another account would take the name
      // and this one appear under it too. A claim whose row never lands is
      // taken over once stale. Otherwise released, best effort.
      if (!(e instanceof StorageUnavailable && e.unknownOutcome)) {
        await this.db.lwt(this.q.release, [lower, u.userId]).catch(() => undefined);
      }
      throw e;
    }
  }

  async findUserByUsername(username: string): Promise<UserRecord | undefined> {
    const r = await this.db.one(this.q.byName, [username.toLowerCase()]);
    const u = r && (await this.getUser(big(r.get("user_id"))));
    // A deleteUser that stopped before releasing the name leaves its claim.
    return u && !isDeletedUser(u) ? u : undefined;
  }

  async getUser(userId: Id): Promise<UserRecord | undefined> {
    const r = await this.db.one(this.q.user, [userId]);
    return r ? toUser(r) : undefined;
  }

  async getUsers(userIds: readonly Id[]): Promise<UserRecord[]> {
    const found = new Map((await this.rowsIn(this.q.usersIn, userIds)).map((r) => [big(r.get("user_id")), toUser(r)]));
    return userIds.flatMap((id) => found.get(id) ?? []);
  }

  /**
   * The rows of a query `WHERE user_id IN ?` for every user of `userIds`, a
   * read per hundred of them: a read per user made a list of 1,000 friends
   * cost 1,000 reads, and GetPresence of 500 users 500.
   */
  private async rowsIn(query: string, userIds: readonly Id[]): Promise<Row[]> {
    return (await mapLimit(inParts([...new Set(userIds)]), FANOUT, (some) => this.db.rows(query, [some]))).flat();
  }

  async searchUsers(prefix: string, limit: number): Promise<UserRecord[]> {
    // A deleted user's search row goes before its row is emptied, but a stale
    // one (a create's batch replayed after a timeout) must not bring a deleted
    // account back, nor leave the page short: search reads on past it.
    return this.search.find(prefix.toLowerCase(), limit, async (ids) => (await this.getUsers(ids)).filter((u) => !isDeletedUser(u)));
  }

  async updateDisplayName(userId: Id, displayName: string): Promise<void> {
    await this.db.lwt(this.q.displayName, [displayName, userId]);
  }

  async updatePasswordHash(userId: Id, passwordHash: string): Promise<void> {
    await this.db.lwt(this.q.passwordHash, [passwordHash, userId]);
  }

  async deleteUser(userId: Id): Promise<void> {
    const u = await this.getUser(userId);
    if (!u || isDeletedUser(u)) return;
    const lower = u.username.toLowerCase();
    // A compare-and-set, as every other change of the row: a plain write
    // racing a change of the display name or password hash in the same
    // millisecond ties with its Paxos commit on the timestamp, and the
    // greater value, never the empty one, wins the tie.
    await this.db.lwt(this.q.deleteUser, [userId]);
    // Out of search once the row is emptied: one cut short between them leaves
    // a search row that searchUsers reads past (the row says deleted), where
    // the other order left an account still in use (its owner signed in again
    // rather than retry, or a failed sign-up's undo) that no search found.
    // Before the name is free, so this never takes a new owner's search row.
    const leave = this.search.deleteStatement(lower);
    await this.db.write(leave.query, leave.params);
    // Last, so the name is never free while the row still carries it; if this
    // never runs, claimUsername takes the claim over from the deleted holder.
    await this.db.lwt(this.q.release, [lower, userId]);
  }

  async putPendingDeletion(d: PendingDeletion): Promise<Id[]> {
    const bucket = pendingBucket(d.userId);
    const mine = sortedIds(d.tellOffline ?? []);
    for (let i = 0; i < PENDING_PUT_TRIES; i++) {
      const put = await this.db.lwt(this.q.putPending, [bucket, d.userId, d.deviceId, msCell(d.atMs), mine]);
      if (put.applied) return mine;
      // An earlier attempt's record: moved to this one's time, so that a sweep dropping the earlier
      // one (compared on its time) leaves it. Not applied when that drop, or another attempt, came
      // first: read again.
      const seen = big(put.row.get("at_ms"));
      if ((await this.db.lwt(this.q.movePending, [d.deviceId, msCell(d.atMs), mine, bucket, d.userId, seen])).applied) {
        return sortedIds([...idsOfSet(put.row.get("tell_offline")), ...mine]);
      }
    }
    throw new StorageUnavailable(`pending deletion of user ${d.userId} not recorded: its record kept changing`, false, undefined);
  }

  async listPendingDeletions(recordedBy: number, limit: number): Promise<PendingDeletion[]> {
    if (limit <= 0) return [];
    const buckets = Array.from({ length: PENDING_DELETION_BUCKETS }, (_, b) => b);
    // Each bucket read up to the limit: the oldest may be in any of them.
    const rows = (await mapLimit(buckets, FANOUT, (b) => this.db.rows(this.q.pendingIn, [b, limit]))).flat();
    return rows
      .map((r) => {
        const tell = sortedIds(idsOfSet(r.get("tell_offline")));
        return { userId: big(r.get("user_id")), deviceId: big(r.get("device_id")), atMs: ms(r.get("at_ms")), ...(tell.length > 0 ? { tellOffline: tell } : {}) };
      })
      .filter((d) => d.atMs <= recordedBy)
      .sort((x, y) => x.atMs - y.atMs || cmp(x.userId, y.userId))
      .slice(0, limit);
  }

  async removePendingDeletion(userId: Id, atMs: number): Promise<void> {
    await this.db.lwt(this.q.dropPending, [pendingBucket(userId), userId, msCell(atMs)]);
  }

  async createDevice(d: DeviceRecord): Promise<void> {
    let r;
    try {
      r = await this.db.lwt(this.q.insertDevice, [
        d.userId, d.deviceId, d.name, d.platform, msCell(d.createdAtMs), msCell(d.lastSeenAtMs), d.revoked,
      ]);
    } catch (e) {
      // A create that timed out may have landed, a device nobody holds a token for, listed with the
      // account's devices and counted toward its limit: given back. Best effort: the login that made
      // it also signs it out (auth-service, undoDevice), which finds nothing once it is gone.
      if (e instanceof StorageUnavailable && e.unknownOutcome) {
        await this.db.lwt(this.q.dropDevice, [d.userId, d.deviceId, msCell(d.createdAtMs)]).catch(() => undefined);
      }
      throw e;
    }
    if (!r.applied) throw new ChatError("already_exists", `device ${d.deviceId} already exists`);
  }

  async getDevice(userId: Id, deviceId: Id): Promise<DeviceRecord | undefined> {
    const r = await this.db.one(this.q.device, [userId, deviceId]);
    return r ? toDevice(r) : undefined;
  }

  async listDevices(userId: Id): Promise<DeviceRecord[]> {
    return (await this.db.rows(this.q.devices, [userId])).map(toDevice);
  }

  async touchDevice(userId: Id, deviceId: Id, atMs: number): Promise<void> {
    await this.db.lwt(this.q.touch, [msCell(atMs), userId, deviceId]);
  }

  async revokeDevice(userId: Id, deviceId: Id): Promise<void> {
    // Revoked first: a refresh racing this finds the device revoked even if
    // it took a token this loop has not reached yet.
    await this.db.lwt(this.q.revoke, [userId, deviceId]);
    const tokens = await this.db.rows(this.q.deviceTokens, [userId, deviceId]);
    // Each marked used before it goes, as a take marks it: a take after this finds the device
    // signed out (and why), not a token it never heard of. The mark, then the delete, not both in
    // one batch: a replica could then show a take the token gone before a quorum holds its mark.
    await mapLimit(tokens, FANOUT, async (r) => {
      // A row an older build wrote names its own token alone (no current_hash).
      const h = (r.get("current_hash") as string | null | undefined) ?? (r.get("token_hash") as string);
      // The index row carries the expiry, so no read of the token: a sign-out cost a read per
      // token. Only a row an older build indexed lacks it, and that token's row is read instead.
      // A token taken since (its index row not yet deleted) is marked again with what its take
      // wrote: markRevoked leaves the use time and successor alone.
      const expires = r.get("expires_at_ms");
      const expiresAtMs = expires !== null && expires !== undefined
        ? ms(expires)
        : await this.db.one(this.q.token, [h]).then((row) => row && toTokenRecord(row).expiresAtMs);
      if (expiresAtMs !== undefined) {
        await this.db.write(this.q.markRevoked, [h, userId, deviceId, msCell(expiresAtMs), this.tokenTtlS(expiresAtMs)]);
      }
      await this.db.write(this.q.deleteToken, [h]);
    });
    await this.db.write(this.q.unindexDevice, [userId, deviceId]);
  }

  async forgetDevice(userId: Id, deviceId: Id): Promise<void> {
    // Conditional, so that only a revoked row goes; touchDevice writes IF EXISTS, so nothing brings it back.
    await this.db.lwt(this.q.forget, [userId, deviceId]);
  }

  async putRefreshToken(tokenHash: string, r: RefreshTokenRecord): Promise<void> {
    // Logged: a token that exists is always reachable from its device (for revocation).
    await this.db.batch(this.putTokenStatements(tokenHash, r, tokenHash), { logged: true });
  }

  async takeRefreshToken(tokenHash: string, use: RefreshTokenUse): Promise<RefreshTokenTake | undefined> {
    const row = await this.db.one(this.q.token, [tokenHash]);
    if (!row) {
      const used = await this.db.one(this.q.usedToken, [tokenHash]);
      if (!used) return undefined;
      return { record: toTokenRecord(used), reused: true, ...this.markRead(used) };
    }
    const rec = toTokenRecord(row);
    // The successor, when asked for, is stored before the take: a failure after the take (a store
    // timeout, a crash) then leaves one that the client's retry takes. A loser's is stored again
    // by its takeSuccessor when it is a retry (the same hash), and never issued otherwise.
    if (use.successorExpiresAtMs !== undefined && rec.expiresAtMs > use.atMs) {
      const successor = { ...rec, expiresAtMs: use.successorExpiresAtMs };
      await this.db.batch(this.putTokenStatements(use.successorHash, successor, chainOf(row, tokenHash)), { logged: true });
    }
    // Decided by the mark, not by the delete: a loser of a delete learnt nothing of the winner, and the
    // last of racing plain marks might name the loser's successor, so a client whose retry raced its
    // first request (still under way on a slow store) was signed out where SQLite, one take after the
    // other, answers it as a retry. The delete after it is for tidiness: the mark refuses every take.
    const taken = await this.markFirst(tokenHash, rec, use.atMs, use.successorHash);
    await this.db.write(this.q.deleteToken, [tokenHash]);
    if (taken === true) return { record: rec, reused: false };
    // Read again for how long ago it was marked (a reuse only: the LWT's answer has no clock).
    return { record: rec, reused: true, ...this.markRead((await this.db.one(this.q.usedToken, [tokenHash])) ?? taken) };
  }

  async refreshTokenMark(tokenHash: string): Promise<Pick<RefreshTokenTake, "usedAtMs" | "successorHash"> | undefined> {
    const used = await this.db.one(this.q.usedToken, [tokenHash]);
    if (!used) return undefined;
    const { usedAtMs, successorHash } = this.markRead(used);
    return { ...(usedAtMs !== undefined && { usedAtMs }), ...(successorHash !== undefined && { successorHash }) };
  }

  async refreshTokenOwner(tokenHash: string): Promise<Id | undefined> {
    const row = (await this.db.one(this.q.token, [tokenHash])) ?? (await this.db.one(this.q.usedToken, [tokenHash]));
    return row ? toTokenRecord(row).userId : undefined;
  }

  async takeSuccessor(tokenHash: string, successorHash: string, next: RefreshTokenUse): Promise<boolean> {
    const row = await this.db.one(this.q.token, [successorHash]);
    if (!row) return false;
    const rec = toTokenRecord(row);
    if (next.successorExpiresAtMs !== undefined) {
      await this.db.batch(this.putTokenStatements(next.successorHash, { ...rec, expiresAtMs: next.successorExpiresAtMs }, chainOf(row, successorHash)), { logged: true });
    }
    // As in takeRefreshToken: the first mark takes it, of racing retries and the successor's own holder.
    if ((await this.markFirst(successorHash, rec, next.atMs, null)) !== true) return false;
    await this.db.write(this.q.deleteToken, [successorHash]);
    // Only the winner moves the mark on. With the used token's own TTL: a
    // cell written without one would outlive the rest of its row.
    const used = await this.db.one(this.q.usedToken, [tokenHash]);
    if (used) {
      await this.db.write(this.q.moveSuccessor, [this.tokenTtlS(toTokenRecord(used).expiresAtMs), next.successorHash, tokenHash]);
    }
    return true;
  }

  /** Marks a token used unless marked already: true when this mark landed, else the mark found. */
  private async markFirst(tokenHash: string, rec: RefreshTokenRecord, usedAtMs: number, successorHash: string | null): Promise<true | Row> {
    const r = await this.db.lwt(this.q.markFirst, [
      tokenHash, rec.userId, rec.deviceId, msCell(rec.expiresAtMs), msCell(usedAtMs), successorHash, this.tokenTtlS(rec.expiresAtMs),
    ]);
    return r.applied ? true : r.row;
  }

  /** A mark's use time and successor, as a reuse is answered them (either may be missing). */
  private markRead(used: Row): Pick<RefreshTokenTake, "usedAtMs" | "successorHash" | "usedAgoMs"> {
    const usedAt = used.get("used_at_ms");
    const successor = used.get("successor_hash");
    const [writtenUs, nowMs] = [used.get("used_at_us"), used.get("now_ms")];
    return {
      ...(usedAt !== null && usedAt !== undefined && { usedAtMs: ms(usedAt) }),
      ...(typeof successor === "string" && { successorHash: successor }),
      ...(usedAt !== null && usedAt !== undefined && writtenUs != null && nowMs != null && {
        usedAgoMs: Math.max(0, ms(nowMs) - Math.floor(ms(writtenUs) / 1000)),
      }),
    };
  }

  /** The token's row and its chain's index row, which names it from then on. */
  private putTokenStatements(tokenHash: string, r: RefreshTokenRecord, chain: string) {
    const ttl = this.tokenTtlS(r.expiresAtMs);
    return [
      { query: this.q.putToken, params: [tokenHash, r.userId, r.deviceId, msCell(r.expiresAtMs), chain, ttl] },
      { query: this.q.putTokenIndex, params: [r.userId, r.deviceId, chain, tokenHash, msCell(r.expiresAtMs), ttl] },
    ];
  }

  private tokenTtlS(expiresAtMs: number): number {
    return Math.min(MAX_TTL_S, Math.max(0, Math.ceil((expiresAtMs - this.now()) / 1000)) + TOKEN_GRACE_S);
  }

  /**
   * Every write of a request's rows is a Paxos round, as a friendship's are:
   * plain writes carried the api's clock, so a withdrawal from one running
   * behind left the request, and one running ahead left a tombstone that no
   * request made elsewhere could outrank for as long.
   *
   * The two sides are two partitions, which no round spans: the sender's row
   * (read to tell whether the request exists, so a resend writes nothing) is
   * written after the recipient's and deleted before it, so one cut short
   * never leaves a request the recipient cannot see and a resend would not
   * write again. For a withdrawal (a decline) racing it the same: each reads
   * the other's row back after its own writes (SERIAL) and takes the sender's
   * row if the recipient's is gone; at worst the recipient's is left alone,
   * which an answer takes away.
   */
  async putFriendRequest(fromUserId: Id, toUserId: Id, atMs: number): Promise<boolean> {
    const at = msCell(atMs);
    await this.putRequestRow(toUserId, fromUserId, false, at);
    // The sender's row is the one hasFriendRequest reads: stored by this call when its insert applied.
    const stored = await this.putRequestRow(fromUserId, toUserId, true, at);
    // A withdrawal between the two rows took the recipient's: the sender's, alone, would stay for good.
    if (!(await this.db.serialOne(this.q.requestRow, [toUserId, fromUserId, false]))) await this.db.lwt(this.q.deleteRequest, [fromUserId, toUserId, true]);
    return stored;
  }

  /**
   * Asking again moves the request's time, as in SQLite: Paxos has no upsert, so an update where the insert found a row.
   * True when the row was inserted, false when one was there (its time moved).
   */
  private async putRequestRow(userId: Id, otherUserId: Id, outgoing: boolean, at: bigint): Promise<boolean> {
    if ((await this.db.lwt(this.q.putRequest, [userId, otherUserId, outgoing, at])).applied) return true;
    // Not applied when a withdrawal took the row after the insert found it: the request was made again, then withdrawn.
    await this.db.lwt(this.q.moveRequest, [at, userId, otherUserId, outgoing]);
    return false;
  }

  async deleteFriendRequest(fromUserId: Id, toUserId: Id): Promise<void> {
    await this.db.lwt(this.q.deleteRequest, [fromUserId, toUserId, true]);
    await this.db.lwt(this.q.deleteRequest, [toUserId, fromUserId, false]);
    // A send whose sender's row landed after the first delete and its read of the recipient's before the second.
    if (await this.db.serialOne(this.q.requestRow, [fromUserId, toUserId, true])) await this.db.lwt(this.q.deleteRequest, [fromUserId, toUserId, true]);
  }

  async hasFriendRequest(fromUserId: Id, toUserId: Id): Promise<boolean> {
    return (await this.db.one(this.q.request, [fromUserId, toUserId])) !== undefined;
  }

  async listFriendRequests(userId: Id): Promise<{ fromUserId: Id; toUserId: Id; atMs: number }[]> {
    const out = (await this.db.rows(this.q.requests, [userId])).map((r) => {
      const other = big(r.get("other_user_id"));
      const outgoing = r.get("outgoing") === true;
      return { fromUserId: outgoing ? userId : other, toUserId: outgoing ? other : userId, atMs: ms(r.get("at_ms")) };
    });
    // The SQLite adapter's order, so callers see one behaviour.
    return out.sort((x, y) => x.atMs - y.atMs || cmp(x.fromUserId, y.fromUserId) || cmp(x.toUserId, y.toUserId));
  }

  /**
   * Every write of a friendship row is a Paxos round, so each is stamped with
   * its ballot, above every earlier round's on the partition whatever the
   * clocks: with the first row a compare-and-set (the node's clock) and the
   * rest plain writes (the api's), an api whose clock was behind could not
   * take that row away, and one ahead made rows no unfriending could.
   *
   * The two rows are two partitions, which no round spans: the row of the
   * lower id, written first whichever side asks, says whether the friendship
   * holds, and each change ends by making the other row agree with it, read
   * after its own writes; else an unfriending run between a making's two rows
   * (or a making between an unfriending's) left one user the other's friend
   * and not the other way round.
   */
  async addFriendship(a: Id, b: Id, atMs: number): Promise<void> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    // Keep the first friendship's date, as the SQLite adapter does; the compare-and-set tells whether there was one.
    const first = await this.db.lwt(this.q.putFriend, [lo, hi, msCell(atMs)]);
    const since = first.applied ? msCell(atMs) : big(first.row.get("since_ms"));
    await this.db.lwt(this.q.putFriend, [hi, lo, since]);
    // An unfriending since the first row took it: this one's second row must go too.
    if (!(await this.db.serialOne(this.q.friend, [lo, hi]))) await this.db.lwt(this.q.unfriend, [hi, lo]);
    await Promise.all([this.deleteFriendRequest(a, b), this.deleteFriendRequest(b, a)]);
  }

  async removeFriendship(a: Id, b: Id): Promise<void> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    // The asker's row goes last, as it does when the asker is hi: one cut short (a timeout, the
    // process killed) leaves it, where the asker's retry lists the friend (a deletion reads only
    // the account's own rows; one stopped after its own row left the friend's for good).
    if (a === lo) await this.db.lwt(this.q.unfriend, [hi, lo]);
    await this.db.lwt(this.q.unfriend, [lo, hi]);
    await this.db.lwt(this.q.unfriend, [hi, lo]);
    // A friendship made since the first delete holds: its second row, taken by this one's, goes back.
    const made = await this.db.serialOne(this.q.friend, [lo, hi]);
    if (made) await this.db.lwt(this.q.putFriend, [hi, lo, big(made.get("since_ms"))]);
  }

  async areFriends(a: Id, b: Id): Promise<boolean> {
    return (await this.db.one(this.q.friend, [a, b])) !== undefined;
  }

  async getPresenceVisibility(userIds: readonly Id[]): Promise<Map<Id, PresenceVisibility>> {
    const found = new Map((await this.rowsIn(this.q.visibilityIn, userIds)).map((r) => [big(r.get("user_id")), r.get("visibility") as PresenceVisibility]));
    return new Map(userIds.flatMap((id) => (found.has(id) ? [[id, found.get(id)!]] : [])));
  }

  async setPresenceVisibility(userId: Id, visibility: PresenceVisibility): Promise<void> {
    await this.db.write(this.q.setVisibility, [userId, visibility]);
  }

  async listFriends(userId: Id): Promise<Id[]> {
    return (await this.db.rows(this.q.friends, [userId])).map((r) => big(r.get("friend_user_id")));
  }

  /**
   * Every write of a `blocks` or `blockers` row is a Paxos round, so it lands
   * at its ballot, above every earlier round's on the row whatever the api
   * clocks: as a logged batch of plain writes, stamped by the api, a block
   * from one running ahead outlived every unblock from the others for as long,
   * and an unblock from it left a tombstone that hid a block made here after
   * it (the blocked user could still write). No timestamp both writers agree
   * on exists without such a round (a deletion's cannot be read back), so
   * the rounds themselves order the writes.
   *
   * The two rows are two partitions, which no round spans: the order of the
   * writes keeps the `blockers` index (read to refuse group adds and to hide
   * presence) from missing a block that holds. It may hold a row for a block
   * gone (a failure between the writes): that refuses more, never less.
   */
  async putBlock(userId: Id, blockedUserId: Id, atMs: number): Promise<boolean> {
    // Indexed first, so a failure before the block row leaves no block unindexed; the first block's time is kept.
    await this.db.lwt(this.q.putBlocker, [blockedUserId, userId]);
    const { applied } = await this.db.lwt(this.q.putBlock, [userId, blockedUserId, msCell(atMs)]);
    // Again once the block holds: an unblock racing this one may have taken the row in between.
    await this.db.lwt(this.q.putBlocker, [blockedUserId, userId]);
    return applied;
  }

  async deleteBlock(userId: Id, blockedUserId: Id): Promise<void> {
    await this.db.lwt(this.q.deleteBlock, [userId, blockedUserId]);
    await this.db.lwt(this.q.deleteBlocker, [blockedUserId, userId]);
    // A block racing this one that landed after its first write lost its index row to the second: put back.
    if (await this.db.serialOne(this.q.block, [userId, blockedUserId])) await this.db.lwt(this.q.putBlocker, [blockedUserId, userId]);
  }

  async listBlocks(userId: Id): Promise<{ userId: Id; atMs: number }[]> {
    const out = (await this.db.rows(this.q.blocks, [userId])).map((r) => ({
      userId: big(r.get("blocked_user_id")),
      atMs: ms(r.get("at_ms")),
    }));
    // The partition is clustered by user id, not time.
    return out.sort((x, y) => y.atMs - x.atMs || cmp(x.userId, y.userId));
  }

  async listBlockers(userId: Id, page: { after?: Id; limit: number }): Promise<Id[]> {
    if (page.limit <= 0) return [];
    // Anyone may block a user, so the partition has no bound: never read whole.
    return (await this.db.rows(this.q.blockers, [userId, page.after ?? MIN_ID, page.limit])).map((r) => big(r.get("blocker_user_id")));
  }

  async blockersAmong(userId: Id, among: readonly Id[]): Promise<Id[]> {
    const asked = [...new Set(among)];
    if (asked.length === 0) return [];
    // Rows of the users named alone, a hundred a read (a presence audience names every friend and co-member).
    const found = await mapLimit(inParts(asked), FANOUT, (some) => this.db.rows(this.q.blockersAmong, [userId, some]));
    // By user id, as the SQLite adapter returns them.
    return found.flat().map((r) => big(r.get("blocker_user_id"))).sort(cmp);
  }

  async blockersBetween(a: Id, b: Id): Promise<Id[]> {
    const pairs: [Id, Id][] = a === b ? [[a, a]] : [[a, b], [b, a]];
    const found = await Promise.all(pairs.map(async ([x, y]) => ((await this.db.one(this.q.block, [x, y])) ? [x] : [])));
    // By user id, as the SQLite adapter returns them.
    return found.flat().sort(cmp);
  }

  /** Claims the lower-cased name for userId or throws already_exists. */
  private async claimUsername(lower: string, userId: Id): Promise<void> {
    const now = this.now();
    const claim = await this.db.lwt(this.q.claim, [lower, userId, msCell(now)]);
    if (claim.applied) return;
    const holder = big(claim.row.get("user_id"));
    if (holder === userId) return; // our own earlier attempt (a retried request)
    const reservedAt = ms(claim.row.get("reserved_at_ms"));
    // A claim whose user row never appeared was left by a creator that died
    // between the claim and the batch; after a while it may be taken over. A
    // deleted holder's row no longer carries the name (its deleteUser stopped
    // before releasing it): its claim may be taken over at once.
    const held = await this.getUser(holder);
    if (held ? isDeletedUser(held) : now - reservedAt > STALE_CLAIM_MS) {
      const r = await this.db.lwt(this.q.takeOver, [userId, msCell(now), lower, holder]);
      if (r.applied) return;
    }
    throw new ChatError("already_exists", `username ${lower} is taken`);
  }
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
/** Below every id: where a page of blockers with no `after` starts (Cassandra's bigint is signed). */
const MIN_ID = -(2n ** 63n);
