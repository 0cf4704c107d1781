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
 * channel and both member rows before the pair is claimed), so it is read
 * once, with the pair's claim (see settledPair), and kept; a group's roster changes
 * through other processes (the api role), so it is read on every message. A channel's kind never changes,
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

  /**
   * The member user ids in join order; empty for a channel that does not
   * exist, and for a direct chat's candidate that is not its pair's channel.
   */
  async memberIds(channelId: Id): Promise<readonly Id[]> {
    const known = this.known.get(channelId);
    if (known?.kind === "direct") return known.memberIds;
    if (known?.kind === "group") return (await this.channels.listMembers(channelId)).map((m) => m.userId);
    return this.learn(channelId);
  }

  /**
   * Whether a message may be stored in the channel: a group (one everyone
   * left too: the last one's note), or the pair's own direct channel. A
   * known channel answers at once (no promise); a group unknown here costs
   * its kind's read, not its roster's. False for a channel that does not
   * exist and for a direct chat's candidate that is not its pair's channel
   * (see settledPair): a message stored there went to nobody, under a
   * channel id that leads nowhere.
   */
  admits(channelId: Id): boolean | Promise<boolean> {
    if (this.known.get(channelId) !== undefined) return true;
    return this.channels.getChannel(channelId).then(async (channel) => {
      if (channel?.kind === "group") {
        this.known.set(channelId, { kind: "group" });
        return true;
      }
      if (channel?.kind !== "direct") return false;
      const memberIds = (await this.channels.listMembers(channelId)).map((m) => m.userId);
      return (await this.settledPair(channelId, memberIds)).length > 0;
    });
  }

  /** Reads a channel not known here, and keeps what can be kept of it. */
  private async learn(channelId: Id): Promise<readonly Id[]> {
    const [channel, members] = await Promise.all([
      this.channels.getChannel(channelId),
      this.channels.listMembers(channelId),
    ]);
    const memberIds = members.map((m) => m.userId);
    if (channel?.kind === "group") this.known.set(channelId, { kind: "group" });
    return channel?.kind === "direct" ? this.settledPair(channelId, memberIds) : memberIds;
  }

  /**
   * A direct channel's pair, kept from now on, once the pair's claim names
   * this channel; empty (and nothing kept) until then. Cassandra writes a
   * direct chat's candidate (channel and pair) before it claims the pair, and
   * the loser of two opens at once deletes its own after: read in between,
   * or left by a creator that died there, a candidate looks like the pair's
   * chat. Kept here, it let the pair send for good into a channel that is
   * gone, or never theirs. One read more, once per channel and process.
   */
  private async settledPair(channelId: Id, memberIds: readonly Id[]): Promise<readonly Id[]> {
    // An empty roster is a channel not (yet) readable here: ask again next time.
    if (memberIds.length === 0) return memberIds;
    const claimed = await this.channels.directChannelOf(memberIds[0]!, memberIds[memberIds.length - 1]!);
    if (claimed !== channelId) return [];
    this.known.set(channelId, { kind: "direct", memberIds });
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
   * is a delete or takes back a reaction (`blocksApply` false: see blocksApplyTo in messages/submit.ts). One call, so a
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
