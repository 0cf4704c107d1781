import assert from "node:assert/strict";
import { readCassandraEndpoints, readClusterEndpoints, readInboxRetention, readKafkaEndpoints, readRedisEndpoint } from "./engines.js";
import { ConfigError, EnvReader, readLogLevel } from "./env.js";

/** Every engine setting, as the pipeline (the one role that opens them all) reads them. */
const readEngineEndpoints = (r: EnvReader) => ({
  ...readClusterEndpoints(r),
  ...readRedisEndpoint(r),
  ...readKafkaEndpoints(r),
  ...readCassandraEndpoints(r),
  ...readInboxRetention(r),
});

describe("EnvReader", () => {
  it("uses fallbacks for unset variables", () => {
    const r = new EnvReader({});
    assert.equal(r.int("CHAT_X", 5, 0, 10), 5);
    assert.equal(r.oneOf("CHAT_Y", "a", ["a", "b"]), "a");
    r.done();
  });

  it("names every bad variable and what it expected", () => {
    const r = new EnvReader({ CHAT_PORT: "http", CHAT_MODE: "fast" });
    r.int("CHAT_PORT", 1, 0, 65535);
    r.oneOf("CHAT_MODE", "a", ["a", "b"]);
    assert.throws(
      () => r.done(),
      (e: unknown) =>
        e instanceof ConfigError &&
        /CHAT_PORT="http": expected an integer from 0 to 65535/.test(e.message) &&
        /CHAT_MODE="fast": expected one of a, b/.test(e.message),
    );
  });

  it("takes integers as plain decimal digits only: blanks, hex, exponents, signs and fractions name the variable", () => {
    assert.equal(new EnvReader({ CHAT_N: "0" }).int("CHAT_N", 5, 0, 10), 0);
    assert.equal(new EnvReader({ CHAT_N: "010" }).int("CHAT_N", 5, 0, 10), 10);
    assert.equal(new EnvReader({ CHAT_N: "-3" }).int("CHAT_N", 5, -10, 10), -3);
    for (const raw of [" ", "\t", " 1", "1 ", "0x0", "0b1", "0o7", "1e1", "+1", "1.0", ".5", "1_0", "-", "Infinity"]) {
      const r = new EnvReader({ CHAT_GRPC_PORT: raw });
      assert.equal(r.int("CHAT_GRPC_PORT", 8081, 0, 65535), 8081, JSON.stringify(raw));
      assert.throws(
        () => r.done(),
        (e: unknown) => e instanceof ConfigError && e.message.includes(`CHAT_GRPC_PORT=${JSON.stringify(raw)}: expected an integer from 0 to 65535`),
        JSON.stringify(raw),
      );
    }
  });
});

describe("engine settings", () => {
  it("keeps inbox entries 30 days unless told otherwise, and refuses a retention Cassandra cannot store", () => {
    assert.equal(readEngineEndpoints(new EnvReader({})).inboxRetentionSeconds, 30 * 86_400);
    assert.equal(readEngineEndpoints(new EnvReader({ CHAT_INBOX_RETENTION_S: "0" })).inboxRetentionSeconds, 0);
    const r = new EnvReader({ CHAT_INBOX_RETENTION_S: "-1" });
    readEngineEndpoints(r);
    assert.throws(() => r.done(), (e: unknown) => e instanceof ConfigError && /CHAT_INBOX_RETENTION_S="-1"/.test(e.message));
  });

  it("uses LOCAL_SERIAL for lightweight transactions unless told SERIAL (a keyspace written in several data centres)", () => {
    assert.equal(readEngineEndpoints(new EnvReader({})).cassandraSerial, "LOCAL_SERIAL");
    assert.equal(readEngineEndpoints(new EnvReader({ CHAT_CASSANDRA_SERIAL: "SERIAL" })).cassandraSerial, "SERIAL");
    const r = new EnvReader({ CHAT_CASSANDRA_SERIAL: "QUORUM" });
    readEngineEndpoints(r);
    assert.throws(() => r.done(), (e: unknown) => e instanceof ConfigError && /CHAT_CASSANDRA_SERIAL/.test(e.message));
  });

  it("takes a Kafka namespace of letters, digits, '_' and '-' only", () => {
    assert.equal(readEngineEndpoints(new EnvReader({})).kafkaNamespace, "");
    assert.equal(readEngineEndpoints(new EnvReader({ CHAT_KAFKA_NAMESPACE: "eu-1" })).kafkaNamespace, "eu-1");
    const r = new EnvReader({ CHAT_KAFKA_NAMESPACE: "a.b" });
    readEngineEndpoints(r);
    assert.throws(() => r.done(), (e: unknown) => e instanceof ConfigError && /CHAT_KAFKA_NAMESPACE="a.b"/.test(e.message));
  });
});

describe("engine addresses", () => {
  const problems = (env: Record<string, string>) => {
    const r = new EnvReader(env);
    readEngineEndpoints(r);
    return r.problems;
  };

  it("takes host:port lists (etcd also as http(s)://host:port, Cassandra also without a port) and redis(s):// URLs", () => {
    assert.deepEqual(problems({}), []);
    assert.deepEqual(
      problems({
        CHAT_ETCD_ENDPOINTS: "127.0.0.1:2379, http://etcd-1:2379,https://etcd-2.example:2379,[::1]:2379",
        CHAT_KAFKA_BROKERS: "k1:9092,[fd00::1]:9092",
        CHAT_CASSANDRA_CONTACT_POINTS: "c1,c2:9042,fd00::2,[fd00::3]:9042",
        CHAT_REDIS_URL: "rediss://:secret@redis.example:6380/2",
      }),
      [],
    );
  });

  it("refuses at start-up what no client can dial, naming the variable and the entry, instead of retrying it or crashing", () => {
    for (const [name, value, why] of [
      ["CHAT_ETCD_ENDPOINTS", "127.0.0.1:99999", /"127\.0\.0\.1:99999": port 99999 is not from 1 to 65535/],
      ["CHAT_ETCD_ENDPOINTS", "etcd", /"etcd": no port/],
      ["CHAT_ETCD_ENDPOINTS", "grpc://etcd:2379", /"grpc:\/\/etcd:2379": expected host:port or http:\/\/host:port/],
      ["CHAT_ETCD_ENDPOINTS", ",,", /names no address/],
      ["CHAT_KAFKA_BROKERS", "k1:9092,k2", /"k2": no port/],
      ["CHAT_KAFKA_BROKERS", "k1:0", /port 0 is not from 1 to 65535/],
      ["CHAT_CASSANDRA_CONTACT_POINTS", "c1:70000", /port 70000/],
      ["CHAT_CASSANDRA_CONTACT_POINTS", "c1:9042/ks", /"c1:9042\/ks": not a host and port/],
      ["CHAT_REDIS_URL", "redis://127.0.0.1:99999", /"redis:\/\/127\.0\.0\.1:99999": expected redis:\/\/host:port/],
      ["CHAT_REDIS_URL", "127.0.0.1:6379", /expected redis:\/\/host:port/],
    ] as const) {
      const found = problems({ [name]: value });
      assert.equal(found.length, 1, `${name}=${value}: ${found.join("; ")}`);
      assert.ok(found[0]!.startsWith(name), found[0]);
      assert.match(found[0]!, why);
    }
  });

  it("shows a Redis password masked in the problem it reports", () => {
    const [problem] = problems({ CHAT_REDIS_URL: "redis://app:hunter2@redis.example:99999" });
    assert.ok(problem && !problem.includes("hunter2"), problem);
    assert.match(problem, /redis:\/\/\*\*\*@redis\.example:99999/);
  });
});

describe("CHAT_LOG_LEVEL", () => {
  it("is one of pino's levels, info by default; a typo names the variable", () => {
    assert.equal(readLogLevel(new EnvReader({})), "info");
    assert.equal(readLogLevel(new EnvReader({ CHAT_LOG_LEVEL: "debug" })), "debug");
    const r = new EnvReader({ CHAT_LOG_LEVEL: "loud" });
    readLogLevel(r);
    assert.throws(() => r.done(), (e: unknown) => e instanceof ConfigError && /CHAT_LOG_LEVEL="loud": expected one of fatal, error/.test(e.message));
  });
});
