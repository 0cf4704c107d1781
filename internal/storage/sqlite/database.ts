import { closeSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import { ChatError } from "../../model/errors.js";

export type SqliteDatabase = Database.Database;

export interface OpenOptions {
  /**
   * "normal" (default): with WAL, a commit survives a crash of the process
   * but the last commits may be lost on power loss. "full": fsync on every
   * commit, survives power loss, slower.
   */
  synchronous?: "normal" | "full";
  /** How long a writer waits for another connection's lock. */
  busyTimeoutMs?: number;
}

/**
 * Opens (creating if needed) and migrates the database. One Database is meant
 * to be shared by all four stores of a process; the caller closes it.
 */
export function openDatabase(path: string, options: OpenOptions = {}): SqliteDatabase {
  let db: SqliteDatabase;
  try {
    createPrivately(path);
    db = new Database(path);
  } catch (e) {
    throw new UnusableDatabaseError(path, e);
  }
  try {
    db.defaultSafeIntegers(true);
    db.pragma("journal_mode = WAL"); // ":memory:" stays in "memory" mode, harmless
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    db.pragma("foreign_keys = ON");
    // A message deleted for everyone must not stay readable in the file's free space.
    db.pragma("secure_delete = ON");
    migrate(db);
    return db;
  } catch (e) {
    db.close();
    throw new UnusableDatabaseError(path, e);
  }
}

/**
 * A database file that cannot be opened as it is: from a newer build (after
 * a downgrade), damaged or not a database, not writable. What to fix is the
 * file, so chatd names it in one line instead of a stack trace.
 */
export class UnusableDatabaseError extends Error {
  readonly code = "UNUSABLE_DATABASE";
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "UnusableDatabaseError";
  }
}

/**
 * Creates a database file missing at `path` readable by its owner alone
 * (0600; SQLite gives its -wal and -shm files the same mode): it holds
 * password and token hashes. An existing file keeps the mode it has.
 */
export function createPrivately(path: string): void {
  if (path === "" || path === ":memory:" || path.startsWith("file:")) return;
  closeSync(openSync(path, "a", 0o600));
}

/** Ids must never pass through a JS number, whoever opened the database. */
export function prepare(db: SqliteDatabase, sql: string): Database.Statement {
  return db.prepare(sql).safeIntegers(true);
}

/** Maps constraint violations to domain errors; anything else is rethrown. */
export function translateError(e: unknown, what: string): never {
  const code = (e as { code?: unknown }).code;
  if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
    throw new ChatError("already_exists", `${what} already exists`);
  }
  if (code === "SQLITE_CONSTRAINT_FOREIGNKEY") throw new ChatError("not_found", `${what}: parent row not found`);
  throw e;
}

/** Larger than any seq, for "from the newest". */
export const MAX_INT64 = (1n << 63n) - 1n;

// Index i upgrades the schema from user_version i to i + 1. Append only.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE users (
    user_id        INTEGER PRIMARY KEY,
    username       TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
  );
  CREATE TABLE devices (
    user_id         INTEGER NOT NULL REFERENCES users (user_id),
    device_id       INTEGER NOT NULL,
    name            TEXT NOT NULL,
    platform        TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_seen_at_ms INTEGER NOT NULL,
    revoked         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id)
  ) WITHOUT ROWID;
  CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL,
    device_id     INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX refresh_tokens_by_device ON refresh_tokens (user_id, device_id);
  CREATE TABLE friend_requests (
    from_user_id INTEGER NOT NULL,
    to_user_id   INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (from_user_id, to_user_id)
  ) WITHOUT ROWID;
  CREATE INDEX friend_requests_by_to ON friend_requests (to_user_id);
  -- Both directions are stored so listing one user's friends is one range.
  CREATE TABLE friendships (
    user_id        INTEGER NOT NULL,
    friend_user_id INTEGER NOT NULL,
    since_ms       INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_user_id)
  ) WITHOUT ROWID;

  CREATE TABLE channels (
    channel_id    INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    title         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    INTEGER NOT NULL
  );
  -- The pair (lo, hi) is the key that makes two first messages meet.
  CREATE TABLE direct_channels (
    user_lo    INTEGER NOT NULL,
    user_hi    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL REFERENCES channels (channel_id),
    PRIMARY KEY (user_lo, user_hi)
  ) WITHOUT ROWID;
  -- The rowid breaks ties of joined_at_ms in insertion order.
  CREATE TABLE channel_members (
    channel_id   INTEGER NOT NULL REFERENCES channels (channel_id),
    user_id      INTEGER NOT NULL,
    role         TEXT NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    read_seq     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel_id, user_id)
  );
  CREATE INDEX channel_members_by_join ON channel_members (channel_id, joined_at_ms);
  CREATE INDEX channel_members_by_user ON channel_members (user_id);

  -- Rowid tables: rows carry texts up to ~400 KB, too big for WITHOUT ROWID.
  CREATE TABLE messages (
    message_id       INTEGER PRIMARY KEY,
    channel_id       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    sender_user_id   INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id    TEXT NOT NULL,
    text             TEXT NOT NULL,
    sent_at_ms       INTEGER NOT NULL,
    UNIQUE (channel_id, seq),
    UNIQUE (channel_id, sender_user_id, client_msg_id)
  );
  CREATE TABLE channel_seqs (
    channel_id INTEGER PRIMARY KEY,
    last_seq   INTEGER NOT NULL
  );
  CREATE TABLE inbox (
    user_id          INTEGER NOT NULL,
    inbox_seq        INTEGER NOT NULL,
    message_id       INTEGER NOT NULL,
    channel_id       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    sender_user_id   INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id    TEXT NOT NULL,
    text             TEXT NOT NULL,
    sent_at_ms       INTEGER NOT NULL,
    UNIQUE (user_id, inbox_seq),
    UNIQUE (user_id, message_id)
  );
  CREATE TABLE inbox_heads (
    user_id  INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
  );
  CREATE TABLE inbox_cursors (
    user_id   INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
  ) WITHOUT ROWID;
  `,
  // 2: push endpoints (internal/push), one per device; an address belongs to one device.
  `
  CREATE TABLE push_endpoints (
    user_id       INTEGER NOT NULL,
    device_id     INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    address       TEXT NOT NULL,
    p256dh        TEXT NOT NULL DEFAULT '',
    auth          TEXT NOT NULL DEFAULT '',
    apns_topic    TEXT NOT NULL DEFAULT '',
    hide_preview  INTEGER NOT NULL DEFAULT 0,
    muted         INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX push_endpoints_by_address ON push_endpoints (kind, address);
  `,
  // 3: fewer pages per message. A group message's hundred inbox copies dirtied
  // three pages per member (the inbox's two indexes, keyed by user, and the
  // heads), each written whole to the WAL and copied back by the checkpoint:
  // - the dedup index is keyed (message_id, user_id), so one message's copies
  //   share its right-most page (the lookup is an equality on both);
  // - a log's head is its newest row (max(seq) on the unique index the insert
  //   touches anyway), so channel_seqs and inbox_heads go. History is never
  //   deleted; an inbox retention must keep each user's newest row.
  `
  CREATE TABLE inbox_v3 (
    user_id          INTEGER NOT NULL,
    inbox_seq        INTEGER NOT NULL,
    message_id       INTEGER NOT NULL,
    channel_id       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    sender_user_id   INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id    TEXT NOT NULL,
    text             TEXT NOT NULL,
    sent_at_ms       INTEGER NOT NULL,
    UNIQUE (user_id, inbox_seq)
  );
  INSERT INTO inbox_v3 SELECT user_id, inbox_seq, message_id, channel_id, seq, sender_user_id,
    sender_device_id, client_msg_id, text, sent_at_ms FROM inbox ORDER BY rowid;
  DROP TABLE inbox;
  ALTER TABLE inbox_v3 RENAME TO inbox;
  CREATE UNIQUE INDEX inbox_by_message ON inbox (message_id, user_id);
  DROP TABLE inbox_heads;
  DROP TABLE channel_seqs;
  `,
  // 4: resends are deduplicated per sending device. client_msg_id is unique
  // per device (session.proto), so a user's phone and web client may both
  // send "1" to one channel; the old key (channel, sender, client_msg_id)
  // acked the second as a duplicate and lost its text. SQLite cannot change a
  // table's constraint in place, so the table is rebuilt (inside migrate()'s
  // transaction). No table, index, trigger or view refers to messages, so the
  // drop checks no foreign key. Rows keep their message_id (the rowid).
  `
  CREATE TABLE messages_v4 (
    message_id       INTEGER PRIMARY KEY,
    channel_id       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    sender_user_id   INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id    TEXT NOT NULL,
    text             TEXT NOT NULL,
    sent_at_ms       INTEGER NOT NULL,
    UNIQUE (channel_id, seq),
    UNIQUE (channel_id, sender_user_id, sender_device_id, client_msg_id)
  );
  INSERT INTO messages_v4 SELECT message_id, channel_id, seq, sender_user_id, sender_device_id,
    client_msg_id, text, sent_at_ms FROM messages ORDER BY message_id;
  DROP TABLE messages;
  ALTER TABLE messages_v4 RENAME TO messages;
  `,
  // 5: refresh tokens taken once are remembered until they would have
  // expired, so a second use (a stolen copy) is recognised.
  `
  CREATE TABLE used_refresh_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL,
    device_id     INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX used_refresh_tokens_by_expiry ON used_refresh_tokens (expires_at_ms);
  `,
  // 6: who may see a user's presence, for users who chose (the rest have the default).
  `
  CREATE TABLE presence_settings (
    user_id    INTEGER PRIMARY KEY,
    visibility TEXT NOT NULL
  );
  `,
  // 7: blocks, directed (user_id blocked blocked_user_id). The index makes
  // "who blocked this user" one range, as the primary key does "whom they blocked".
  `
  CREATE TABLE blocks (
    user_id         INTEGER NOT NULL,
    blocked_user_id INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_user_id)
  ) WITHOUT ROWID;
  CREATE INDEX blocks_by_blocked ON blocks (blocked_user_id, user_id);
  `,
  // 8: a user's channel mutes, keyed by user: notifications read them by
  // user, and a table apart from channel_members leaves membership untouched.
  `
  CREATE TABLE channel_mutes (
    user_id    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    until_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id)
  ) WITHOUT ROWID;
  `,
  // 9: edits and deletes ("delete for everyone"). A change rewrites its target
  // in place: the log keeps one row per message, so history, latest and dedup
  // go on reading one row. changed_by is the message id of the last change
  // applied; snowflakes grow with time, so an edit replayed after a newer
  // change (smaller id) is refused instead of undoing it. An inbox entry of a
  // change has seq 0 and its target in target_seq. ADD COLUMN with a constant
  // default rewrites no row: old rows read the defaults (never edited, not
  // deleted, not a change). message_changes dedups a change's resend as
  // messages' unique index does a message's, and finds a target's edits when
  // it is deleted (their inbox copies are emptied with it); it keeps no text,
  // so nothing of a deleted message's text survives in it.
  `
  ALTER TABLE messages ADD COLUMN edited_at_ms INTEGER;
  ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE messages ADD COLUMN changed_by INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE inbox ADD COLUMN target_seq INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE inbox ADD COLUMN edited_at_ms INTEGER;
  ALTER TABLE inbox ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE message_changes (
    change_id        INTEGER PRIMARY KEY,
    channel_id       INTEGER NOT NULL,
    target_seq       INTEGER NOT NULL,
    sender_user_id   INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id    TEXT NOT NULL,
    deleted          INTEGER NOT NULL,
    changed_at_ms    INTEGER NOT NULL,
    UNIQUE (channel_id, sender_user_id, sender_device_id, client_msg_id)
  );
  CREATE INDEX message_changes_by_target ON message_changes (channel_id, target_seq);
  `,
  // 10: replies. NULL (no default to store) on every message that answers none.
  `
  ALTER TABLE messages ADD COLUMN reply_to_seq INTEGER;
  ALTER TABLE inbox ADD COLUMN reply_to_seq INTEGER;
  `,
  // 11: reactions, one per user per message. A reaction taken back keeps its
  // row with an empty emoji: its change id still orders a reaction replayed
  // after it. message_changes records reactions (for a resend's dedup) apart
  // from the edits a delete must empty.
  `
  ALTER TABLE inbox ADD COLUMN reaction INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE message_changes ADD COLUMN reaction INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE message_reactions (
    channel_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    change_id  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id)
  ) WITHOUT ROWID;
  `,
  // 12: notes about the channel (members added or gone, a new title or role),
  // as JSON text (internal/messages/notes.ts); NULL on every message.
  `
  ALTER TABLE messages ADD COLUMN note TEXT;
  ALTER TABLE inbox ADD COLUMN note TEXT;
  `,
  // 13: channels a user pinned or archived in their list; a row only while one is set.
  `
  CREATE TABLE channel_places (
    user_id        INTEGER NOT NULL,
    channel_id     INTEGER NOT NULL,
    pinned_at_ms   INTEGER,
    archived_at_ms INTEGER,
    PRIMARY KEY (user_id, channel_id)
  ) WITHOUT ROWID;
  `,
  // 14: groups' invite codes, one per group.
  `
  CREATE TABLE channel_invites (
    code       TEXT PRIMARY KEY,
    channel_id INTEGER NOT NULL UNIQUE
  );
  `,
  // 15: where a member cleared the channel's history for themselves (ClearHistory).
  `
  ALTER TABLE channel_members ADD COLUMN cleared_seq INTEGER NOT NULL DEFAULT 0;
  `,
  // 16: channels a user marked unread in their list (MarkUnread).
  `
  ALTER TABLE channel_places ADD COLUMN marked_unread_at_ms INTEGER;
  `,
  // 17: when a used refresh token was taken and which token replaced it, so
  // that a client retrying after a lost reply is told from a second holder
  // (RefreshTokens). NULL in the marks made before: those get no grace.
  `
  ALTER TABLE used_refresh_tokens ADD COLUMN used_at_ms INTEGER;
  ALTER TABLE used_refresh_tokens ADD COLUMN successor_hash TEXT;
  `,
  // 18: the newest seq when a member joined a group (MemberRecord.joinedSeq):
  // what came before is not unread for them, nor told to others as read.
  `
  ALTER TABLE channel_members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;
  `,
  // 19: users' last-seen times (internal/presence/sqlite.ts), which chatd's
  // presence in memory lost at every restart. By time too: rows past the
  // retention are taken away oldest first.
  `
  CREATE TABLE presence_last_seen (
    user_id INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL
  );
  CREATE INDEX presence_last_seen_by_time ON presence_last_seen (at_ms);
  `,
  // 20: who was removed from a group by someone else and not added back
  // since: barred from joining it by its invite link (ChannelStore.removeMember).
  `
  CREATE TABLE channel_bars (
    channel_id INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
  ) WITHOUT ROWID;
  `,
  // 21: the order bars were made in, so the bar past MAX_BARS lifts the
  // oldest. Bars from before are 0: older than any made after.
  `
  ALTER TABLE channel_bars ADD COLUMN bar_order INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX channel_bars_by_order ON channel_bars (channel_id, bar_order);
  `,
  // 22: since when every send to a push endpoint failed (PushEndpoint.failingSinceMs), so the
  // notifier removes one failing for long. NULL: none since its last delivery or registration.
  `
  ALTER TABLE push_endpoints ADD COLUMN failing_since_ms INTEGER;
  `,
  // 23: the failed sends of that streak (PushEndpoint.failedSends), so a streak of one or two
  // failures days apart removes nothing. NULL with failing_since_ms set: marked before 23, one.
  `
  ALTER TABLE push_endpoints ADD COLUMN failed_sends INTEGER;
  `,
  // 24: account deletions recorded before the account is marked deleted and removed once their
  // final pass ran (AccountStore.putPendingDeletion): a process that died in between leaves the
  // record, and the deletion sweeper finishes the deletion. By time: the sweep reads the oldest.
  `
  CREATE TABLE pending_deletions (
    user_id   INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL
  );
  CREATE INDEX pending_deletions_by_time ON pending_deletions (at_ms);
  `,
  // 25: whom a pending deletion tells the account is offline (PendingDeletion.tellOffline), recorded
  // before its friendships are dropped: a sweep finishing it finds none left to read them from.
  // NULL in a record from before: its sweep tells only those it finds, as before.
  `
  ALTER TABLE pending_deletions ADD COLUMN tell_offline TEXT;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

function migrate(db: SqliteDatabase): void {
  // Immediate: two processes opening a fresh file must not both migrate.
  db.transaction(() => {
    const version = Number(db.pragma("user_version", { simple: true }));
    if (version > SCHEMA_VERSION) {
      throw new Error(`database schema version ${version} is newer than this build (${SCHEMA_VERSION})`);
    }
    for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
