import { SqliteAccountStore } from "./account-store.js";
import { SqliteChannelStore } from "./channel-store.js";
import { openDatabase, type OpenOptions, type SqliteDatabase } from "./database.js";
import { SqliteInbox } from "./inbox.js";
import { SqliteMessageLog } from "./message-log.js";
import { SqliteMessageWriter } from "./message-writer.js";
import { groupCommitOf } from "./group-commit.js";
import { SqliteInboxRetention, type InboxRetentionOptions } from "./inbox-retention.js";
import { WalCheckpointer, WRITER_AUTOCHECKPOINT_PAGES, type WalCheckpointerOptions } from "./wal-checkpointer.js";

export { SqliteAccountStore, SqliteChannelStore, SqliteInbox, SqliteMessageLog, SqliteMessageWriter, openDatabase };
export type { OpenOptions, SqliteDatabase };

export interface SqliteStorage {
  db: SqliteDatabase;
  accounts: SqliteAccountStore;
  channels: SqliteChannelStore;
  messages: SqliteMessageLog;
  inbox: SqliteInbox;
  writer: SqliteMessageWriter;
  /** Throws while message writes fail for the file's sake (a full disk): for `/healthz`. */
  writeCheck(): void;
  /**
   * The highest snowflake id stored (messages, changes, users, devices,
   * channels): where chatd's generator goes on from, whatever the clock says.
   */
  highestIssuedId(): bigint;
  /** Absent for ":memory:", which has no WAL. */
  checkpointer?: WalCheckpointer;
  /** Takes expired inbox entries away, every so often; sweeps nothing when they are kept forever. */
  inboxRetention: SqliteInboxRetention;
  /**
   * Closes the connection, then waits for the checkpointer's: the last to
   * close takes the WAL file away, and a process that exits before the
   * worker has would leave it behind.
   */
  close(): Promise<void>;
}

/**
 * One Database (one connection) shared by every store, so their writes of one
 * turn share a commit; the WAL is copied back by a worker thread.
 */
/**
 * `now`: the clock that decides when a used refresh token may be forgotten (tests move it).
 * `inboxRetention`: how long inbox entries are kept; forever without it.
 * `checkpoints`: where the WAL checkpointer tells of its failures.
 */
export function openSqliteStorage(
  path: string,
  options?: OpenOptions & { now?: () => number; inboxRetention?: InboxRetentionOptions; checkpoints?: Pick<WalCheckpointerOptions, "logger" | "onFailure"> },
): SqliteStorage {
  const db = openDatabase(path, options);
  let checkpointer: WalCheckpointer | undefined;
  if (path !== ":memory:") {
    checkpointer = new WalCheckpointer(path, options?.checkpoints);
    db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
    // A long read (a backup's VACUUM INTO under load) holds the WAL from starting over, and it
    // grows by all that is written meanwhile; SQLite never shrinks the file by itself, so it
    // kept that size (hundreds of MB) until chatd stopped. Cut back to the backstop's size when it starts over.
    db.pragma(`journal_size_limit = ${WRITER_AUTOCHECKPOINT_PAGES * Number(db.pragma("page_size", { simple: true }))}`);
  }
  const messages = new SqliteMessageLog(db);
  const inbox = new SqliteInbox(db);
  const inboxRetention = new SqliteInboxRetention(db, options?.inboxRetention ?? { retentionMs: 0 });
  inboxRetention.start();
  return {
    db,
    accounts: new SqliteAccountStore(db, options?.now),
    channels: new SqliteChannelStore(db),
    messages,
    inbox,
    writer: new SqliteMessageWriter(db, messages, inbox),
    writeCheck: () => groupCommitOf(db).writeCheck(),
    highestIssuedId: () => highestIssuedId(db),
    checkpointer,
    inboxRetention,
    close: async () => {
      await inboxRetention.stop();
      checkpointer?.stop();
      db.close();
      await checkpointer?.exited();
    },
  };
}

// All but devices read the last row of their primary key; devices, keyed by user first,
// are scanned (once, at start-up).
function highestIssuedId(db: SqliteDatabase): bigint {
  const row = db
    .prepare(
      `SELECT max(coalesce((SELECT max(message_id) FROM messages), 0),
                  coalesce((SELECT max(change_id) FROM message_changes), 0),
                  coalesce((SELECT max(user_id) FROM users), 0),
                  coalesce((SELECT max(device_id) FROM devices), 0),
                  coalesce((SELECT max(channel_id) FROM channels), 0)) AS id`,
    )
    .safeIntegers(true)
    .get() as { id: bigint };
  return row.id;
}
