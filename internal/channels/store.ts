import type { ChannelRecord, Id, MemberRecord, MemberRole } from "../model/types.js";

/**
 * ChannelStore keeps channels and their membership. Adapters: sqlite
 * (embedded), cassandra (distributed).
 */
export interface ChannelStore {
  /**
   * Creates the direct channel of a pair unless one exists; returns the
   * channel of the pair either way (two concurrent first messages meet in one
   * channel).
   */
  getOrCreateDirect(candidate: ChannelRecord, a: Id, b: Id): Promise<ChannelRecord>;
  /** Creates a group with its first members (the creator as owner among them). */
  createGroup(channel: ChannelRecord, members: readonly MemberRecord[]): Promise<void>;
  getChannel(channelId: Id): Promise<ChannelRecord | undefined>;
  updateTitle(channelId: Id, title: string): Promise<void>;

  getMember(channelId: Id, userId: Id): Promise<MemberRecord | undefined>;
  /** In join order. */
  listMembers(channelId: Id): Promise<MemberRecord[]>;
  memberCount(channelId: Id): Promise<number>;
  /**
   * Adds members not already in; atomically refuses with
   * ChatError("group_full") when the channel would exceed maxMembers.
   * Returns the users actually added.
   */
  addMembers(channelId: Id, members: readonly MemberRecord[], maxMembers: number): Promise<Id[]>;
  /** Returns false when the user was not a member. */
  removeMember(channelId: Id, userId: Id): Promise<boolean>;
  setRole(channelId: Id, userId: Id, role: MemberRole): Promise<void>;
  /** Moves the read position forward only; returns the position after the call. */
  advanceReadSeq(channelId: Id, userId: Id, seq: bigint): Promise<bigint>;

  /** The user's memberships (one row per channel). */
  listMemberships(userId: Id): Promise<MemberRecord[]>;
}
