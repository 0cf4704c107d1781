import type { Admin } from "kafkajs";
import type { TopicSpec } from "./port.js";

/**
 * max.message.bytes of the topics ensureTopics creates: the largest record
 * batch (one partition's share of a produce request) Kafka takes. publish()
 * already keeps requests under maxRequestBytes, so this is a backstop for an
 * estimate that falls short, well above the largest record (a 99,999-emoji
 * text is ~400 kB). The broker's default (message.max.bytes, 1,048,588) is
 * only a default for topics without their own; followers (replica.fetch.max.bytes)
 * and consumers fetch a batch larger than their fetch size whole (KIP-74),
 * so the broker needs no setting of its own for it.
 */
export const TOPIC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * retention.ms of the topics ensureTopics creates: how long an acked record
 * waits for a consumer group that is down or behind before Kafka deletes it
 * unread. Set here rather than left to the broker's log.retention.hours, so a
 * broker configured for shorter-lived topics cannot shorten it. What bounds it
 * is disk: every broker holding a replica keeps a week of the topic's writes.
 * retention.bytes stays unset (-1): a size cap would delete unread records
 * during a burst, when a stage is most likely to be behind.
 */
export const TOPIC_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * A majority of a topic's replicas: with acks from all in-sync replicas, an acked record then
 * outlives any minority of brokers, and a partition refuses writes (rather than ack them on one
 * broker) once a majority is out of sync.
 */
export function minInsyncReplicas(replicationFactor: number): number {
  return Math.floor(replicationFactor / 2) + 1;
}

/** Creates one topic: true if this call created it, false if it exists already (another process was first). */
export async function createTopic(admin: Admin, t: TopicSpec, replicationFactor: number | undefined): Promise<boolean> {
  try {
    return await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic: t.topic,
          numPartitions: t.partitions,
          replicationFactor: replicationFactor ?? -1,
          configEntries: [
            { name: "max.message.bytes", value: String(TOPIC_MAX_MESSAGE_BYTES) },
            { name: "retention.ms", value: String(TOPIC_RETENTION_MS) },
            ...(replicationFactor === undefined ? [] : [{ name: "min.insync.replicas", value: String(minInsyncReplicas(replicationFactor)) }]),
          ],
        },
      ],
    });
  } catch (err) {
    // Created, and waiting for its leader the broker answered it knows no such topic (a broker
    // just started or restarted): topicMetadata waits that out.
    if ((err as { type?: string }).type === "UNKNOWN_TOPIC_OR_PARTITION") return true;
    // A refusal other than "exists" (kafkajs answers that one with false), for a topic that exists
    // by now all the same: another process created it while this one asked.
    if ((await admin.listTopics()).includes(t.topic)) return false;
    // kafkajs says only "Topic creation errors"; the broker's reason (more replicas than brokers,
    // a partition count refused) is what the operator needs to read.
    const reasons = ((err as { errors?: unknown[] }).errors ?? []).map((e) =>
      (e as { type?: string }).type === "INVALID_REPLICATION_FACTOR"
        ? `${(e as Error).message} (more replicas than the cluster has brokers?)`
        : e instanceof Error ? e.message : String(e),
    );
    if (reasons.length > 0) throw new Error(`kafka topic ${t.topic} (${t.partitions} partitions, replication ${replicationFactor ?? "the broker's default"}) not created: ${reasons.join("; ")}`, { cause: err });
    throw err;
  }
}

/**
 * The topics' metadata once the broker answered it: just after creating a
 * topic, a broker may not have heard of it yet (UNKNOWN_TOPIC_OR_PARTITION,
 * which kafkajs does not retry), and a process starting beside another that
 * created it would otherwise fail to start.
 */
export async function topicMetadata(admin: Admin, topics: string[]): Promise<Awaited<ReturnType<Admin["fetchTopicMetadata"]>>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await admin.fetchTopicMetadata({ topics });
    } catch (err) {
      if (attempt >= 20 || (err as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw err;
      await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 500)));
    }
  }
}
