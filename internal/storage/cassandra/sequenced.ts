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
  /** The candidate's dedup key, as a string: two candidates with the same one are one entry. */
  dedupKey(candidate: C): string;
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
 * Appends to one key run in call order, and those called while an earlier
 * one is in flight go together as a group: the reads of the whole group at
 * once, its rows and dedup rows at once, then one head write for the group
 * (a second copy of a record within the group is whatever the first is).
 * Cost per group with a warm cache: three round trips and 2k + 2 requests
 * for k appends (four for one: the adapters send an entry's row and dedup
 * row as one request), none of them a Paxos round. (Before
 * schema 2 the head was a compare-and-set; a head left from then is finished
 * and carried over the first time its key is appended to.)
 */
export class SequencedAppender<C, E> {
  /** For metrics and tests: heads found ahead of the cache, rows written for another writer, and groups. */
  readonly stats = { overtaken: 0, helped: 0, groups: 0 };
  /** The highest seq whose rows, dedup row and head this process knows are written. */
  private readonly heads: LruMap<bigint, bigint>;
  private readonly queues = new Map<bigint, Pending<C, E>[]>();
  /** Per key with appends queued or in flight: settles once they all have. */
  private readonly drains = new Map<bigint, Promise<void>>();

  constructor(
    private readonly ops: SequenceOps<C, E>,
    cacheSize = 100_000,
    private readonly maxGroup = 256,
  ) {
    this.heads = new LruMap(cacheSize);
  }

  /**
   * Appends in call order per key. A failed group fails each of its appends,
   * and every append queued behind it on that key, and leaves the cache as
   * it was: it only ever holds what was written. Going on past a failed
   * group would give later records of the stream the seqs of earlier ones
   * (the n-th distinct record must get seq n), and leave seqs with no row.
   */
  append(key: bigint, candidate: C): Promise<{ entry: E; duplicate: boolean }> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(key);
      if (queue) {
        queue.push({ candidate, resolve, reject });
        return;
      }
      this.queues.set(key, [{ candidate, resolve, reject }]);
      // From the next microtask, so the appends called in this one join the group.
      this.drains.set(key, new Promise<void>((drained) => queueMicrotask(() => void this.drain(key).then(drained))));
    });
  }

  /**
   * Settles (never rejects) once every append to `key` called so far has
   * settled: for a write that must see their heads, such as a change of a
   * message whose append a retried batch is finishing.
   */
  settled(key: bigint): Promise<void> {
    return this.drains.get(key) ?? Promise.resolve();
  }

  private async drain(key: bigint): Promise<void> {
    const queue = this.queues.get(key)!;
    while (queue.length > 0) {
      const group = queue.splice(0, this.maxGroup);
      try {
        const results = await this.appendGroup(key, group.map((p) => p.candidate));
        group.forEach((p, i) => p.resolve(results[i]!));
      } catch (e) {
        for (const p of [...group, ...queue.splice(0)]) p.reject(e);
      }
    }
    this.queues.delete(key);
    this.drains.delete(key);
  }

  private async appendGroup(key: bigint, candidates: C[]): Promise<Result<E>[]> {
    const ops = this.ops;
    const cached = this.heads.peek(key);
    let base: bigint;
    let found: (Found | undefined)[];
    if (cached === undefined) {
      const h = await ops.readHead(key);
      if (h?.legacy) {
        await ops.writeEntry(key, h.entry);
        await ops.writeHead(key, h.entry);
        this.stats.helped++;
      }
      base = h?.seq ?? 0n;
      found = await Promise.all(candidates.map((c) => ops.findSeq(key, c)));
    } else {
      const [f, stored] = await Promise.all([Promise.all(candidates.map((c) => ops.findSeq(key, c))), ops.readHeadSeq(key)]);
      found = f;
      base = stored > cached ? stored : cached;
      if (stored > cached && found.includes(undefined)) {
        this.stats.overtaken++;
        found = await Promise.all(candidates.map((c, i) => found[i] ?? ops.findSeq(key, c)));
      }
    }

    // In stream order: a record found is where it was stored, a new one takes
    // the seq after the highest seen so far, and a later copy of a record in
    // the group is whatever its first copy is (their dedup reads may have
    // seen another writer at different moments).
    const results: Result<E>[] = new Array(candidates.length);
    const firstOf = new Map<string, number>();
    const copies: [number, number][] = [];
    const fresh: E[] = [];
    const repeats: Promise<E>[] = [];
    let last = base;
    candidates.forEach((c, i) => {
      const dedupKey = ops.dedupKey(c);
      const first = firstOf.get(dedupKey);
      if (first !== undefined) {
        copies.push([i, first]);
        return;
      }
      firstOf.set(dedupKey, i);
      const f = found[i];
      if (f !== undefined) {
        if (f.seq > last) last = f.seq;
        repeats.push(this.repeat(key, c, f).then((entry) => (results[i] = { entry, duplicate: true }).entry));
        return;
      }
      const entry = ops.withSeq(c, ++last);
      fresh.push(entry);
      results[i] = { entry, duplicate: false };
    });
    const [, repeated] = await Promise.all([Promise.all(fresh.map((e) => ops.writeEntry(key, e))), Promise.all(repeats)]);
    if (last > base) {
      const top = [...fresh, ...repeated].find((e) => ops.seqOf(e) === last)!;
      await ops.writeHead(key, top);
    }
    this.heads.set(key, last);
    // Once stored: counted before, a group's every failed try (a store away) counted as one stored.
    this.stats.groups++;
    for (const [i, first] of copies) results[i] = { entry: results[first]!.entry, duplicate: true };
    return results;
  }

  /** The stored entry of a record found by its dedup key, its rows written again if missing. */
  private async repeat(key: bigint, candidate: C, found: Found): Promise<E> {
    const ops = this.ops;
    const entry = await ops.readEntry(key, found.seq);
    if (entry !== undefined) return entry;
    // Only the first record of a dedup key may write its rows; a later one
    // (a client's resend) finds them once that record's writer has retried.
    if (!found.sameRecord) throw new ChatError("unavailable", `entry ${found.seq} of ${key} is not written yet`);
    const written = ops.withSeq(candidate, found.seq);
    await ops.writeEntry(key, written);
    this.stats.helped++;
    return written;
  }
}

interface Found {
  seq: bigint;
  sameRecord: boolean;
}

type Result<E> = { entry: E; duplicate: boolean };

interface Pending<C, E> {
  candidate: C;
  resolve(r: Result<E>): void;
  reject(e: unknown): void;
}
