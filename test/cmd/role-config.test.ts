import assert from "node:assert/strict";
import { readApiConfig } from "../../cmd/api/config.js";
import { readChatServerConfig } from "../../cmd/chat-server/config.js";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { readNotifierConfig } from "../../cmd/notifier/config.js";
import { readPipelineConfig } from "../../cmd/pipeline/config.js";
import { readPresenceConfig } from "../../cmd/presence/config.js";
import { ConfigError } from "../../internal/config/env.js";

// Each role of the cluster reads the settings of the engines and features it uses, and no
// others: one environment file for every role once stopped a gateway over a Cassandra typo.
describe("cluster roles read only their own settings", () => {
  const garbage = (names: string[]) => Object.fromEntries(names.map((n) => [n, "no such value:"]));
  const redis = ["CHAT_REDIS_URL"];
  const kafka = ["CHAT_KAFKA_BROKERS", "CHAT_KAFKA_PARTITIONS", "CHAT_KAFKA_NAMESPACE", "CHAT_KAFKA_REPLICATION"];
  const cassandra = ["CHAT_CASSANDRA_CONTACT_POINTS", "CHAT_CASSANDRA_DC", "CHAT_CASSANDRA_KEYSPACE", "CHAT_CASSANDRA_REPLICATION", "CHAT_CASSANDRA_SERIAL"];
  const notifierOnly = ["CHAT_PUSH_COLLAPSE_MS", "CHAT_PUSH_TIMEOUT_MS", "CHAT_PUSH_CONCURRENCY", "CHAT_PUSH_MAX_ATTEMPTS", "CHAT_PUSH_BACKOFF_MS"];
  const refusedNaming = (read: (env: NodeJS.ProcessEnv) => unknown, name: string) =>
    assert.throws(() => read(garbage([name])), (e) => e instanceof ConfigError && e.problems.some((p) => p.startsWith(name)), name);

  it("gateway: starts with garbage in every Redis, Kafka and Cassandra setting and the inbox retention (it opens etcd only)", () => {
    const config = readGatewayConfig(garbage([...redis, ...kafka, ...cassandra, "CHAT_INBOX_RETENTION_S"]));
    assert.deepEqual(Object.keys(config.engines).sort(), ["etcdEndpoints", "etcdPrefix", "startTimeoutSeconds"]);
    refusedNaming(readGatewayConfig, "CHAT_ETCD_ENDPOINTS");
  });

  it("presence: starts with garbage in the Kafka settings (it opens no queue), and still refuses a bad Redis or Cassandra one", () => {
    readPresenceConfig(garbage(kafka));
    for (const name of [...redis, ...cassandra.filter((n) => n !== "CHAT_CASSANDRA_DC")]) refusedNaming(readPresenceConfig, name);
  });

  it("api: starts with garbage in the notifier's sending settings (it only registers endpoints)", () => {
    readApiConfig(garbage(notifierOnly));
    for (const name of notifierOnly) refusedNaming(readNotifierConfig, name);
  });

  it("every role with a queue reads CHAT_KAFKA_REPLICATION (unset: the broker's default), refusing one out of 1 to 15 by name", () => {
    for (const read of [readApiConfig, readChatServerConfig, readNotifierConfig, readPipelineConfig]) {
      assert.equal(read({ CHAT_KAFKA_REPLICATION: "3" }).engines.kafkaReplication, 3);
      assert.equal(read({}).engines.kafkaReplication, undefined);
      refusedNaming(read, "CHAT_KAFKA_REPLICATION");
      assert.throws(() => read({ CHAT_KAFKA_REPLICATION: "16" }), (e) => e instanceof ConfigError && e.problems.some((p) => p.startsWith("CHAT_KAFKA_REPLICATION")));
    }
  });

  it("only the pipeline (the inbox writer) reads CHAT_INBOX_RETENTION_S", () => {
    for (const read of [readApiConfig, readChatServerConfig, readNotifierConfig, readPresenceConfig]) read(garbage(["CHAT_INBOX_RETENTION_S"]));
    refusedNaming(readPipelineConfig, "CHAT_INBOX_RETENTION_S");
    assert.equal(readPipelineConfig({ CHAT_INBOX_RETENTION_S: "0" }).engines.inboxRetentionSeconds, 0);
  });
});

// The gateway id goes into every gateway log line and each SessionOpen a chat server gets:
// the chat server id's rule, checked as that one is, naming the variable.
describe("CHAT_GATEWAY_ID", () => {
  it("takes 1 to 128 of letters, digits and . _ : -, as CHAT_SERVER_ID does", () => {
    for (const id of ["gw-1", "gw.eu_1:a", "x".repeat(128)]) assert.equal(readGatewayConfig({ CHAT_GATEWAY_ID: id }).gatewayId, id);
    for (const id of ["gw 1", "gw/1", "gw\n1", "x".repeat(129), "gw\u00e9"]) {
      assert.throws(
        () => readGatewayConfig({ CHAT_GATEWAY_ID: id }),
        (e) => e instanceof ConfigError && e.problems.some((p) => p.startsWith("CHAT_GATEWAY_ID: must be 1 to 128") && p.includes(JSON.stringify(id))),
        id,
      );
    }
  });

  it("defaults to one the rule takes", () => {
    const { gatewayId } = readGatewayConfig({});
    assert.match(gatewayId, /^[A-Za-z0-9._:-]{1,128}$/);
  });
});
