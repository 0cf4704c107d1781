import type { Id, InboxEntry, StoredMessage } from "../model/types.js";

/**
 * Inbox is one per user: a copy of every message of every channel the user is
 * in, with the user's own gap-free sequence (the seed's cur_max_message_id).
 * Every device of the user keeps one cursor into it. One writer appends to a
 * given user's inbox (the pipeline partition that owns the user); while two
 * overlap (a rebalance), each replays the user's records in the same order.
 * Adapters: sqlite (embedded), cassandra (distributed).
 *
 * An adapter may keep entries only for a retention window (Cassandra, by
 * CHAT_INBOX_RETENTION_S; SQLite keeps them forever): the inbox is the sync
 * queue, history stays in the MessageLog. Expired entries are the oldest
 * ones; the newest entry and the seqs are never lost, so appends and head()
 * are unaffected.
 */
export interface Inbox {
  /**
   * Appends with the user's next inbox seq (from 1). A message already in the
   * inbox (same messageId) is not added again: its entry comes back with
   * duplicate = true. Appends to one inbox take their seqs in call order, so
   * a caller may have several in flight (an adapter may store them together).
   */
  append(userId: Id, message: StoredMessage): Promise<{ entry: InboxEntry; duplicate: boolean }>;
  /**
   * Entries with inboxSeq > afterSeq, ascending, at most limit. Entries past
   * the retention window are skipped: the first entry returned may then be
   * above afterSeq + 1, and the result is empty only when nothing kept is
   * above afterSeq.
   *
   * With `textBytes`, the read also stops once the texts pass it
   * (TextBudget, page-bytes.ts): the result is what withinTextBytes keeps of
   * it with that budget, then the next entry if there is one, so that the
   * caller knows more follow. A caller that sends a page of at most that
   * many bytes then reads about what it sends, not `limit` entries.
   */
  readAfter(userId: Id, afterSeq: bigint, limit: number, textBytes?: number): Promise<InboxEntry[]>;
  /**
   * Empties the text of the user's entries of these messages (a message
   * deleted for everyone and its edits), where the inbox still keeps them;
   * ids it does not hold are skipped. Idempotent. The entries keep their
   * seqs and every other field: a device syncing past them still gets them
   * in order, and the delete after them. The entries of `deletedIds` (the
   * deleted message itself, named in `messageIds` too) are also marked
   * `deleted`, as chatd's delete marks its copies: a device that syncs up to
   * one and no further shows the message deleted, not as an empty one.
   */
  emptyTexts(userId: Id, messageIds: readonly Id[], deletedIds?: readonly Id[]): Promise<void>;
  /** The highest inbox seq, 0n when empty. */
  head(userId: Id): Promise<bigint>;
  /** The device's cursor, 0n when never set. */
  getCursor(userId: Id, deviceId: Id): Promise<bigint>;
  /**
   * Moves the cursor forward only (to seq, or where it is if that is
   * further). Nothing is returned: every ack of every device lands here, and
   * on Cassandra an answer would be a read more per ack.
   */
  advanceCursor(userId: Id, deviceId: Id, seq: bigint): Promise<void>;
  /** Deletes the cursor of a device gone for good; it is never advanced again (on Cassandra it could not be). */
  dropCursor(userId: Id, deviceId: Id): Promise<void>;
}

/**
 * The last inbox seq a read from `afterSeq` skipped because the inbox no
 * longer keeps it (0n when it skipped nothing): what a device must fill from
 * channel history. `entries` is the read's result, ascending.
 */
export function expiredThrough(afterSeq: bigint, entries: readonly InboxEntry[]): bigint {
  const first = entries[0]?.inboxSeq;
  const from = afterSeq < 0n ? 0n : afterSeq;
  return first !== undefined && first > from + 1n ? first - 1n : 0n;
}
