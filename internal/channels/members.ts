import type { BlockCache } from "../accounts/blocks.js";
import { LruMap } from "../cache/lru-map.js";
import { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";
import type { ChannelStore } from "./store.js";

/** What the message path remembers of a channel: its kind, and a direct channel's pair. */
type Known = { kind: "group" } | { kind: "direct"; memberIds: readonly Id[] };

/**
 * The two membership questions every message asks (may this user send here,
 * who receives it), answered without a read where the answer cannot change.
 * A direct channel's pair is fixed when it is created (the store writes the
 * channel and both member rows before the pair is claimed), so it is read once
 * and kept; a group's roster changes through other processes (the api role),
 * so it is read on every message, as before. A channel's kind never changes,
 * so knowing it costs a group nothing after its first message.
 *
 * On a 1:1 message this removes the membership reads: one SQLite query in
 * chatd, and in the cluster a Cassandra read on the chat server and another
 * in the sequencer.
 */
export class ChannelMembers {
  private readonly known: LruMap<Id, Known>;

  constructor(
    private readonly channels: ChannelStore,
    /** Channels remembered at most, least recently used dropped first (~100 bytes each). */
    capacity = 100_000,
    /** Without it, blocks between a direct chat's pair are not checked. */
    private readonly blocks?: BlockCache,
  ) {
    this.known = new LruMap(capacity);
  }

  /** The member user ids in join order; empty for a channel that does not exist. */
  async memberIds(channelId: Id): Promise<readonly Id[]> {
    const known = this.known.get(channelId);
    if (known?.kind === "direct") return known.memberIds;
    if (known?.kind === "group") return (await this.channels.listMembers(channelId)).map((m) => m.userId);
    const [channel, members] = await Promise.all([
      this.channels.getChannel(channelId),
      this.channels.listMembers(channelId),
    ]);
    const memberIds = members.map((m) => m.userId);
    if (channel?.kind === "group") this.known.set(channelId, { kind: "group" });
    // An empty roster is a channel not (yet) readable here: ask again next time.
    if (channel?.kind === "direct" && memberIds.length > 0) this.known.set(channelId, { kind: "direct", memberIds });
    return memberIds;
  }

  /** A direct channel's pair when already known, at once (no promise); undefined means ask memberIds. */
  knownMemberIds(channelId: Id): readonly Id[] | undefined {
    const known = this.known.get(channelId);
    return known?.kind === "direct" ? known.memberIds : undefined;
  }

  async isMember(channelId: Id, userId: Id): Promise<boolean> {
    const known = this.known.get(channelId);
    if (known?.kind === "group") return (await this.channels.getMember(channelId, userId)) !== undefined;
    return (await this.memberIds(channelId)).includes(userId);
  }

  /**
   * Refuses a sender who may not post: not a member (`not_a_member`), or in a
   * direct chat where either of the pair blocked the other, unless the send
   * is a delete (`blocksApply` false: see blocksApplyTo in messages/submit.ts). One call, so a
   * caller can run both checks beside its other round trips.
   */
  async requireSender(channelId: Id, senderId: Id, blocksApply = true): Promise<void> {
    if (!(await this.isMember(channelId, senderId))) throw new ChatError("not_a_member", "not a member of this channel");
    if (blocksApply) await this.refuseIfBlocked(channelId, senderId);
  }

  /**
   * Refuses a sender in a direct chat where either of the pair blocked the
   * other. Ask it after isMember or memberIds said the sender is in: those
   * learn the pair. Groups are never refused: a block does not split a group.
   */
  async refuseIfBlocked(channelId: Id, senderId: Id): Promise<void> {
    const other = this.peerOf(channelId, senderId);
    if (other !== undefined) await this.blocks!.refuse(senderId, other);
  }

  /**
   * True when refuseIfBlocked would refuse nothing, as far as is known without
   * waiting: a group, or a pair whose answer the block cache holds and that
   * blocked neither way. False means ask refuseIfBlocked.
   */
  knownUnblocked(channelId: Id, senderId: Id): boolean {
    const other = this.peerOf(channelId, senderId);
    return other === undefined || this.blocks!.knownClear(senderId, other);
  }

  /** Whether either of a direct chat's pair blocked the other (asked as refuseIfBlocked is). */
  async isBlocked(channelId: Id, userId: Id): Promise<boolean> {
    const other = this.peerOf(channelId, userId);
    return other !== undefined && (await this.blocks!.blockersBetween(userId, other)).length > 0;
  }

  /** The other of a direct chat's pair, when blocks are checked and the pair is known. */
  private peerOf(channelId: Id, userId: Id): Id | undefined {
    const known = this.known.peek(channelId);
    if (!this.blocks || known?.kind !== "direct") return undefined;
    return known.memberIds.find((id) => id !== userId);
  }
}
