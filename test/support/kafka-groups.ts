// Consumer groups on the engines' Kafka as a test sees them from outside: who is in a group, and a
// member no KafkaQueue member can share a group with, and one that holds a group's rebalance.
import kafkajs from "kafkajs";
import { topicSpecs } from "../../internal/pipeline/topics.js";
import { KafkaQueue } from "../../internal/queue/kafka.js";
import type { BatchHandler } from "../../internal/queue/port.js";
import { engineConfig } from "./engines.js";
import { waitFor } from "./wait.js";

function admin(): kafkajs.Admin {
  return new kafkajs.Kafka({ clientId: "test-groups", brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
}

/** Members each group has now (a group Kafka has never seen has none). */
export async function groupMembers(groups: string[]): Promise<Record<string, number>> {
  const a = admin();
  await a.connect();
  try {
    const { groups: described } = await a.describeGroups(groups);
    return Object.fromEntries(described.map((g) => [g.groupId, g.members.length]));
  } finally {
    await a.disconnect();
  }
}

/** kafkajs's round-robin assigner under another name: a group member no KafkaQueue member can share a group with. */
const foreignAssigner: kafkajs.PartitionAssigner = (config) => ({ ...kafkajs.PartitionAssigners.roundRobin(config), name: "ForeignAssigner" });

/**
 * A member of another protocol tries to join the group: resolves with it once
 * it holds the group, or undefined when the broker refused it (the group has
 * live members of our protocol).
 */
export async function joinForeign(group: string, topic: string): Promise<kafkajs.Consumer | undefined> {
  const kafka = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  // A short long poll: disconnect() waits for the fetch in flight, which kafkajs' default
  // (5 s) kept a test waiting on once the member had done its part.
  const consumer = kafka.consumer({ groupId: group, partitionAssigners: [foreignAssigner], retry: { retries: 0 }, maxWaitTimeInMs: 100 });
  let outcome: "joined" | "refused" | undefined;
  consumer.on(consumer.events.GROUP_JOIN, () => (outcome = "joined"));
  consumer.on(consumer.events.CRASH, (e) => void (e.payload.restart || (outcome = "refused")));
  await consumer.connect();
  await consumer.subscribe({ topics: [topic] });
  await consumer.run({ eachBatch: async () => {} });
  await waitFor(() => outcome, "the foreign member's join");
  if (outcome === "joined") return consumer;
  await consumer.disconnect();
  return undefined;
}

export interface GroupHolder {
  /** Aborted once a newcomer's join takes the holder's partition away. */
  revoked: AbortSignal;
  /** How many times the holder has (re)joined the group so far. */
  joins(): number;
  /** Lets the held batch finish, so the group's rebalance can complete. */
  release(): void;
  close(): Promise<void>;
}

/**
 * A member of `group` (in `namespace`) holding a batch of `topic`: kafkajs rejoins only once a
 * batch is done, so a process that joins the group stays joining until `release()`. Its client
 * id sorts first, so the group's round robin leaves it the one partition.
 */
export async function holdGroup(namespace: string, group: string, topic: string): Promise<GroupHolder> {
  const queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, namespace, clientId: "a-holder" });
  let release = () => {};
  const released = new Promise<void>((r) => (release = r));
  let revoked: AbortSignal | undefined;
  let joins = 0;
  const close = async () => {
    release();
    await queue.close();
  };
  try {
    await queue.ensureTopics(topicSpecs(1));
    const onBatch: BatchHandler = async (_records, batch) => {
      revoked = batch!.revoked;
      await released;
    };
    await queue.subscribe(group, topic, onBatch, { onConsumerTrouble: (err) => void (err || joins++) });
    await queue.publish(topic, [{ key: "k", value: new Uint8Array([0]) }]);
    await waitFor(() => revoked, "the holder's batch in hand");
  } catch (err) {
    await close();
    throw err;
  }
  return { revoked: revoked!, joins: () => joins, release, close };
}
