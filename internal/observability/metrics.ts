import type { Counter } from "prom-client";

/**
 * `counter` with a series at 0 for each of `values` of `label` from the
 * start. A series that first appears at 1 has no earlier sample for
 * `increase()` and `rate()` to start from: the first engine error of a
 * process, or the only one of a blip, never moved an alert on them.
 */
export function countedFromZero<L extends string>(counter: Counter<L>, label: L, values: readonly string[]): Counter<L> {
  for (const value of values) counter.inc({ [label]: value } as Partial<Record<L, string>>, 0);
  return counter;
}
