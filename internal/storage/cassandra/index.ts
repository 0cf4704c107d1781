import type { Logger } from "pino";
import { CassandraAccountStore } from "./account-store.js";
import { CassandraChannelStore } from "./channel-store.js";
import { CassandraInbox } from "./inbox.js";
import { CassandraMessageLog } from "./message-log.js";
import { applySchema, readSchemaInfo, DEFAULT_BUCKET_SIZE, SCHEMA_VERSION, type SchemaInfo, type SchemaOptions } from "./schema.js";
import { createClient, Db, StorageUnavailable, type Client, type ConnectOptions } from "./session.js";

export {
  applySchema,
  CassandraAccountStore,
  CassandraChannelStore,
  CassandraInbox,
  CassandraMessageLog,
  createClient,
  Db,
  DEFAULT_BUCKET_SIZE,
  readSchemaInfo,
  SCHEMA_VERSION,
  StorageUnavailable,
};
export type { Client, ConnectOptions, SchemaInfo, SchemaOptions };

export interface CassandraStorageOptions extends ConnectOptions, Omit<SchemaOptions, "keyspace"> {
  /** Default "chat". */
  keyspace?: string;
  /**
   * Create the keyspace and tables if missing (default true). With false the
   * keyspace must exist (made by a deploy step) and only its layout is read.
   */
  applySchema?: boolean;
  /**
   * Shorthand for replication: { class: "NetworkTopologyStrategy",
   * <localDataCenter>: n }. `replication` wins when both are given.
   */
  replicationFactor?: number;
  /** Heads (last seq per channel / inbox) each writer keeps in memory. */
  headCacheSize?: number;
  /** Seconds an inbox entry is kept (default 0: forever); history is kept forever either way. */
  inboxRetentionSeconds?: number;
  logger?: Logger;
}

export interface CassandraStorage {
  client: Client;
  db: Db;
  schema: SchemaInfo;
  accounts: CassandraAccountStore;
  channels: CassandraChannelStore;
  messages: CassandraMessageLog;
  inbox: CassandraInbox;
  close(): Promise<void>;
}

/** One client (one connection pool) shared by the four stores. */
export async function openCassandraStorage(options: CassandraStorageOptions): Promise<CassandraStorage> {
  const client = createClient(options);
  try {
    await client.connect();
    const keyspace = options.keyspace ?? "chat";
    const replication = options.replication ??
      (options.replicationFactor === undefined
        ? undefined
        : { class: "NetworkTopologyStrategy", [options.localDataCenter]: options.replicationFactor });
    const schema = options.applySchema === false
      ? await readSchemaInfo(client, keyspace)
      : await applySchema(client, { ...options, keyspace, replication });
    options.logger?.info({ keyspace, bucketSize: schema.bucketSize }, "cassandra storage open");
    const db = new Db(client, keyspace, options.serialConsistency);
    const messages = new CassandraMessageLog(db, schema.bucketSize, options.headCacheSize);
    return {
      client,
      db,
      schema,
      accounts: new CassandraAccountStore(db),
      channels: new CassandraChannelStore(db, messages),
      messages,
      inbox: new CassandraInbox(db, schema.bucketSize, options.headCacheSize, options.inboxRetentionSeconds),
      close: () => client.shutdown(),
    };
  } catch (e) {
    await client.shutdown().catch(() => undefined);
    throw e;
  }
}
