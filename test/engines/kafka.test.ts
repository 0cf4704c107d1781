// Smoke test: the local Kafka (KRaft, 3.9.x) works with kafkajs 2.2.4 for what we use:
// admin topic creation, an idempotent producer with acks=-1, and a consumer group reading
// keyed messages back in per-key order (see scripts/engines.sh). Fails, never skips, when
// Kafka is unreachable.
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import { createTopic, engineConfig, uniqueName, withTimeout } from '../support/engines.js';

const { Kafka, logLevel, Partitioners } = kafkajs;

describe('engines: kafka (kafkajs)', function () {
  this.timeout(60_000);
  const cleanups: Array<() => Promise<void>> = [];

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });

  it('creates a topic, produces idempotently with acks=-1, consumes per-key in order', async () => {
    const kafka = new Kafka({
      clientId: 'chatd-engines-smoke',
      brokers: engineConfig().kafkaBrokers,
      logLevel: logLevel.WARN,
      connectionTimeout: 3_000,
      retry: { retries: 3 },
    });
    const topic = uniqueName('smoke');

    const admin = kafka.admin();
    cleanups.push(() => admin.disconnect());
    await admin.connect();
    await createTopic(admin, topic, 3);
    cleanups.push(() => admin.deleteTopics({ topics: [topic] }));
    const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
    assert.equal(meta.partitions.length, 3);

    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // An idempotent producer should retry (kafkajs warns otherwise); connect still fails
      // within kafkajs's maxRetryTime (30 s) when the broker is gone.
      retry: { retries: Number.MAX_SAFE_INTEGER },
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    cleanups.push(() => producer.disconnect());
    await producer.connect();

    const keys = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const perKey = 10;
    // Interleave keys so ordering is only guaranteed per key (per partition).
    for (let i = 0; i < perKey; i++) {
      await producer.send({
        topic,
        acks: -1,
        messages: keys.map((k) => ({ key: k, value: `${k}:${i}` })),
      });
    }

    const total = keys.length * perKey;
    const seen = new Map<string, { seq: number; partition: number }[]>();
    let count = 0;
    let resolveAll!: () => void;
    const all = new Promise<void>((r) => (resolveAll = r));

    const consumer = kafka.consumer({ groupId: uniqueName('smoke-group') });
    cleanups.push(() => consumer.disconnect());
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const key = message.key!.toString();
        const [k, seq] = message.value!.toString().split(':');
        assert.equal(k, key);
        const list = seen.get(key) ?? [];
        list.push({ seq: Number(seq), partition });
        seen.set(key, list);
        if (++count === total) resolveAll();
      },
    });
    await withTimeout(all, 45_000, `${total} messages (got ${count})`);

    assert.equal(count, total, 'no duplicates (idempotent producer)');
    for (const k of keys) {
      const list = seen.get(k)!;
      assert.deepEqual(
        list.map((m) => m.seq),
        Array.from({ length: perKey }, (_, i) => i),
        `per-key order for ${k}`,
      );
      assert.equal(new Set(list.map((m) => m.partition)).size, 1, `one partition for key ${k}`);
    }
  });
});
