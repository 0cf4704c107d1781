import type Database from "better-sqlite3";
import { changesNothing } from "../../messages/changes.js";
import type { Amended, MessageLog, PageQuery } from "../../messages/log.js";
import { decodeNote, encodeNote, readByItsActor } from "../../messages/notes.js";
import { TextBudget } from "../../messages/page-bytes.js";
import type { Id, NewMessage, Reaction, StoredMessage } from "../../model/types.js";
import { MAX_INT64, prepare, translateError, type SqliteDatabase } from "./database.js";
import { groupCommitOf, type GroupCommit } from "./group-commit.js";

type Row = Record<string, unknown>;

/**
 * Also reads inbox rows, which carry the same columns (and target_seq). The
 * optional keys are left out when unset, not set to undefined: a plain
 * message reads back exactly as it was given.
 */
export const toMessage = (r: Row): StoredMessage => {
  const m: StoredMessage = {
    messageId: r.message_id as bigint,
    channelId: r.channel_id as bigint,
    senderUserId: r.sender_user_id as bigint,
    senderDeviceId: r.sender_device_id as bigint,
    clientMsgId: r.client_msg_id as string,
    text: r.text as string,
    sentAtMs: Number(r.sent_at_ms),
    seq: r.seq as bigint,
  };
  // 0n is falsy, as are NULL (MESSAGE_COLUMNS reads a zero flag as NULL) and a column not read.
  if (r.target_seq) m.targetSeq = r.target_seq as bigint;
  if (r.deleted) m.deleted = true;
  if (r.edited_at_ms != null) m.editedAtMs = Number(r.edited_at_ms);
  if (r.reply_to_seq != null) m.replyToSeq = r.reply_to_seq as bigint;
  if (r.reaction) m.reaction = true;
  if (r.note != null) m.note = decodeNote(r.note as string);
  return m;
};

/**
 * The columns toMessage reads, also from inbox rows. Not `*`: with
 * safeIntegers every integer read is a BigInt allocated, and nearly every row
 * is never edited nor deleted, so its zero flag reads as NULL instead (no
 * allocation), and changed_by, which only amend needs, is not read at all.
 * Two columns more per row still cost about a tenth more CPU per page read.
 */
export const MESSAGE_COLUMNS = `message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms,
  edited_at_ms, nullif(deleted, 0) AS deleted, reply_to_seq, note`;

/**
 * The rows of `stmt` as `toItem` makes them, stopped by a TextBudget of
 * `textBytes`. better-sqlite3 hands the rows of all() over only once it has
 * read every one, each text decoded: a page of long texts read to its limit
 * (up to 1,000 rows of ~400 KB) just to keep the first megabyte held the
 * event loop for seconds. iterate() steps one row per call, so the rows
 * past the budget are never read; leaving the loop resets the statement.
 */
export function readThrough<T>(
  stmt: Database.Statement,
  params: unknown[],
  textBytes: number | undefined,
  toItem: (r: Row) => T,
  textOf: (item: T) => string,
): T[] {
  const out: T[] = [];
  const budget = new TextBudget(textBytes);
  for (const r of stmt.iterate(...params) as IterableIterator<Row>) {
    const item = toItem(r);
    out.push(item);
    if (budget.add(textOf(item))) break;
  }
  return out;
}

function build(db: SqliteDatabase) {
  const p = (sql: string) => prepare(db, sql);
  const s = {
    // On the unique (channel, sender, device, client_msg_id) index (schema version 4).
    byClientMsgId: p(`SELECT ${MESSAGE_COLUMNS} FROM messages
                      WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`),
    // Every change applied, by its idempotency key (SqliteMessageWriter's dedup) and its target
    // (editsOf). OR IGNORE: through the queue a client's resend of a change is another record
    // with the same key, and applying it again is harmless.
    recordChange: p(`INSERT OR IGNORE INTO message_changes (change_id, channel_id, target_seq, sender_user_id,
                                                            sender_device_id, client_msg_id, deleted, changed_at_ms, reaction)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    // On message_changes' unique key.
    changeByKey: p(`SELECT change_id FROM message_changes
                    WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`),
    // On message_changes_by_target (channel_id, target_seq).
    // LIMIT -1: no limit.
    editsOf: p(`SELECT change_id FROM message_changes WHERE channel_id = ? AND target_seq = ? AND deleted = 0 AND reaction = 0
                ORDER BY change_id LIMIT ?`),
    // Reactions (schema version 11): one row per user who ever reacted, "" once taken back.
    reactionOf: p("SELECT change_id FROM message_reactions WHERE channel_id = ? AND seq = ? AND user_id = ?"),
    putReaction: p(`INSERT INTO message_reactions (channel_id, seq, user_id, emoji, change_id) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (channel_id, seq, user_id) DO UPDATE SET emoji = excluded.emoji, change_id = excluded.change_id`),
    reactionsIn: p(`SELECT seq, user_id, emoji FROM message_reactions
                    WHERE channel_id = ? AND seq >= ? AND seq <= ? AND emoji != '' ORDER BY seq, user_id`),
    // The head is the newest row (schema version 3).
    // Plucked: read for every message, and a row object each was garbage.
    nextSeq: p("SELECT coalesce(max(seq), 0) + 1 AS next_seq FROM messages WHERE channel_id = ?").pluck(),
    insert: p(`INSERT INTO messages
                 (message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    // Apart from insert, so that a message answering none binds no more than it did.
    insertReply: p(`INSERT INTO messages
                      (message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms, reply_to_seq)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    insertNote: p(`INSERT INTO messages
                     (message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms, note)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    bySeq: p(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND seq = ?`),
    target: p(`SELECT ${MESSAGE_COLUMNS}, changed_by FROM messages WHERE channel_id = ? AND seq = ?`),
    // A delete forgets an earlier edit's time too: nothing of the text's history is left to show.
    markDeleted: p("UPDATE messages SET text = '', deleted = 1, edited_at_ms = NULL, changed_by = ? WHERE message_id = ?"),
    markEdited: p("UPDATE messages SET text = ?, edited_at_ms = ?, changed_by = ? WHERE message_id = ?"),
    backward: p(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`),
    forward: p(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?`),
    newest: p(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? ORDER BY seq DESC LIMIT 1`),
    // Not the text: SQLite only follows its overflow pages' links to reach sent_at_ms, and decodes no ~400 KB string.
    newestSentAt: p("SELECT sent_at_ms FROM messages WHERE channel_id = ? ORDER BY seq DESC LIMIT 1"),
    // Newest first, a note decoded to leave out a join by link's (readByItsActor).
    lastSentBy: p(`SELECT seq, note FROM messages
                   WHERE channel_id = ? AND seq >= ? AND seq <= ? AND sender_user_id = ? ORDER BY seq DESC`),
    // Each row of the window (a hundred at most): which notes count is decided on the decoded note.
    newestBySender: p(`SELECT sender_user_id, seq, note FROM messages WHERE channel_id = ? AND seq >= ? AND seq <= ?`),
  };
  const append = (m: NewMessage): { message: StoredMessage; duplicate: boolean } => {
    const existing = s.byClientMsgId.get(m.channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId) as Row | undefined;
    if (existing) return { message: toMessage(existing), duplicate: true };
    // The next seq follows the newest row, so a failed insert leaves no gap.
    const seq = s.nextSeq.get(m.channelId) as bigint;
    if (m.note) {
      s.insertNote.run(m.messageId, m.channelId, seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, m.sentAtMs, encodeNote(m.note));
    } else if (m.replyToSeq) {
      s.insertReply.run(m.messageId, m.channelId, seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, m.sentAtMs, m.replyToSeq);
    } else {
      s.insert.run(m.messageId, m.channelId, seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, m.sentAtMs);
    }
    return { message: { ...m, seq }, duplicate: false };
  };
  const appendTx = db.transaction(append);
  /** The messages (of one channel) with their reactions, read in one range query. */
  const withReactions = (channelId: Id, messages: StoredMessage[]): StoredMessage[] => {
    if (messages.length === 0) return messages;
    let lo = messages[0]!.seq;
    let hi = lo;
    for (const m of messages) {
      if (m.seq < lo) lo = m.seq;
      if (m.seq > hi) hi = m.seq;
    }
    const bySeq = new Map<bigint, Reaction[]>();
    for (const r of s.reactionsIn.all(channelId, lo, hi) as Row[]) {
      const seq = r.seq as bigint;
      const list = bySeq.get(seq) ?? [];
      list.push({ userId: r.user_id as bigint, emoji: r.emoji as string });
      bySeq.set(seq, list);
    }
    if (bySeq.size === 0) return messages;
    return messages.map((m) => {
      const reactions = m.deleted ? undefined : bySeq.get(m.seq);
      return reactions ? { ...m, reactions } : m;
    });
  };
  /**
   * A reaction: the user's latest reaction (by change id) is kept; one
   * replayed after a later one is refused, the same one again answers as
   * the first time did.
   */
  const react = (change: NewMessage, r: Row): StoredMessage | undefined => {
    if (r.deleted) return undefined;
    const seq = change.targetSeq!;
    const mine = s.reactionOf.get(change.channelId, seq, change.senderUserId) as Row | undefined;
    const was = mine?.change_id as bigint | undefined;
    if (was !== undefined && was > change.messageId) return undefined;
    if (was !== change.messageId) {
      s.putReaction.run(change.channelId, seq, change.senderUserId, change.text, change.messageId);
      s.recordChange.run(change.messageId, change.channelId, seq, change.senderUserId, change.senderDeviceId,
        change.clientMsgId, 0, change.sentAtMs, 1);
    }
    return withReactions(change.channelId, [toMessage(r)])[0];
  };
  /** With `judge`, amendIfChanges; else amend, every change answered `changed`. */
  const amendTx = db.transaction((change: NewMessage, judge: boolean): Amended | undefined => {
    const r = s.target.get(change.channelId, change.targetSeq ?? 0n) as Row | undefined;
    if (!r) return undefined;
    const keyed = s.changeByKey.get(change.channelId, change.senderUserId, change.senderDeviceId, change.clientMsgId) as Row | undefined;
    if (keyed && keyed.change_id !== change.messageId) return undefined;
    // Judged on the row this transaction changes. The same change again (its key its own) may find its own doing: changed.
    if (judge && !keyed) {
      const now = withReactions(change.channelId, [toMessage(r)])[0]!;
      if (changesNothing(change, now)) {
        if (!change.reaction) return { message: now, changed: false };
        const reacted = react(change, r);
        return reacted && { message: reacted, changed: false };
      }
    }
    if (change.reaction) {
      const reacted = react(change, r);
      // Its key is written in the transaction that applies it: held, it was applied.
      return reacted && { message: reacted, changed: true, ...(keyed && { again: true as const }) };
    }
    const changedBy = r.changed_by as bigint;
    // The change that made the row what it is, replayed (a retried record): its result again.
    if (changedBy === change.messageId) return { message: withReactions(change.channelId, [toMessage(r)])[0]!, changed: true, again: true };
    // A delete wins over any edit, even one minted after it: it was acked as
    // "deleted for everyone". Edits are ordered by their ids.
    if (r.deleted || (!change.deleted && change.messageId < changedBy)) return undefined;
    const { editedAtMs: _edited, deleted: _deleted, ...target } = toMessage(r);
    s.recordChange.run(change.messageId, change.channelId, change.targetSeq, change.senderUserId, change.senderDeviceId,
      change.clientMsgId, change.deleted ? 1 : 0, change.sentAtMs, 0);
    if (change.deleted) {
      s.markDeleted.run(change.messageId, target.messageId);
      return { message: { ...target, text: "", deleted: true }, changed: true };
    }
    s.markEdited.run(change.text, change.sentAtMs, change.messageId, target.messageId);
    return { message: withReactions(change.channelId, [{ ...target, text: change.text, editedAtMs: change.sentAtMs }])[0]!, changed: true };
  });
  const latestTx = db.transaction((channelIds: readonly Id[]) => {
    const out = new Map<Id, StoredMessage>();
    for (const id of channelIds) {
      const r = s.newest.get(id) as Row | undefined;
      if (r) out.set(id, toMessage(r));
    }
    return out;
  });
  const latestSentAtTx = db.transaction((channelIds: readonly Id[]) => {
    const out = new Map<Id, number>();
    for (const id of channelIds) {
      const r = s.newestSentAt.get(id) as Row | undefined;
      if (r) out.set(id, Number(r.sent_at_ms));
    }
    return out;
  });
  return { ...s, append, appendTx, amendTx, latestTx, latestSentAtTx, withReactions };
}

export class SqliteMessageLog implements MessageLog {
  private readonly s: ReturnType<typeof build>;
  private readonly commits: GroupCommit;

  /** Prepares every statement once; share one Database between all stores. */
  constructor(db: SqliteDatabase) {
    this.s = build(db);
    this.commits = groupCommitOf(db);
  }

  /** Appends of one event-loop turn (the channels of a sequencer batch) share one commit. */
  async append(message: NewMessage): Promise<{ message: StoredMessage; duplicate: boolean }> {
    try {
      return await this.commits.run(() => this.s.appendTx(message));
    } catch (e) {
      translateError(e, `message ${message.messageId}`);
    }
  }

  /**
   * The append itself, for a caller that runs it inside its own transaction
   * (SqliteMessageWriter), without a savepoint of its own: its one write is
   * the last statement, so a failure leaves nothing to roll back, and a
   * SAVEPOINT and a RELEASE per message were statements for nothing.
   */
  appendInTransaction(message: NewMessage): { message: StoredMessage; duplicate: boolean } {
    return this.s.append(message);
  }

  /** Changes of one event-loop turn share one commit and apply in call order (the batch runs them in order). */
  async amend(change: NewMessage): Promise<StoredMessage | undefined> {
    try {
      return (await this.commits.run(() => this.s.amendTx(change, false)))?.message;
    } catch (e) {
      translateError(e, `change ${change.messageId}`);
    }
  }

  async amendIfChanges(change: NewMessage): Promise<Amended | undefined> {
    try {
      return await this.commits.run(() => this.s.amendTx(change, true));
    } catch (e) {
      translateError(e, `change ${change.messageId}`);
    }
  }

  /** The amend itself, for a caller that runs it inside its own transaction (SqliteMessageWriter). */
  amendInTransaction(change: NewMessage): StoredMessage | undefined {
    return this.s.amendTx(change, false)?.message;
  }

  async findChange(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<Id | undefined> {
    const r = this.s.changeByKey.get(channelId, senderUserId, senderDeviceId, clientMsgId) as Row | undefined;
    return r?.change_id as bigint | undefined;
  }

  async editsOf(channelId: Id, seq: bigint, limit?: number): Promise<Id[]> {
    return (this.s.editsOf.all(channelId, seq, limit ?? -1) as Row[]).map((r) => r.change_id as bigint);
  }

  async get(channelId: Id, seq: bigint): Promise<StoredMessage | undefined> {
    const r = this.s.bySeq.get(channelId, seq) as Row | undefined;
    return r && this.s.withReactions(channelId, [toMessage(r)])[0];
  }

  async findByClientMsgId(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<StoredMessage | undefined> {
    const r = this.s.byClientMsgId.get(channelId, senderUserId, senderDeviceId, clientMsgId) as Row | undefined;
    return r && toMessage(r);
  }

  async page(channelId: Id, q: PageQuery): Promise<StoredMessage[]> {
    if (q.limit <= 0) return []; // SQLite reads a negative LIMIT as "no limit"
    const [stmt, anchor] =
      q.direction === "backward" ? [this.s.backward, q.anchorSeq === 0n ? MAX_INT64 : q.anchorSeq] : [this.s.forward, q.anchorSeq];
    return this.s.withReactions(channelId, readThrough(stmt, [channelId, anchor, q.limit], q.textBytes, toMessage, (m) => m.text));
  }

  async lastSentBy(channelId: Id, senderUserId: Id, fromSeq: bigint, toSeq: bigint): Promise<bigint | undefined> {
    for (const r of this.s.lastSentBy.iterate(channelId, fromSeq, toSeq, senderUserId) as IterableIterator<Row>) {
      if (r.note === null || readByItsActor(decodeNote(r.note as string))) return r.seq as bigint;
    }
    return undefined;
  }

  async newestBySender(channelId: Id, fromSeq: bigint, toSeq: bigint): Promise<Map<Id, bigint>> {
    const out = new Map<Id, bigint>();
    for (const r of this.s.newestBySender.all(channelId, fromSeq, toSeq) as Row[]) {
      if (r.note !== null && !readByItsActor(decodeNote(r.note as string))) continue;
      const [sender, seq] = [r.sender_user_id as bigint, r.seq as bigint];
      if (seq > (out.get(sender) ?? 0n)) out.set(sender, seq);
    }
    return out;
  }

  async latest(channelIds: readonly Id[]): Promise<Map<Id, StoredMessage>> {
    // One index probe per channel inside one read transaction: no re-prepare
    // for a variable IN list, and a consistent snapshot.
    return this.s.latestTx(channelIds);
  }

  async latestSentAt(channelIds: readonly Id[]): Promise<Map<Id, number>> {
    return this.s.latestSentAtTx(channelIds);
  }
}
