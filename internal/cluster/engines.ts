import type { Logger } from "pino";
import { tellIfRedisAway, type CassandraEndpoints, type ClusterEndpoints, type InboxRetention, type KafkaEndpoints, type RedisEndpoint } from "../config/engines.js";
import { EtcdWorkerIds } from "../ids/etcd-lease.js";
import { RenewedWorkerId } from "../ids/renewed-worker-id.js";
import { KafkaQueue } from "../queue/kafka.js";
import { topicSpecs } from "../pipeline/topics.js";
import { EtcdServerRegistry } from "../registry/etcd.js";
import { RedisSessionRoutes } from "../routing/redis.js";
import { openCassandraStorage } from "../storage/cassandra/index.js";
import { RedisSendClaims } from "../sendclaims/redis.js";
import { RedisLoginAttempts, RedisWindowCounts } from "../throttle/redis.js";
import { retryStart, StartTimeoutError } from "./start-retry.js";

/**
 * Opening the real engines, the same way in every process of the
 * distributed mode. Each call opens only what its caller needs.
 */
/** Without an inbox retention (only the inbox writer reads one), entries are written to be kept forever. */
export async function openStorage(e: ClusterEndpoints & CassandraEndpoints & Partial<InboxRetention>, logger: Logger) {
  const open = () =>
    openCassandraStorage({
      contactPoints: e.cassandraContactPoints,
      localDataCenter: e.cassandraDc,
      keyspace: e.cassandraKeyspace,
      replicationFactor: e.cassandraReplication,
      serialConsistency: e.cassandraSerial === "SERIAL" ? "serial" : "localSerial",
      inboxRetentionSeconds: e.inboxRetentionSeconds,
      logger,
    });
  return startSteps(e, logger)("opening Cassandra", open, `CHAT_CASSANDRA_CONTACT_POINTS=${e.cassandraContactPoints.join(",")}`);
}

export async function openQueue(e: ClusterEndpoints & KafkaEndpoints, clientId: string, logger: Logger) {
  const queue = new KafkaQueue({ brokers: e.kafkaBrokers, clientId, namespace: e.kafkaNamespace, replicationFactor: e.kafkaReplication, logger });
  try {
    await startSteps(e, logger)("creating the Kafka topics", () => queue.ensureTopics(topicSpecs(e.kafkaPartitions)), `CHAT_KAFKA_BROKERS=${e.kafkaBrokers.join(",")}`);
  } catch (err) {
    await queue.close().catch(() => {});
    throw err;
  }
  return queue;
}

/** Under the cluster's prefix, as every Redis key of the cluster, so clusters sharing a Redis never mix. */
export function openRoutes(e: ClusterEndpoints & RedisEndpoint, logger: Logger) {
  const routes = new RedisSessionRoutes({ url: e.redisUrl, keyPrefix: `${e.etcdPrefix}:`, logger });
  // Every role that needs Redis opens its routes.
  void tellIfRedisAway(e.redisUrl, "session routes", () => routes.ping(), logger);
  return routes;
}

/** Failed-login counters shared by every api process, beside the cluster's other keys. */
export function openLoginAttempts(e: ClusterEndpoints & RedisEndpoint, windowMs: number) {
  return new RedisLoginAttempts({ url: e.redisUrl, keyPrefix: `${e.etcdPrefix}:`, windowMs });
}

/** The direct chats each account started in its window, counted across every api process. */
export function openNewDirectCounts(e: ClusterEndpoints & RedisEndpoint, windowMs: number) {
  return new RedisWindowCounts({ url: e.redisUrl, keyPrefix: `${e.etcdPrefix}:`, name: "direct-new", windowMs });
}

/** Which chat server took a send first, shared by all of them. */
export function openSendClaims(e: ClusterEndpoints & RedisEndpoint, ttlMs: number) {
  return new RedisSendClaims({ url: e.redisUrl, keyPrefix: `${e.etcdPrefix}:`, ttlMs });
}

export function openRegistry(e: ClusterEndpoints, logger: Logger) {
  return new EtcdServerRegistry({ endpoints: e.etcdEndpoints, prefix: e.etcdPrefix, logger });
}

/** The chat servers registered in etcd, read and then followed. */
export function watchServers(servers: EtcdServerRegistry, e: ClusterEndpoints, logger: Logger) {
  return startSteps(e, logger)("reading the chat servers from etcd", () => servers.watch(), etcdAt(e));
}

/** The process's id generator, on a worker number leased from etcd and leased again whenever lost. */
export async function leaseWorkerId(e: ClusterEndpoints, logger: Logger): Promise<RenewedWorkerId> {
  const workerIds = new EtcdWorkerIds({ endpoints: e.etcdEndpoints, prefix: e.etcdPrefix, logger });
  const steps = startSteps(e, logger);
  const first = await steps("leasing a worker id from etcd", () => workerIds.acquire(), etcdAt(e));
  const workerId = new RenewedWorkerId(workerIds, first, { logger });
  await steps("marking the worker id in etcd", () => workerId.start(), etcdAt(e));
  return workerId;
}

const etcdAt = (e: ClusterEndpoints) => `CHAT_ETCD_ENDPOINTS=${e.etcdEndpoints.join(",")}`;

/**
 * Runs a start-up step that needs an engine, retried for CHAT_START_TIMEOUT_S with each failure
 * logged (see retryStart). `where` is the setting that points at the engine, with its value: the
 * line a role gives up with asks about it, since an engine that never answers is most often one
 * looked for in the wrong place (a terminal without .engines/engines.env loaded, say).
 */
export function startSteps(e: Pick<ClusterEndpoints, "startTimeoutSeconds">, logger: Logger) {
  const options = { withinMs: e.startTimeoutSeconds * 1000, logger };
  return async <T>(what: string, step: () => Promise<T>, where?: string): Promise<T> => {
    try {
      return await retryStart(what, step, options);
    } catch (err) {
      if (where && err instanceof StartTimeoutError) err.message += `; is ${where} where it runs?`;
      throw err;
    }
  };
}
