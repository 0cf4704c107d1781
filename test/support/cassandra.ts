import { randomBytes } from "node:crypto";
import { openCassandraStorage, type CassandraStorage, type Db } from "../../internal/storage/cassandra/index.js";
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
    // A schema change on a loaded node outlasts the driver's 12 s request timeout; and a failed
    // drop still closes the client, which would otherwise hold mocha (no --exit) open for good.
    try {
      await storage.client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`, [], { readTimeout: 100_000 });
    } finally {
      await storage.close();
    }
  });
  return () => {
    if (!storage) throw new Error("scratchCassandra: the storage is open only while the suite runs");
    return storage;
  };
}

/** A Db whose reads (requests) are counted. */
export function countingDb(db: Db) {
  const count = { reads: 0 };
  const execute: Db["client"]["execute"] = ((query: string, params?: unknown[], options?: object) => {
    count.reads++;
    return db.client.execute(query, params, options);
  }) as Db["client"]["execute"];
  const client = Object.create(db.client, { execute: { value: execute } }) as Db["client"];
  return { db: Object.create(db, { client: { value: client } }) as Db, count };
}

/** A Db that counts its requests by kind and table ("SELECT messages"): which reads a path makes, not only how many. */
export function countingByTable(db: Db) {
  const count = new Map<string, number>();
  const execute = ((query: string, params?: unknown[], options?: object) => {
    const kind = /^\s*(\w+)/.exec(query)![1]!.toUpperCase();
    const table = /(?:FROM|INTO|UPDATE)\s+\w+\.(\w+)/i.exec(query)?.[1];
    count.set(`${kind} ${table}`, (count.get(`${kind} ${table}`) ?? 0) + 1);
    return db.client.execute(query, params, options);
  }) as Db["client"]["execute"];
  const client = Object.create(db.client, { execute: { value: execute } }) as Db["client"];
  return { db: Object.create(db, { client: { value: client } }) as Db, count };
}
