import type { Registry } from "prom-client";

/**
 * The series of `name` in a scrape of `registry`, each as its labels
 * (`a="x",b="y"`, in the order given by `labels`) with its value: what a
 * test compares with the series it expects, every one of them.
 */
export async function seriesOf(registry: Registry, name: string, labels: readonly string[]): Promise<Map<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  if (!metric) throw new Error(`${name} is not registered`);
  return new Map(metric.values.map((v) => [labels.map((l) => `${l}="${String((v.labels as Record<string, unknown>)[l])}"`).join(","), v.value]));
}

/** Every combination of the label values given, each at `value`: the series seriesOf should find. */
export function seriesAt(value: number, values: Record<string, readonly string[]>): Map<string, number> {
  let keys = [""];
  for (const [label, vs] of Object.entries(values)) keys = keys.flatMap((k) => vs.map((v) => (k ? `${k},` : "") + `${label}="${v}"`));
  return new Map(keys.map((k) => [k, value]));
}
