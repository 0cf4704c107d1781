import { SqliteAccountStore } from "./account-store.js";
import { SqliteChannelStore } from "./channel-store.js";
import { openDatabase, type OpenOptions, type SqliteDatabase } from "./database.js";
import { SqliteInbox } from "./inbox.js";
import { SqliteMessageLog } from "./message-log.js";

export { SqliteAccountStore, SqliteChannelStore, SqliteInbox, SqliteMessageLog, openDatabase };
export type { OpenOptions, SqliteDatabase };

export interface SqliteStorage {
  db: SqliteDatabase;
  accounts: SqliteAccountStore;
  channels: SqliteChannelStore;
  messages: SqliteMessageLog;
  inbox: SqliteInbox;
  close(): void;
}

/** One Database (one connection) shared by the four stores. */
export function openSqliteStorage(path: string, options?: OpenOptions): SqliteStorage {
  const db = openDatabase(path, options);
  return {
    db,
    accounts: new SqliteAccountStore(db),
    channels: new SqliteChannelStore(db),
    messages: new SqliteMessageLog(db),
    inbox: new SqliteInbox(db),
    close: () => db.close(),
  };
}
