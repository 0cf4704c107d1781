// Consumer groups on the engines' Kafka as a test sees them from outside: who is in a group, and a
// member no KafkaQueue member can share a group with.
import kafkajs from "kafkajs";
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
  const consumer = kafka.consumer({ groupId: group, partitionAssigners: [foreignAssigner], retry: { retries: 0 } });
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
