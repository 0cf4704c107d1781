import assert from "node:assert/strict";
import { pino } from "pino";
import { EnvReader } from "../config/env.js";
import { readCassandraEndpoints, readClusterEndpoints } from "../config/engines.js";
import { leaseWorkerId, openStorage } from "./engines.js";
import { StartTimeoutError } from "./start-retry.js";

/**
 * The line a role gives up with when an engine never answers names the
 * setting that says where that engine is, with its value: a newcomer who
 * opened a terminal without loading .engines/engines.env saw only
 * "no answer from etcd within 3000 ms" and the default address.
 */
describe("starting on engines that do not answer", function () {
  this.timeout(20_000);
  const logger = pino({ level: "silent" });
  // Port 1: nothing listens there; 0 s: one try.
  const r = new EnvReader({ CHAT_CASSANDRA_CONTACT_POINTS: "127.0.0.1:1", CHAT_ETCD_ENDPOINTS: "127.0.0.1:1", CHAT_START_TIMEOUT_S: "0" });
  const engines = { ...readClusterEndpoints(r), ...readCassandraEndpoints(r) };

  it("asks whether Cassandra runs where CHAT_CASSANDRA_CONTACT_POINTS says", async () => {
    const err = await openStorage(engines, logger).catch((e: unknown) => e);
    assert.ok(err instanceof StartTimeoutError);
    assert.match(err.message, /^opening Cassandra: still failing after 0 s \(CHAT_START_TIMEOUT_S\): .*; is CHAT_CASSANDRA_CONTACT_POINTS=127\.0\.0\.1:1 where it runs\?$/);
  });

  it("asks whether etcd runs where CHAT_ETCD_ENDPOINTS says", async () => {
    const err = await leaseWorkerId(engines, logger).catch((e: unknown) => e);
    assert.ok(err instanceof StartTimeoutError);
    assert.match(err.message, /^leasing a worker id from etcd: still failing after 0 s \(CHAT_START_TIMEOUT_S\): .*; is CHAT_ETCD_ENDPOINTS=127\.0\.0\.1:1 where it runs\?$/);
  });
});
