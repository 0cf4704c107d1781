import { randomUUID } from "node:crypto";
import { deadInvite, heirOf, MAX_BARS, removedByAdmin, type ChannelStore, type MembershipCheck, type ReadAdvance, type Removal } from "../../channels/store.js";
import { ChannelTurns } from "../../channels/turns.js";
import type { MessageLog } from "../../messages/log.js";
import { ChatError, ContendedError } from "../../model/errors.js";
import type { ChannelKind, ChannelPlace, ChannelRecord, Id, MemberRecord, MemberRole, PlaceChange } from "../../model/types.js";
import { big, FANOUT, inParts, mapLimit, ms, msCell, StorageUnavailable, type Db, type Row, type Statement } from "./session.js";

/** The settings of a place and their columns in `channel_places`. */
const PLACE_COLUMNS: readonly (readonly [keyof ChannelPlace, string])[] = [
  ["pinnedAtMs", "pinned_at_ms"],
  ["archivedAtMs", "archived_at_ms"],
  ["markedUnreadAtMs", "marked_unread_at_ms"],
];

const toChannel = (r: Row, channelId: Id): ChannelRecord => ({
  channelId,
  kind: r.get("kind") as ChannelKind,
  title: r.get("title") as string,
  createdAtMs: ms(r.get("created_at_ms")),
  createdBy: big(r.get("created_by")),
});

const toMember = (r: Row, channelId: Id): MemberRecord => ({
  channelId,
  userId: big(r.get("user_id")),
  role: r.get("role") as MemberRole,
  joinedAtMs: ms(r.get("joined_at_ms")),
  readSeq: big(r.get("read_seq")),
  ...clearedOf(r),
  ...joinedOf(r),
});

function clearedOf(r: Row): { clearedSeq?: bigint } {
  const seq = big(r.get("cleared_seq"));
  return seq > 0n ? { clearedSeq: seq } : {};
}

function joinedOf(r: Row): { joinedSeq?: bigint } {
  const seq = big(r.get("joined_seq"));
  return seq > 0n ? { joinedSeq: seq } : {};
}

/** Compare-and-set rounds of clearHistory before it gives up: only the member's own devices race it. */
const CLEAR_ATTEMPTS = 5;

// join_order = version << 20 | position in the call: keeps insertion order
// among members with the same joined_at_ms.
const JOIN_SHIFT = 20n;
const MAX_ATTEMPTS = 32;
/**
 * Joiners whose join points move in one conditional batch (one Paxos round):
 * a group's default cap of members, so an add is one batch as a rule.
 */
const JOIN_BATCH = 100;
/** Batches of markJoined before the joiners still behind go one by one: a refused one costs a read of who is behind. */
const JOIN_BATCH_ATTEMPTS = 3;

/**
 * How long a turn of a channel (changeInTurn) lasts at most: one taken by a
 * process that died in it holds the channel's changes off this long.
 */
export const CHANNEL_TURN_TTL_S = 10;
/** How long changeInTurn waits for its turn before it answers unavailable, in leases: past one run out. */
const TURN_WAIT_LEASES = 2;
/**
 * How long a live change keeps its turn by renewing the lease, in leases: a change slow
 * in its store step or note (a write retried, a queue slow to answer) was
 * overtaken once its lease ran out, and the other change's note was told
 * before the one it followed. Bounded, so a change that never ends holds the
 * group's changes off no longer than this (each waiting TURN_WAIT_LEASES of
 * them, then answered unavailable).
 */
const TURN_HOLD_LEASES = 6;

/** `channels.invite_code` of a group with no invite code (null: not written since schema 8; see codeIn). */
const NO_CODE = "";
/** A channel partition as one read saw it: the version fence, the members in join order, the invite code as stored. */
interface State {
  version: bigint;
  count: number;
  members: MemberRecord[];
  inviteCode: string | null;
  title: string;
}

/**
 * What a membership change does at the state it was planned on: nothing
 * (writes absent), or these writes conditional on that state's version, with
 * the member count after them (unchanged when absent).
 */
interface Plan<T> {
  result: T;
  writes?: Statement[];
  count?: number;
}

/**
 * ChannelStore on Cassandra. A channel is one partition of `channels`:
 * metadata and counters as static columns, one row per member. Every
 * membership or role change is a conditional batch on that partition that
 * moves the static `version` from v to v+1 (the fence), planned on the
 * members read at v: so seat counting, the "exactly one winner for the last
 * seat" rule, the heir of a leaving owner and a caller's role checks all hold
 * for the membership the write lands on, across processes. A batch that lost
 * a race re-reads and plans again. A group's invite code is a static column
 * of the partition, changed through the same fence: a manager's reset is
 * checked against the roles as it lands, and a join by link compares the
 * code as its add lands.
 * `user_channels` (a user's channels) is written with the version as the
 * write timestamp, so the newest membership change wins there whatever order
 * the writes arrive in; a row in it whose member row is gone is ignored.
 */
export class CassandraChannelStore implements ChannelStore {
  private readonly q;
  /** This process's turns, in line before the lease: its own changes of a channel wait here rather than race for it. */
  private readonly turns = new ChannelTurns();

  /** `log` is the channels' message log, whose newest message bounds read positions; `turnTtlS` a turn's lease (shorter only in tests, to wait less). */
  constructor(
    private readonly db: Db,
    private readonly log: Pick<MessageLog, "latest">,
    private readonly turnTtlS = CHANNEL_TURN_TTL_S,
  ) {
    const t = (n: string) => db.t(n);
    const ch = t("channels");
    this.q = {
      channel: `SELECT kind, title, created_at_ms, created_by FROM ${ch} WHERE channel_id = ? LIMIT 1`,
      insertMeta: `INSERT INTO ${ch} (channel_id, kind, title, created_at_ms, created_by, member_count, version)
                   VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
      // A direct chat's candidate, written before its pair is claimed (no
      // Paxos round): at the lowest timestamp, so that every later change of
      // its cells (compare-and-sets, stamped by their ballots, and the
      // deletion of a loser) wins over it whatever the writers' clocks say.
      insertMetaPlain: `INSERT INTO ${ch} (channel_id, kind, title, created_at_ms, created_by, member_count, version)
                        VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 1`,
      insertMemberPlain: `INSERT INTO ${ch} (channel_id, user_id, role, joined_at_ms, read_seq, join_order, joined_seq)
                          VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 1`,
      insertMember: `INSERT INTO ${ch} (channel_id, user_id, role, joined_at_ms, read_seq, join_order, joined_seq)
                     VALUES (?, ?, ?, ?, ?, ?, ?)`,
      bump: `UPDATE ${ch} SET version = ?, member_count = ? WHERE channel_id = ? IF version = ?`,
      deleteMember: `DELETE FROM ${ch} WHERE channel_id = ? AND user_id = ?`,
      deleteChannel: `DELETE FROM ${ch} WHERE channel_id = ?`,
      updateTitle: `UPDATE ${ch} SET title = ? WHERE channel_id = ?`,
      member: `SELECT user_id, role, joined_at_ms, read_seq, cleared_seq, joined_seq FROM ${ch} WHERE channel_id = ? AND user_id = ?`,
      memberIn: `SELECT channel_id, user_id, role, joined_at_ms, read_seq, cleared_seq, joined_seq FROM ${ch} WHERE channel_id IN ? AND user_id = ?`,
      members: `SELECT user_id, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq FROM ${ch} WHERE channel_id = ?`,
      state: `SELECT user_id, kind, title, version, member_count, invite_code, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq
              FROM ${ch} WHERE channel_id = ?`,
      code: `SELECT invite_code FROM ${ch} WHERE channel_id = ? LIMIT 1`,
      setCode: `UPDATE ${ch} SET invite_code = ? WHERE channel_id = ?`,
      // Read apart from `state`: a static column comes back on every member row, and only adds and bars need it.
      barred: `SELECT barred FROM ${ch} WHERE channel_id = ? LIMIT 1`,
      // The removal that bars reads when the others were barred, to lift the oldest past MAX_BARS.
      barredAt: `SELECT barred, barred_at FROM ${ch} WHERE channel_id = ? LIMIT 1`,
      bar: `UPDATE ${ch} SET barred = barred + ?, barred_at[?] = ? WHERE channel_id = ?`,
      liftBar: `UPDATE ${ch} SET barred = barred - ?, barred_at = barred_at - ? WHERE channel_id = ?`,
      count: `SELECT member_count FROM ${ch} WHERE channel_id = ? LIMIT 1`,
      // The static columns, once per partition.
      channelsIn: `SELECT channel_id, kind, title, created_at_ms, created_by, member_count FROM ${ch} WHERE channel_id IN ? PER PARTITION LIMIT 1`,
      membersIn: `SELECT channel_id, user_id, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq FROM ${ch} WHERE channel_id IN ?`,
      setRole: `UPDATE ${ch} SET role = ? WHERE channel_id = ? AND user_id = ?`,
      advanceRead: `UPDATE ${ch} SET read_seq = ? WHERE channel_id = ? AND user_id = ? IF read_seq < ?`,
      // read_seq is set on every member row: the condition also refuses to make a row for a non-member.
      clearThrough: `UPDATE ${ch} SET cleared_seq = ? WHERE channel_id = ? AND user_id = ? IF read_seq >= 0 AND cleared_seq = ?`,
      // Conditional: a plain UPDATE of a member gone since would write a row back (an upsert).
      markJoined: `UPDATE ${ch} SET joined_seq = ? WHERE channel_id = ? AND user_id = ? IF joined_seq < ?`,
      // After a batch of markJoined was refused: which joiners are still members behind the note.
      joinPoints: `SELECT user_id, joined_seq FROM ${ch} WHERE channel_id = ? AND user_id IN ?`,
      takeTurn: `INSERT INTO ${t("channel_turns")} (channel_id, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?`,
      giveTurn: `DELETE FROM ${t("channel_turns")} WHERE channel_id = ? IF holder = ?`,
      keepTurn: `UPDATE ${t("channel_turns")} USING TTL ? SET holder = ? WHERE channel_id = ? IF holder = ?`,
      directOf: `SELECT channel_id FROM ${t("direct_channels")} WHERE user_lo = ? AND user_hi = ?`,
      claimDirect: `INSERT INTO ${t("direct_channels")} (user_lo, user_hi, channel_id) VALUES (?, ?, ?) IF NOT EXISTS`,
      index: `INSERT INTO ${t("user_channels")} (user_id, channel_id) VALUES (?, ?) USING TIMESTAMP ?`,
      unindex: `DELETE FROM ${t("user_channels")} USING TIMESTAMP ? WHERE user_id = ? AND channel_id = ?`,
      memberships: `SELECT channel_id FROM ${t("user_channels")} WHERE user_id = ?`,
      membershipsOf: `SELECT user_id, channel_id FROM ${t("user_channels")} WHERE user_id IN ?`,
      // role: a query of the static kind alone may not name a member.
      kindsAsMember: `SELECT kind, role FROM ${ch} WHERE channel_id IN ? AND user_id = ?`,
      putMute: `INSERT INTO ${t("channel_mutes")} (user_id, channel_id, until_ms) VALUES (?, ?, ?)`,
      deleteMute: `DELETE FROM ${t("channel_mutes")} WHERE user_id = ? AND channel_id = ?`,
      mute: `SELECT until_ms FROM ${t("channel_mutes")} WHERE user_id = ? AND channel_id = ?`,
      mutes: `SELECT channel_id, until_ms FROM ${t("channel_mutes")} WHERE user_id = ?`,
      deletePlace: `DELETE FROM ${t("channel_places")} WHERE user_id = ? AND channel_id = ?`,
      // Any column: a row with a setting, or with the marker of an INSERT (listPlaces), comes back.
      place: `SELECT pinned_at_ms FROM ${t("channel_places")} WHERE user_id = ? AND channel_id = ?`,
      places: `SELECT channel_id, pinned_at_ms, archived_at_ms, marked_unread_at_ms FROM ${t("channel_places")} WHERE user_id = ?`,
      inviteOf: `SELECT code FROM ${t("channel_invites")} WHERE channel_id = ?`,
      putInviteOf: `INSERT INTO ${t("channel_invites")} (channel_id, code) VALUES (?, ?)`,
      dropInviteOf: `DELETE FROM ${t("channel_invites")} WHERE channel_id = ?`,
      putInviteCode: `INSERT INTO ${t("invite_codes")} (code, channel_id) VALUES (?, ?)`,
      dropInviteCode: `DELETE FROM ${t("invite_codes")} WHERE code = ?`,
      channelOfCode: `SELECT channel_id FROM ${t("invite_codes")} WHERE code = ?`,
    };
  }

  async getOrCreateDirect(candidate: ChannelRecord, a: Id, b: Id): Promise<ChannelRecord> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    const existing = await this.db.one(this.q.directOf, [lo, hi]);
    if (existing) return this.existingDirect(big(existing.get("channel_id")), lo, hi);

    // The candidate is written, and indexed in both users' lists, before the
    // pair is claimed: whoever loses the claim finds the winner's channel
    // complete, and a creator that dies after claiming leaves it listed (a
    // loser's index rows lead to a channel it removes, which lists skip).
    const c: ChannelRecord = { ...candidate, kind: "direct" };
    const users = lo === hi ? [lo] : [lo, hi];
    let claiming = false;
    let winner: Id | undefined;
    try {
      await this.db.batch(this.createStatements(c, users.map((userId, i) => ({
        channelId: c.channelId, userId, role: "member", joinedAtMs: c.createdAtMs, readSeq: 0n, order: BigInt(i),
      }))), { logged: false });
      await this.index(users, c.channelId, 1n);
      claiming = true;
      winner = await this.claimDirect(lo, hi, c.channelId);
    } catch (e) {
      // Certainly not the pair's channel (its claim never ran, or never
      // applied), yet listed for one user or both: removed, or the retry's
      // candidate showed beside it as a second, empty chat. A claim whose
      // outcome is unknown may have won, and stays. (The delete wins over a
      // candidate batch landing late: that one is written at timestamp 1.)
      if (!claiming || !(e instanceof StorageUnavailable && e.unknownOutcome)) {
        await this.db.write(this.q.deleteChannel, [c.channelId]).catch(() => undefined);
      }
      throw e;
    }
    if (winner === undefined) {
      // Never applied (the serial read settled that): nobody should be left with the candidate.
      await this.db.write(this.q.deleteChannel, [c.channelId]);
      // A claim that timed out with nobody's landed (most often both users' rounds at once): asked again soon, it wins or finds the other's.
      throw new ContendedError("could not open the direct chat now; try again");
    }
    // The same candidate can win twice: a retry after a claim that timed out but was applied.
    if (winner !== c.channelId) {
      await this.db.write(this.q.deleteChannel, [c.channelId]);
      return this.existingDirect(winner, lo, hi);
    }
    return c;
  }

  async hasDirect(a: Id, b: Id): Promise<boolean> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    return (await this.db.one(this.q.directOf, [lo, hi])) !== undefined;
  }

  async directChannelOf(a: Id, b: Id): Promise<Id | undefined> {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    const row = await this.db.one(this.q.directOf, [lo, hi]);
    return row ? big(row.get("channel_id")) : undefined;
  }

  async createGroup(channel: ChannelRecord, members: readonly MemberRecord[]): Promise<void> {
    const unique = new Map<Id, MemberRecord>();
    for (const m of members) if (!unique.has(m.userId)) unique.set(m.userId, m);
    const rows = [...unique.values()].map((m, i) => ({ ...m, channelId: channel.channelId, order: BigInt(i) }));
    // Indexed first: a crash before the channel leaves only rows that readers ignore.
    await this.index([...unique.keys()], channel.channelId, 1n);
    const r = await this.db.batch(this.createStatements(channel, rows, true), { logged: false, conditional: true });
    if (!r.applied) throw new ChatError("already_exists", `channel ${channel.channelId} already exists`);
  }

  async getChannel(channelId: Id): Promise<ChannelRecord | undefined> {
    const r = await this.db.one(this.q.channel, [channelId]);
    return r && r.get("kind") !== null ? toChannel(r, channelId) : undefined;
  }

  async updateTitle(channelId: Id, title: string, check?: MembershipCheck): Promise<boolean> {
    // Through the fence, so the check sees the roles as they are when it lands,
    // and the title it compares is the one the write is conditional on.
    return this.fenced(channelId, (s): Plan<boolean> => {
      check?.(s?.members ?? []);
      // The same title again moves no version: nothing to write, nothing to race.
      if (!s || s.title === title) return { result: false };
      return { result: true, writes: [{ query: this.q.updateTitle, params: [title, channelId] }] };
    });
  }

  async getMember(channelId: Id, userId: Id): Promise<MemberRecord | undefined> {
    const r = await this.db.one(this.q.member, [channelId, userId]);
    return r ? toMember(r, channelId) : undefined;
  }

  async listMembers(channelId: Id): Promise<MemberRecord[]> {
    return inJoinOrder(await this.db.rows(this.q.members, [channelId]), channelId);
  }

  async memberCount(channelId: Id): Promise<number> {
    const r = await this.db.one(this.q.count, [channelId]);
    return (r?.get("member_count") as number | null) ?? 0;
  }

  async getChannels(channelIds: readonly Id[]): Promise<Map<Id, ChannelRecord>> {
    const out = new Map<Id, ChannelRecord>();
    for (const r of await this.rowsIn(this.q.channelsIn, channelIds)) {
      const channelId = big(r.get("channel_id"));
      if (r.get("kind") !== null) out.set(channelId, toChannel(r, channelId));
    }
    return out;
  }

  async memberCounts(channelIds: readonly Id[]): Promise<Map<Id, number>> {
    const out = new Map<Id, number>(channelIds.map((id) => [id, 0]));
    for (const r of await this.rowsIn(this.q.channelsIn, channelIds)) {
      out.set(big(r.get("channel_id")), (r.get("member_count") as number | null) ?? 0);
    }
    return out;
  }

  async listMembersOf(channelIds: readonly Id[]): Promise<Map<Id, MemberRecord[]>> {
    const rows = new Map<Id, Row[]>(channelIds.map((id) => [id, []]));
    for (const r of await this.rowsIn(this.q.membersIn, channelIds)) rows.get(big(r.get("channel_id")))?.push(r);
    return new Map([...rows].map(([id, some]) => [id, inJoinOrder(some, id)]));
  }

  /** The rows of a query `WHERE channel_id IN ?`, for every channel of `channelIds`, a read per IN_PARTITIONS of them. */
  private async rowsIn(query: string, channelIds: readonly Id[]): Promise<Row[]> {
    return (await mapLimit(inParts([...new Set(channelIds)]), FANOUT, (some) => this.db.rows(query, [some]))).flat();
  }

  async addMembers(
    channelId: Id, members: readonly MemberRecord[], maxMembers: number, check?: MembershipCheck, inviteCode?: string,
  ): Promise<Id[]> {
    return this.fenced(channelId, async (s, next): Promise<Plan<Id[]>> => {
      if (!s) throw new ChatError("not_found", `channel ${channelId} not found`);
      check?.(s.members);
      // A join by link: every change of the code moves the version, so the
      // code compared here is still the group's when the batch lands.
      if (inviteCode !== undefined && (await this.codeIn(channelId, s)) !== inviteCode) throw deadInvite();
      const current = new Set(s.members.map((m) => m.userId));
      const fresh = new Map<Id, MemberRecord>();
      for (const m of members) if (!current.has(m.userId) && !fresh.has(m.userId)) fresh.set(m.userId, m);
      if (s.count + fresh.size > maxMembers) {
        throw new ChatError("group_full", `a group has at most ${maxMembers} members (${s.count} now, ${fresh.size} to add)`);
      }
      if (fresh.size === 0) return { result: [] };
      // Read after the state, and every bar or lift moves the version: a
      // removal that barred one of them after the state was read makes this
      // batch lose and plan again, where the bar is found.
      const barred = await this.barredOf(channelId);
      const lifted = [...fresh.keys()].filter((id) => barred.has(id));
      if (inviteCode !== undefined && lifted.length > 0) throw removedByAdmin();
      // Before the batch: if it loses, these stay as ignored strays (or are
      // overwritten by whichever change wins this version).
      await this.index([...fresh.keys()], channelId, next);
      const writes = [...fresh.values()].map((m, i) => this.memberStatement({ ...m, channelId, order: (next << JOIN_SHIFT) | BigInt(i) }));
      if (lifted.length > 0) writes.push({ query: this.q.liftBar, params: [lifted, lifted, channelId] });
      return { result: [...fresh.keys()], count: s.count + fresh.size, writes };
    });
  }

  async removeMember(channelId: Id, userId: Id, check?: MembershipCheck, bar?: boolean): Promise<Removal> {
    const { removal, version } = await this.fenced(channelId, async (s, next): Promise<Plan<{ removal: Removal; version: bigint }>> => {
      const members = s?.members ?? [];
      check?.(members);
      const leaving = members.find((m) => m.userId === userId);
      if (!s || !leaving) return { result: { removal: { removed: false }, version: next } };
      // The heir comes from the members this batch is conditional on: an heir
      // who left meanwhile moved the version, so the batch loses and replans.
      const heir = leaving.role === "owner" ? heirOf(members, userId) : undefined;
      const writes: Statement[] = [{ query: this.q.deleteMember, params: [channelId, userId] }];
      if (heir) writes.push({ query: this.q.setRole, params: ["owner", channelId, heir.userId] });
      // In the batch that removes them: a join planned before it loses to it, one planned after reads the bar.
      // Read after the state, as an add reads the bars: a bar or lift since moved the version.
      if (bar) writes.push(...this.barStatements(channelId, userId, next, await this.barredAtOf(channelId)));
      const removal: Removal = heir ? { removed: true, newOwner: heir.userId } : { removed: true };
      return { result: { removal, version: next }, count: s.count - 1, writes };
    });
    // After the batch: a crash in between leaves an index row readers ignore.
    if (removal.removed) await this.db.write(this.q.unindex, [version, userId, channelId]);
    return removal;
  }

  async isBarred(channelId: Id, userId: Id): Promise<boolean> {
    return (await this.barredOf(channelId)).has(userId);
  }

  async barredAmong(channelId: Id, userIds: readonly Id[]): Promise<Id[]> {
    const barred = await this.barredOf(channelId);
    return userIds.filter((userId) => barred.has(userId));
  }

  /**
   * The writes that bar userId at version `next`, and lift the oldest bars
   * past MAX_BARS (why a cap, and why the oldest: MAX_BARS).
   */
  private barStatements(channelId: Id, userId: Id, next: bigint, barredAt: Map<Id, bigint>): Statement[] {
    const writes: Statement[] = [{ query: this.q.bar, params: [[userId], userId, next, channelId] }];
    const others = [...barredAt].filter(([id]) => id !== userId);
    const over = others.length + 1 - MAX_BARS;
    if (over <= 0) return writes;
    // Oldest first; ties (bars an older build made, with no time) by user id, as SQLite breaks them.
    const oldest = others.sort(([x, a], [y, b]) => (a !== b ? (a < b ? -1 : 1) : x < y ? -1 : 1)).slice(0, over).map(([id]) => id);
    writes.push({ query: this.q.liftBar, params: [oldest, oldest, channelId] });
    return writes;
  }

  /** Those barred from the group's link, each with when (-1: barred by an older build, which kept no time). */
  private async barredAtOf(channelId: Id): Promise<Map<Id, bigint>> {
    const row = await this.db.one(this.q.barredAt, [channelId]);
    const ids = (row?.get("barred") as unknown[] | null | undefined) ?? [];
    // The driver gives a map as an object keyed by the ids' strings (or a Map, if so configured).
    const column = row?.get("barred_at") as Map<unknown, unknown> | Record<string, unknown> | null | undefined;
    const at = new Map<Id, bigint>(
      (column instanceof Map ? [...column.entries()] : Object.entries(column ?? {})).map(([k, v]) => [BigInt(k as string | bigint), big(v)]),
    );
    return new Map(ids.map((id) => [big(id), at.get(big(id)) ?? -1n]));
  }

  /** Those barred from the group's link (as the static `barred` holds them; null is nobody). */
  private async barredOf(channelId: Id): Promise<Set<Id>> {
    const row = await this.db.one(this.q.barred, [channelId]);
    const ids = (row?.get("barred") as unknown[] | null | undefined) ?? [];
    return new Set(ids.map(big));
  }

  async setRole(channelId: Id, userId: Id, role: Exclude<MemberRole, "owner">, check?: MembershipCheck): Promise<boolean> {
    if ((role as MemberRole) === "owner") throw ownerRoleFixed();
    // Through the fence as well, so that a removal checked against this
    // member's old role and this change cannot both land.
    return this.fenced(channelId, (s): Plan<boolean> => {
      const members = s?.members ?? [];
      check?.(members);
      const target = members.find((m) => m.userId === userId);
      if (!s || !target) return { result: false };
      if (target.role === "owner") throw ownerRoleFixed();
      if (target.role === role) return { result: false };
      return { result: true, writes: [{ query: this.q.setRole, params: [role, channelId, userId] }] };
    });
  }

  async changeInTurn<T>(channelId: Id, work: () => Promise<T>): Promise<T> {
    if (this.turns.holds(channelId)) return work();
    return this.turns.run(channelId, async () => {
      const holder = randomUUID();
      try {
        await this.takeTurn(channelId, holder);
      } catch (e) {
        // A take that timed out may have landed: given back (only if this
        // holder's), or every change of the channel waited out its lease.
        if (e instanceof StorageUnavailable && e.unknownOutcome) await this.db.lwt(this.q.giveTurn, [channelId, holder]).catch(() => undefined);
        throw e;
      }
      const until = Date.now() + TURN_HOLD_LEASES * this.turnTtlS * 1000;
      // Renewed well before it runs out; a renewal lost (Cassandra away) leaves it to run out by its TTL.
      const keep = setInterval(() => {
        if (Date.now() > until) return clearInterval(keep);
        this.db.lwt(this.q.keepTurn, [this.turnTtlS, holder, channelId, holder]).catch(() => undefined);
      }, (this.turnTtlS * 1000) / 3);
      try {
        return await work();
      } finally {
        clearInterval(keep);
        // Not given back (Cassandra away): it runs out by its TTL.
        await this.db.lwt(this.q.giveTurn, [channelId, holder]).catch(() => undefined);
      }
    });
  }

  /** Takes the channel's lease for `holder`, waiting while another process holds it. */
  private async takeTurn(channelId: Id, holder: string): Promise<void> {
    const deadline = Date.now() + TURN_WAIT_LEASES * this.turnTtlS * 1000;
    for (let attempt = 0; ; attempt++) {
      const r = await this.db.lwt(this.q.takeTurn, [channelId, holder, this.turnTtlS]);
      // Held by this very holder: an earlier attempt that timed out had landed.
      if (r.applied || r.row.get("holder") === holder) return;
      // Soon: the change asked again waits for the turn here once more, and takes it as it comes free.
      if (Date.now() > deadline) throw new ContendedError(`channel ${channelId}: another change of the group held it too long; try again`);
      await sleep(Math.min(50, 2 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }

  async advanceReadSeq(channelId: Id, userId: Id, seq: bigint): Promise<ReadAdvance> {
    // The newest seq only grows, so capping at one read a moment ago is safe.
    const newest = (await this.log.latest([channelId])).get(channelId);
    const top = newest?.seq ?? 0n;
    const to = seq < top ? seq : top;
    // One LWT: moves forward only, creates no row for a non-member, and when
    // not applied returns the current position.
    const r = await this.db.lwt(this.q.advanceRead, [to, channelId, userId, to]);
    if (r.applied) return { readSeq: to, newest };
    const now = r.row.get("read_seq") as bigint | null | undefined;
    if (now === null || now === undefined) {
      throw new ChatError("not_a_member", `user ${userId} is not a member of channel ${channelId}`);
    }
    return { readSeq: now, newest };
  }

  async clearHistory(channelId: Id, userId: Id, seq: bigint): Promise<bigint> {
    const newest = (await this.log.latest([channelId])).get(channelId)?.seq ?? 0n;
    const to = seq < newest ? seq : newest;
    // Compare-and-set on the position read (null before the first clear), so
    // two devices clearing at once never move it back.
    for (let attempt = 0; attempt < CLEAR_ATTEMPTS; attempt++) {
      const member = await this.getMember(channelId, userId);
      if (!member) throw new ChatError("not_a_member", `user ${userId} is not a member of channel ${channelId}`);
      const now = member.clearedSeq;
      if (to <= (now ?? 0n)) return now ?? 0n;
      const r = await this.db.lwt(this.q.clearThrough, [to, channelId, userId, now ?? null]);
      if (r.applied) return to;
    }
    throw new ContendedError(`clearing the history of channel ${channelId} kept racing; try again`);
  }

  async markJoined(channelId: Id, userIds: readonly Id[], seq: bigint): Promise<void> {
    // Not applied for one out of the channel, or whose join point is past it already (a retried batch).
    // All the joiners' rows are in the channel's one partition, so a conditional batch of them is
    // one Paxos round: one by one, an add of 100 took 100 rounds (a quarter of a second) inside
    // the Sequencer's batch, and side by side they contend for that round (an add of 100 timing out).
    for (const some of inParts([...new Set(userIds)], JOIN_BATCH)) {
      let behind = some;
      for (let attempt = 0; attempt < JOIN_BATCH_ATTEMPTS && behind.length > 1; attempt++) {
        const r = await this.db.batch(behind.map((userId) => ({ query: this.q.markJoined, params: [seq, channelId, userId, seq] })),
          { logged: false, conditional: true });
        if (r.applied) {
          behind = [];
          break;
        }
        // The whole batch is refused when one condition fails: again with those that are still
        // members behind the note. The read is a hint only, the conditions decide; a member
        // removed after it fails the next batch, and past the attempts each goes on its own.
        const rows = await this.db.rows(this.q.joinPoints, [channelId, behind]);
        // A null join point fails the condition as Cassandra sees it (no order with null).
        const still = new Set(rows
          .filter((row) => row.get("joined_seq") != null && big(row.get("joined_seq")) < seq)
          .map((row) => big(row.get("user_id"))));
        behind = behind.filter((userId) => still.has(userId));
      }
      for (const userId of behind) await this.db.lwt(this.q.markJoined, [seq, channelId, userId, seq]);
    }
  }

  async listMemberships(userId: Id): Promise<MemberRecord[]> {
    const ids = (await this.db.rows(this.q.memberships, [userId])).map((r) => big(r.get("channel_id")));
    // The member rows of IN_PARTITIONS channels per read: a read per channel
    // made a user in hundreds of chats cost hundreds of reads per list.
    const parts = await mapLimit(inParts(ids), FANOUT, async (some) =>
      (await this.db.rows(this.q.memberIn, [some, userId])).map((r) => toMember(r, big(r.get("channel_id")))));
    return parts
      .flat()
      .sort((x, y) => x.joinedAtMs - y.joinedAtMs || cmp(x.channelId, y.channelId));
  }

  async inGroupsAtLeast(userIds: readonly Id[], n: number): Promise<Id[]> {
    const users = [...new Set(userIds)];
    const listed = new Map<Id, Id[]>(users.map((u) => [u, []]));
    // Every user's index in one read: an add of many users cost a read per user.
    for (const some of inParts(users)) {
      for (const r of await this.db.rows(this.q.membershipsOf, [some])) listed.get(big(r.get("user_id")))?.push(big(r.get("channel_id")));
    }
    // The index never lists fewer channels than the user is in: below n, no need to look closer.
    const near = users.filter((u) => listed.get(u)!.length >= n);
    const past = await mapLimit(near, FANOUT, async (u) => ((await this.groupsAmong(u, listed.get(u)!)) >= n ? [u] : []));
    return past.flat();
  }

  /**
   * How many of the channels the index lists for the user are groups they
   * are a member of: its rows may name channels left or never joined. Each
   * member row carries the kind (static), so a read per IN_PARTITIONS of
   * them, not two per channel.
   */
  private async groupsAmong(userId: Id, channelIds: readonly Id[]): Promise<number> {
    const counts = await mapLimit(inParts(channelIds), FANOUT, async (some) =>
      (await this.db.rows(this.q.kindsAsMember, [some, userId])).filter((r) => r.get("kind") === "group").length);
    return counts.reduce((a, b) => a + b, 0);
  }

  async setMute(userId: Id, channelId: Id, untilMs: number | undefined): Promise<void> {
    // Plain writes: only the user mutes their own channels, so the last write wins.
    if (untilMs !== undefined) return void (await this.db.write(this.q.putMute, [userId, channelId, msCell(untilMs)]));
    // Deleted only when there: every leave unmutes, and a delete of nothing is still a tombstone,
    // read past by every listMutes of the user's partition. A mute that lands after this read is
    // the later write either way; a leave's own racing mute is forgotten by the mute's membership
    // check after its write (api requireStillMember), which reads it.
    if (await this.db.one(this.q.mute, [userId, channelId])) await this.db.write(this.q.deleteMute, [userId, channelId]);
  }

  async listMutes(userId: Id): Promise<Map<Id, number>> {
    const rows = await this.db.rows(this.q.mutes, [userId]);
    return new Map(rows.map((r) => [big(r.get("channel_id")), ms(r.get("until_ms"))]));
  }

  async changePlace(userId: Id, channelId: Id, change: PlaceChange): Promise<void> {
    // Plain writes, as mutes: only the user places their own channels. An
    // UPDATE of the named columns alone, so another device's change of
    // another setting stays (each cell keeps its newest write); the columns
    // of one change share a write time, so of two changes naming the same
    // settings the later wins whole. Nulls are tombstones, on a row rarely
    // written; an UPDATE writes no row marker, so a row left all null is gone.
    const named = PLACE_COLUMNS.filter(([setting]) => change[setting] !== undefined);
    if (named.length === PLACE_COLUMNS.length && named.every(([setting]) => change[setting] === null)) {
      // Only when there, as a mute's (setMute): every leave clears the place.
      if (await this.db.one(this.q.place, [userId, channelId])) await this.db.write(this.q.deletePlace, [userId, channelId]);
      return;
    }
    if (named.length === 0) return;
    const sets = named.map(([, column]) => `${column} = ?`).join(", ");
    const values = named.map(([setting]) => (change[setting] == null ? null : msCell(change[setting])));
    await this.db.write(`UPDATE ${this.db.t("channel_places")} SET ${sets} WHERE user_id = ? AND channel_id = ?`, [...values, userId, channelId]);
  }

  async setInviteCode(channelId: Id, code: string | undefined, check?: MembershipCheck): Promise<void> {
    // The code's row first: it leads nowhere until the group names it, and
    // the old code stops at that same write, a batch through the fence (the
    // check sees the roles as it lands). The old code's row is then dropped,
    // best effort: a row left behind leads nowhere (channelOfInvite).
    if (code !== undefined) await this.db.write(this.q.putInviteCode, [code, channelId]);
    let old: string | undefined;
    try {
      old = await this.fenced(channelId, async (s): Promise<Plan<string | undefined>> => {
        if (!s) {
          if (code === undefined) return { result: undefined };
          throw new ChatError("not_found", `channel ${channelId} not found`);
        }
        check?.(s.members);
        return { result: await this.codeIn(channelId, s), writes: [{ query: this.q.setCode, params: [code ?? NO_CODE, channelId] }] };
      });
    } catch (e) {
      if (code !== undefined && neverNamed(e)) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
      throw e;
    }
    await this.keepLegacyInStep(channelId, code);
    if (old !== undefined && old !== code) await this.db.write(this.q.dropInviteCode, [old]).catch(() => undefined);
  }

  async claimInviteCode(channelId: Id, code: string, check?: MembershipCheck): Promise<string> {
    let wrote = false;
    let got: string;
    try {
      got = await this.fenced(channelId, async (s): Promise<Plan<string>> => {
        if (!s) throw new ChatError("not_found", `channel ${channelId} not found`);
        check?.(s.members);
        // The code and the roles come from one read: a caller removed before
        // a reset never learns the new code. Nothing to write then.
        if (s.inviteCode !== null && s.inviteCode !== NO_CODE) return { result: s.inviteCode };
        // None yet, or one named only in channel_invites (before schema 8),
        // which is carried over: either way through the fence, so a reset or
        // a claim landing meanwhile makes this batch lose and plan again.
        const claimed = (s.inviteCode === null ? await this.legacyCodeOf(channelId) : undefined) ?? code;
        if (claimed === code && !wrote) {
          await this.db.write(this.q.putInviteCode, [code, channelId]);
          wrote = true;
        }
        return { result: claimed, writes: [{ query: this.q.setCode, params: [claimed, channelId] }] };
      });
    } catch (e) {
      if (wrote && neverNamed(e)) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
      throw e;
    }
    // Another manager's claim won: this one's code leads nowhere.
    if (wrote && got !== code) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
    if (got === code) await this.keepLegacyInStep(channelId, code);
    return got;
  }

  async inviteCodeOf(channelId: Id): Promise<string | undefined> {
    const row = await this.db.one(this.q.code, [channelId]);
    const held = row?.get("invite_code") as string | null | undefined;
    if (held !== null && held !== undefined) return held === NO_CODE ? undefined : held;
    return this.legacyCodeOf(channelId);
  }

  async channelOfInvite(code: string): Promise<Id | undefined> {
    const [row] = await this.db.rows(this.q.channelOfCode, [code]);
    if (!row) return undefined;
    const channelId = big(row.get("channel_id"));
    return (await this.inviteCodeOf(channelId)) === code ? channelId : undefined;
  }

  async listPlaces(userId: Id): Promise<Map<Id, ChannelPlace>> {
    const rows = await this.db.rows(this.q.places, [userId]);
    const places = new Map<Id, ChannelPlace>();
    for (const r of rows) {
      const place: ChannelPlace = {};
      for (const [setting, column] of PLACE_COLUMNS) {
        const at = r.get(column);
        if (at != null) place[setting] = ms(at);
      }
      // A row written whole before changes named their columns keeps its row marker when every setting is cleared.
      if (Object.keys(place).length > 0) places.set(big(r.get("channel_id")), place);
    }
    return places;
  }

  /**
   * The group's invite code in a state read through the fence: its
   * invite_code, or, for a group none of whose codes was written since
   * schema 8 (null), the one channel_invites names. Every change of the
   * code since writes invite_code and moves the version, so a batch planned
   * on what this returns loses if the code changed after the state was read.
   */
  private async codeIn(channelId: Id, s: State): Promise<string | undefined> {
    if (s.inviteCode !== null) return s.inviteCode === NO_CODE ? undefined : s.inviteCode;
    return this.legacyCodeOf(channelId);
  }

  private async legacyCodeOf(channelId: Id): Promise<string | undefined> {
    const [row] = await this.db.rows(this.q.inviteOf, [channelId]);
    return (row?.get("code") as string | null | undefined) ?? undefined;
  }

  /**
   * channel_invites after the code changed, for processes of a build before
   * schema 8 still running during an upgrade (this build reads it only
   * where invite_code was never written). Best effort, and two changes at
   * once may land there in either order: the code in `channels` is the one
   * that counts.
   */
  private async keepLegacyInStep(channelId: Id, code: string | undefined): Promise<void> {
    const write = code === undefined
      ? this.db.write(this.q.dropInviteOf, [channelId])
      : this.db.write(this.q.putInviteOf, [channelId, code]);
    await write.catch(() => undefined);
  }

  /**
   * Claims the pair for `channelId`; the pair's channel, or undefined when the
   * claim did not apply and nobody else's did. A claim that timed out may or
   * may not have applied: a serial read of the pair settles it (it finishes
   * or outbids a round still under way), so a candidate that lost is
   * deleted rather than left in both users' lists as a second, empty chat.
   */
  private async claimDirect(lo: Id, hi: Id, channelId: Id): Promise<Id | undefined> {
    try {
      const claim = await this.db.lwt(this.q.claimDirect, [lo, hi, channelId]);
      return claim.applied ? channelId : big(claim.row.get("channel_id"));
    } catch (err) {
      if (!(err instanceof StorageUnavailable && err.unknownOutcome)) throw err;
      const pair = await this.db.serialOne(this.q.directOf, [lo, hi]).catch(() => {
        throw err;
      });
      return pair ? big(pair.get("channel_id")) : undefined;
    }
  }

  private async existingDirect(channelId: Id, lo: Id, hi: Id): Promise<ChannelRecord> {
    // Re-indexing at version 1 repairs a creator that died before indexing;
    // any later membership change has a higher version and still wins.
    const [c] = await Promise.all([this.getChannel(channelId), this.index(lo === hi ? [lo] : [lo, hi], channelId, 1n)]);
    if (!c) throw new ChatError("internal", `direct channel ${channelId} of ${lo}/${hi} is missing`);
    return c;
  }

  /**
   * Plans a change on the channel's current state and writes it as one batch
   * conditional on that state's version (moving it to version + 1); a batch
   * that lost to another change re-reads and plans again. `plan` gets
   * undefined for a missing channel, and the version the batch would write.
   */
  private async fenced<T>(channelId: Id, plan: (s: State | undefined, next: bigint) => Plan<T> | Promise<Plan<T>>): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (attempt >= 3) await sleep(Math.random() * Math.min(100, 5 * 2 ** attempt));
      const s = await this.state(channelId);
      const p = await plan(s, (s?.version ?? 0n) + 1n);
      if (!s || !p.writes) return p.result;
      const r = await this.db.batch([
        { query: this.q.bump, params: [s.version + 1n, p.count ?? s.count, channelId, s.version] },
        ...p.writes,
      ], { logged: false, conditional: true });
      if (r.applied) return p.result;
    }
    throw new ContendedError(`channel ${channelId}: membership stayed contended, try again`);
  }

  /**
   * A plain LOCAL_QUORUM read is enough: the batch CAS re-checks the version
   * (every change to members and roles moves it), and a lost CAS leaves the
   * winner committed, so the retry's read sees it.
   */
  private async state(channelId: Id): Promise<State | undefined> {
    const rows = await this.db.rows(this.q.state, [channelId]);
    const first = rows[0];
    if (!first || first.get("kind") === null) return undefined;
    return {
      version: big(first.get("version")),
      count: (first.get("member_count") as number | null) ?? 0,
      members: inJoinOrder(rows, channelId),
      inviteCode: (first.get("invite_code") as string | null | undefined) ?? null,
      title: (first.get("title") as string | null | undefined) ?? "",
    };
  }

  private createStatements(c: ChannelRecord, rows: (MemberRecord & { order: bigint })[], conditional = false): Statement[] {
    const meta = [c.channelId, c.kind, c.title, msCell(c.createdAtMs), c.createdBy, rows.length, 1n];
    return [
      { query: conditional ? this.q.insertMeta : this.q.insertMetaPlain, params: meta },
      ...rows.map((m) => {
        const st = this.memberStatement({ ...m, order: (1n << JOIN_SHIFT) | m.order });
        return conditional ? st : { ...st, query: this.q.insertMemberPlain };
      }),
    ];
  }

  private memberStatement(m: MemberRecord & { order: bigint }): Statement {
    return { query: this.q.insertMember, params: [m.channelId, m.userId, m.role, msCell(m.joinedAtMs), m.readSeq, m.order, m.joinedSeq ?? 0n] };
  }

  private async index(users: Id[], channelId: Id, version: bigint): Promise<void> {
    await Promise.all(users.map((u) => this.db.write(this.q.index, [u, channelId, version])));
  }
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** The member rows of a channel partition (a static-only row has no user_id), in join order. */
function inJoinOrder(rows: Row[], channelId: Id): MemberRecord[] {
  const present = rows.filter((r) => r.get("user_id") !== null);
  const order = new Map(present.map((r) => [big(r.get("user_id")), big(r.get("join_order"))]));
  return present
    .map((r) => toMember(r, channelId))
    .sort((x, y) => x.joinedAtMs - y.joinedAtMs || cmp(order.get(x.userId)!, order.get(y.userId)!));
}

/**
 * Whether a failed change of the invite code certainly named no new code:
 * refused (a check, a missing channel), every batch lost, or a request that
 * certainly did nothing. A timed-out batch may have landed (or land later),
 * so its code's row is kept then.
 */
const neverNamed = (e: unknown) => e instanceof ChatError && !(e instanceof StorageUnavailable && e.unknownOutcome);

const ownerRoleFixed = () =>
  new ChatError("invalid_argument", "ownership is neither given nor taken by a role change; it passes when the owner leaves");

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
