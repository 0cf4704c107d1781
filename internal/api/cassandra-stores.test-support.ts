import { CassandraAccountStore, CassandraChannelStore, type CassandraStorage, type Db } from "../storage/cassandra/index.js";
import type { ApiDeps } from "./deps.js";

/**
 * The api's account and channel stores on `storage`'s keyspace, for TestApi.start in place of its
 * SQLite ones. `accountsDb` stands in for the accounts' Db: a test's own, that fails on cue.
 */
export function cassandraStores(storage: CassandraStorage, accountsDb: Db = storage.db): Partial<ApiDeps> {
  return { accounts: new CassandraAccountStore(accountsDb), channels: new CassandraChannelStore(storage.db, storage.messages) };
}
