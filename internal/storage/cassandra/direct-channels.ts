import { ChatError, ContendedError } from "../../model/errors.js";
import type { ChannelRecord, Id, MemberRecord } from "../../model/types.js";
import type { ChannelQueries } from "./channel-queries.js";
import { big, StorageUnavailable, type Db, type Statement } from "./session.js";

/** What a direct chat's claim needs of the channel store: a channel's rows, the users' index of their channels, a channel's read. */
export interface DirectChannelHost {
  /** The plain (unconditional) writes of a new channel and its members. */
  createStatements(c: ChannelRecord, rows: (MemberRecord & { order: bigint })[]): Statement[];
  index(users: Id[], channelId: Id, version: bigint): Promise<void>;
  getChannel(channelId: Id): Promise<ChannelRecord | undefined>;
}

/**
 * The direct (1:1) chats: a pair of users has one, claimed in
 * `direct_channels` (user_lo, user_hi) by a compare-and-set.
 */
export class DirectChannels {
  constructor(
    private readonly db: Db,
    private readonly q: ChannelQueries,
    private readonly host: DirectChannelHost,
  ) {}

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
      await this.db.batch(this.host.createStatements(c, users.map((userId, i) => ({
        channelId: c.channelId, userId, role: "member", joinedAtMs: c.createdAtMs, readSeq: 0n, order: BigInt(i),
      }))), { logged: false });
      await this.host.index(users, c.channelId, 1n);
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
    const [c] = await Promise.all([this.host.getChannel(channelId), this.host.index(lo === hi ? [lo] : [lo, hi], channelId, 1n)]);
    if (!c) throw new ChatError("internal", `direct channel ${channelId} of ${lo}/${hi} is missing`);
    return c;
  }
}
