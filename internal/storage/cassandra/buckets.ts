import { FANOUT, mapLimit } from "./session.js";

/**
 * Sequences (a channel's history, a user's inbox) are split into partitions of
 * bucketSize consecutive seqs: bucket = seq / bucketSize. The seq is known
 * before the row is written and the sequence has no gaps, so a reader knows
 * which buckets hold a seq range without any index.
 */
export function bucketOf(seq: bigint, bucketSize: number): bigint {
  return seq / BigInt(bucketSize);
}

/**
 * Reads the inclusive range [lo, hi] by querying every bucket it touches,
 * FANOUT at a time; rows come back in whatever order, the caller sorts.
 */
export async function readRange<T>(
  lo: bigint,
  hi: bigint,
  bucketSize: number,
  query: (bucket: bigint, lo: bigint, hi: bigint) => Promise<T[]>,
): Promise<T[]> {
  if (hi < lo) return [];
  const size = BigInt(bucketSize);
  const buckets: bigint[] = [];
  for (let b = lo / size; b <= hi / size; b++) buckets.push(b);
  const parts = await mapLimit(buckets, FANOUT, (b) => {
    const from = b * size > lo ? b * size : lo;
    const to = (b + 1n) * size - 1n < hi ? (b + 1n) * size - 1n : hi;
    return query(b, from, to);
  });
  return parts.flat();
}
