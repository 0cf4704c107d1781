import { LruMap } from "../../cache/lru-map.js";
import { ChatError } from "../../model/errors.js";

/** What the owner of a sequence (a channel, or a user's inbox) stores per entry. */
export interface SequenceOps<C, E> {
  /**
   * The newest entry; `legacy` when it comes from a head written by
   * compare-and-set before schema 2 (whose rows a crash may have left
   * unwritten). Undefined when the sequence is empty.
   */
  readHead(key: bigint): Promise<{ seq: bigint; entry: E; legacy: boolean } | undefined>;
  /** The newest seq, 0n when empty. */
  readHeadSeq(key: bigint): Promise<bigint>;
  /**
   * The seq stored under the candidate's dedup key, if any, and whether it
   * was stored from this very record (so its rows may be written from it).
   */
  findSeq(key: bigint, candidate: C): Promise<{ seq: bigint; sameRecord: boolean } | undefined>;
  readEntry(key: bigint, seq: bigint): Promise<E | undefined>;
  /** The entry's row and its dedup row (idempotent: same values every time). */
  writeEntry(key: bigint, entry: E): Promise<void>;
  /** The newest-entry row, with the seq as the write timestamp: a lower seq never replaces it. */
  writeHead(key: bigint, entry: E): Promise<void>;
  /** Whether a stored entry has the candidate's dedup key. */
  sameKey(stored: E, candidate: C): boolean;
  withSeq(candidate: C, seq: bigint): E;
  seqOf(entry: E): bigint;
}

/**
 * Gap-free sequence numbers on Cassandra with plain writes only, for a log
 * fed by one ordered stream of records (a pipeline partition) that may be
 * replayed by two writers at once while a consumer group rebalances.
 *
 * Every writer of a key consumes the same records in the same order, so the
 * n-th distinct record always gets seq n: two writers that overlap compute
 * the same entries and write the same values, and no fence is needed to keep
 * them apart. What must hold is that a writer's view of the log is never
 * behind the records it has consumed:
 *
 * - An append writes the entry's row and dedup row, and only then the head
 *   (with the seq as the write timestamp, so the head never moves back). So
 *   a head at n means every seq up to n has its rows and dedup rows.
 * - A writer without a cached head reads the head, then the dedup row: a
 *   record stored by another writer has its dedup row visible by the time its
 *   seq shows in the head.
 * - A writer with a cached head reads the dedup row and the head at once; a
 *   head above the cache means another writer got ahead (a rebalance moved
 *   the partition away and back, or an overlap), and the dedup row is read
 *   again before the record is taken as new.
 * - A record whose dedup row exists has its rows written again from the
 *   record when they are missing (its writer died between the two writes).
 *
 * Cost per append with a warm cache: the dedup and head reads together, the
 * row and dedup writes together, then the head write; five requests in three
 * round trips, none of them a Paxos round. (Before schema 2 the head was a
 * compare-and-set; a head left from then is finished and carried over the
 * first time its key is appended to.)
 */
export class SequencedAppender<C, E> {
  /** For metrics and tests: heads found ahead of the cache, and rows written for another writer. */
  readonly stats = { overtaken: 0, helped: 0 };
  /** The highest seq whose rows, dedup row and head this process knows are written. */
  private readonly heads: LruMap<bigint, bigint>;
  private readonly locks = new Map<bigint, Promise<unknown>>();

  constructor(
    private readonly ops: SequenceOps<C, E>,
    cacheSize = 100_000,
  ) {
    this.heads = new LruMap(cacheSize);
  }

  /** A failed append leaves the cache as it was: it only ever holds what was written. */
  append(key: bigint, candidate: C): Promise<{ entry: E; duplicate: boolean }> {
    return this.serialised(key, () => this.appendLocked(key, candidate));
  }

  private async appendLocked(key: bigint, candidate: C): Promise<{ entry: E; duplicate: boolean }> {
    const ops = this.ops;
    const cached = this.heads.peek(key);
    let head: bigint;
    let found: { seq: bigint; sameRecord: boolean } | undefined;
    if (cached === undefined) {
      const h = await ops.readHead(key);
      if (h?.legacy) {
        await ops.writeEntry(key, h.entry);
        await ops.writeHead(key, h.entry);
        this.stats.helped++;
      }
      head = h?.seq ?? 0n;
      if (h !== undefined && ops.sameKey(h.entry, candidate)) {
        this.heads.set(key, head);
        return { entry: h.entry, duplicate: true };
      }
      found = await ops.findSeq(key, candidate);
    } else {
      const [f, stored] = await Promise.all([ops.findSeq(key, candidate), ops.readHeadSeq(key)]);
      found = f;
      head = stored > cached ? stored : cached;
      if (found === undefined && stored > cached) {
        this.stats.overtaken++;
        found = await ops.findSeq(key, candidate);
      }
    }
    if (found !== undefined) return this.repeat(key, candidate, found, head);

    const entry = ops.withSeq(candidate, head + 1n);
    await ops.writeEntry(key, entry);
    await ops.writeHead(key, entry);
    this.heads.set(key, ops.seqOf(entry));
    return { entry, duplicate: false };
  }

  /** The candidate is stored already: its entry, with rows and head made whole. */
  private async repeat(
    key: bigint,
    candidate: C,
    found: { seq: bigint; sameRecord: boolean },
    head: bigint,
  ): Promise<{ entry: E; duplicate: boolean }> {
    const ops = this.ops;
    let entry: E | undefined = await ops.readEntry(key, found.seq);
    if (entry === undefined) {
      // Only the first record of a dedup key may write its rows; a later one
      // (a client's resend) finds them once that record's writer has retried.
      if (!found.sameRecord) throw new ChatError("unavailable", `entry ${found.seq} of ${key} is not written yet`);
      entry = ops.withSeq(candidate, found.seq);
      await ops.writeEntry(key, entry);
      this.stats.helped++;
    }
    if (found.seq > head) {
      await ops.writeHead(key, entry);
      head = found.seq;
    }
    this.heads.set(key, head);
    return { entry, duplicate: true };
  }

  private serialised<T>(key: bigint, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }
}
