import type { MessageWriter, WrittenMessage } from "../../messages/writer.js";
import type { Id, NewMessage } from "../../model/types.js";
import { translateError, type SqliteDatabase } from "./database.js";
import { groupCommitOf, type GroupCommit } from "./group-commit.js";
import type { SqliteInbox } from "./inbox.js";
import type { SqliteMessageLog } from "./message-log.js";

/**
 * The log append and every inbox append of one message in one savepoint of
 * the turn's group commit: all of it is durable, or none of it (a failure
 * rolls back this message alone). Sends of one event-loop turn share the
 * COMMIT, so a busy turn costs one WAL commit however many messages it holds.
 */
export class SqliteMessageWriter implements MessageWriter {
  private readonly commits: GroupCommit;
  private readonly writeTx: (message: NewMessage, memberIds: readonly Id[]) => WrittenMessage;

  constructor(db: SqliteDatabase, log: SqliteMessageLog, inbox: SqliteInbox) {
    this.commits = groupCommitOf(db);
    this.writeTx = db.transaction((message: NewMessage, memberIds: readonly Id[]): WrittenMessage => {
      const stored = log.appendInTransaction(message);
      // Stored before: its inbox copies were written in that same transaction.
      if (stored.duplicate) return { ...stored, entries: [] };
      // A message the log did not have is in no inbox either (they are written together).
      const entries = memberIds.map((userId) => ({ userId, entry: inbox.appendNewInTransaction(userId, stored.message) }));
      return { ...stored, entries };
    });
  }

  async write(message: NewMessage, memberIds: readonly Id[]): Promise<WrittenMessage> {
    try {
      return await this.commits.run(() => this.writeTx(message, memberIds));
    } catch (e) {
      translateError(e, `message ${message.messageId}`);
    }
  }
}
