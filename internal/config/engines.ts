import { isIPv6 } from "node:net";
import type { Logger } from "pino";
import type { EnvReader } from "./env.js";

/**
 * Where the real engines are, for the processes of the distributed mode. Each
 * role reads the settings of the engines it opens, and no others: a gateway
 * (etcd only) starts whatever CHAT_CASSANDRA_* or CHAT_KAFKA_* say, as the
 * README's table of roles promises.
 */
export type EngineEndpoints = ClusterEndpoints & RedisEndpoint & KafkaEndpoints & CassandraEndpoints & InboxRetention;

/** What every role reads: etcd (the chat servers' registry, worker ids) and how long a start waits on its engines. */
export interface ClusterEndpoints {
  etcdEndpoints: string[];
  /** Keys live under /<prefix>/ so several clusters can share one etcd; also the prefix of the cluster's Redis keys. */
  etcdPrefix: string;
  /** Seconds a starting process keeps trying an engine that does not answer before it exits; 0 tries once. */
  startTimeoutSeconds: number;
}

export interface RedisEndpoint {
  redisUrl: string;
}

export interface KafkaEndpoints {
  kafkaBrokers: string[];
  /** Partitions of each pipeline topic: the most workers one stage can use. */
  kafkaPartitions: number;
  /** Prefix of the Kafka topics and consumer groups, for deployments sharing one Kafka ("" = none). */
  kafkaNamespace: string;
  /**
   * Replicas of each topic the processes create (with min.insync.replicas a majority of them);
   * unset, the broker's defaults, which are one replica on a stock broker: an acked record on one disk.
   */
  kafkaReplication?: number;
}

export interface CassandraEndpoints {
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
}

/** Only the inbox writer (the pipeline) writes inbox entries, so only it reads how long they are kept. */
export interface InboxRetention {
  /** Seconds an inbox entry is kept (history is kept forever); 0 keeps entries forever. */
  inboxRetentionSeconds: number;
}

export function readClusterEndpoints(r: EnvReader): ClusterEndpoints {
  const e: ClusterEndpoints = {
    etcdEndpoints: r.list("CHAT_ETCD_ENDPOINTS", ["127.0.0.1:2379"]),
    etcdPrefix: r.string("CHAT_ETCD_PREFIX", "chat"),
    startTimeoutSeconds: r.int("CHAT_START_TIMEOUT_S", 60, 0, 3_600),
  };
  if (!/^[A-Za-z0-9_.-]+$/.test(e.etcdPrefix)) {
    r.problems.push(`CHAT_ETCD_PREFIX=${JSON.stringify(e.etcdPrefix)}: expected letters, digits, '_', '-', '.'`);
  }
  checkEndpoints(r, "CHAT_ETCD_ENDPOINTS", e.etcdEndpoints, { schemes: ["http", "https"], portRequired: true });
  return e;
}

export function readRedisEndpoint(r: EnvReader): RedisEndpoint {
  const redisUrl = r.string("CHAT_REDIS_URL", "redis://127.0.0.1:6379");
  checkRedisUrl(r, redisUrl);
  return { redisUrl };
}

export function readKafkaEndpoints(r: EnvReader): KafkaEndpoints {
  const e: KafkaEndpoints = {
    kafkaBrokers: r.list("CHAT_KAFKA_BROKERS", ["127.0.0.1:9092"]),
    kafkaPartitions: r.int("CHAT_KAFKA_PARTITIONS", 12, 1, 10_000),
    kafkaNamespace: r.string("CHAT_KAFKA_NAMESPACE", ""),
    kafkaReplication: r.optionalInt("CHAT_KAFKA_REPLICATION", 1, 15),
  };
  if (!/^[A-Za-z0-9_-]*$/.test(e.kafkaNamespace)) {
    r.problems.push(`CHAT_KAFKA_NAMESPACE=${JSON.stringify(e.kafkaNamespace)}: expected letters, digits, '_' or '-'`);
  }
  checkEndpoints(r, "CHAT_KAFKA_BROKERS", e.kafkaBrokers, { portRequired: true });
  return e;
}

export function readCassandraEndpoints(r: EnvReader): CassandraEndpoints {
  const e: CassandraEndpoints = {
    cassandraContactPoints: r.list("CHAT_CASSANDRA_CONTACT_POINTS", ["127.0.0.1:9042"]),
    cassandraDc: r.string("CHAT_CASSANDRA_DC", "datacenter1"),
    cassandraKeyspace: r.string("CHAT_CASSANDRA_KEYSPACE", "chat"),
    cassandraReplication: r.int("CHAT_CASSANDRA_REPLICATION", 1, 1, 9),
    cassandraSerial: r.oneOf("CHAT_CASSANDRA_SERIAL", "LOCAL_SERIAL", ["LOCAL_SERIAL", "SERIAL"] as const),
  };
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(e.cassandraKeyspace)) {
    r.problems.push(`CHAT_CASSANDRA_KEYSPACE=${JSON.stringify(e.cassandraKeyspace)}: expected a lower-case CQL name`);
  }
  checkEndpoints(r, "CHAT_CASSANDRA_CONTACT_POINTS", e.cassandraContactPoints, { portRequired: false });
  return e;
}

export function readInboxRetention(r: EnvReader): InboxRetention {
  // 30 days; Cassandra's TTL cannot exceed 20 years.
  return { inboxRetentionSeconds: r.int("CHAT_INBOX_RETENTION_S", 30 * 86_400, 0, 630_720_000) };
}

/**
 * Engine addresses are checked as they are read: a port out of range was
 * retried for CHAT_START_TIMEOUT_S as if the engine were still starting (etcd,
 * Kafka, Cassandra), or crashed the process with a stack trace from deep in
 * the client (Redis), and a list of commas only left a client with no host.
 */
function checkEndpoints(r: EnvReader, name: string, endpoints: readonly string[], options: { schemes?: readonly string[]; portRequired: boolean }): void {
  if (endpoints.length === 0) r.problems.push(`${name}: names no address (expected comma-separated host:port)`);
  for (const endpoint of endpoints) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(endpoint)?.[1];
    const expected = `expected host${options.portRequired ? ":port" : "[:port]"}${options.schemes ? ` or ${options.schemes[0]}://host:port` : ""}`;
    if (scheme !== undefined && !options.schemes?.includes(scheme.toLowerCase())) {
      r.problems.push(`${name}: ${JSON.stringify(endpoint)}: ${expected}`);
      continue;
    }
    const problem = hostPortProblem(scheme === undefined ? endpoint : endpoint.slice(scheme.length + 3), options.portRequired);
    if (problem) r.problems.push(`${name}: ${JSON.stringify(endpoint)}: ${problem}; ${expected}`);
  }
}

/** Why `hostPort` ("host", "host:port", "[v6]:port") is no address to dial, or undefined. */
function hostPortProblem(hostPort: string, portRequired: boolean): string | undefined {
  // Its last group would pass for a port below.
  if (isIPv6(hostPort)) return portRequired ? "no port (an IPv6 address and a port are written [address]:port)" : undefined;
  const port = /:(\d*)$/.exec(hostPort)?.[1];
  // Before the URL parser: it refuses a port past 65535 with nothing but "Invalid URL".
  if (port !== undefined && port !== "" && !(Number(port) >= 1 && Number(port) <= 65535)) return `port ${port} is not from 1 to 65535`;
  let url: URL;
  try {
    url = new URL(`tcp://${hostPort}`);
  } catch {
    return "not a host and port";
  }
  if (url.hostname === "" || url.username !== "" || url.password !== "" || url.pathname !== "" || url.search !== "" || url.hash !== "") return "not a host and port";
  if (portRequired && url.port === "") return "no port";
  return undefined;
}

/** CHAT_REDIS_URL: a redis:// or rediss:// URL of a host and an optional port; a problem shows its password masked. */
export function checkRedisUrl(r: EnvReader, raw: string): void {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    // Reported below.
  }
  const shown = JSON.stringify(shownRedisUrl(raw));
  if (!url || !/^rediss?:$/.test(url.protocol)) {
    r.problems.push(`CHAT_REDIS_URL=${shown}: expected redis://host:port (or rediss:// for TLS)`);
    return;
  }
  const problem = hostPortProblem(url.host, false);
  if (problem) r.problems.push(`CHAT_REDIS_URL=${shown}: ${problem}; expected redis://host:port`);
}

/** CHAT_REDIS_URL and its value, as a line may show it (its password masked), for a line that asks about it. */
export function redisAt(raw: string): string {
  return `CHAT_REDIS_URL=${shownRedisUrl(raw)}`;
}

/**
 * Redis is not waited for at start: what needs it fails, and is tried again, until it answers,
 * and those failures name no setting. One line when it does not answer at start names the one
 * that points at it, since a Redis looked for in the wrong place never answers.
 */
export async function tellIfRedisAway(url: string, what: string, ping: () => Promise<unknown>, logger: Logger): Promise<void> {
  try {
    await ping();
  } catch (err) {
    logger.warn({ err }, `Redis (${what}) does not answer: is ${redisAt(url)} where it runs? ${what} fails until it answers`);
  }
}

/** A Redis URL may carry Redis's password: lines show it masked. */
export function shownRedisUrl(raw: string): string {
  try {
    return maskPassword(new URL(raw));
  } catch {
    return raw.replace(/\/\/[^/@]*@/, "//***@");
  }
}

function maskPassword(url: URL): string {
  if (url.password === "") return url.href;
  const masked = new URL(url.href);
  masked.password = "***";
  return masked.href;
}
