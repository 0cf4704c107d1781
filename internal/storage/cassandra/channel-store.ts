import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { deadInvite, heirOf, removedByAdmin, type ChannelStore, type MembershipCheck, type ReadAdvance, type Removal } from "../../channels/store.js";
import { ChannelTurns } from "../../channels/turns.js";
import type { MessageLog } from "../../messages/log.js";
import { ChatError, ContendedError } from "../../model/errors.js";
import type { ChannelPlace, ChannelRecord, Id, MemberRecord, MemberRole, PlaceChange } from "../../model/types.js";
import { ChannelFence, type Plan } from "./channel-fence.js";
import { channelQueries, type ChannelQueries } from "./channel-queries.js";
import { compareBigints, inJoinOrder, toChannel, toMember } from "./channel-rows.js";
import { DirectChannels } from "./direct-channels.js";
import { InviteCodes } from "./invite-codes.js";
import { LinkBars } from "./link-bars.js";
import { big, FANOUT, inParts, mapLimit, msCell, StorageUnavailable, type Db, type Row, type Statement } from "./session.js";
import { UserChannelSettings } from "./user-channel-settings.js";

/** Compare-and-set rounds of clearHistory before it gives up: only the member's own devices race it. */
const CLEAR_ATTEMPTS = 5;

// join_order = version << 20 | position in the call: keeps insertion order
// among members with the same joined_at_ms.
const JOIN_SHIFT = 20n;
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
  private readonly q: ChannelQueries;
  private readonly fence: ChannelFence;
  private readonly direct: DirectChannels;
  private readonly invites: InviteCodes;
  private readonly settings: UserChannelSettings;
  private readonly bars: LinkBars;
  /** This process's turns, in line before the lease: its own changes of a channel wait here rather than race for it. */
  private readonly turns = new ChannelTurns();

  /** `log` is the channels' message log, whose newest message bounds read positions; `turnTtlS` a turn's lease (shorter only in tests, to wait less). */
  constructor(
    private readonly db: Db,
    private readonly log: Pick<MessageLog, "latest">,
    private readonly turnTtlS = CHANNEL_TURN_TTL_S,
  ) {
    this.q = channelQueries(db);
    this.fence = new ChannelFence(db, this.q);
    this.direct = new DirectChannels(db, this.q, {
      createStatements: (c, rows) => this.createStatements(c, rows),
      index: (users, channelId, version) => this.index(users, channelId, version),
      getChannel: (channelId) => this.getChannel(channelId),
    });
    this.invites = new InviteCodes(db, this.q, this.fence);
    this.settings = new UserChannelSettings(db, this.q);
    this.bars = new LinkBars(db, this.q);
  }

  getOrCreateDirect(candidate: ChannelRecord, a: Id, b: Id): Promise<ChannelRecord> {
    return this.direct.getOrCreateDirect(candidate, a, b);
  }

  hasDirect(a: Id, b: Id): Promise<boolean> {
    return this.direct.hasDirect(a, b);
  }

  directChannelOf(a: Id, b: Id): Promise<Id | undefined> {
    return this.direct.directChannelOf(a, b);
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
    return this.fence.fenced(channelId, (s): Plan<boolean> => {
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
    return this.fence.fenced(channelId, async (s, next): Promise<Plan<Id[]>> => {
      if (!s) throw new ChatError("not_found", `channel ${channelId} not found`);
      check?.(s.members);
      // A join by link: every change of the code moves the version, so the
      // code compared here is still the group's when the batch lands.
      if (inviteCode !== undefined && (await this.invites.codeIn(channelId, s)) !== inviteCode) throw deadInvite();
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
      const barred = await this.bars.barredOf(channelId);
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
    const { removal, version } = await this.fence.fenced(channelId, async (s, next): Promise<Plan<{ removal: Removal; version: bigint }>> => {
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
      if (bar) writes.push(...this.bars.barStatements(channelId, userId, next, await this.bars.barredAtOf(channelId)));
      const removal: Removal = heir ? { removed: true, newOwner: heir.userId } : { removed: true };
      return { result: { removal, version: next }, count: s.count - 1, writes };
    });
    // After the batch: a crash in between leaves an index row readers ignore.
    if (removal.removed) await this.db.write(this.q.unindex, [version, userId, channelId]);
    return removal;
  }

  isBarred(channelId: Id, userId: Id): Promise<boolean> {
    return this.bars.isBarred(channelId, userId);
  }

  barredAmong(channelId: Id, userIds: readonly Id[]): Promise<Id[]> {
    return this.bars.barredAmong(channelId, userIds);
  }

  async setRole(channelId: Id, userId: Id, role: Exclude<MemberRole, "owner">, check?: MembershipCheck): Promise<boolean> {
    if ((role as MemberRole) === "owner") throw ownerRoleFixed();
    // Through the fence as well, so that a removal checked against this
    // member's old role and this change cannot both land.
    return this.fence.fenced(channelId, (s): Plan<boolean> => {
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
      .sort((x, y) => x.joinedAtMs - y.joinedAtMs || compareBigints(x.channelId, y.channelId));
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

  setMute(userId: Id, channelId: Id, untilMs: number | undefined): Promise<void> {
    return this.settings.setMute(userId, channelId, untilMs);
  }

  listMutes(userId: Id): Promise<Map<Id, number>> {
    return this.settings.listMutes(userId);
  }

  changePlace(userId: Id, channelId: Id, change: PlaceChange): Promise<void> {
    return this.settings.changePlace(userId, channelId, change);
  }

  listPlaces(userId: Id): Promise<Map<Id, ChannelPlace>> {
    return this.settings.listPlaces(userId);
  }

  setInviteCode(channelId: Id, code: string | undefined, check?: MembershipCheck): Promise<void> {
    return this.invites.setInviteCode(channelId, code, check);
  }

  claimInviteCode(channelId: Id, code: string, check?: MembershipCheck): Promise<string> {
    return this.invites.claimInviteCode(channelId, code, check);
  }

  inviteCodeOf(channelId: Id): Promise<string | undefined> {
    return this.invites.inviteCodeOf(channelId);
  }

  channelOfInvite(code: string): Promise<Id | undefined> {
    return this.invites.channelOfInvite(code);
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

const ownerRoleFixed = () =>
  new ChatError("invalid_argument", "ownership is neither given nor taken by a role change; it passes when the owner leaves");
