import { waitFor } from "./wait.js";

/** In a Prometheus text page, the value of the first series of `name` whose labels contain `labels`; undefined when there is none. */
export function metricIn(text: string, name: string, labels = ""): number | undefined {
  const line = text.split("\n").find((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && l.includes(labels));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** One scrape of `metricsUrl`, read as `metricIn` reads it. */
export async function scrapeMetric(metricsUrl: string, name: string, labels = ""): Promise<number | undefined> {
  return metricIn(await (await fetch(metricsUrl)).text(), name, labels);
}

/**
 * The notifier serving `metricsUrl` (chatd, or cmd/notifier) has committed
 * every request and holds none (nothing collapsing, queued or in flight): a
 * push not sent by now is not coming.
 */
export async function notifierSettled(metricsUrl: string, timeoutMs: number, intervalMs: number): Promise<void> {
  await waitFor(
    async () =>
      (await scrapeMetric(metricsUrl, "chat_queue_consumer_lag", 'group="chat-notifier"')) === 0 &&
      (await scrapeMetric(metricsUrl, "chat_push_pending")) === 0,
    "the notifier to have nothing left to do",
    timeoutMs,
    intervalMs,
  );
}

const sweepsOf = async (metricsUrl: string) => (await scrapeMetric(metricsUrl, "chat_presence_sweeps_total")) ?? NaN;

/** Each process serving `metricsUrls` has finished two more presence sweeps: a flip that was due is announced. */
export async function sweptTwiceMore(metricsUrls: readonly string[]): Promise<void> {
  const before = await Promise.all(metricsUrls.map(sweepsOf));
  await waitFor(
    async () => (await Promise.all(metricsUrls.map(sweepsOf))).every((n, i) => n >= before[i]! + 2),
    "every sweeper to sweep twice more",
    10_000,
    50,
  );
}

/**
 * The grace period of anything that went quiet before this call has run out,
 * and every sweeper has looked since: an offline event that was going to
 * come has come. What a test needs before asserting that one did not.
 */
export async function graceRanOut(metricsUrls: readonly string[], graceMs: number): Promise<void> {
  const due = Date.now() + graceMs;
  await waitFor(() => Date.now() >= due, "the grace period to run out", graceMs + 10_000, 50);
  await sweptTwiceMore(metricsUrls);
}

/**
 * What a Prometheus text page names against the conventions `promtool check
 * metrics` holds it to: a counter's name ends in `_total` and nothing else's
 * does (a gauge named so reads as a counter to `rate()`), and durations and
 * sizes are in base units (`_seconds`, `_bytes`, not `_ms` or `_kb`). One line
 * per metric that breaks one; none for a page that keeps them.
 */
export function namingProblems(text: string): string[] {
  const problems: string[] = [];
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === "counter" && !name!.endsWith("_total")) problems.push(`${name}: a counter whose name does not end in _total`);
    if (type !== "counter" && name!.endsWith("_total")) problems.push(`${name}: a ${type} named as a counter (_total)`);
    if (/_(ms|millis(econds)?|micros(econds)?|us|ns|minutes|hours|kb|mb|kilobytes|megabytes)(_|$)/.test(name!)) problems.push(`${name}: not in base units (seconds, bytes)`);
  }
  return problems;
}

/**
 * The upper bound of the bucket of histogram `name` the first observation
 * fell in, as histogram_quantile would report it: past the last finite bound
 * it reports that bound, so an observation there reads as the bound.
 */
export function bucketOf(text: string, name: string): number {
  const bounds = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"[^}]*\\} (\\S+)$`, "gm"))].map(([, le, n]) => [Number(le), Number(n)] as const);
  const finite = bounds.filter(([le]) => Number.isFinite(le));
  return (finite.find(([, n]) => n > 0) ?? finite.at(-1)!)[0];
}
