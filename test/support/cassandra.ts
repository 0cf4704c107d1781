import { randomBytes } from "node:crypto";
import { openCassandraStorage, type CassandraStorage } from "../../internal/storage/cassandra/index.js";
import { engineConfig } from "./engines.js";

/**
 * A keyspace of its own on the Cassandra of the engines, for the suite it is
 * called in (mocha hooks): opened with the schema before the suite, dropped
 * after it. The function returned gives the storage once the suite runs.
 */
export function scratchCassandra(): () => CassandraStorage {
  const keyspace = `chat_test_${randomBytes(5).toString("hex")}`;
  let storage: CassandraStorage | undefined;
  before(async function () {
    this.timeout(120_000);
    const cfg = engineConfig();
    storage = await openCassandraStorage({ contactPoints: cfg.cassandraContactPoints, localDataCenter: cfg.cassandraDc, keyspace });
  });
  after(async function () {
    this.timeout(120_000);
    if (!storage) return;
    await storage.client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
    await storage.close();
  });
  return () => {
    if (!storage) throw new Error("scratchCassandra: the storage is open only while the suite runs");
    return storage;
  };
}
