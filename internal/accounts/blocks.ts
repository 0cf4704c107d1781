import { LruMap } from "../cache/lru-map.js";
import { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";
import { isDeletedUser, type AccountStore } from "./store.js";

export interface BlockCacheOptions {
  /** How long an answer is trusted (default 5 s): a block made through another process takes effect here within it. */
  ttlMs?: number;
  /** Pairs remembered at most, least recently used dropped first (~150 bytes each). */
  capacity?: number;
  now?: () => number;
}

/** Ids are uint64, so the pair is one 128-bit number: asked on every direct send, a text key was two numbers printed and joined. */
const pairKey = (a: Id, b: Id): bigint => (a < b ? (a << 64n) | b : (b << 64n) | a);

/**
 * Which of a pair blocked the other, as the send path asks it on every
 * direct message. Blocks are rare and a message is not, so answers are kept
 * for a short while rather than read per message (two Cassandra reads in the
 * cluster). The process where a block is made calls `forget`, so there it
 * holds at once (in chatd, everywhere); chat servers elsewhere see it within
 * the TTL.
 */
export class BlockCache {
  private readonly pairs: LruMap<bigint, { blockers: readonly Id[]; until: number }>;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** Forgets so far: a read that a forget overtook answers its caller but is not kept (see blockersBetween). */
  private forgets = 0;

  constructor(
    private readonly accounts: Pick<AccountStore, "blockersBetween" | "getUser">,
    options: BlockCacheOptions = {},
  ) {
    this.pairs = new LruMap(options.capacity ?? 100_000);
    this.ttlMs = options.ttlMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  async blockersBetween(a: Id, b: Id): Promise<readonly Id[]> {
    const key = pairKey(a, b);
    const cached = this.pairs.get(key);
    if (cached && cached.until > this.now()) return cached.blockers;
    const forgets = this.forgets;
    const blockers = await this.accounts.blockersBetween(a, b);
    // A forget while the read was out may be of a block the read missed: kept, it would let the
    // pair's messages through for a TTL after the block, which the forget is there to prevent.
    // Forgets are rare, so any of them, of whatever pair, is reason enough not to keep it.
    if (this.forgets === forgets) this.pairs.set(key, { blockers, until: this.now() + this.ttlMs });
    return blockers;
  }

  /** Whether the pair's answer is held, fresh, and neither blocked the other: what `refuse` would pass without a read. */
  knownClear(a: Id, b: Id): boolean {
    const cached = this.pairs.get(pairKey(a, b));
    return cached !== undefined && cached.until > this.now() && cached.blockers.length === 0;
  }

  forget(a: Id, b: Id): void {
    this.forgets++;
    this.pairs.delete(pairKey(a, b));
  }

  /**
   * Refuses what `me` wants to do towards `other` when either blocked the
   * other. A deleted account blocks the peers of its direct chats (its last
   * act), so their sends are refused too, and told why: only then, rarely, is
   * the account read.
   */
  async refuse(me: Id, other: Id, what = "message"): Promise<void> {
    const blockers = await this.blockersBetween(me, other);
    if (blockers.includes(other)) {
      const user = await this.accounts.getUser(other);
      if (!user || isDeletedUser(user)) throw new ChatError("not_found", "this account was deleted");
    }
    refuseIfBlocked(blockers, me, other, what);
  }
}

/**
 * Refuses what `me` wants to do towards `other` when either blocked the
 * other. The message says which way: the blocked learn they are blocked
 * rather than watching messages vanish, and the blocker is reminded why.
 */
export function refuseIfBlocked(blockers: readonly Id[], me: Id, other: Id, what = "message"): void {
  if (blockers.includes(other)) throw new ChatError("blocked", `this user blocked you: you cannot ${what} them`);
  if (blockers.includes(me)) throw new ChatError("blocked", `you blocked this user: unblock them to ${what} them`);
}

/**
 * Everyone the user blocked, and of `among` those who blocked the user: each
 * side is hidden from the other. Whom a user blocks is capped (maxBlockedPerUser),
 * who blocked a user is not, so only the rows of `among` are read of those.
 */
export async function blockedEitherWay(accounts: AccountStore, userId: Id, among: Iterable<Id>): Promise<Set<Id>> {
  const asked = [...new Set(among)].filter((id) => id !== userId);
  const [blocked, blockers] = await Promise.all([
    accounts.listBlocks(userId),
    asked.length === 0 ? [] : accounts.blockersAmong(userId, asked),
  ]);
  return new Set([...blocked.map((b) => b.userId), ...blockers]);
}
