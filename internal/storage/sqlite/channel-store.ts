import { applyPlaceChange } from "../../channels/places.js";
import { deadInvite, heirOf, MAX_BARS, removedByAdmin, type ChannelStore, type MembershipCheck, type ReadAdvance, type Removal } from "../../channels/store.js";
import { ChannelTurns } from "../../channels/turns.js";
import type { MessageLog } from "../../messages/log.js";
import { ChatError } from "../../model/errors.js";
import type { ChannelKind, ChannelPlace, ChannelRecord, Id, MemberRecord, MemberRole, PlaceChange } from "../../model/types.js";
import { prepare, translateError, type SqliteDatabase } from "./database.js";
import { SqliteMessageLog } from "./message-log.js";

type Row = Record<string, unknown>;

const toChannel = (r: Row): ChannelRecord => ({
  channelId: r.channel_id as bigint,
  kind: r.kind as ChannelKind,
  title: r.title as string,
  createdAtMs: Number(r.created_at_ms),
  createdBy: r.created_by as bigint,
});

const toMember = (r: Row): MemberRecord => ({
  channelId: r.channel_id as bigint,
  userId: r.user_id as bigint,
  role: r.role as MemberRole,
  joinedAtMs: Number(r.joined_at_ms),
  readSeq: r.read_seq as bigint,
  ...((r.cleared_seq as bigint) > 0n ? { clearedSeq: r.cleared_seq as bigint } : {}),
  ...((r.joined_seq as bigint) > 0n ? { joinedSeq: r.joined_seq as bigint } : {}),
});

function build(db: SqliteDatabase) {
  const p = (sql: string) => prepare(db, sql);
  const s = {
    insertChannel: p(`INSERT INTO channels (channel_id, kind, title, created_at_ms, created_by)
                      VALUES (?, ?, ?, ?, ?)`),
    channel: p("SELECT * FROM channels WHERE channel_id = ?"),
    updateTitle: p("UPDATE channels SET title = ? WHERE channel_id = ?"),
    directOf: p("SELECT channel_id FROM direct_channels WHERE user_lo = ? AND user_hi = ?"),
    insertDirect: p("INSERT INTO direct_channels (user_lo, user_hi, channel_id) VALUES (?, ?, ?)"),
    insertMember: p(`INSERT OR IGNORE INTO channel_members (channel_id, user_id, role, joined_at_ms, read_seq, joined_seq)
                     VALUES (?, ?, ?, ?, ?, ?)`),
    member: p("SELECT * FROM channel_members WHERE channel_id = ? AND user_id = ?"),
    members: p("SELECT * FROM channel_members WHERE channel_id = ? ORDER BY joined_at_ms, rowid"),
    count: p("SELECT count(*) AS n FROM channel_members WHERE channel_id = ?"),
    removeMember: p("DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?"),
    setRole: p("UPDATE channel_members SET role = ? WHERE channel_id = ? AND user_id = ?"),
    advanceRead: p(`UPDATE channel_members SET read_seq = max(read_seq, ?)
                    WHERE channel_id = ? AND user_id = ? RETURNING read_seq`),
    clearThrough: p(`UPDATE channel_members SET cleared_seq = max(cleared_seq, ?)
                     WHERE channel_id = ? AND user_id = ? RETURNING cleared_seq`),
    markJoined: p("UPDATE channel_members SET joined_seq = max(joined_seq, ?) WHERE channel_id = ? AND user_id = ?"),
    memberships: p("SELECT * FROM channel_members WHERE user_id = ? ORDER BY joined_at_ms, rowid"),
    groupCount: p(`SELECT count(*) AS n FROM channel_members m JOIN channels c ON c.channel_id = m.channel_id
                   WHERE m.user_id = ? AND c.kind = 'group'`),
    putMute: p(`INSERT INTO channel_mutes (user_id, channel_id, until_ms) VALUES (?, ?, ?)
                ON CONFLICT (user_id, channel_id) DO UPDATE SET until_ms = excluded.until_ms`),
    deleteMute: p("DELETE FROM channel_mutes WHERE user_id = ? AND channel_id = ?"),
    mutes: p("SELECT channel_id, until_ms FROM channel_mutes WHERE user_id = ?"),
    putPlace: p(`INSERT INTO channel_places (user_id, channel_id, pinned_at_ms, archived_at_ms, marked_unread_at_ms) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (user_id, channel_id) DO UPDATE SET pinned_at_ms = excluded.pinned_at_ms,
                                                                 archived_at_ms = excluded.archived_at_ms,
                                                                 marked_unread_at_ms = excluded.marked_unread_at_ms`),
    deletePlace: p("DELETE FROM channel_places WHERE user_id = ? AND channel_id = ?"),
    places: p("SELECT channel_id, pinned_at_ms, archived_at_ms, marked_unread_at_ms FROM channel_places WHERE user_id = ?"),
    place: p("SELECT pinned_at_ms, archived_at_ms, marked_unread_at_ms FROM channel_places WHERE user_id = ? AND channel_id = ?"),
    dropInvite: p("DELETE FROM channel_invites WHERE channel_id = ?"),
    putInvite: p("INSERT INTO channel_invites (code, channel_id) VALUES (?, ?)"),
    claimInvite: p("INSERT INTO channel_invites (code, channel_id) VALUES (?, ?) ON CONFLICT (channel_id) DO NOTHING"),
    inviteOf: p("SELECT code FROM channel_invites WHERE channel_id = ?"),
    channelOfInvite: p("SELECT channel_id FROM channel_invites WHERE code = ?"),
    // A bar made again counts from this removal: the newest is the one kept.
    putBar: p(`INSERT INTO channel_bars (channel_id, user_id, bar_order)
               VALUES (@channel, @user, (SELECT COALESCE(MAX(bar_order), 0) + 1 FROM channel_bars WHERE channel_id = @channel))
               ON CONFLICT (channel_id, user_id) DO UPDATE SET bar_order = excluded.bar_order`),
    // All but the newest @keep (ties, bars from before bar_order, by user id).
    dropOldBars: p(`DELETE FROM channel_bars WHERE channel_id = @channel AND user_id IN (
                      SELECT user_id FROM channel_bars WHERE channel_id = @channel ORDER BY bar_order DESC, user_id DESC LIMIT -1 OFFSET @keep)`),
    liftBar: p("DELETE FROM channel_bars WHERE channel_id = ? AND user_id = ?"),
    bar: p("SELECT 1 FROM channel_bars WHERE channel_id = ? AND user_id = ?"),
  };
  const addMember = (m: MemberRecord): boolean =>
    s.insertMember.run(m.channelId, m.userId, m.role, m.joinedAtMs, m.readSeq, m.joinedSeq ?? 0n).changes > 0;

  const directTx = db.transaction((candidate: ChannelRecord, a: Id, b: Id): ChannelRecord => {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    const existing = s.directOf.get(lo, hi) as Row | undefined;
    if (existing) return toChannel(s.channel.get(existing.channel_id) as Row);
    const c: ChannelRecord = { ...candidate, kind: "direct" };
    s.insertChannel.run(c.channelId, c.kind, c.title, c.createdAtMs, c.createdBy);
    s.insertDirect.run(lo, hi, c.channelId);
    for (const userId of [lo, hi]) {
      addMember({ channelId: c.channelId, userId, role: "member", joinedAtMs: c.createdAtMs, readSeq: 0n });
    }
    return c;
  });
  const groupTx = db.transaction((c: ChannelRecord, members: readonly MemberRecord[]) => {
    s.insertChannel.run(c.channelId, c.kind, c.title, c.createdAtMs, c.createdBy);
    for (const m of members) addMember({ ...m, channelId: c.channelId });
  });
  // Changes that take a check read the members, check and write in one
  // transaction, so the check (and a leaving owner's heir) see exactly the
  // membership the write changes.
  const roster = (channelId: Id) => (s.members.all(channelId) as Row[]).map(toMember);
  const addMembersTx = db.transaction((
    channelId: Id, members: readonly MemberRecord[], max: number, check?: MembershipCheck, inviteCode?: string,
  ): Id[] => {
    if (!s.channel.get(channelId)) throw new ChatError("not_found", `channel ${channelId} not found`);
    check?.(roster(channelId));
    // A join by link: the code as it is now, not as the caller's lookup found it.
    if (inviteCode !== undefined && (s.inviteOf.get(channelId) as Row | undefined)?.code !== inviteCode) throw deadInvite();
    const fresh = new Map<Id, MemberRecord>();
    for (const m of members) {
      if (!fresh.has(m.userId) && !s.member.get(channelId, m.userId)) fresh.set(m.userId, m);
    }
    const count = Number((s.count.get(channelId) as Row).n);
    if (count + fresh.size > max) {
      throw new ChatError("group_full", `a group has at most ${max} members (${count} now, ${fresh.size} to add)`);
    }
    // In the transaction of the add, as a removal's bar is in the removal's:
    // of a removal and a join at once, whichever commits second sees the other.
    if (inviteCode !== undefined) {
      for (const userId of fresh.keys()) if (s.bar.get(channelId, userId)) throw removedByAdmin();
    }
    for (const m of fresh.values()) {
      addMember({ ...m, channelId });
      if (inviteCode === undefined) s.liftBar.run(channelId, m.userId);
    }
    return [...fresh.keys()];
  });
  const titleTx = db.transaction((channelId: Id, title: string, check?: MembershipCheck): boolean => {
    check?.(roster(channelId));
    const before = s.channel.get(channelId) as Row | undefined;
    if (!before || before.title === title) return false;
    s.updateTitle.run(title, channelId);
    return true;
  });
  const removeTx = db.transaction((channelId: Id, userId: Id, check?: MembershipCheck, bar?: boolean): Removal => {
    const members = roster(channelId);
    check?.(members);
    const leaving = members.find((m) => m.userId === userId);
    if (!leaving) return { removed: false };
    const heir = leaving.role === "owner" ? heirOf(members, userId) : undefined;
    s.removeMember.run(channelId, userId);
    if (bar) {
      s.putBar.run({ channel: channelId, user: userId });
      s.dropOldBars.run({ channel: channelId, keep: MAX_BARS });
    }
    if (!heir) return { removed: true };
    s.setRole.run("owner", channelId, heir.userId);
    return { removed: true, newOwner: heir.userId };
  });
  const setRoleTx = db.transaction((channelId: Id, userId: Id, role: MemberRole, check?: MembershipCheck): boolean => {
    const members = roster(channelId);
    check?.(members);
    const target = members.find((m) => m.userId === userId);
    if (!target) return false;
    if (target.role === "owner") throw ownerRoleFixed();
    if (target.role === role) return false;
    s.setRole.run(role, channelId, userId);
    return true;
  });
  // The manager's check on the members of the moment, in the transaction that writes the code.
  const inviteTx = db.transaction((channelId: Id, code: string | undefined, check?: MembershipCheck) => {
    if (!s.channel.get(channelId)) {
      if (code === undefined) return;
      throw new ChatError("not_found", `channel ${channelId} not found`);
    }
    check?.(roster(channelId));
    s.dropInvite.run(channelId);
    if (code !== undefined) s.putInvite.run(code, channelId);
  });
  const claimTx = db.transaction((channelId: Id, code: string, check?: MembershipCheck): string => {
    if (!s.channel.get(channelId)) throw new ChatError("not_found", `channel ${channelId} not found`);
    check?.(roster(channelId));
    s.claimInvite.run(code, channelId);
    return (s.inviteOf.get(channelId) as Row).code as string;
  });
  // Read and written in one transaction: a change keeps every setting it does not name.
  const placeTx = db.transaction((userId: Id, channelId: Id, change: PlaceChange) => {
    const row = s.place.get(userId, channelId) as Row | undefined;
    const { place } = applyPlaceChange(row && placeOf(row), change);
    if (place === undefined) s.deletePlace.run(userId, channelId);
    else s.putPlace.run(userId, channelId, whole(place.pinnedAtMs), whole(place.archivedAtMs), whole(place.markedUnreadAtMs));
  });
  // One index probe per channel inside one read transaction, as the log's latest: a consistent snapshot, no IN list to prepare.
  const eachOf = <T>(read: (id: Id) => T | undefined) => db.transaction((channelIds: readonly Id[]) => {
    const out = new Map<Id, T>();
    for (const id of channelIds) {
      const v = read(id);
      if (v !== undefined) out.set(id, v);
    }
    return out;
  });
  const channelsTx = eachOf((id) => {
    const r = s.channel.get(id) as Row | undefined;
    return r && toChannel(r);
  });
  const countsTx = eachOf((id) => Number((s.count.get(id) as Row).n));
  const membersTx = eachOf((id) => (s.members.all(id) as Row[]).map(toMember));
  return { ...s, directTx, groupTx, addMembersTx, titleTx, removeTx, setRoleTx, inviteTx, claimTx, placeTx, channelsTx, countsTx, membersTx };
}

const ownerRoleFixed = () =>
  new ChatError("invalid_argument", "ownership is neither given nor taken by a role change; it passes when the owner leaves");

export class SqliteChannelStore implements ChannelStore {
  private readonly s: ReturnType<typeof build>;
  /** In this process alone: one chatd holds its data directory (its lock), and no other process changes groups there. */
  private readonly turns = new ChannelTurns();

  /**
   * Prepares every statement once; share one Database between all stores.
   * `log` (by default the log on the same database) bounds read positions.
   */
  constructor(
    db: SqliteDatabase,
    private readonly log: Pick<MessageLog, "latest"> = new SqliteMessageLog(db),
  ) {
    this.s = build(db);
  }

  async getOrCreateDirect(candidate: ChannelRecord, a: Id, b: Id): Promise<ChannelRecord> {
    // Immediate takes the write lock before the lookup, so another process
    // cannot slip in between lookup and insert.
    try {
      return this.s.directTx.immediate(candidate, a, b);
    } catch (e) {
      translateError(e, `channel ${candidate.channelId}`);
    }
  }

  async hasDirect(a: Id, b: Id): Promise<boolean> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    return this.s.directOf.get(lo, hi) !== undefined;
  }

  async directChannelOf(a: Id, b: Id): Promise<Id | undefined> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    return (this.s.directOf.get(lo, hi) as Row | undefined)?.channel_id as Id | undefined;
  }

  async createGroup(channel: ChannelRecord, members: readonly MemberRecord[]): Promise<void> {
    try {
      this.s.groupTx.immediate(channel, members);
    } catch (e) {
      translateError(e, `channel ${channel.channelId}`);
    }
  }

  async getChannel(channelId: Id): Promise<ChannelRecord | undefined> {
    const r = this.s.channel.get(channelId) as Row | undefined;
    return r && toChannel(r);
  }

  async updateTitle(channelId: Id, title: string, check?: MembershipCheck): Promise<boolean> {
    return this.s.titleTx.immediate(channelId, title, check);
  }

  async getMember(channelId: Id, userId: Id): Promise<MemberRecord | undefined> {
    const r = this.s.member.get(channelId, userId) as Row | undefined;
    return r && toMember(r);
  }

  async listMembers(channelId: Id): Promise<MemberRecord[]> {
    return (this.s.members.all(channelId) as Row[]).map(toMember);
  }

  async memberCount(channelId: Id): Promise<number> {
    return Number((this.s.count.get(channelId) as Row).n);
  }

  async getChannels(channelIds: readonly Id[]): Promise<Map<Id, ChannelRecord>> {
    return this.s.channelsTx(channelIds);
  }

  async memberCounts(channelIds: readonly Id[]): Promise<Map<Id, number>> {
    return this.s.countsTx(channelIds);
  }

  async listMembersOf(channelIds: readonly Id[]): Promise<Map<Id, MemberRecord[]>> {
    return this.s.membersTx(channelIds);
  }

  async addMembers(
    channelId: Id, members: readonly MemberRecord[], maxMembers: number, check?: MembershipCheck, inviteCode?: string,
  ): Promise<Id[]> {
    return this.s.addMembersTx.immediate(channelId, members, maxMembers, check, inviteCode);
  }

  async removeMember(channelId: Id, userId: Id, check?: MembershipCheck, bar?: boolean): Promise<Removal> {
    // Immediate: another process's change cannot slip in between read and write.
    return this.s.removeTx.immediate(channelId, userId, check, bar);
  }

  async isBarred(channelId: Id, userId: Id): Promise<boolean> {
    return this.s.bar.get(channelId, userId) !== undefined;
  }

  async barredAmong(channelId: Id, userIds: readonly Id[]): Promise<Id[]> {
    return userIds.filter((userId) => this.s.bar.get(channelId, userId) !== undefined);
  }

  async setRole(channelId: Id, userId: Id, role: Exclude<MemberRole, "owner">, check?: MembershipCheck): Promise<boolean> {
    if ((role as MemberRole) === "owner") throw ownerRoleFixed();
    return this.s.setRoleTx.immediate(channelId, userId, role, check);
  }

  changeInTurn<T>(channelId: Id, work: () => Promise<T>): Promise<T> {
    return this.turns.run(channelId, work);
  }

  async advanceReadSeq(channelId: Id, userId: Id, seq: bigint): Promise<ReadAdvance> {
    // The newest seq only grows, so capping at one read a moment ago is safe.
    const newest = (await this.log.latest([channelId])).get(channelId);
    const top = newest?.seq ?? 0n;
    const r = this.s.advanceRead.get(seq < top ? seq : top, channelId, userId) as Row | undefined;
    if (!r) throw new ChatError("not_a_member", `user ${userId} is not a member of channel ${channelId}`);
    return { readSeq: r.read_seq as bigint, newest };
  }

  async clearHistory(channelId: Id, userId: Id, seq: bigint): Promise<bigint> {
    const newest = (await this.log.latest([channelId])).get(channelId)?.seq ?? 0n;
    const r = this.s.clearThrough.get(seq < newest ? seq : newest, channelId, userId) as Row | undefined;
    if (!r) throw new ChatError("not_a_member", `user ${userId} is not a member of channel ${channelId}`);
    return r.cleared_seq as bigint;
  }

  async markJoined(channelId: Id, userIds: readonly Id[], seq: bigint): Promise<void> {
    for (const userId of userIds) this.s.markJoined.run(seq, channelId, userId);
  }

  async listMemberships(userId: Id): Promise<MemberRecord[]> {
    return (this.s.memberships.all(userId) as Row[]).map(toMember);
  }

  async inGroupsAtLeast(userIds: readonly Id[], n: number): Promise<Id[]> {
    return [...new Set(userIds)].filter((userId) => Number((this.s.groupCount.get(userId) as Row).n) >= n);
  }

  async setMute(userId: Id, channelId: Id, untilMs: number | undefined): Promise<void> {
    if (untilMs === undefined) {
      this.s.deleteMute.run(userId, channelId);
      return;
    }
    // Whole milliseconds, as Cassandra's bigint keeps them: a fraction would be stored as a REAL.
    this.s.putMute.run(userId, channelId, Math.trunc(untilMs));
  }

  async listMutes(userId: Id): Promise<Map<Id, number>> {
    return new Map((this.s.mutes.all(userId) as Row[]).map((r) => [r.channel_id as bigint, Number(r.until_ms)]));
  }

  async changePlace(userId: Id, channelId: Id, change: PlaceChange): Promise<void> {
    this.s.placeTx(userId, channelId, change);
  }

  async setInviteCode(channelId: Id, code: string | undefined, check?: MembershipCheck): Promise<void> {
    try {
      this.s.inviteTx.immediate(channelId, code, check);
    } catch (e) {
      translateError(e, `invite code of channel ${channelId}`);
    }
  }

  async claimInviteCode(channelId: Id, code: string, check?: MembershipCheck): Promise<string> {
    try {
      return this.s.claimTx.immediate(channelId, code, check);
    } catch (e) {
      translateError(e, `invite code of channel ${channelId}`);
    }
  }

  async inviteCodeOf(channelId: Id): Promise<string | undefined> {
    return (this.s.inviteOf.get(channelId) as Row | undefined)?.code as string | undefined;
  }

  async channelOfInvite(code: string): Promise<Id | undefined> {
    return (this.s.channelOfInvite.get(code) as Row | undefined)?.channel_id as Id | undefined;
  }

  async listPlaces(userId: Id): Promise<Map<Id, ChannelPlace>> {
    return new Map((this.s.places.all(userId) as Row[]).map((r) => [r.channel_id as bigint, placeOf(r)]));
  }
}

const whole = (ms: number | undefined) => (ms === undefined ? null : Math.trunc(ms));

/** A place as stored (nulls for what is not set), with only what is set. */
function placeOf(r: Row): ChannelPlace {
  const place: ChannelPlace = {};
  if (r.pinned_at_ms != null) place.pinnedAtMs = Number(r.pinned_at_ms);
  if (r.archived_at_ms != null) place.archivedAtMs = Number(r.archived_at_ms);
  if (r.marked_unread_at_ms != null) place.markedUnreadAtMs = Number(r.marked_unread_at_ms);
  return place;
}
