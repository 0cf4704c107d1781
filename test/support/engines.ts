// Addresses of the local engines (etcd, Redis, Kafka, Cassandra) for tests.
//
// Values come from the environment when set (CI or a developer pointing tests elsewhere),
// otherwise from .engines/engines.env, which `scripts/engines.sh up` writes. Nothing here
// skips a test: if neither source is there, engineConfig() throws so the test fails with
// a message saying how to start the engines.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { Admin } from 'kafkajs';
import { waitFor } from './wait.js';

export interface EngineConfig {
  /** etcd client endpoints, "host:port" (etcd3 accepts them as hosts). */
  etcdEndpoints: string[];
  /** redis://host:port */
  redisUrl: string;
  /** Kafka bootstrap brokers, "host:port". */
  kafkaBrokers: string[];
  /** Cassandra native-protocol contact points, "host:port". */
  cassandraContactPoints: string[];
  /** Cassandra local data centre name (for the driver's load balancing). */
  cassandraDc: string;
}

const VARS = [
  'CHAT_ETCD_ENDPOINTS',
  'CHAT_REDIS_URL',
  'CHAT_KAFKA_BROKERS',
  'CHAT_CASSANDRA_CONTACT_POINTS',
  'CHAT_CASSANDRA_DC',
] as const;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Path of the env file written by `scripts/engines.sh up` (CHAT_ENGINES_DIR overrides .engines). */
export function enginesEnvFile(): string {
  const dir = process.env.CHAT_ENGINES_DIR ?? join(repoRoot, '.engines');
  return join(dir, 'engines.env');
}

/** Parses KEY=VALUE lines; blank lines and # comments are ignored, quotes are stripped. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    let value = line.slice(eq + 1).trim();
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    out[line.slice(0, eq).trim()] = value;
  }
  return out;
}

const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

export function engineConfig(): EngineConfig {
  const file = enginesEnvFile();
  const fromFile = existsSync(file) ? parseEnvFile(readFileSync(file, 'utf8')) : {};
  const get = (name: (typeof VARS)[number]): string => {
    const v = process.env[name] ?? fromFile[name];
    if (v === undefined || v === '') {
      throw new Error(
        `${name} is not set and ${file} does not define it: start the engines with ` +
          '`npm run engines:up` (scripts/engines.sh up) or set the CHAT_* variables',
      );
    }
    return v;
  };
  return {
    etcdEndpoints: list(get('CHAT_ETCD_ENDPOINTS')),
    redisUrl: get('CHAT_REDIS_URL'),
    kafkaBrokers: list(get('CHAT_KAFKA_BROKERS')),
    cassandraContactPoints: list(get('CHAT_CASSANDRA_CONTACT_POINTS')),
    cassandraDc: get('CHAT_CASSANDRA_DC'),
  };
}

/** A name unique enough for topics/keyspaces/keys shared by concurrent test runs. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Creates a Kafka topic and waits until every partition has a leader.
 * kafkajs's own `waitForLeaders` gives up when the broker it asks has not yet
 * heard of the topic it just created (UNKNOWN_TOPIC_OR_PARTITION, "This
 * server does not host this topic-partition"): the topic is there all the
 * same, so that is waited out here.
 */
export async function createTopic(admin: Admin, topic: string, numPartitions: number): Promise<void> {
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  } catch (err) {
    if (!(await admin.listTopics()).includes(topic)) throw err;
  }
  await waitFor(async () => {
    try {
      const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
      return meta!.partitions.length === numPartitions && meta!.partitions.every((p) => p.leader >= 0);
    } catch {
      return false;
    }
  }, `topic ${topic} to have a leader for each partition`, 30_000);
}

/** Rejects with a clear message if `p` does not settle within `ms` (the timer never keeps the process alive). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * A client of the engines' Redis for a test's own use. It never retries: when
 * Redis does not answer, the test fails with a hint, and no client is left
 * reconnecting to keep mocha from exiting.
 */
export async function connectRedis(): Promise<Redis> {
  const url = engineConfig().redisUrl;
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: 3_000 });
  redis.on('error', () => {});
  await withTimeout(redis.connect(), 5_000, `Redis at ${url} (start it: bash scripts/engines.sh up redis)`);
  return redis;
}
