import { joinersOf } from "../../channels/joins.js";
import { notifiedOfChange } from "../../messages/changes.js";
import type { MessageWriter, WrittenMessage } from "../../messages/writer.js";
import { ChatError } from "../../model/errors.js";
import { isChange, type Id, type NewMessage, type StoredMessage } from "../../model/types.js";
import { prepare, translateError, type SqliteDatabase } from "./database.js";
import { groupCommitOf, type GroupCommit } from "./group-commit.js";
import type { SqliteInbox } from "./inbox.js";
import type { SqliteMessageLog } from "./message-log.js";

type Row = Record<string, unknown>;

/**
 * The log append and every inbox append of one message in one savepoint of
 * the turn's group commit: all of it is durable, or none of it (a failure
 * rolls back this message alone). Sends of one event-loop turn share the
 * COMMIT, so a busy turn costs one WAL commit however many messages it holds.
 *
 * A change (an edit or a delete) goes the same way: applied to its target in
 * the log (which records it in message_changes: its dedup key, no text), copied to
 * every member's inbox, in one savepoint.
 */
export class SqliteMessageWriter implements MessageWriter {
  private readonly commits: GroupCommit;
  private readonly writeTx: (message: NewMessage, memberIds: readonly Id[]) => WrittenMessage;
  private readonly changeTx: (change: NewMessage, memberIds: readonly Id[]) => WrittenMessage;

  constructor(db: SqliteDatabase, log: SqliteMessageLog, inbox: SqliteInbox) {
    this.commits = groupCommitOf(db);
    // As SqliteChannelStore.markJoined: forward only, and only a member's row.
    const markJoined = prepare(db, "UPDATE channel_members SET joined_seq = max(joined_seq, ?) WHERE channel_id = ? AND user_id = ?");
    this.writeTx = db.transaction((message: NewMessage, memberIds: readonly Id[]): WrittenMessage => {
      const stored = log.appendInTransaction(message);
      // Stored before: its inbox copies were written in that same transaction.
      if (stored.duplicate) return { ...stored, entries: [] };
      // A message the log did not have is in no inbox either (they are written together).
      const entries = memberIds.map((userId) => ({ userId, entry: inbox.appendNewInTransaction(userId, stored.message) }));
      // With the note of an add or a join, in its transaction: no list reads the note without the join point it sets.
      for (const userId of joinersOf(stored.message)) markJoined.run(stored.message.seq, stored.message.channelId, userId);
      return { message: stored.message, duplicate: false, entries };
    });

    const change = {
      byKey: prepare(db, `SELECT * FROM message_changes
                          WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`),
    };
    this.changeTx = db.transaction((m: NewMessage, memberIds: readonly Id[]): WrittenMessage => {
      // Before the log is asked: a resend of a delete finds its target deleted, and must still be a duplicate.
      const seen = change.byKey.get(m.channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId) as Row | undefined;
      if (seen) return { message: storedChange(seen, m), duplicate: true, entries: [] };
      const target = log.amendInTransaction(m);
      if (!target) {
        throw new ChatError("not_found", `message ${m.targetSeq} is not in this channel, is deleted, or was changed later`);
      }
      if (m.deleted) inbox.emptyDeletedInTransaction(m.channelId, target.seq, target.messageId);
      const stored: StoredMessage = { ...m, seq: 0n };
      // A change has its own message id, so it is in no inbox yet (the dedup key caught a resend above).
      const notified = notifiedOfChange(m, target);
      const entries = memberIds.map((userId) => {
        const entry = inbox.appendNewInTransaction(userId, stored);
        return userId === notified ? { userId, entry, notify: true } : { userId, entry };
      });
      return { message: stored, duplicate: false, entries };
    });
  }

  write(message: NewMessage, memberIds: readonly Id[]): Promise<WrittenMessage> {
    const tx = isChange(message) ? this.changeTx : this.writeTx;
    // Translated inside the piece, not by an async wrapper awaiting the commit: one promise and
    // one hop fewer per message. A storage fault is no constraint and reaches the commit as it is.
    return this.commits.run(() => {
      try {
        return tx(message, memberIds);
      } catch (e) {
        translateError(e, `message ${message.messageId}`);
      }
    });
  }
}

/**
 * A stored change as the answer to its resend. message_changes keeps no text
 * (an edit's text is the message's text, and a deleted message's text must
 * survive nowhere), so an edit answers with the resend's own text: the text
 * stored, unless the device reused the client_msg_id for another text.
 */
function storedChange(r: Row, resend: NewMessage): StoredMessage {
  const deleted = Boolean(r.deleted);
  const reaction = Boolean(r.reaction);
  return {
    messageId: r.change_id as bigint,
    channelId: r.channel_id as bigint,
    senderUserId: r.sender_user_id as bigint,
    senderDeviceId: r.sender_device_id as bigint,
    clientMsgId: r.client_msg_id as string,
    text: deleted ? "" : resend.text,
    sentAtMs: Number(r.changed_at_ms),
    targetSeq: r.target_seq as bigint,
    ...(deleted ? { deleted: true } : reaction ? { reaction: true } : {}),
    seq: 0n,
  };
}
