import cassandra from "cassandra-driver";
import type { Inbox } from "../../messages/inbox.js";
import { encodeNote } from "../../messages/notes.js";
import { throughTextBytes } from "../../messages/page-bytes.js";
import { snowflakeTimeMs } from "../../ids/snowflake.js";
import type { Id, InboxEntry, StoredMessage } from "../../model/types.js";
import { bucketOf, bucketSlices } from "./buckets.js";
import { readSlices } from "./budgeted-read.js";
import { toMessage } from "./message-log.js";
import type { AppendStats } from "./metrics.js";
import { NewestEntries } from "./newest.js";
import { GatheredReads } from "./gathered-reads.js";
import { SequencedAppender, type SequenceOps } from "./sequenced.js";
import { big, FANOUT, IN_PARTITIONS, mapLimit, msCell, type Db, type Row } from "./session.js";

const BASE = "message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
/** Set on a change's entry (target_seq, reaction), an edited or deleted copy, a reply, or a note; schema 1's inbox_heads lacks them. */
const CHANGE_COLS = "target_seq, edited_at_ms, deleted, reply_to_seq, reaction, note";
const COLS = `${BASE}, ${CHANGE_COLS}`;

const toEntry = (r: Row, inboxSeq: bigint): InboxEntry => ({
  inboxSeq,
  message: toMessage(r, big(r.get("channel_id")), big(r.get("seq"))),
});

/**
 * `absent` is what an unset optional field is written as: unset in an
 * entry row, written once (no tombstone among rows that are meant to expire
 * whole); null in the newest-entry row, to clear the previous entry's.
 */
const entryValues = ({ message: m }: InboxEntry, absent: unknown) => [
  m.messageId, m.channelId, m.seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, msCell(m.sentAtMs),
  m.targetSeq ?? absent, m.editedAtMs === undefined ? absent : msCell(m.editedAtMs), m.deleted ?? absent, m.replyToSeq ?? absent,
  m.reaction ?? absent, m.note ? encodeNote(m.note) : absent,
];

/**
 * Inbox on Cassandra: entries partitioned by (user_id, bucket of inbox_seq),
 * inbox seqs handed out by SequencedAppender with plain writes (the newest
 * entry in inbox_newest), repeats caught by inbox_dedup keyed by (user,
 * message_id). Device cursors only move forward without a read or a Paxos
 * round: the cursor value is also the cell's write timestamp, so the largest
 * one always wins.
 *
 * With a retention window, entry and dedup rows are written with that TTL:
 * the inbox copies (several per message) are most of the cluster's storage,
 * and history stays forever in the message log. The newest-entry row has no TTL, so
 * the newest entry and the seq survive any silence.
 */
export class CassandraInbox implements Inbox {
  private readonly appender: SequencedAppender<StoredMessage, InboxEntry>;
  private readonly newest: NewestEntries;
  private readonly q;
  /** The appends' reads of one turn (a batch's, a group message's hundred members) as IN reads. */
  private readonly headSeqs: GatheredReads<Id, bigint>;
  private readonly dedups: GatheredReads<{ userId: Id; messageId: Id }, bigint>;

  constructor(
    private readonly db: Db,
    private readonly bucketSize: number,
    headCacheSize?: number,
    /** Seconds an entry is kept; 0 keeps entries forever. */
    private readonly retentionSeconds = 0,
  ) {
    const t = (n: string) => db.t(n);
    this.q = {
      putHead: `INSERT INTO ${t("inbox_newest")} (user_id, last_seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                USING TIMESTAMP ?`,
      // At the message id's own time, not the clock: every writer of the entry writes the
      // same timestamp, so a writer that stalled and writes it again later cannot outrank
      // emptyText's tombstone and bring a deleted text back.
      insert: `INSERT INTO ${t("inbox")} (user_id, bucket, inbox_seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               USING TTL ? AND TIMESTAMP ?`,
      one: `SELECT ${COLS} FROM ${t("inbox")} WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
      range: `SELECT inbox_seq, ${COLS} FROM ${t("inbox")}
              WHERE user_id = ? AND bucket = ? AND inbox_seq >= ? AND inbox_seq <= ?`,
      firstKept: `SELECT inbox_seq FROM ${t("inbox")} WHERE user_id = ? AND bucket = ? AND inbox_seq > ? LIMIT 1`,
      dedup: `SELECT inbox_seq FROM ${t("inbox_dedup")} WHERE user_id = ? AND message_id = ?`,
      dedupsOf: `SELECT user_id, inbox_seq FROM ${t("inbox_dedup")} WHERE user_id IN ? AND message_id = ?`,
      putDedup: `INSERT INTO ${t("inbox_dedup")} (user_id, message_id, inbox_seq) VALUES (?, ?, ?) USING TTL ?`,
      cursor: `SELECT seq FROM ${t("inbox_cursors")} WHERE user_id = ? AND device_id = ?`,
      putCursor: `INSERT INTO ${t("inbox_cursors")} (user_id, device_id, seq) VALUES (?, ?, ?) USING TIMESTAMP ?`,
      dropCursor: `DELETE FROM ${t("inbox_cursors")} WHERE user_id = ? AND device_id = ?`,
      // A tombstone, not '': a live cell without the row's TTL would outlive
      // the rest of the row and leave a husk of an entry behind.
      emptyText: `DELETE text FROM ${t("inbox")} USING TIMESTAMP ? WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
      // What is left of the row's TTL (null when kept forever), and whether it is still there at all.
      ttlLeft: `SELECT TTL(channel_id) AS ttl FROM ${t("inbox")} WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
      // The deleted message's own copy: emptied as emptyText empties it, and marked deleted. The
      // deleted cell carries what is left of the row's TTL: one that outlived the row would keep
      // a husk of an entry (the key and `deleted`) readable after the entry expired.
      markDeleted: `UPDATE ${t("inbox")} USING TTL ? AND TIMESTAMP ? SET text = null, deleted = true
                    WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
    };
    this.newest = new NewestEntries(db, { newest: "inbox_newest", legacy: "inbox_heads" }, "user_id", BASE, CHANGE_COLS);
    this.headSeqs = new GatheredReads(async (userIds) => {
      const rows = await this.newest.columnsOf(userIds, "last_seq", IN_PARTITIONS);
      return new Map([...rows].map(([userId, r]) => [userId.toString(), big(r.get("last_seq"))]));
    }, String);
    // One IN read per message: the dedup rows of one message's users.
    this.dedups = new GatheredReads(
      async (keys) => {
        const { messageId } = keys[0]!;
        const rows = await db.rows(this.q.dedupsOf, [keys.map((k) => k.userId), messageId]);
        return new Map(rows.map((r) => [`${big(r.get("user_id"))}/${messageId}`, big(r.get("inbox_seq"))]));
      },
      ({ userId, messageId }) => `${userId}/${messageId}`,
      ({ messageId }) => messageId,
    );
    this.appender = new SequencedAppender(this.ops(), headCacheSize);
  }

  /** Heads found ahead of this writer's cache, rows written for another writer, groups stored. */
  get stats(): AppendStats {
    return this.appender.stats;
  }

  append(userId: Id, message: StoredMessage): Promise<{ entry: InboxEntry; duplicate: boolean }> {
    return this.appender.append(userId, message);
  }

  async emptyTexts(userId: Id, messageIds: readonly Id[], deletedIds: readonly Id[] = []): Promise<void> {
    const deleted = new Set(deletedIds);
    // At most FANOUT at a time: a delete names up to 101 ids per member (more for a message edited before the limit).
    await mapLimit(
      [...new Set([...messageIds, ...deletedIds])],
      FANOUT,
      async (id) => {
        const d = await this.db.one(this.q.dedup, [userId, id]);
        if (!d) return; // never in this inbox, or expired with its entry
        const seq = big(d.get("inbox_seq"));
        const bucket = bucketOf(seq, this.bucketSize);
        // Rows of older builds were written at the clock: the later of the two covers both.
        const at = maxBig(BigInt(Date.now()) * 1000n, entryTimestamp(id));
        if (!deleted.has(id)) {
          await this.db.write(this.q.emptyText, [at, userId, bucket, seq]);
          return;
        }
        // One read more, for the deleted message's copy alone (not its edits'): its TTL.
        const r = await this.db.one(this.q.ttlLeft, [userId, bucket, seq]);
        if (!r) return; // expired since the dedup read
        const ttl = r.get("ttl") as number | null;
        await this.db.write(this.q.markDeleted, [ttl ?? 0, at, userId, bucket, seq]);
      },
    );
  }

  async readAfter(userId: Id, afterSeq: bigint, limit: number, textBytes?: number): Promise<InboxEntry[]> {
    // The read stops at the budget; trimmed again for the head's copy, which may stand in after it.
    return throughTextBytes(await this.readUpTo(userId, afterSeq, limit, textBytes), (e) => e.message, textBytes);
  }

  private async readUpTo(userId: Id, afterSeq: bigint, limit: number, textBytes: number | undefined): Promise<InboxEntry[]> {
    if (limit <= 0) return [];
    const head = await this.head(userId);
    let lo = (afterSeq < 0n ? 0n : afterSeq) + 1n;
    for (;;) {
      const hi = lo + BigInt(limit) - 1n < head ? lo + BigInt(limit) - 1n : head;
      if (hi < lo) return [];
      const entries = afterLastHole(await this.readKept(userId, lo, hi, head, textBytes));
      // A page that began among expired rows comes back short of its limit,
      // which the session and SyncInbox take for the end of the inbox: read
      // it again from its first kept row.
      if (entries.length > 0 && entries.length < limit && entries[0]!.inboxSeq > lo && hi < head) {
        lo = entries[0]!.inboxSeq;
        continue;
      }
      if (entries.length > 0 || hi === head) return entries;
      // The whole page is past retention (rows expire oldest first): go on
      // from the first entry still kept instead of answering "nothing".
      lo = await this.firstKeptAfter(userId, hi, head);
    }
  }

  /**
   * The range [lo, hi] as stored, sorted, up to where `textBytes` stops it
   * (bucket by bucket then); the head's copy stands in for the newest row
   * when it is missing.
   */
  private async readKept(userId: Id, lo: bigint, hi: bigint, head: bigint, textBytes: number | undefined): Promise<InboxEntry[]> {
    const { items: entries, complete } = await readSlices(
      this.db,
      bucketSlices(lo, hi, this.bucketSize).map((b) => ({ query: this.q.range, params: [userId, b.bucket, b.from, b.to], rows: Number(b.to - b.from + 1n) })),
      textBytes,
      (r) => toEntry(r, big(r.get("inbox_seq"))),
      (e) => e.message.text,
    );
    // The newest entry's row may have expired (the newest-entry row has no
    // TTL) or, for a head from before schema 2, not be written yet (its
    // writer died after the compare-and-set): the head's copy stands in,
    // unless the budget stopped the read before it.
    if (complete && hi === head && !entries.some((e) => e.inboxSeq === head)) {
      const h = await this.readHead(userId);
      if (h && h.seq === head) entries.push(h.entry);
    }
    return entries.sort((a, b) => (a.inboxSeq < b.inboxSeq ? -1 : a.inboxSeq > b.inboxSeq ? 1 : 0));
  }

  /**
   * The lowest seq above `after` that still has a row; the head (kept in its
   * own row) when none has. Rows expire oldest first, so the buckets without
   * one are a prefix: a binary search finds the first bucket that has one in
   * a few reads, even for a new device (cursor 0) of a user with millions of
   * entries. A row written late breaks the prefix: the search then finds it
   * or a row past it, and the read drops kept rows below a hole either way.
   */
  private async firstKeptAfter(userId: Id, after: bigint, head: bigint): Promise<bigint> {
    let lo = bucketOf(after + 1n, this.bucketSize);
    let hi = bucketOf(head, this.bucketSize);
    let found: bigint | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) / 2n;
      const r = await this.db.one(this.q.firstKept, [userId, mid, after]);
      if (r) {
        found = big(r.get("inbox_seq"));
        hi = mid - 1n;
      } else {
        lo = mid + 1n;
      }
    }
    return found ?? head;
  }

  head(userId: Id): Promise<bigint> {
    return this.newest.seq(userId);
  }

  async getCursor(userId: Id, deviceId: Id): Promise<bigint> {
    const r = await this.db.one(this.q.cursor, [userId, deviceId]);
    return r ? big(r.get("seq")) : 0n;
  }

  async advanceCursor(userId: Id, deviceId: Id, seq: bigint): Promise<void> {
    // The cursor value is the write timestamp: the largest wins, with no read and no Paxos.
    if (seq > 0n) await this.db.write(this.q.putCursor, [userId, deviceId, seq, seq]);
  }

  async dropCursor(userId: Id, deviceId: Id): Promise<void> {
    // At the clock's timestamp, far above every cursor's (its seq): it also shadows any later advance.
    await this.db.write(this.q.dropCursor, [userId, deviceId]);
  }


  private async readHead(userId: Id): Promise<{ seq: bigint; entry: InboxEntry; legacy: boolean } | undefined> {
    const h = await this.newest.row(userId);
    return h && { seq: h.seq, entry: toEntry(h.row, h.seq), legacy: h.legacy };
  }

  private async row(userId: Id, inboxSeq: bigint): Promise<InboxEntry | undefined> {
    const r = await this.db.one(this.q.one, [userId, bucketOf(inboxSeq, this.bucketSize), inboxSeq]);
    return r ? toEntry(r, inboxSeq) : undefined;
  }

  private ops(): SequenceOps<StoredMessage, InboxEntry> {
    const { db, q } = this;
    return {
      readHead: (userId) => this.readHead(userId),
      readHeadSeq: async (userId) => (await this.headSeqs.read(userId)) ?? 0n,
      // The dedup key is the message id: a repeat is always the same message.
      findSeq: async (userId, m) => {
        const seq = await this.dedups.read({ userId, messageId: m.messageId });
        return seq === undefined ? undefined : { seq, sameRecord: true };
      },
      readEntry: (userId, inboxSeq) => this.row(userId, inboxSeq),
      writeEntry: (userId, e) =>
        db.writeTogether([
          {
            query: q.insert,
            params: [
              userId,
              bucketOf(e.inboxSeq, this.bucketSize),
              e.inboxSeq,
              ...entryValues(e, cassandra.types.unset),
              this.retentionSeconds,
              entryTimestamp(e.message.messageId),
            ],
          },
          { query: q.putDedup, params: [userId, e.message.messageId, e.inboxSeq, this.retentionSeconds] },
        ]),
      writeHead: (userId, e) => db.write(q.putHead, [userId, e.inboxSeq, ...entryValues(e, null), e.inboxSeq]),
      dedupKey: (m) => m.messageId.toString(),
      withSeq: (m, inboxSeq) => ({ inboxSeq, message: { ...m } }),
      seqOf: (e) => e.inboxSeq,
    };
  }
}

/**
 * The write timestamp (µs) of an inbox entry's row: its message id's time,
 * the same for every writer, and close to the clock, as the day windows the
 * inbox tables compact by expect.
 */
function entryTimestamp(messageId: Id): bigint {
  return BigInt(snowflakeTimeMs(messageId)) * 1000n;
}

const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/**
 * The entries above the last seq missing between two of them. Every seq up to
 * the head has a row until it expires, so a missing one expired; but a row
 * written late (its writer stalled after taking the seq, another wrote it and
 * went on) carries its TTL from that write and outlives the rows after it.
 * Kept rows below an expired one go too: what a read skips must be a prefix,
 * the only thing `expiredThrough` can tell a device.
 */
function afterLastHole(entries: InboxEntry[]): InboxEntry[] {
  for (let i = entries.length - 1; i > 0; i--) {
    if (entries[i]!.inboxSeq > entries[i - 1]!.inboxSeq + 1n) return entries.slice(i);
  }
  return entries;
}
