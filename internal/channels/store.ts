import { ChatError } from "../model/errors.js";
import type { ChannelPlace, ChannelRecord, Id, MemberRecord, MemberRole, PlaceChange, StoredMessage } from "../model/types.js";

/**
 * A rule a membership change must pass, run on the channel's members (in join
 * order) as the change finds them: inside its transaction, or on the state its
 * conditional write depends on. A role checked on an earlier read could have
 * changed by the time of the write (a just-demoted admin removing someone).
 * Throws (a ChatError) to refuse; then nothing changes. Must be synchronous
 * and may run more than once (a conditional write that lost a race retries).
 */
export type MembershipCheck = (members: readonly MemberRecord[]) => void;

export interface Removal {
  /** False when the user was not a member; nothing changed then. */
  removed: boolean;
  /** Set when the removed user owned the group and others stay: who owns it now. */
  newOwner?: Id;
}

/**
 * The refusal of an invite code that does not lead into its group (reset,
 * revoked, never made, or the group everyone has left), told the same way
 * wherever it is found out: by the api's lookup or by the store as the join
 * is written.
 */
export function deadInvite(): ChatError {
  return new ChatError("not_found", "this invite link does not work: it was reset or revoked, or never was one");
}

/**
 * The refusal of a join by invite link of one whom an admin or the owner
 * removed and nobody has added back since (ChannelStore.removeMember with
 * `bar`): the link is for newcomers and those who left by themselves, not a
 * way around a removal.
 */
export function removedByAdmin(): ChatError {
  return new ChatError(
    "permission_denied",
    "an admin removed you from this group: the invite link does not let you back in; an admin must add you back",
  );
}

/**
 * Bars a group keeps at most (ChannelStore.removeMember); a bar past it drops
 * the group's oldest. Without a bound, a group whose admins remove people for
 * years grows one record (Cassandra: one static cell of its partition, read
 * by every join and removal) without end. Dropping the oldest rather than
 * refusing: a removal must always work (an admin taking a spammer out), and
 * its bar is the one that matters most, as the one just removed is the
 * likeliest to try the link again; one removed a thousand removals ago is
 * taken out again if they come back. Signal caps its banned members the same
 * way (the oldest unbanned past the group's size).
 */
export const MAX_BARS = 1_000;

/**
 * Who inherits a group when its owner goes: the longest-standing admin, else
 * the longest-standing member (members in join order).
 */
export function heirOf(members: readonly MemberRecord[], leaving: Id): MemberRecord | undefined {
  const others = members.filter((m) => m.userId !== leaving);
  return others.find((m) => m.role === "admin") ?? others[0];
}

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
  /** Whether the pair has its direct channel: opening it again starts nothing new (the daily quota of new ones). */
  hasDirect(a: Id, b: Id): Promise<boolean>;
  /**
   * The pair's direct channel, the one its claim names (undefined before it
   * has one). On Cassandra a candidate's rows are readable before its claim,
   * and a candidate that lost the race, or whose creator died before deleting
   * it, can be read as a direct channel of the pair without being this one.
   */
  directChannelOf(a: Id, b: Id): Promise<Id | undefined>;
  /** Creates a group with its first members (the creator as owner among them). */
  createGroup(channel: ChannelRecord, members: readonly MemberRecord[]): Promise<void>;
  getChannel(channelId: Id): Promise<ChannelRecord | undefined>;
  /**
   * Changes the title of an existing channel, after `check` passes; returns
   * whether it changed, compared as it lands (false for the title it already
   * has, which writes nothing, or for a channel that does not exist), so a
   * rename to the same title tells no member of a change.
   */
  updateTitle(channelId: Id, title: string, check?: MembershipCheck): Promise<boolean>;

  getMember(channelId: Id, userId: Id): Promise<MemberRecord | undefined>;
  /** In join order. */
  listMembers(channelId: Id): Promise<MemberRecord[]>;
  memberCount(channelId: Id): Promise<number>;
  /**
   * Adds members not already in, after `check` passes; atomically refuses
   * with ChatError("group_full") when the channel would exceed maxMembers.
   * Returns the users actually added. With `inviteCode` (a join by invite
   * link), adds only while that is the group's invite code, compared in the
   * same atomic step as the add: a code reset or revoked since the caller
   * looked it up adds nobody (deadInvite()); and one barred from the link
   * (see removeMember) is refused with removedByAdmin(), in that same step.
   * Without `inviteCode` (added by a manager), the bar of those it adds is
   * lifted in the step that adds them.
   */
  addMembers(
    channelId: Id, members: readonly MemberRecord[], maxMembers: number, check?: MembershipCheck, inviteCode?: string,
  ): Promise<Id[]>;
  /**
   * Removes a member, after `check` passes. Removing the owner passes
   * ownership to heirOf(the members the removal is made on) in the same
   * atomic step, so a group with members always has exactly one owner, even
   * when the owner and the heir leave at the same time. With `bar` (removed
   * by someone else, not leaving), the same step bars them from joining by
   * the invite link until addMembers adds them back; a removal that removes
   * nobody bars nobody. A join by link and this removal are ordered by the
   * adapter's atomic step (a transaction, a fenced batch): a join landing
   * first is undone by the removal, one landing after finds the bar. A group
   * keeps MAX_BARS bars: the bar that would pass it lifts the oldest (the one
   * barred the longest ago) in the same step.
   */
  removeMember(channelId: Id, userId: Id, check?: MembershipCheck, bar?: boolean): Promise<Removal>;
  /** Whether the user is barred from joining the group by its invite link (see removeMember). */
  isBarred(channelId: Id, userId: Id): Promise<boolean>;
  /** Of `userIds`, those barred from the group's invite link (see removeMember), in one read. */
  barredAmong(channelId: Id, userIds: readonly Id[]): Promise<Id[]>;
  /**
   * Makes a member an admin or a plain member, after `check` passes; returns
   * whether the role changed (false for a non-member). Refuses with
   * ChatError("invalid_argument") to make or unmake the owner: ownership
   * passes only by removeMember.
   */
  setRole(channelId: Id, userId: Id, role: Exclude<MemberRole, "owner">, check?: MembershipCheck): Promise<boolean>;
  /**
   * Runs `work` (a group change, the writing of its note into the history
   * and the pushing of its channel events) while no other work of the same channel runs, in this process
   * or any other on the same store; the others wait their turn. A change's
   * note is sequenced after whatever reached the channel's queue before it,
   * so changes whose store steps and notes did not overlap are told in the
   * order they landed. Work run inside a turn of the channel (nested) runs
   * at once. Cassandra: a lease of CHANNEL_TURN_TTL_S, renewed while the
   * work runs (up to a bound), so a process that died in its turn holds
   * nobody up for long and a slow one is not overtaken.
   */
  changeInTurn<T>(channelId: Id, work: () => Promise<T>): Promise<T>;
  /**
   * Moves the read position forward only, and never past the channel's
   * newest message: a position beyond it would hide every later message from
   * the unread count. Returns the position after the call, and the newest
   * message as it read it to cap the position.
   */
  advanceReadSeq(channelId: Id, userId: Id, seq: bigint): Promise<ReadAdvance>;
  /**
   * Clears the channel's history for one member through `seq`: moves the
   * member's `clearedSeq` forward only, never past the newest message, and
   * returns it after the call. ChatError("not_a_member") for a non-member.
   * It belongs to the membership: a member who leaves and comes back starts
   * with nothing cleared.
   */
  clearHistory(channelId: Id, userId: Id, seq: bigint): Promise<bigint>;
  /**
   * Moves the join point (`joinedSeq`) of those of `userIds` still in the
   * channel forward to `seq`, the note of their add or join by link, never
   * back: its writer calls it once the note has its seq. The api records the
   * newest seq it read as it adds, but in the cluster messages acked before
   * the add (and the note itself) are sequenced after that read, and were
   * counted unread for one who never saw them. Nobody out of the channel is
   * written (no membership comes back with it).
   */
  markJoined(channelId: Id, userIds: readonly Id[], seq: bigint): Promise<void>;

  /**
   * Many channels at once, as getChannel, memberCount and listMembers tell
   * each: what a page of a user's list shows, in a read per hundred
   * channels on Cassandra rather than one per channel. getChannels leaves
   * out channels that do not exist; the others answer for every id asked.
   */
  getChannels(channelIds: readonly Id[]): Promise<Map<Id, ChannelRecord>>;
  memberCounts(channelIds: readonly Id[]): Promise<Map<Id, number>>;
  listMembersOf(channelIds: readonly Id[]): Promise<Map<Id, MemberRecord[]>>;

  /** The user's memberships (one row per channel). */
  listMemberships(userId: Id): Promise<MemberRecord[]>;
  /**
   * Of `userIds`, those in at least `n` groups (direct chats do not count):
   * the check of a bound before an add and after it, for all the users of
   * the add at once (Cassandra: one read for them all while each is in fewer
   * channels of any kind than that, not one per user).
   */
  inGroupsAtLeast(userIds: readonly Id[], n: number): Promise<Id[]>;

  /**
   * Mutes the user's notifications of a channel until `untilMs`, or unmutes
   * it (undefined). Kept apart from membership: a mute is the user's alone,
   * and is read where notifications are sent, by user.
   */
  setMute(userId: Id, channelId: Id, untilMs: number | undefined): Promise<void>;
  /** The user's mutes by channel id, expired ones included (the caller compares with its clock). */
  listMutes(userId: Id): Promise<Map<Id, number>>;

  /**
   * Pins, archives or marks unread a channel in the user's list, or takes
   * that away: only the settings the change names are written, so changes
   * of different settings made at once (two devices) all stay. A place left
   * with no setting is gone. The user's alone, like a mute, and kept apart
   * from membership.
   */
  changePlace(userId: Id, channelId: Id, change: PlaceChange): Promise<void>;
  /** The user's pinned, archived and marked-unread channels by channel id. */
  listPlaces(userId: Id): Promise<Map<Id, ChannelPlace>>;

  /**
   * Makes `code` the group's one invite code, the one before it no longer
   * working, or leaves the group with none (undefined), after `check` passes
   * on the members as the change lands (a manager removed or demoted since
   * an earlier read must not reset or take away the link). A code for a
   * channel that does not exist is ChatError("not_found"); taking away the
   * code of one is nothing.
   */
  setInviteCode(channelId: Id, code: string | undefined, check?: MembershipCheck): Promise<void>;
  /**
   * The group's invite code: `code` when it had none, else the one it has,
   * after `check` passes on the members of the moment the code is read or
   * made (so the caller never learns a code set after its role was taken).
   * Atomic, so two managers asking at once for a group's first link get the
   * same one. ChatError("not_found") for a channel that does not exist.
   */
  claimInviteCode(channelId: Id, code: string, check?: MembershipCheck): Promise<string>;
  /** The group's invite code, if it has one. */
  inviteCodeOf(channelId: Id): Promise<string | undefined>;
  /** The group an invite code leads to, while it is that group's code. */
  channelOfInvite(code: string): Promise<Id | undefined>;
}

/** What advanceReadSeq did. */
export interface ReadAdvance {
  /** The read position after the call. */
  readSeq: bigint;
  /**
   * The channel's newest message as the call read it (undefined: none yet):
   * a receipt's caller asks it whether the reader sent after the position
   * (sentAfter), where reading it again cost every receipt a second read.
   */
  newest: StoredMessage | undefined;
}
