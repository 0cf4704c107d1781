// A throwaway deployment's own corner of the shared local engines: an etcd
// prefix, a Cassandra keyspace and a Kafka namespace (topics and consumer
// groups), all named after one run. Two suites, or a suite and a benchmark,
// then never read each other's keys or take each other's messages, and
// drop() leaves the engines as they were (a keyspace left behind costs
// Cassandra heap for every table it holds, run after run).
import { Client as CassandraClient } from 'cassandra-driver';
import { Etcd3 } from 'etcd3';
import { Kafka, logLevel } from 'kafkajs';
import { dropKeyspace as dropCassandraKeyspace } from './cassandra.js';
import type { EngineConfig } from './engines.js';

export interface EngineScope {
  /** The CHAT_* variables every process of the deployment is started with. */
  env: Record<string, string>;
  /** Removes the keyspace, the topics, the consumer groups and the etcd keys. */
  drop(): Promise<void>;
}

/** `label`: letters and digits, a few of them; a random run id is added. */
export function engineScope(engines: EngineConfig, label: string, run = Math.random().toString(36).slice(2, 8)): EngineScope {
  const name = `${label}${run}`.toLowerCase();
  const etcdPrefix = `chat-${name}`;
  const keyspace = `chat_${name}`;
  const namespace = `chat-${name}`;
  return {
    env: {
      CHAT_ETCD_ENDPOINTS: engines.etcdEndpoints.join(','),
      CHAT_ETCD_PREFIX: etcdPrefix,
      CHAT_REDIS_URL: engines.redisUrl,
      CHAT_KAFKA_BROKERS: engines.kafkaBrokers.join(','),
      CHAT_KAFKA_NAMESPACE: namespace,
      CHAT_CASSANDRA_CONTACT_POINTS: engines.cassandraContactPoints.join(','),
      CHAT_CASSANDRA_DC: engines.cassandraDc,
      CHAT_CASSANDRA_KEYSPACE: keyspace,
    },
    async drop() {
      const results = await Promise.allSettled([
        dropKeyspace(engines, keyspace),
        dropKafkaNamespace(engines, namespace),
        dropEtcdPrefix(engines, etcdPrefix),
      ]);
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length > 0) throw new Error(`could not drop ${name}: ${failed.map((f) => String(f.reason)).join('; ')}`);
    },
  };
}

async function dropKeyspace(engines: EngineConfig, keyspace: string): Promise<void> {
  const client = new CassandraClient({ contactPoints: engines.cassandraContactPoints, localDataCenter: engines.cassandraDc });
  await dropCassandraKeyspace(client, keyspace, () => client.shutdown());
}

async function dropKafkaNamespace(engines: EngineConfig, namespace: string): Promise<void> {
  const admin = new Kafka({ clientId: 'engine-scope', brokers: engines.kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const mine = (n: string) => n.startsWith(`${namespace}.`);
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter(mine);
    if (groups.length > 0) {
      // A member killed with SIGKILL stays in its group until its session times out,
      // and Kafka deletes only empty groups: such a group is left to expire with its offsets.
      await admin.deleteGroups(groups).catch((e: { groups?: { error?: { type?: string } }[] }) => {
        const stillInUse = (g: { error?: { type?: string } }) => g.error?.type === 'NON_EMPTY_GROUP' || g.error?.type === 'GROUP_ID_NOT_FOUND';
        if (!e.groups?.every(stillInUse)) throw e;
      });
    }
    const topics = (await admin.listTopics()).filter(mine);
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

async function dropEtcdPrefix(engines: EngineConfig, prefix: string): Promise<void> {
  const client = new Etcd3({ hosts: engines.etcdEndpoints });
  try {
    await client.delete().prefix(`/${prefix}/`).exec();
  } finally {
    client.close();
  }
}
