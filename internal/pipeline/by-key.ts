/**
 * Runs `work` over items, in order within each key and concurrently across
 * keys (at most `concurrency` keys at once). A batch of one partition holds
 * many channels or users; their appends are independent, so waiting for each
 * one in turn would make a 100-member fan-out cost 100 storage round trips.
 * Rejects with the first failure once every started chain has settled.
 */
export async function forEachByKey<T, R>(
  items: readonly T[],
  keyOf: (item: T) => string | bigint,
  work: (item: T) => Promise<R>,
  concurrency = 32,
): Promise<R[]> {
  const chains = new Map<string | bigint, number[]>();
  items.forEach((item, i) => {
    const k = keyOf(item);
    const list = chains.get(k);
    if (list) list.push(i);
    else chains.set(k, [i]);
  });
  const results = new Array<R>(items.length);
  const queue = [...chains.values()];
  let failure: unknown;
  const runner = async () => {
    for (let chain = queue.shift(); chain && failure === undefined; chain = queue.shift()) {
      for (const i of chain) {
        try {
          results[i] = await work(items[i]!);
        } catch (err) {
          failure ??= err;
          return;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, runner));
  if (failure !== undefined) throw failure;
  return results;
}
