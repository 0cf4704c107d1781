import { LruMap } from "../cache/lru-map.js";
import type { Id } from "../model/types.js";
import type { ChannelStore, RosterChanges } from "./store.js";

/** What the message path remembers of a channel: its kind, and a direct channel's pair. */
type Known = { kind: "group" } | { kind: "direct"; memberIds: readonly Id[] };

export interface ChannelMembersOptions {
  /** Channels whose kind (and direct pair) is remembered, least recently used dropped first (~100 bytes each). */
  capacity?: number;
  /**
   * Where the store says a roster changed, when it can (one process owns the
   * data): group rosters are then kept too, until they change.
   */
  rosterChanges?: RosterChanges;
  /** Group rosters kept at most (up to 100 ids, ~2.5 KB each). */
  rosterCapacity?: number;
}

/**
 * The two membership questions every message asks (may this user send here,
 * who receives it), answered without a read where the answer cannot change.
 * A direct channel's pair is fixed when it is created (the store writes the
 * channel and both member rows before the pair is claimed), so it is read once
 * and kept. A channel's kind never changes, so knowing it costs a group
 * nothing after its first message. A group's roster changes, so it is read on
 * every message unless the store tells when it changes (`rosterChanges`: the
 * embedded store, where reading a hundred member rows per group message was
 * 6 % of chatd's CPU in the fan-out benchmark); in the cluster the api role
 * changes rosters in another process, and they are read every time.
 *
 * On a 1:1 message this removes the membership reads: one SQLite query in
 * chatd, and in the cluster a Cassandra read on the chat server and another
 * in the sequencer.
 */
export class ChannelMembers {
  private readonly known: LruMap<Id, Known>;
  private readonly rosters?: LruMap<Id, readonly Id[]>;
  /** Counts roster changes: a read that a change overtook is not kept. */
  private changes = 0;

  constructor(
    private readonly channels: ChannelStore,
    options: ChannelMembersOptions = {},
  ) {
    this.known = new LruMap(options.capacity ?? 100_000);
    if (options.rosterChanges) {
      const rosters = (this.rosters = new LruMap(options.rosterCapacity ?? 10_000));
      options.rosterChanges.onRosterChanged((channelId) => {
        this.changes++;
        rosters.delete(channelId);
      });
    }
  }

  /** The member user ids in join order; empty for a channel that does not exist. */
  async memberIds(channelId: Id): Promise<readonly Id[]> {
    const known = this.known.get(channelId);
    if (known?.kind === "direct") return known.memberIds;
    if (known?.kind === "group") return this.groupRoster(channelId);
    const changesBefore = this.changes;
    const [channel, members] = await Promise.all([
      this.channels.getChannel(channelId),
      this.channels.listMembers(channelId),
    ]);
    const memberIds = members.map((m) => m.userId);
    if (channel?.kind === "group") {
      this.known.set(channelId, { kind: "group" });
      if (this.changes === changesBefore) this.rosters?.set(channelId, memberIds);
    }
    // An empty roster is a channel not (yet) readable here: ask again next time.
    if (channel?.kind === "direct" && memberIds.length > 0) this.known.set(channelId, { kind: "direct", memberIds });
    return memberIds;
  }

  async isMember(channelId: Id, userId: Id): Promise<boolean> {
    const known = this.known.get(channelId);
    if (known?.kind === "group" && this.rosters === undefined) return (await this.channels.getMember(channelId, userId)) !== undefined;
    return (await this.memberIds(channelId)).includes(userId);
  }

  private async groupRoster(channelId: Id): Promise<readonly Id[]> {
    const kept = this.rosters?.get(channelId);
    if (kept !== undefined) return kept;
    const changesBefore = this.changes;
    const memberIds = (await this.channels.listMembers(channelId)).map((m) => m.userId);
    if (this.changes === changesBefore) this.rosters?.set(channelId, memberIds);
    return memberIds;
  }
}
