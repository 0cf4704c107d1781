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
