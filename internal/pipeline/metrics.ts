import { Counter, Histogram, type Registry } from "prom-client";

export interface PipelineMetrics {
  sequenced: Counter;
  inboxAppends: Counter;
  deliveryLatency: Histogram;
}

export function pipelineMetrics(registry: Registry): PipelineMetrics {
  return {
    sequenced: new Counter({ name: "chat_messages_sequenced_total", help: "Messages given a channel seq", registers: [registry] }),
    inboxAppends: new Counter({ name: "chat_inbox_appends_total", help: "Inbox entries written", registers: [registry] }),
    deliveryLatency: new Histogram({
      name: "chat_delivery_latency_seconds",
      help: "From acceptance (message id time) to the inbox entry being handed to live sessions",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}
