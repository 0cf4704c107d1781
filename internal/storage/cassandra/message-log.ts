import cassandra from "cassandra-driver";
import { changesNothing } from "../../messages/changes.js";
import type { Amended, MessageLog, PageQuery } from "../../messages/log.js";
import { decodeNote, encodeNote, readByItsActor } from "../../messages/notes.js";
import { throughTextBytes } from "../../messages/page-bytes.js";
import type { Id, NewMessage, StoredMessage } from "../../model/types.js";
import { bucketOf, bucketSlices, readRange } from "./buckets.js";
import { readSlices } from "./budgeted-read.js";
import { applyChange, decodeChange, encodeChange, NO_CHANGE, type ChangeCell } from "./change-cell.js";
import type { AppendStats } from "./metrics.js";
import { GatheredReads } from "./gathered-reads.js";
import { NewestEntries } from "./newest.js";
import { decodeReactions, encodeReaction, withReactions, type ReactionCell } from "./reaction-cell.js";
import { DEVICE_DEDUP_SINCE, LEGACY_DEDUP_WINDOW_MS } from "./schema.js";
import { SequencedAppender, type SequenceOps } from "./sequenced.js";
import { big, IN_PARTITIONS, ms, msCell, type Db, type Row } from "./session.js";

/**
 * Channels whose newest rows one read of latest() names: a text may be
 * ~400 KB, and a reply of tens of them stays a few MB.
 */
const NEWEST_ROWS_PER_READ = 10;

const COLS = "message_id, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
/** Columns of messages and channel_newest that schema 1's channel_heads never had. */
const LOG_ONLY = "reply_to_seq, note";
/** Columns of messages alone: the newest-message row shows no reactions. */
const ROW_ONLY = "reactions";

/**
 * The message columns of a row; also reads inbox rows, which carry a
 * change's fields (or a changed copy's) in columns of their own. Those
 * come back only when set (null cells, and columns not selected, are
 * absent keys), so a plain message has none of them.
 */
export const toMessage = (r: Row, channelId: Id, seq: bigint): StoredMessage => {
  const m: StoredMessage = {
    messageId: big(r.get("message_id")),
    channelId,
    senderUserId: big(r.get("sender_user_id")),
    senderDeviceId: big(r.get("sender_device_id")),
    clientMsgId: r.get("client_msg_id") as string,
    // Null once a change cleared it: the change cell holds the text then.
    text: (r.get("text") as string | null) ?? "",
    sentAtMs: ms(r.get("sent_at_ms")),
    seq,
  };
  const targetSeq = r.get("target_seq") as bigint | null | undefined;
  if (targetSeq != null) m.targetSeq = targetSeq;
  const editedAtMs = r.get("edited_at_ms") as bigint | null | undefined;
  if (editedAtMs != null) m.editedAtMs = ms(editedAtMs);
  const deleted = r.get("deleted") as boolean | null | undefined;
  if (deleted != null) m.deleted = deleted;
  const replyToSeq = r.get("reply_to_seq") as bigint | null | undefined;
  if (replyToSeq != null) m.replyToSeq = big(replyToSeq);
  if (r.get("reaction") === true) m.reaction = true;
  const note = r.get("note") as string | null | undefined;
  if (note != null) m.note = decodeNote(note);
  return m;
};

/**
 * A row of messages or channel_newest as its last change left it. A change
 * cell counts only for the seq it was written for: a head row written by an
 * older build keeps the previous newest message's change beside it.
 */
const fromLogRow = (r: Row, channelId: Id, seq: bigint): StoredMessage => {
  const c = decodeChange(r.get("change"));
  return withReactions(applyChange(toMessage(r, channelId, seq), c?.seq === seq ? c : undefined), decodeReactions(r.get("reactions")));
};

const messageValues = (m: StoredMessage) => [
  m.messageId, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, msCell(m.sentAtMs),
];
/**
 * LOG_ONLY's values. `absent` is what an unset field is written as: unset in
 * a message row (written once, no tombstone); null in the newest-message
 * row, to clear the previous message's.
 */
const logOnlyValues = (m: StoredMessage, absent: unknown) => [m.replyToSeq ?? absent, m.note ? encodeNote(m.note) : absent];

/**
 * MessageLog on Cassandra: messages partitioned by (channel_id, bucket),
 * seqs handed out by SequencedAppender with plain writes (the channel's
 * newest message in channel_newest), resends caught by
 * message_dedup_by_device keyed by (channel, sender, device, client_msg_id).
 *
 * Edits and deletes (amend) are kept in one `change` cell per message
 * (change-cell.ts), in its row and, while it is the newest, in
 * channel_newest, each written with the message's seq as the write
 * timestamp: the latest change wins on every replica whatever order the
 * writes land in, and a later head (a higher timestamp) drops it. The text
 * column is cleared (a tombstone at the text's own timestamp, which wins the
 * tie) so a deleted text is not kept, and so a message row or head written
 * again by a writer that fell behind cannot bring it back.
 *
 * A keyspace upgraded from schema 2 has the sends accepted before the
 * upgrade only in message_dedup, keyed without the device. For a day after
 * the upgrade (DEVICE_DEDUP_SINCE in meta) a send missing from the new table
 * is also looked up there, beside it, and is a resend only if the message
 * stored under that key came from the same device: a device retrying across
 * the upgrade is still caught, another device's same client_msg_id is not
 * swallowed. After the day (or in a keyspace created at 3) only the new
 * table is read.
 */
export class CassandraMessageLog implements MessageLog {
  private readonly appender: SequencedAppender<NewMessage, StoredMessage>;
  private readonly newest: NewestEntries;
  /** The appends' head reads of one turn (a sequencer batch's channels) as IN reads. */
  private readonly headSeqs: GatheredReads<Id, bigint>;
  private readonly q;
  /** Until when (epoch ms) message_dedup is read too; 0 when never. Read once. */
  private legacyUntil: Promise<number> | undefined;
  private readonly seqOps: SequenceOps<NewMessage, StoredMessage>;
  /** The last amend called per channel, while one is in flight: the next one starts after it. */
  private readonly amending = new Map<Id, Promise<Amended | undefined>>();

  constructor(
    private readonly db: Db,
    private readonly bucketSize: number,
    headCacheSize?: number,
  ) {
    const t = (n: string) => db.t(n);
    this.q = {
      // The empty change, not null: a null (a tombstone) would win the tie
      // with a change of this very message written at the same timestamp.
      putHead: `INSERT INTO ${t("channel_newest")} (channel_id, last_seq, ${COLS}, change, ${LOG_ONLY})
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`,
      // At the seq, not the clock: a change's clearing of the text (at the
      // text's timestamp) then also wins over the row written again later
      // by a writer that fell behind.
      insert: `INSERT INTO ${t("messages")} (channel_id, bucket, seq, ${COLS}, ${LOG_ONLY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               USING TIMESTAMP ?`,
      one: `SELECT ${COLS}, change, ${LOG_ONLY}, ${ROW_ONLY} FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      target: `SELECT ${COLS}, change, ${LOG_ONLY}, ${ROW_ONLY}, WRITETIME(text) AS text_ts FROM ${t("messages")}
               WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      // At the seq, as the change cell: the value (change id first) orders a user's reactions.
      putReaction: `UPDATE ${t("messages")} USING TIMESTAMP ? SET reactions[?] = ? WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      changeRow: `UPDATE ${t("messages")} USING TIMESTAMP ? SET change = ? WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      clearRowText: `UPDATE ${t("messages")} USING TIMESTAMP ? SET text = null WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      changeHead: `UPDATE ${t("channel_newest")} USING TIMESTAMP ? SET change = ?, text = null WHERE channel_id = ?`,
      putEdit: `INSERT INTO ${t("message_edits")} (channel_id, seq, change_id) VALUES (?, ?, ?)`,
      edits: `SELECT change_id FROM ${t("message_edits")} WHERE channel_id = ? AND seq = ?`,
      firstEdits: `SELECT change_id FROM ${t("message_edits")} WHERE channel_id = ? AND seq = ? LIMIT ?`,
      range: `SELECT seq, ${COLS}, change, ${LOG_ONLY}, ${ROW_ONLY} FROM ${t("messages")}
              WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
      // A forward page reads the oldest first, against the clustering order, so that a budget stops it where the page ends.
      rangeAscending: `SELECT seq, ${COLS}, change, ${LOG_ONLY}, ${ROW_ONLY} FROM ${t("messages")}
                       WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq ASC`,
      senders: `SELECT seq, sender_user_id, note FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
      dedup: `SELECT seq, message_id FROM ${t("message_dedup_by_device")}
              WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`,
      putDedup: `INSERT INTO ${t("message_dedup_by_device")}
                   (channel_id, sender_user_id, sender_device_id, client_msg_id, seq, message_id) VALUES (?, ?, ?, ?, ?, ?)`,
      changeKey: `SELECT change_id FROM ${t("change_dedup")}
                  WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`,
      putChangeKey: `INSERT INTO ${t("change_dedup")} (channel_id, sender_user_id, sender_device_id, client_msg_id, change_id)
                     VALUES (?, ?, ?, ?, ?)`,
      legacyDedup: `SELECT seq, message_id FROM ${t("message_dedup")} WHERE channel_id = ? AND sender_user_id = ? AND client_msg_id = ?`,
      upgradedAt: `SELECT value FROM ${t("meta")} WHERE key = ?`,
    };
    this.newest = new NewestEntries(db, { newest: "channel_newest", legacy: "channel_heads" }, "channel_id", COLS, `change, ${LOG_ONLY}`);
    this.headSeqs = new GatheredReads(async (channelIds) => {
      const rows = await this.newest.columnsOf(channelIds, "last_seq", IN_PARTITIONS);
      return new Map([...rows].map(([channelId, r]) => [channelId.toString(), big(r.get("last_seq"))]));
    }, String);
    this.seqOps = this.ops();
    this.appender = new SequencedAppender(this.seqOps, headCacheSize);
  }

  /** Heads found ahead of this writer's cache, rows written for another writer, groups stored. */
  get stats(): AppendStats {
    return this.appender.stats;
  }

  append(message: NewMessage): Promise<{ message: StoredMessage; duplicate: boolean }> {
    return this.appender.append(message.channelId, message).then((r) => ({ message: r.entry, duplicate: r.duplicate }));
  }

  async amend(change: NewMessage): Promise<StoredMessage | undefined> {
    return (await this.inChannelOrder(change, false))?.message;
  }

  amendIfChanges(change: NewMessage): Promise<Amended | undefined> {
    return this.inChannelOrder(change, true);
  }

  private inChannelOrder(change: NewMessage, judge: boolean): Promise<Amended | undefined> {
    const key = change.channelId;
    const before = this.amending.get(key);
    // After the channel's appends called before it: a change of the newest
    // message must find that message in the head to keep the head's copy in
    // step. A retried batch finishing an append whose head write failed, with a
    // delete of that message beside it, otherwise read the head before the
    // append rewrote it, skipped the copy, and the chat list kept the deleted
    // text until the next message.
    const appends = this.appender.settled(key);
    // Each decision reads what the one before wrote. One that fails fails
    // those queued behind it, as a failed append group does: the caller
    // retries them together, and none overtakes a change still to be made.
    const run = (before ? before.then(() => appends) : appends).then(() => this.applyChange(change, judge));
    this.amending.set(key, run);
    const forget = () => {
      if (this.amending.get(key) === run) this.amending.delete(key);
    };
    run.then(forget, forget);
    return run;
  }

  async editsOf(channelId: Id, seq: bigint, limit?: number): Promise<Id[]> {
    const rows = limit === undefined ? this.db.rows(this.q.edits, [channelId, seq]) : this.db.rows(this.q.firstEdits, [channelId, seq, limit]);
    return (await rows).map((r) => big(r.get("change_id")));
  }

  get(channelId: Id, seq: bigint): Promise<StoredMessage | undefined> {
    return this.bySeq(channelId, seq);
  }

  async findChange(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<Id | undefined> {
    const r = await this.db.one(this.q.changeKey, [channelId, senderUserId, senderDeviceId, clientMsgId]);
    return r ? big(r.get("change_id")) : undefined;
  }

  async findByClientMsgId(channelId: Id, senderUserId: Id, senderDeviceId: Id, clientMsgId: string): Promise<StoredMessage | undefined> {
    const d = await this.findDedup(channelId, { senderUserId, senderDeviceId, clientMsgId });
    if (!d) return undefined;
    const m = await this.bySeq(channelId, d.seq);
    // Under the old key, the message may be another device's.
    return m && (!d.legacy || m.senderDeviceId === senderDeviceId) ? m : undefined;
  }

  async page(channelId: Id, q: PageQuery): Promise<StoredMessage[]> {
    if (q.limit <= 0) return [];
    const backward = q.direction === "backward";
    const scanned = backward && q.anchorSeq > 0n ? (q.scanned ?? 0) : 0;
    // A scan going on from a seq it read is below the head: no need to read it again.
    const head = scanned > 0 ? undefined : await this.headSeq(channelId);
    const limit = BigInt(q.limit);
    let lo: bigint;
    let hi: bigint;
    if (head === undefined) {
      hi = q.anchorSeq - 1n;
      lo = hi - limit + 1n;
    } else if (backward) {
      hi = q.anchorSeq === 0n || q.anchorSeq > head ? head : q.anchorSeq - 1n;
      lo = hi - limit + 1n;
    } else {
      lo = (q.anchorSeq < 0n ? 0n : q.anchorSeq) + 1n;
      hi = lo + limit - 1n < head ? lo + limit - 1n : head;
    }
    if (lo < 1n) lo = 1n;
    if (hi < lo) return [];
    // Bucket by bucket in the page's order, so that a budget stops the read where the page ends.
    const { items: rows, complete } = await readSlices(
      this.db,
      bucketSlices(lo, hi, this.bucketSize, backward).map((b) => ({
        query: backward ? this.q.range : this.q.rangeAscending,
        params: [channelId, b.bucket, b.from, b.to],
        rows: Number(b.to - b.from + 1n),
      })),
      q.textBytes,
      (r) => fromLogRow(r, channelId, big(r.get("seq"))),
      (m) => m.text,
      scanned,
    );
    // A head from before schema 2 may have no row yet (its writer died after
    // the compare-and-set); its copy stands in until the next append writes it.
    // A backward page starts with it; a forward one stopped by its budget never reaches it.
    if (head !== undefined && (complete || backward) && hi === head && !rows.some((m) => m.seq === head)) {
      const h = await this.readHead(channelId);
      if (h && h.seq === head) rows.push(h.entry);
    }
    rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    // Trimmed again for the head's copy, which may have come in ahead of what the budget stopped at.
    return throughTextBytes(backward ? rows.reverse() : rows, (m) => m, q.textBytes);
  }

  async lastSentBy(channelId: Id, senderUserId: Id, fromSeq: bigint, toSeq: bigint): Promise<bigint | undefined> {
    const lo = fromSeq < 1n ? 1n : fromSeq;
    // Two columns of every row in the window, filtered here: no index on the sender.
    const seqs = await readRange(lo, toSeq, this.bucketSize, (b, from, to) =>
      this.db.rows(this.q.senders, [channelId, b, from, to]).then((rs) =>
        rs.filter((r) => big(r.get("sender_user_id")) === senderUserId && (r.get("note") == null || readByItsActor(decodeNote(r.get("note") as string))))
          .map((r) => big(r.get("seq"))),
      ),
    );
    return seqs.reduce<bigint | undefined>((max, s) => (max === undefined || s > max ? s : max), undefined);
  }

  async newestBySender(channelId: Id, fromSeq: bigint, toSeq: bigint): Promise<Map<Id, bigint>> {
    const lo = fromSeq < 1n ? 1n : fromSeq;
    // As lastSentBy: the window's rows read whole (two small columns and a note's), filtered here.
    const rows = await readRange(lo, toSeq, this.bucketSize, (b, from, to) =>
      this.db.rows(this.q.senders, [channelId, b, from, to]).then((rs) =>
        rs.filter((r) => r.get("note") == null || readByItsActor(decodeNote(r.get("note") as string)))
          .map((r) => [big(r.get("sender_user_id")), big(r.get("seq"))] as const),
      ),
    );
    const out = new Map<Id, bigint>();
    for (const [sender, seq] of rows) if (seq > (out.get(sender) ?? 0n)) out.set(sender, seq);
    return out;
  }

  async latest(channelIds: readonly Id[]): Promise<Map<Id, StoredMessage>> {
    const heads = await this.newest.rowsOf(channelIds, NEWEST_ROWS_PER_READ);
    const out = new Map<Id, StoredMessage>();
    for (const id of channelIds) {
      const h = heads.get(id);
      if (h) out.set(id, fromLogRow(h.row, id, h.seq));
    }
    return out;
  }

  async latestSentAt(channelIds: readonly Id[]): Promise<Map<Id, number>> {
    // Only the time: the list of chats then reads the full newest rows of one page, not of every chat.
    const rows = await this.newest.columnsOf(channelIds, "sent_at_ms", IN_PARTITIONS);
    const out = new Map<Id, number>();
    for (const id of channelIds) {
      const r = rows.get(id);
      if (r) out.set(id, ms(r.get("sent_at_ms")));
    }
    return out;
  }

  /** With `judge`, as amendIfChanges; else as amend, every change answered `changed`. */
  private async applyChange(change: NewMessage, judge: boolean): Promise<Amended | undefined> {
    const { channelId, targetSeq: seq } = change;
    if (seq === undefined || seq < 1n) return undefined;
    const bucket = bucketOf(seq, this.bucketSize);
    const key = [channelId, change.senderUserId, change.senderDeviceId, change.clientMsgId];
    const [r, head, keyed] = await Promise.all([
      this.db.one(this.q.target, [channelId, bucket, seq]),
      this.newest.head(channelId),
      this.db.one(this.q.changeKey, key),
    ]);
    // A resend under another id is never applied, neither after the first
    // copy nor after a later change that refused it.
    if (keyed && big(keyed.get("change_id")) !== change.messageId) return undefined;
    let target = r && {
      message: toMessage(r, channelId, seq),
      current: decodeChange(r.get("change")),
      textTs: r.get("text_ts") as bigint | null,
      reactions: decodeReactions(r.get("reactions")),
    };
    if (head.legacy && head.seq === seq) {
      // A head from before schema 2 (only read, and its row perhaps never
      // written): carried over as the next append would, so that the change
      // has a newest-entry row to be kept in step with.
      const h = await this.readHead(channelId);
      if (h?.legacy && h.seq === seq) {
        if (!target) {
          await this.seqOps.writeEntry(channelId, h.entry);
          target = { message: h.entry, current: undefined, textTs: seq, reactions: new Map() };
        }
        await this.seqOps.writeHead(channelId, h.entry);
      }
    }
    // Judged on the very rows the writes below are decided on, so no second
    // read of the target: this runs after the channel's earlier changes and
    // appends (inChannelOrder), and a channel's records reach its writer in
    // order (one partition of the queue), so nothing changes the target in
    // between (a writer overlapping in a rebalance replays the same records
    // in the same order). The same change again (its key its own) may find
    // its own doing, and counts as changed.
    const now = target && withReactions(applyChange(target.message, target.current), target.reactions);
    const unchanged = judge && !keyed && now !== undefined && changesNothing(change, now);
    if (unchanged && !change.reaction) return { message: now!, changed: false };
    // The key is taken before anything is applied, whether or not it applies.
    // Channels' changes apply one at a time in record order, on every writer
    // alike, so a read then a write is enough.
    if (!keyed) await this.db.write(this.q.putChangeKey, [...key, change.messageId]);
    if (!target) return undefined;
    const { message, current, reactions } = target;
    if (change.reaction) {
      // Its cell already names it: applied before (the key is written first, so it alone does not tell).
      const again = reactions.get(change.senderUserId)?.changeId === change.messageId;
      const reacted = await this.react(change, applyChange(message, current), reactions, bucket);
      return reacted && { message: reacted, changed: !unchanged, ...(again && { again: true as const }) };
    }
    const newest = head.seq === seq;
    if (current?.changedBy === change.messageId) {
      // This change again (a retried record). The head's copy is written
      // again (same cell, same timestamp) in case the first try stopped
      // between the row and the head.
      // So is its record among the message's edits, for the same reason.
      await Promise.all([
        newest ? this.db.write(this.q.changeHead, [seq, encodeChange(current), channelId]) : undefined,
        change.deleted ? undefined : this.db.write(this.q.putEdit, [channelId, seq, change.messageId]),
      ]);
      return { message: withReactions(applyChange(message, current), reactions), changed: true, again: true };
    }
    // A delete wins over any edit, even one minted after it: it was acked as
    // "deleted for everyone". Edits are ordered by their ids.
    if (current && (current.deleted || (!change.deleted && current.changedBy > change.messageId))) return undefined;
    const next: ChangeCell = change.deleted
      ? { seq, changedBy: change.messageId, deleted: true, text: "" }
      : { seq, changedBy: change.messageId, deleted: false, editedAtMs: change.sentAtMs, text: change.text };
    const cell = encodeChange(next);
    const setRow = { query: this.q.changeRow, params: [seq, cell, channelId, bucket, seq] };
    await Promise.all([
      // One partition: the cell and the cleared text land together, never a
      // text emptied with no change to say why.
      target.textTs === null
        ? this.db.write(setRow.query, setRow.params)
        : this.db.batch([setRow, { query: this.q.clearRowText, params: [target.textTs, channelId, bucket, seq] }], { logged: false }),
      // A head that moved on since has a higher timestamp: this loses to it.
      newest ? this.db.write(this.q.changeHead, [seq, cell, channelId]) : undefined,
      change.deleted ? undefined : this.db.write(this.q.putEdit, [channelId, seq, change.messageId]),
    ]);
    return { message: withReactions(applyChange(message, next), reactions), changed: true };
  }

  /**
   * A reaction: the user's latest (by change id) stands; one replayed after
   * a later one is refused, the same one again answers as it did. Nothing
   * to keep in step in channel_newest, which shows no reactions.
   */
  private async react(change: NewMessage, target: StoredMessage, cells: ReadonlyMap<Id, ReactionCell>, bucket: bigint) {
    if (target.deleted) return undefined;
    const mine = cells.get(change.senderUserId);
    if (mine && mine.changeId > change.messageId) return undefined;
    const next = new Map(cells);
    if (!mine || mine.changeId !== change.messageId) {
      const cell: ReactionCell = { changeId: change.messageId, emoji: change.text };
      await this.db.write(this.q.putReaction, [target.seq, change.senderUserId, encodeReaction(cell), change.channelId, bucket, target.seq]);
      next.set(change.senderUserId, cell);
    }
    return withReactions(target, next);
  }

  private headSeq(channelId: Id): Promise<bigint> {
    return this.newest.seq(channelId);
  }

  private async readHead(channelId: Id): Promise<{ seq: bigint; entry: StoredMessage; legacy: boolean } | undefined> {
    const h = await this.newest.row(channelId);
    return h && { seq: h.seq, entry: fromLogRow(h.row, channelId, h.seq), legacy: h.legacy };
  }

  /** The seq stored under the send's dedup key; while the upgrade window is open, in message_dedup too. */
  private async findDedup(
    channelId: Id,
    m: Pick<NewMessage, "senderUserId" | "senderDeviceId" | "clientMsgId">,
  ): Promise<{ seq: bigint; messageId: Id; legacy: boolean } | undefined> {
    const legacy = (await this.legacyWindowOpen())
      ? this.db.one(this.q.legacyDedup, [channelId, m.senderUserId, m.clientMsgId])
      : undefined;
    legacy?.catch(() => undefined); // not awaited when the new table answers
    const d = await this.db.one(this.q.dedup, [channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId]);
    if (d) return { seq: big(d.get("seq")), messageId: big(d.get("message_id")), legacy: false };
    const old = await legacy;
    return old && { seq: big(old.get("seq")), messageId: big(old.get("message_id")), legacy: true };
  }

  private async legacyWindowOpen(): Promise<boolean> {
    // The marker never changes once claimed, so one read per process; a
    // failed read is not kept (the append fails and is retried).
    this.legacyUntil ??= this.db.one(this.q.upgradedAt, [DEVICE_DEDUP_SINCE]).then((r) => {
      const since = r?.get("value");
      return typeof since === "string" ? Number(since) + LEGACY_DEDUP_WINDOW_MS : 0;
    });
    try {
      return (await this.legacyUntil) > Date.now();
    } catch (e) {
      this.legacyUntil = undefined;
      throw e;
    }
  }

  private async row(channelId: Id, seq: bigint): Promise<StoredMessage | undefined> {
    const r = await this.db.one(this.q.one, [channelId, bucketOf(seq, this.bucketSize), seq]);
    return r ? fromLogRow(r, channelId, seq) : undefined;
  }

  private async bySeq(channelId: Id, seq: bigint): Promise<StoredMessage | undefined> {
    const m = await this.row(channelId, seq);
    if (m) return m;
    const h = await this.readHead(channelId);
    return h && h.seq === seq ? h.entry : undefined;
  }

  private ops(): SequenceOps<NewMessage, StoredMessage> {
    const { db, q } = this;
    return {
      readHead: (channelId) => this.readHead(channelId),
      readHeadSeq: async (channelId) => (await this.headSeqs.read(channelId)) ?? 0n,
      findSeq: async (channelId, m) => {
        const d = await this.findDedup(channelId, m);
        if (!d) return undefined;
        const sameRecord = d.messageId === m.messageId;
        if (d.legacy && !sameRecord) {
          // Under the old key, another device's message may hold this
          // client_msg_id: then this one is new. A row not written yet (its
          // writer died) cannot tell; as any resend of such a row, this one
          // is refused for a retry until the first copy writes it.
          const stored = await this.row(channelId, d.seq);
          if (stored && stored.senderDeviceId !== m.senderDeviceId) return undefined;
        }
        return { seq: d.seq, sameRecord };
      },
      readEntry: (channelId, seq) => this.row(channelId, seq),
      writeEntry: (channelId, m) =>
        db.writeTogether([
          { query: q.insert, params: [channelId, bucketOf(m.seq, this.bucketSize), m.seq, ...messageValues(m), ...logOnlyValues(m, cassandra.types.unset), m.seq] },
          { query: q.putDedup, params: [channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.seq, m.messageId] },
        ]),
      // An entry read back may carry a change: the change's own head write
      // (same timestamp, greater cell, text cleared) wins over this one.
      writeHead: (channelId, m) => db.write(q.putHead, [channelId, m.seq, ...messageValues(m), NO_CHANGE, ...logOnlyValues(m, null), m.seq]),
      dedupKey: (m) => `${m.senderUserId}/${m.senderDeviceId}/${m.clientMsgId}`,
      withSeq: (m, seq) => ({ ...m, seq }),
      seqOf: (m) => m.seq,
    };
  }
}
