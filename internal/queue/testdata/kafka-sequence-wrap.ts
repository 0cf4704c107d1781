// Run by kafka.test.ts in a process of its own: a KafkaQueue whose producer has sent
// 2^31 - 6 records to partition 0 of a topic (as after days of a busy partition), then
// publishes ten more one at a time. kafkajs' producer must be the one whose sequences
// are set, so its sequence module is wrapped before kafkajs loads, hence the own process.
// Prints {sent, err?} as JSON.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const path = require.resolve("kafkajs/src/producer/eosManager/index.js");
const createEosManager = require(path) as (o: { transactional: boolean }) => EosManager;
interface EosManager {
  getSequence(topic: string, partition: number): number;
  updateSequence(topic: string, partition: number, increment: number): void;
}
const made: EosManager[] = [];
require.cache[path]!.exports = (o: { transactional: boolean }) => {
  const m = createEosManager(o);
  if (!o.transactional) made.push(m);
  return m;
};

const { KafkaQueue } = await import("../kafka.js");
const { engineConfig, uniqueName } = await import("../../../test/support/engines.js");
const kafkajs = (await import("kafkajs")).default;

const ALREADY_SENT = 2 ** 31 - 6;
const topic = uniqueName("seq-wrap");
const queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, publishTimeoutMs: 10_000 });
let sent = 0;
let err: string | undefined;
try {
  await queue.ensureTopics([{ topic, partitions: 1 }]);
  await queue.connect();
  // The queue's producer (the first idempotent one made) has sent ALREADY_SENT records to partition 0.
  made[0]!.getSequence(topic, 0);
  made[0]!.updateSequence(topic, 0, ALREADY_SENT);
  (queue as unknown as { producerRecords: number }).producerRecords = ALREADY_SENT;
  for (let i = 0; i < 10; i++) {
    await queue.publish(topic, [{ key: "k", value: new TextEncoder().encode(String(i)) }]);
    sent++;
  }
} catch (e) {
  err = (e as Error).message;
} finally {
  await queue.close();
  const admin = new kafkajs.Kafka({ brokers: engineConfig().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.disconnect();
}
process.stdout.write(JSON.stringify({ sent, err }) + "\n");
