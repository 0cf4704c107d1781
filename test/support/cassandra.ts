import { randomBytes } from "node:crypto";
import type cassandra from "cassandra-driver";
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
    this.timeout(5 * SCHEMA_CHANGE_TIMEOUT_MS);
    const cfg = engineConfig();
    // Its schema's creation (and the drop) outlast the driver's 12 s per request on a loaded node.
    storage = await openCassandraStorage({ contactPoints: cfg.cassandraContactPoints, localDataCenter: cfg.cassandraDc, keyspace, readTimeoutMs: SCHEMA_CHANGE_TIMEOUT_MS });
  });
  after(async function () {
    this.timeout(2 * SCHEMA_CHANGE_TIMEOUT_MS);
    if (!storage) return;
    const open = storage;
    await dropKeyspace(open.client, keyspace, () => open.close());
  });
  return () => {
    if (!storage) throw new Error("scratchCassandra: the storage is open only while the suite runs");
    return storage;
  };
}

/**
 * How long a test's schema change (DROP KEYSPACE, CREATE TABLE) may take on a loaded node, where one
 * outlasts the driver's 12 s request timeout; a hook or test making one needs a mocha timeout above it.
 */
export const SCHEMA_CHANGE_TIMEOUT_MS = 100_000;

/**
 * Drops a test's keyspace, then runs `close` (the client's shutdown) even when the drop failed:
 * a client left open holds mocha (no --exit) after its summary for good. A schema change on a
 * loaded node (CI: 2 cores, every engine busy) outlasts the driver's 12 s request timeout, so
 * the drop waits up to SCHEMA_CHANGE_TIMEOUT_MS.
 */
export async function dropKeyspace(client: Pick<cassandra.Client, "execute">, keyspace: string, close?: () => Promise<unknown>): Promise<void> {
  try {
    await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`, [], { readTimeout: SCHEMA_CHANGE_TIMEOUT_MS });
  } finally {
    await close?.();
  }
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
