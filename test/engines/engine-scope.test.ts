import assert from 'node:assert/strict';
import { Client as CassandraClient } from 'cassandra-driver';
import { Etcd3 } from 'etcd3';
import { Kafka, logLevel } from 'kafkajs';
import { SCHEMA_CHANGE_TIMEOUT_MS } from '../support/cassandra.js';
import { engineScope } from '../support/engine-scope.js';
import { createTopic, engineConfig } from '../support/engines.js';

describe('engine scope (a throwaway deployment on the shared engines)', function () {
  // A schema change (the CREATE here, the scope's DROP) can take minutes on a loaded node.
  this.timeout(400_000);
  const engines = engineConfig();

  it('names its own keyspace, Kafka namespace and etcd prefix, and drop() removes them all', async () => {
    const scope = engineScope(engines, 'es');
    const { CHAT_CASSANDRA_KEYSPACE: keyspace, CHAT_KAFKA_NAMESPACE: ns, CHAT_ETCD_PREFIX: prefix } = scope.env;
    assert.match(keyspace!, /^chat_es[a-z0-9]+$/);
    assert.equal(engineScope(engines, 'es').env.CHAT_CASSANDRA_KEYSPACE === keyspace, false, 'two scopes, two keyspaces');

    const cassandra = new CassandraClient({ contactPoints: engines.cassandraContactPoints, localDataCenter: engines.cassandraDc });
    const kafka = new Kafka({ clientId: 'engine-scope-test', brokers: engines.kafkaBrokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const etcd = new Etcd3({ hosts: engines.etcdEndpoints });
    const consumer = kafka.consumer({ groupId: `${ns}.readers` });
    try {
      // What a deployment leaves behind: a keyspace, a topic with a committed group, a key.
      await cassandra.execute(
        `CREATE KEYSPACE ${keyspace} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
        [],
        { readTimeout: SCHEMA_CHANGE_TIMEOUT_MS },
      );
      await admin.connect();
      const topic = `${ns}.things`;
      await createTopic(admin, topic, 1);
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({ topic, messages: [{ value: 'x' }] });
      await producer.disconnect();
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      let seen!: () => void;
      const got = new Promise<void>((r) => (seen = r));
      await consumer.run({ eachMessage: async () => seen() });
      await got;
      await consumer.disconnect();
      await etcd.put(`/${prefix}/servers/a`).value('1');

      await scope.drop();

      const ks = await cassandra.execute('SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?', [keyspace]);
      assert.equal(ks.rowLength, 0, 'keyspace dropped');
      assert.equal((await admin.listTopics()).includes(topic), false, 'topic deleted');
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
      assert.equal(groups.includes(`${ns}.readers`), false, 'consumer group deleted');
      assert.deepEqual(await etcd.getAll().prefix(`/${prefix}/`).keys(), [], 'etcd keys deleted');
      // Dropping what is already gone is harmless.
      await scope.drop();
    } finally {
      await consumer.disconnect().catch(() => {});
      await admin.disconnect();
      await cassandra.shutdown();
      etcd.close();
    }
  });
});
