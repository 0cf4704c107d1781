import type { EnvReader } from "./env.js";

/** Where the real engines are, for the processes of the distributed mode. */
export interface EngineEndpoints {
  etcdEndpoints: string[];
  /** Keys live under /<prefix>/ so several clusters can share one etcd. */
  etcdPrefix: string;
  redisUrl: string;
  kafkaBrokers: string[];
  /** Partitions of each pipeline topic: the most workers one stage can use. */
  kafkaPartitions: number;
  /** Prefix of the Kafka topics and consumer groups, for deployments sharing one Kafka ("" = none). */
  kafkaNamespace: string;
  cassandraContactPoints: string[];
  cassandraDc: string;
  cassandraKeyspace: string;
  /** Replication factor of the keyspace the project creates (1 for one node). */
  cassandraReplication: number;
  /**
   * The lightweight transactions' serial consistency: LOCAL_SERIAL agrees
   * within the local data centre; a keyspace written in several data centres
   * at once needs SERIAL, or each could win the same compare-and-set (two
   * owners, a 101st member).
   */
  cassandraSerial: "LOCAL_SERIAL" | "SERIAL";
  /** Seconds an inbox entry is kept (history is kept forever); 0 keeps entries forever. */
  inboxRetentionSeconds: number;
  /** Seconds a starting process keeps trying an engine that does not answer before it exits; 0 tries once. */
  startTimeoutSeconds: number;
}

export function readEngineEndpoints(r: EnvReader): EngineEndpoints {
  const e: EngineEndpoints = {
    etcdEndpoints: r.list("CHAT_ETCD_ENDPOINTS", ["127.0.0.1:2379"]),
    etcdPrefix: r.string("CHAT_ETCD_PREFIX", "chat"),
    redisUrl: r.string("CHAT_REDIS_URL", "redis://127.0.0.1:6379"),
    kafkaBrokers: r.list("CHAT_KAFKA_BROKERS", ["127.0.0.1:9092"]),
    kafkaPartitions: r.int("CHAT_KAFKA_PARTITIONS", 12, 1, 10_000),
    kafkaNamespace: r.string("CHAT_KAFKA_NAMESPACE", ""),
    cassandraContactPoints: r.list("CHAT_CASSANDRA_CONTACT_POINTS", ["127.0.0.1:9042"]),
    cassandraDc: r.string("CHAT_CASSANDRA_DC", "datacenter1"),
    cassandraKeyspace: r.string("CHAT_CASSANDRA_KEYSPACE", "chat"),
    cassandraReplication: r.int("CHAT_CASSANDRA_REPLICATION", 1, 1, 9),
    cassandraSerial: r.oneOf("CHAT_CASSANDRA_SERIAL", "LOCAL_SERIAL", ["LOCAL_SERIAL", "SERIAL"] as const),
    // 30 days; Cassandra's TTL cannot exceed 20 years.
    inboxRetentionSeconds: r.int("CHAT_INBOX_RETENTION_S", 30 * 86_400, 0, 630_720_000),
    startTimeoutSeconds: r.int("CHAT_START_TIMEOUT_S", 60, 0, 3_600),
  };
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(e.cassandraKeyspace)) {
    r.problems.push(`CHAT_CASSANDRA_KEYSPACE=${JSON.stringify(e.cassandraKeyspace)}: expected a lower-case CQL name`);
  }
  if (!/^[A-Za-z0-9_.-]+$/.test(e.etcdPrefix)) {
    r.problems.push(`CHAT_ETCD_PREFIX=${JSON.stringify(e.etcdPrefix)}: expected letters, digits, '_', '-', '.'`);
  }
  if (!/^[A-Za-z0-9_-]*$/.test(e.kafkaNamespace)) {
    r.problems.push(`CHAT_KAFKA_NAMESPACE=${JSON.stringify(e.kafkaNamespace)}: expected letters, digits, '_' or '-'`);
  }
  if (!/^rediss?:\/\//.test(e.redisUrl)) r.problems.push(`CHAT_REDIS_URL=${JSON.stringify(e.redisUrl)}: expected redis://host:port`);
  return e;
}
