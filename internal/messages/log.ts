import type { Id, NewMessage, StoredMessage } from "../model/types.js";

export interface PageQuery {
  /** Exclusive bound; 0n with "backward" means from the newest. */
  anchorSeq: bigint;
  direction: "backward" | "forward";
  limit: number;
  /**
   * The page also stops once its texts pass this many bytes (TextBudget,
   * page-bytes.ts): it holds what withinTextBytes keeps of it with that
   * budget, then the next message if there is one, so that the caller
   * knows more follow.
   */
  textBytes?: number;
  /**
   * A backward page that goes on with a scan (SearchMessages): how many
   * messages the scan's pages before this one held, `anchorSeq` being the
   * oldest of them. The page is then read as the rest of one read would be:
   * on Cassandra the head is not read again (the anchor is below it) and the
   * fetch size goes on growing rather than starting over at its first small
   * request, a scan of short texts costing what one long page does.
   */
  scanned?: number;
}

/** A change `amendIfChanges` applied (or judged to change nothing): its target as it now is. */
export interface Amended {
  message: StoredMessage;
  /** False when the change left the target as it was (`changesNothing`). */
  changed: boolean;
  /**
   * This very change was applied before (a retried record): its work was done, and counted, then.
   * Its fan-out is still done again (`changed`), as a message's handed again is.
   */
  again?: true;
}

/**
 * MessageLog is every channel's history, kept forever. One writer appends
 * to a given channel (the pipeline partition that owns it), so the adapter
 * may compute the next seq without a compare-and-set; while two overlap (a
 * rebalance), each replays the channel's records in the same order.
 * Adapters: sqlite (embedded), cassandra (distributed).
 */
export interface MessageLog {
  /**
   * Stores the message with the channel's next seq (gap-free, from 1). A
   * message whose (channelId, senderUserId, senderDeviceId, clientMsgId) is
   * already stored is not stored again: the stored one comes back with
   * duplicate = true. The device is part of the key because clientMsgId is
   * unique per sending device (session.proto): a user's phone and web client
   * may both send "1" to one channel, and both are messages.
   * Appends to one channel take their seqs in call order, so a caller may
   * have several in flight (an adapter may store them together).
   */
  append(message: NewMessage): Promise<{ message: StoredMessage; duplicate: boolean }>;
  /**
   * Applies a change (`change.targetSeq` set: an edit, or with `deleted` a
   * delete) to the message it targets and returns that message as it now
   * is. An edit sets its text and `editedAtMs` (the change's `sentAtMs`); a
   * delete empties its text and sets `deleted`. Changes to one channel
   * apply one at a time, in call order, each after the channel's appends
   * called before it (a change of the newest message keeps `latest` in step).
   *
   * Undefined when the change does not apply: the target is not stored, is
   * deleted already, or the change is an edit and a later change of it is
   * stored (edits are ordered by `messageId`; snowflakes grow with time, so
   * an edit replayed after a newer one never undoes it). A delete applies to
   * any message not deleted yet, whatever edits came first: it was acked as
   * deleted for everyone, and an edit minted after it on another chat server
   * may have reached the log first. The same change applied again (a retried
   * record, same `messageId`) returns the target as that change left it,
   * and writes nothing new. The adapter keeps what `latest` returns in step.
   * Permissions are the caller's: this only orders changes.
   *
   * A reaction (`change.reaction`: `text` the emoji, "" to take it back)
   * sets its sender's one reaction to the target, which `get` and `page`
   * then show in `reactions` (by user id; `latest` shows none, nor does a
   * deleted message). A user's reactions are ordered by `messageId` as edits
   * are, and it does not apply to a deleted target; the same reaction again
   * returns the target as it left it.
   *
   * A change is known by its send key as a message is (channel, sender,
   * device, clientMsgId): one whose key a change of another `messageId` holds
   * is a client's resend minted again, and does not apply (undefined), even
   * after a later change. An applied change holds its key; the Cassandra
   * adapter, fed by the queue, also keeps the key of one that did not apply,
   * since its resend may come after the change that refused it.
   */
  amend(change: NewMessage): Promise<StoredMessage | undefined>;
  /**
   * `amend`, for a caller that copies a change on only if it changes
   * something (the Sequencer): the change is first judged by
   * `changesNothing` against its target as read to apply it, so one read
   * serves both. A change that would leave the target as it is comes back
   * `changed: false`: an edit then writes nothing (stored, it would mark the
   * message edited and count towards its edits, and it holds no key), a
   * reaction is stored as `amend` stores it (for its key: a resend minted
   * again is then this one). The same change again (a retried record, its
   * key held by its own `messageId`) is judged changed as when it first
   * applied: the state read may be its own doing. Undefined where `amend`
   * is, and with the same writes.
   */
  amendIfChanges(change: NewMessage): Promise<Amended | undefined>;
  /** The id of the change that holds that send key, if any. */
  findChange(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<Id | undefined>;
  /**
   * The ids of the edits applied to the message with that seq, oldest first
   * (a delete is not among them): what a delete must empty besides the
   * message's own copies. With `limit`, only the oldest `limit` of them:
   * enough to tell whether a message reached MAX_EDITS_PER_MESSAGE without
   * reading the edits of one edited before there was a limit.
   */
  editsOf(channelId: Id, seq: bigint, limit?: number): Promise<Id[]>;
  /** The message with that seq as it now is (edited or deleted, with its reactions), if stored. */
  get(channelId: Id, seq: bigint): Promise<StoredMessage | undefined>;
  /** The stored message of that append key, if any. */
  findByClientMsgId(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<StoredMessage | undefined>;
  /** Backward: newest first, seq < anchor. Forward: oldest first, seq > anchor. */
  page(channelId: Id, query: PageQuery): Promise<StoredMessage[]>;
  /**
   * The seq of the newest message `senderUserId` sent to the channel with a
   * seq from `fromSeq` to `toSeq` (a window the caller keeps small: the
   * adapter may read every seq in it), or undefined. A note counts unless it
   * is a join by link (readByItsActor), as for `newestBySender`.
   */
  lastSentBy(channelId: Id, senderUserId: Id, fromSeq: bigint, toSeq: bigint): Promise<bigint | undefined>;
  /**
   * The seq of each sender's newest message with a seq from `fromSeq` to
   * `toSeq`, by sender, a note counting as its actor's unless it is a join
   * by link (readByItsActor): a window the caller keeps small, as for
   * `lastSentBy`.
   */
  newestBySender(channelId: Id, fromSeq: bigint, toSeq: bigint): Promise<Map<Id, bigint>>;
  /** The newest message of each channel that has any. */
  latest(channelIds: readonly Id[]): Promise<Map<Id, StoredMessage>>;
  /**
   * When the newest message of each channel that has any was sent, as
   * `latest` would tell: what a list of channels sorts on, for an adapter
   * that can answer it without reading every newest text.
   */
  latestSentAt(channelIds: readonly Id[]): Promise<Map<Id, number>>;
}
