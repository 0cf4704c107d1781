import { Counter, Gauge, type Registry } from "prom-client";
import { countedFromZero } from "../observability/metrics.js";
import type { MessageQueue } from "./port.js";

/**
 * `chat_queue_consumer_lag{group,topic}`: the records each of `groups` has
 * not committed yet, read from the queue at scrape time. A queue that cannot
 * tell (no `consumerLag`) gets no gauge. Registers the groups' records-lost
 * counter as well (recordsLostCounter): whoever watches a group's lag needs to
 * know when the lag was cut short by records deleted unread.
 */
export function consumerLagGauge(
  registry: Registry,
  queue: MessageQueue,
  groups: readonly [group: string, topic: string][],
  options: { timeoutMs?: number } = {},
): void {
  recordsLostCounter(registry, queue, [...new Set(groups.map(([, topic]) => topic))]);
  if (!queue.consumerLag) return;
  const lagOf = queue.consumerLag.bind(queue);
  // A Kafka that does not answer holds a lag read for its whole retry budget
  // (17 s seen), longer than a scrape's timeout: every other metric would go with it.
  const timeoutMs = options.timeoutMs ?? 1_000;
  new Gauge({
    name: "chat_queue_consumer_lag",
    help: "Records the consumer group has not committed yet",
    labelNames: ["group", "topic"],
    registers: [registry],
    async collect() {
      // A failed or slow read leaves the last value: the engine is away, and the engine-error counters say so.
      await Promise.all(
        groups.map(async ([group, topic]) => {
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
          try {
            const lag = await Promise.race([lagOf(group, topic), late]);
            if (lag !== undefined) this.set({ group, topic }, lag);
          } catch {
            // keep the last value
          } finally {
            clearTimeout(timer);
          }
        }),
      );
    },
  });
}

/**
 * `chat_queue_records_lost_total{topic}`: records the queue deleted (past the
 * topic's retention) before a consumer group of this process read them, each
 * loss also logged at error. Acked messages gone without a trace otherwise:
 * any increase is an incident. At 0 from the start for `topics`, so the first
 * loss moves `increase()`. A queue that deletes nothing unread gets none.
 */
export function recordsLostCounter(registry: Registry, queue: MessageQueue, topics: readonly string[]): void {
  if (!queue.onRecordsLost) return;
  const lost = countedFromZero(
    new Counter({
      name: "chat_queue_records_lost_total",
      help: "Records deleted by the queue's retention before the consumer group read them",
      labelNames: ["topic"],
      registers: [registry],
    }),
    "topic",
    topics,
  );
  queue.onRecordsLost((loss) => lost.inc({ topic: loss.topic }, loss.records));
}
