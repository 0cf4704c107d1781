import assert from "node:assert/strict";
import { readEngineEndpoints } from "./engines.js";
import { ConfigError, EnvReader, readLogLevel } from "./env.js";

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

describe("CHAT_LOG_LEVEL", () => {
  it("is one of pino's levels, info by default; a typo names the variable", () => {
    assert.equal(readLogLevel(new EnvReader({})), "info");
    assert.equal(readLogLevel(new EnvReader({ CHAT_LOG_LEVEL: "debug" })), "debug");
    const r = new EnvReader({ CHAT_LOG_LEVEL: "loud" });
    readLogLevel(r);
    assert.throws(() => r.done(), (e: unknown) => e instanceof ConfigError && /CHAT_LOG_LEVEL="loud": expected one of fatal, error/.test(e.message));
  });
});
