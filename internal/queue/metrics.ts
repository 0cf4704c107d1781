import { Gauge, type Registry } from "prom-client";
import type { MessageQueue } from "./port.js";

/**
 * `chat_queue_consumer_lag{group,topic}`: the records each of `groups` has
 * not committed yet, read from the queue at scrape time. A queue that cannot
 * tell (no `consumerLag`) gets no gauge.
 */
export function consumerLagGauge(registry: Registry, queue: MessageQueue, groups: readonly [group: string, topic: string][]): void {
  if (!queue.consumerLag) return;
  const lagOf = queue.consumerLag.bind(queue);
  new Gauge({
    name: "chat_queue_consumer_lag",
    help: "Records the consumer group has not committed yet",
    labelNames: ["group", "topic"],
    registers: [registry],
    async collect() {
      // A failed read leaves the last value: the engine is away, and the engine-error counters say so.
      await Promise.all(
        groups.map(async ([group, topic]) => {
          try {
            this.set({ group, topic }, await lagOf(group, topic));
          } catch {
            // keep the last value
          }
        }),
      );
    },
  });
}
