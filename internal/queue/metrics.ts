import { Gauge, type Registry } from "prom-client";
import type { MessageQueue } from "./port.js";

/**
 * `chat_queue_consumer_lag{group,topic}`: the records each of `groups` has
 * not committed yet, read from the queue at scrape time. A queue that cannot
 * tell (no `consumerLag`) gets no gauge.
 */
export function consumerLagGauge(
  registry: Registry,
  queue: MessageQueue,
  groups: readonly [group: string, topic: string][],
  options: { timeoutMs?: number } = {},
): void {
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
