import type { MessageLog, PageQuery } from "../../messages/log.js";
import type { Id, NewMessage, StoredMessage } from "../../model/types.js";
import { bucketOf, readRange } from "./buckets.js";
import type { AppendStats } from "./metrics.js";
import { NewestEntries } from "./newest.js";
import { DEVICE_DEDUP_SINCE, LEGACY_DEDUP_WINDOW_MS } from "./schema.js";
import { SequencedAppender, type SequenceOps } from "./sequenced.js";
import { big, FANOUT, mapLimit, ms, msCell, type Db, type Row } from "./session.js";

const COLS = "message_id, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";

/** Also reads inbox rows, which carry the same message columns. */
export const toMessage = (r: Row, channelId: Id, seq: bigint): StoredMessage => ({
  messageId: big(r.get("message_id")),
  channelId,
  senderUserId: big(r.get("sender_user_id")),
  senderDeviceId: big(r.get("sender_device_id")),
  clientMsgId: r.get("client_msg_id") as string,
  text: r.get("text") as string,
  sentAtMs: ms(r.get("sent_at_ms")),
  seq,
});

const messageValues = (m: StoredMessage) => [
  m.messageId, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.text, msCell(m.sentAtMs),
];

/**
 * MessageLog on Cassandra: messages partitioned by (channel_id, bucket),
 * seqs handed out by SequencedAppender with plain writes (the channel's
 * newest message in channel_newest), resends caught by
 * message_dedup_by_device keyed by (channel, sender, device, client_msg_id).
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
  private readonly q;
  /** Until when (epoch ms) message_dedup is read too; 0 when never. Read once. */
  private legacyUntil: Promise<number> | undefined;

  constructor(
    private readonly db: Db,
    private readonly bucketSize: number,
    headCacheSize?: number,
  ) {
    const t = (n: string) => db.t(n);
    this.q = {
      putHead: `INSERT INTO ${t("channel_newest")} (channel_id, last_seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                USING TIMESTAMP ?`,
      insert: `INSERT INTO ${t("messages")} (channel_id, bucket, seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      one: `SELECT ${COLS} FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      range: `SELECT seq, ${COLS} FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
      senders: `SELECT seq, sender_user_id FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
      dedup: `SELECT seq, message_id FROM ${t("message_dedup_by_device")}
              WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`,
      putDedup: `INSERT INTO ${t("message_dedup_by_device")}
                   (channel_id, sender_user_id, sender_device_id, client_msg_id, seq, message_id) VALUES (?, ?, ?, ?, ?, ?)`,
      legacyDedup: `SELECT seq, message_id FROM ${t("message_dedup")} WHERE channel_id = ? AND sender_user_id = ? AND client_msg_id = ?`,
      upgradedAt: `SELECT value FROM ${t("meta")} WHERE key = ?`,
    };
    this.newest = new NewestEntries(db, { newest: "channel_newest", legacy: "channel_heads" }, "channel_id", COLS);
    this.appender = new SequencedAppender(this.ops(), headCacheSize);
  }

  /** Heads found ahead of this writer's cache, rows written for another writer, groups stored. */
  get stats(): AppendStats {
    return this.appender.stats;
  }

  append(message: NewMessage): Promise<{ message: StoredMessage; duplicate: boolean }> {
    return this.appender.append(message.channelId, message).then((r) => ({ message: r.entry, duplicate: r.duplicate }));
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
    const head = await this.headSeq(channelId);
    const limit = BigInt(q.limit);
    let lo: bigint;
    let hi: bigint;
    if (q.direction === "backward") {
      hi = q.anchorSeq === 0n || q.anchorSeq > head ? head : q.anchorSeq - 1n;
      lo = hi - limit + 1n;
    } else {
      lo = (q.anchorSeq < 0n ? 0n : q.anchorSeq) + 1n;
      hi = lo + limit - 1n < head ? lo + limit - 1n : head;
    }
    if (lo < 1n) lo = 1n;
    if (hi < lo) return [];
    const rows = await readRange(lo, hi, this.bucketSize, (b, from, to) =>
      this.db.rows(this.q.range, [channelId, b, from, to]).then((rs) => rs.map((r) => toMessage(r, channelId, big(r.get("seq"))))),
    );
    // A head from before schema 2 may have no row yet (its writer died after
    // the compare-and-set); its copy stands in until the next append writes it.
    if (hi === head && !rows.some((m) => m.seq === head)) {
      const h = await this.readHead(channelId);
      if (h && h.seq === head) rows.push(h.entry);
    }
    rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    return q.direction === "backward" ? rows.reverse() : rows;
  }

  async lastSentBy(channelId: Id, senderUserId: Id, fromSeq: bigint, toSeq: bigint): Promise<bigint | undefined> {
    const lo = fromSeq < 1n ? 1n : fromSeq;
    // Two columns of every row in the window, filtered here: no index on the sender.
    const seqs = await readRange(lo, toSeq, this.bucketSize, (b, from, to) =>
      this.db.rows(this.q.senders, [channelId, b, from, to]).then((rs) =>
        rs.filter((r) => big(r.get("sender_user_id")) === senderUserId).map((r) => big(r.get("seq"))),
      ),
    );
    return seqs.reduce<bigint | undefined>((max, s) => (max === undefined || s > max ? s : max), undefined);
  }

  async latest(channelIds: readonly Id[]): Promise<Map<Id, StoredMessage>> {
    const heads = await mapLimit(channelIds, FANOUT, (id) => this.readHead(id));
    const out = new Map<Id, StoredMessage>();
    channelIds.forEach((id, i) => {
      const h = heads[i];
      if (h) out.set(id, h.entry);
    });
    return out;
  }

  private headSeq(channelId: Id): Promise<bigint> {
    return this.newest.seq(channelId);
  }

  private async readHead(channelId: Id): Promise<{ seq: bigint; entry: StoredMessage; legacy: boolean } | undefined> {
    const h = await this.newest.row(channelId);
    return h && { seq: h.seq, entry: toMessage(h.row, channelId, h.seq), legacy: h.legacy };
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
    return r ? toMessage(r, channelId, seq) : undefined;
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
      readHeadSeq: (channelId) => this.headSeq(channelId),
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
      writeEntry: async (channelId, m) => {
        await Promise.all([
          db.write(q.insert, [channelId, bucketOf(m.seq, this.bucketSize), m.seq, ...messageValues(m)]),
          db.write(q.putDedup, [channelId, m.senderUserId, m.senderDeviceId, m.clientMsgId, m.seq, m.messageId]),
        ]);
      },
      writeHead: (channelId, m) => db.write(q.putHead, [channelId, m.seq, ...messageValues(m), m.seq]),
      dedupKey: (m) => `${m.senderUserId}/${m.senderDeviceId}/${m.clientMsgId}`,
      withSeq: (m, seq) => ({ ...m, seq }),
      seqOf: (m) => m.seq,
    };
  }
}
