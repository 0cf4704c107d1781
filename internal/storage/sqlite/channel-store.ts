import type { ChannelStore } from "../../channels/store.js";
import { ChatError } from "../../model/errors.js";
import type { ChannelKind, ChannelRecord, Id, MemberRecord, MemberRole } from "../../model/types.js";
import { prepare, translateError, type SqliteDatabase } from "./database.js";

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
    insertMember: p(`INSERT OR IGNORE INTO channel_members (channel_id, user_id, role, joined_at_ms, read_seq)
                     VALUES (?, ?, ?, ?, ?)`),
    member: p("SELECT * FROM channel_members WHERE channel_id = ? AND user_id = ?"),
    members: p("SELECT * FROM channel_members WHERE channel_id = ? ORDER BY joined_at_ms, rowid"),
    count: p("SELECT count(*) AS n FROM channel_members WHERE channel_id = ?"),
    removeMember: p("DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?"),
    setRole: p("UPDATE channel_members SET role = ? WHERE channel_id = ? AND user_id = ?"),
    advanceRead: p(`UPDATE channel_members SET read_seq = max(read_seq, ?)
                    WHERE channel_id = ? AND user_id = ? RETURNING read_seq`),
    memberships: p("SELECT * FROM channel_members WHERE user_id = ? ORDER BY joined_at_ms, rowid"),
  };
  const addMember = (m: MemberRecord): boolean =>
    s.insertMember.run(m.channelId, m.userId, m.role, m.joinedAtMs, m.readSeq).changes > 0;

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
  const addMembersTx = db.transaction((channelId: Id, members: readonly MemberRecord[], max: number): Id[] => {
    if (!s.channel.get(channelId)) throw new ChatError("not_found", `channel ${channelId} not found`);
    const fresh = new Map<Id, MemberRecord>();
    for (const m of members) {
      if (!fresh.has(m.userId) && !s.member.get(channelId, m.userId)) fresh.set(m.userId, m);
    }
    const count = Number((s.count.get(channelId) as Row).n);
    if (count + fresh.size > max) {
      throw new ChatError("group_full", `a group has at most ${max} members (${count} now, ${fresh.size} to add)`);
    }
    for (const m of fresh.values()) addMember({ ...m, channelId });
    return [...fresh.keys()];
  });
  return { ...s, directTx, groupTx, addMembersTx };
}

export class SqliteChannelStore implements ChannelStore {
  private readonly s: ReturnType<typeof build>;

  /** Prepares every statement once; share one Database between all stores. */
  constructor(db: SqliteDatabase) {
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

  async updateTitle(channelId: Id, title: string): Promise<void> {
    this.s.updateTitle.run(title, channelId);
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

  async addMembers(channelId: Id, members: readonly MemberRecord[], maxMembers: number): Promise<Id[]> {
    return this.s.addMembersTx.immediate(channelId, members, maxMembers);
  }

  async removeMember(channelId: Id, userId: Id): Promise<boolean> {
    return this.s.removeMember.run(channelId, userId).changes > 0;
  }

  async setRole(channelId: Id, userId: Id, role: MemberRole): Promise<void> {
    this.s.setRole.run(role, channelId, userId);
  }

  async advanceReadSeq(channelId: Id, userId: Id, seq: bigint): Promise<bigint> {
    const r = this.s.advanceRead.get(seq, channelId, userId) as Row | undefined;
    if (!r) throw new ChatError("not_a_member", `user ${userId} is not a member of channel ${channelId}`);
    return r.read_seq as bigint;
  }

  async listMemberships(userId: Id): Promise<MemberRecord[]> {
    return (this.s.memberships.all(userId) as Row[]).map(toMember);
  }
}
