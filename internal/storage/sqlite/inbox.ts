import type { Inbox } from "../../messages/inbox.js";
import { encodeNote } from "../../messages/notes.js";
import type { Id, InboxEntry, StoredMessage } from "../../model/types.js";
import { prepare, translateError, type SqliteDatabase } from "./database.js";
import { groupCommitOf, type GroupCommit } from "./group-commit.js";
import { MESSAGE_COLUMNS, readThrough, toMessage } from "./message-log.js";

type Row = Record<string, unknown>;

const toEntry = (r: Row): InboxEntry => ({ inboxSeq: r.inbox_seq as bigint, message: toMessage(r) });

/** What toEntry reads; see MESSAGE_COLUMNS. */
const COLUMNS = `inbox_seq, ${MESSAGE_COLUMNS}, nullif(target_seq, 0) AS target_seq, nullif(reaction, 0) AS reaction`;

function build(db: SqliteDatabase) {
  const p = (sql: string) => prepare(db, sql);
  const s = {
    byMessageId: p(`SELECT ${COLUMNS} FROM inbox WHERE user_id = ? AND message_id = ?`),
    insert: p(`INSERT INTO inbox (user_id, inbox_seq, message_id, channel_id, seq, sender_user_id,
                                  sender_device_id, client_msg_id, text, sent_at_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    // Apart from insert, so that a plain message (nearly every entry) binds no more than it did.
    insertChanged: p(`INSERT INTO inbox (user_id, inbox_seq, message_id, channel_id, seq, sender_user_id,
                                         sender_device_id, client_msg_id, text, sent_at_ms,
                                         target_seq, edited_at_ms, deleted, reply_to_seq, reaction, note)
                      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    // Every copy, members' and former members': a message deleted for everyone keeps no text anywhere.
    // On inbox_by_message (message_id, user_id).
    emptyDeleted: p("UPDATE inbox SET text = '', deleted = 1 WHERE message_id = ?"),
    // A deleted message's edits carried its text too; they stay (devices apply them in order) but empty.
    // message_changes is SqliteMessageWriter's record of the changes it stored (schema version 9).
    emptyEditsOf: p(`UPDATE inbox SET text = '' WHERE message_id IN
                       (SELECT change_id FROM message_changes
                        WHERE channel_id = ? AND target_seq = ? AND deleted = 0 AND reaction = 0)`),
    // On inbox_by_message (message_id, user_id).
    emptyText: p("UPDATE inbox SET text = '' WHERE message_id = ? AND user_id = ?"),
    // The deleted message's own copy, as emptyDeleted leaves every copy of it.
    emptyDeletedOf: p("UPDATE inbox SET text = '', deleted = 1 WHERE message_id = ? AND user_id = ?"),
    after: p(`SELECT ${COLUMNS} FROM inbox WHERE user_id = ? AND inbox_seq > ? ORDER BY inbox_seq LIMIT ?`),
    // The head is the newest row (schema version 3); the next entry takes head + 1.
    // Plucked: read for every entry written, and a row object each was garbage.
    head: p("SELECT coalesce(max(inbox_seq), 0) AS last_seq FROM inbox WHERE user_id = ?").pluck(),
    cursor: p("SELECT seq FROM inbox_cursors WHERE user_id = ? AND device_id = ?"),
    dropCursor: p("DELETE FROM inbox_cursors WHERE user_id = ? AND device_id = ?"),
    advanceCursor: p(`INSERT INTO inbox_cursors (user_id, device_id, seq) VALUES (?, ?, max(?, 0))
                      ON CONFLICT (user_id, device_id) DO UPDATE SET seq = max(seq, excluded.seq)`),
  };
  const insertEntry = (userId: Id, inboxSeq: bigint, m: StoredMessage): void => {
    if (m.targetSeq || m.deleted || m.editedAtMs !== undefined || m.replyToSeq || m.note) {
      s.insertChanged.run(userId, inboxSeq, m.messageId, m.channelId, m.seq, m.senderUserId, m.senderDeviceId,
        m.clientMsgId, m.text, m.sentAtMs, m.targetSeq ?? 0n, m.editedAtMs ?? null, m.deleted ? 1 : 0, m.replyToSeq ?? null,
        m.reaction ? 1 : 0, m.note ? encodeNote(m.note) : null);
    } else {
      s.insert.run(userId, inboxSeq, m.messageId, m.channelId, m.seq, m.senderUserId, m.senderDeviceId,
        m.clientMsgId, m.text, m.sentAtMs);
    }
  };
  const appendTx = db.transaction((userId: Id, m: StoredMessage): { entry: InboxEntry; duplicate: boolean } => {
    const existing = s.byMessageId.get(userId, m.messageId) as Row | undefined;
    if (existing) return { entry: toEntry(existing), duplicate: true };
    const inboxSeq = (s.head.get(userId) as bigint) + 1n;
    insertEntry(userId, inboxSeq, m);
    return { entry: { inboxSeq, message: { ...m } }, duplicate: false };
  });
  return { ...s, insertEntry, appendTx };
}

export class SqliteInbox implements Inbox {
  private readonly s: ReturnType<typeof build>;
  private readonly commits: GroupCommit;
  /**
   * The cursor advances of the commit being gathered, as user, device, seq
   * triples in the first `cursorCount` slots, and the one promise they all
   * answer with. Every device acks about every message: a promise, a piece of
   * work and its closures each came to about half a KB per ack. The array is
   * kept from batch to batch, as a new one grew a backing store per commit.
   */
  private readonly cursors: bigint[] = [];
  private cursorCount = 0;
  private cursorsWritten!: Promise<void>;
  /** The GroupCommit.flushes `cursorsWritten` rides on: a flush that never ran the work (a failed BEGIN) ends its batch too. */
  private cursorsFlush = -1;
  /**
   * Not a savepoint, which cost about as much again: a batch failing part-way
   * keeps the advances before the failure while every ack in it is told it
   * failed, which is harmless as a cursor only moves as far as its device asked.
   */
  private readonly writeCursors = (): void => {
    const c = this.cursors;
    for (let i = 0; i < this.cursorCount; i += 3) this.s.advanceCursor.run(c[i], c[i + 1], c[i + 2]);
  };

  /** Prepares every statement once; share one Database between all stores. */
  constructor(db: SqliteDatabase) {
    this.s = build(db);
    this.commits = groupCommitOf(db);
  }

  /** Appends of one event-loop turn (a pipeline batch fans out to many users) share one commit. */
  async append(userId: Id, message: StoredMessage): Promise<{ entry: InboxEntry; duplicate: boolean }> {
    try {
      return await this.commits.run(() => this.s.appendTx(userId, message));
    } catch (e) {
      translateError(e, `inbox entry ${userId}/${message.messageId}`);
    }
  }

  /**
   * The append of a message that cannot be in any inbox yet (its log append
   * just created it), for a caller already inside a transaction
   * (SqliteMessageWriter): no dedup probe and no savepoint of its own, which
   * were half the cost of a group message's hundred appends. Also for a
   * change (an edit or a delete), which has its own message id.
   */
  appendNewInTransaction(userId: Id, m: StoredMessage): InboxEntry {
    const inboxSeq = (this.s.head.get(userId) as bigint) + 1n;
    this.s.insertEntry(userId, inboxSeq, m);
    return { inboxSeq, message: m };
  }

  /**
   * Empties every inbox copy of a message deleted for everyone (`messageId`,
   * seq `seq` in the channel), and the text of the inbox entries of its
   * edits, known by their rows in message_changes; for a caller inside a
   * transaction (SqliteMessageWriter). The entries stay: inbox seqs never
   * move, and a device syncing later applies the edits, then the delete.
   */
  emptyDeletedInTransaction(channelId: Id, seq: bigint, messageId: Id): void {
    this.s.emptyDeleted.run(messageId);
    this.s.emptyEditsOf.run(channelId, seq);
  }

  async emptyTexts(userId: Id, messageIds: readonly Id[], deletedIds: readonly Id[] = []): Promise<void> {
    if (messageIds.length === 0 && deletedIds.length === 0) return;
    await this.commits.run(() => {
      for (const id of messageIds) this.s.emptyText.run(id, userId);
      for (const id of deletedIds) this.s.emptyDeletedOf.run(id, userId);
    });
  }

  async readAfter(userId: Id, afterSeq: bigint, limit: number, textBytes?: number): Promise<InboxEntry[]> {
    if (limit <= 0) return []; // SQLite reads a negative LIMIT as "no limit"
    return readThrough(this.s.after, [userId, afterSeq, limit], textBytes, toEntry, (e) => e.message.text);
  }

  async head(userId: Id): Promise<bigint> {
    return this.s.head.get(userId) as bigint;
  }

  async getCursor(userId: Id, deviceId: Id): Promise<bigint> {
    const r = this.s.cursor.get(userId, deviceId) as Row | undefined;
    return r ? (r.seq as bigint) : 0n;
  }

  advanceCursor(userId: Id, deviceId: Id, seq: bigint): Promise<void> {
    // Every device acks what it stored: the turn's acks are one piece of the commit the turn's other writes share.
    if (this.cursorsFlush !== this.commits.flushes) {
      this.cursorCount = 0;
      this.cursorsFlush = this.commits.flushes;
      this.cursorsWritten = this.commits.run(this.writeCursors);
    }
    const c = this.cursors;
    const n = this.cursorCount;
    c[n] = userId;
    c[n + 1] = deviceId;
    c[n + 2] = seq;
    this.cursorCount = n + 3;
    return this.cursorsWritten;
  }

  async dropCursor(userId: Id, deviceId: Id): Promise<void> {
    await this.commits.run(() => this.s.dropCursor.run(userId, deviceId));
  }
}
