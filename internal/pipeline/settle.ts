/**
 * Every promise's value, once all have settled, or the first failure once
 * all have settled. A batch handler that fails has its batch redelivered:
 * failing at the first rejection (Promise.all) would let that retry run
 * beside appends of this attempt still in flight, out of stream order.
 */
export async function allSettledOrFirstFailure<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
