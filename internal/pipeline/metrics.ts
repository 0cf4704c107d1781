import { Counter, Histogram, type Registry } from "prom-client";
import { consumerLagGauge } from "../queue/metrics.js";
import type { Logger } from "pino";
import type { MessageQueue, QueueRecord } from "../queue/port.js";
import { countedFromZero } from "../observability/metrics.js";
import { ConsumerGroups, Topics } from "./topics.js";

export interface PipelineMetrics {
  sequenced: Counter;
  inboxAppends: Counter;
  deliveryLatency: Histogram;
  /** Failures of an engine the pipeline calls (live delivery, notification publishing). */
  engineErrors: Counter<"op">;
  /** Batches a stage failed (its store or the queue away, a record refused), by stage: see failedBatches. */
  batchesFailed: Counter<"stage">;
  /** Records a stage could not decode and went past: see skippedRecords. */
  recordsSkipped: Counter<"stage">;
}

/** What engineErrors counts: live delivery, who is online (for notifications), chatd queueing a notification. */
const ENGINE_OPS = ["deliver", "online_users", "notify"] as const;

/** Each stage's consumer group and the topic it reads, for the lag gauge. */
const GROUP_OF_STAGE: Record<string, [group: string, topic: string]> = {
  sequencer: [ConsumerGroups.sequencer, Topics.submitted],
  "inbox-writer": [ConsumerGroups.inboxWriter, Topics.inbox],
};

/** The pipeline's consumer groups and what they read, for the lag gauge. */
export const PIPELINE_GROUPS: readonly [group: string, topic: string][] = Object.values(GROUP_OF_STAGE);

/**
 * The consumer groups of the stages a process runs (CHAT_PIPELINE_STAGES). A
 * group's lag is the group's, not the process's: every worker reporting
 * every group put the inbox writers' lag on the sequencer-only workers too,
 * so a sum over instances counted it once per worker of either kind.
 */
export function pipelineGroupsOf(stages: readonly string[]): readonly [group: string, topic: string][] {
  return stages.flatMap((stage) => (GROUP_OF_STAGE[stage] ? [GROUP_OF_STAGE[stage]] : []));
}

/** With a queue, also a lag gauge of `groups` (by default the Sequencer's and the InboxWriter's). */
export function pipelineMetrics(registry: Registry, queue?: MessageQueue, groups = PIPELINE_GROUPS): PipelineMetrics {
  if (queue) consumerLagGauge(registry, queue, groups);
  return {
    engineErrors: countedFromZero(
      new Counter({
        name: "chat_pipeline_engine_errors_total",
        help: "Failed calls to an engine by the pipeline, by operation",
        labelNames: ["op"],
        registers: [registry],
      }),
      "op",
      ENGINE_OPS,
    ),
    batchesFailed: new Counter({
      name: "chat_pipeline_batches_failed_total",
      help: "Batches a pipeline stage failed and will be handed again (an engine away, a record its store refuses), by stage",
      labelNames: ["stage"],
      registers: [registry],
    }),
    recordsSkipped: new Counter({
      name: "chat_pipeline_records_skipped_total",
      help: "Records a pipeline stage could not decode and went past, by stage",
      labelNames: ["stage"],
      registers: [registry],
    }),
    sequenced: new Counter({ name: "chat_messages_sequenced_total", help: "Messages given a channel seq", registers: [registry] }),
    inboxAppends: new Counter({ name: "chat_inbox_appends_total", help: "Inbox entries written", registers: [registry] }),
    deliveryLatency: new Histogram({
      name: "chat_delivery_latency_seconds",
      help: "From acceptance (message id time) to the inbox entry being handed to live sessions",
      // Up to a minute: a rebalance or an engine away holds deliveries for seconds to minutes, and
      // histogram_quantile reads whatever is past the last bound as that bound (it was 2.5 s, so a
      // p99 alert at 5 s could never fire). Acceptance times are whole milliseconds: nothing finer.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}

/**
 * What a stage calls for each batch it fails, counting it by stage from 0 (a
 * series in the processes that run the stage only). Its engines failing
 * showed nowhere else until /healthz failed 30 s on: the engine-error
 * counters count the delivery's calls, not the stores' nor the queue's.
 */
export function failedBatches(metrics: PipelineMetrics | undefined, stage: string): (() => void) | undefined {
  if (!metrics) return undefined;
  metrics.batchesFailed.inc({ stage }, 0);
  return () => metrics.batchesFailed.inc({ stage });
}

/**
 * What a stage calls for each record it cannot decode, which it then goes
 * past: logged and counted by stage from 0. Handed again, such a record fails
 * the same way every time, and every later record of its partition (every
 * message of its channels, every entry of its users) waited behind it for good.
 */
export function skippedRecords(metrics: PipelineMetrics | undefined, logger: Logger | undefined, stage: string): (record: QueueRecord, err: unknown) => void {
  metrics?.recordsSkipped.inc({ stage }, 0);
  return (record, err) => {
    metrics?.recordsSkipped.inc({ stage });
    logger?.error(
      { err, stage, topic: record.topic, partition: record.partition, offset: record.offset.toString(), bytes: record.value.length },
      "skipping an undecodable record",
    );
  };
}
