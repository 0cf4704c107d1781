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

/** The part of the inclusive range [lo, hi] in one bucket. */
export interface BucketSlice {
  bucket: bigint;
  from: bigint;
  to: bigint;
}

/** The buckets the inclusive range [lo, hi] touches, each with its part of it, lowest first or, `descending`, highest first. */
export function bucketSlices(lo: bigint, hi: bigint, bucketSize: number, descending = false): BucketSlice[] {
  if (hi < lo) return [];
  const size = BigInt(bucketSize);
  const slices: BucketSlice[] = [];
  for (let b = lo / size; b <= hi / size; b++) {
    const from = b * size > lo ? b * size : lo;
    const to = (b + 1n) * size - 1n < hi ? (b + 1n) * size - 1n : hi;
    slices.push({ bucket: b, from, to });
  }
  return descending ? slices.reverse() : slices;
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
  const parts = await mapLimit(bucketSlices(lo, hi, bucketSize), FANOUT, (s) => query(s.bucket, s.from, s.to));
  return parts.flat();
}
