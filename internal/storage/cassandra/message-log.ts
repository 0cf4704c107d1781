import type { MessageLog, PageQuery } from "../../messages/log.js";
import type { Id, NewMessage, StoredMessage } from "../../model/types.js";
import { bucketOf, readRange } from "./buckets.js";
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
 * seqs handed out through the channel_heads fence (see SequencedAppender),
 * resends caught by message_dedup keyed by (channel, sender, client_msg_id).
 */
export class CassandraMessageLog implements MessageLog {
  private readonly appender: SequencedAppender<NewMessage, StoredMessage>;
  private readonly q;

  constructor(
    private readonly db: Db,
    private readonly bucketSize: number,
    headCacheSize?: number,
  ) {
    const t = (n: string) => db.t(n);
    this.q = {
      head: `SELECT last_seq, ${COLS} FROM ${t("channel_heads")} WHERE channel_id = ?`,
      headSeq: `SELECT last_seq FROM ${t("channel_heads")} WHERE channel_id = ?`,
      firstHead: `INSERT INTO ${t("channel_heads")} (channel_id, last_seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                  IF NOT EXISTS`,
      nextHead: `UPDATE ${t("channel_heads")} SET last_seq = ?, message_id = ?, sender_user_id = ?,
                   sender_device_id = ?, client_msg_id = ?, text = ?, sent_at_ms = ?
                 WHERE channel_id = ? IF last_seq = ?`,
      insert: `INSERT INTO ${t("messages")} (channel_id, bucket, seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      one: `SELECT ${COLS} FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq = ?`,
      range: `SELECT seq, ${COLS} FROM ${t("messages")} WHERE channel_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
      dedup: `SELECT seq FROM ${t("message_dedup")} WHERE channel_id = ? AND sender_user_id = ? AND client_msg_id = ?`,
      putDedup: `INSERT INTO ${t("message_dedup")} (channel_id, sender_user_id, client_msg_id, seq, message_id)
                 VALUES (?, ?, ?, ?, ?)`,
    };
    this.appender = new SequencedAppender(this.ops(), headCacheSize);
  }

  /** Lost head CASes (another writer appended) and heads finished for a dead writer. */
  get stats(): { casLost: number; helped: number } {
    return this.appender.stats;
  }

  append(message: NewMessage): Promise<{ message: StoredMessage; duplicate: boolean }> {
    return this.appender.append(message.channelId, message).then((r) => ({ message: r.entry, duplicate: r.duplicate }));
  }

  async findByClientMsgId(channelId: Id, senderUserId: Id, clientMsgId: string): Promise<StoredMessage | undefined> {
    const d = await this.db.one(this.q.dedup, [channelId, senderUserId, clientMsgId]);
    return d ? this.bySeq(channelId, big(d.get("seq"))) : undefined;
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
    // The head's own row may not be written yet (its writer died after the
    // CAS); its copy in the head row stands in until the next append helps.
    if (hi === head && !rows.some((m) => m.seq === head)) {
      const h = await this.readHead(channelId, false);
      if (h && h.seq === head) rows.push(h.entry);
    }
    rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    return q.direction === "backward" ? rows.reverse() : rows;
  }

  async latest(channelIds: readonly Id[]): Promise<Map<Id, StoredMessage>> {
    const heads = await mapLimit(channelIds, FANOUT, (id) => this.readHead(id, false));
    const out = new Map<Id, StoredMessage>();
    channelIds.forEach((id, i) => {
      const h = heads[i];
      if (h) out.set(id, h.entry);
    });
    return out;
  }

  private async headSeq(channelId: Id): Promise<bigint> {
    const r = await this.db.one(this.q.headSeq, [channelId]);
    return r ? big(r.get("last_seq")) : 0n;
  }

  private async readHead(channelId: Id, serial: boolean): Promise<{ seq: bigint; entry: StoredMessage } | undefined> {
    const r = serial
      ? await this.db.serialOne(this.q.head, [channelId])
      : await this.db.one(this.q.head, [channelId]);
    if (!r) return undefined;
    const seq = big(r.get("last_seq"));
    return { seq, entry: toMessage(r, channelId, seq) };
  }

  private async bySeq(channelId: Id, seq: bigint): Promise<StoredMessage | undefined> {
    const r = await this.db.one(this.q.one, [channelId, bucketOf(seq, this.bucketSize), seq]);
    if (r) return toMessage(r, channelId, seq);
    const h = await this.readHead(channelId, false);
    return h && h.seq === seq ? h.entry : undefined;
  }

  private ops(): SequenceOps<NewMessage, StoredMessage> {
    const { db, q } = this;
    return {
      readHead: (channelId, serial) => this.readHead(channelId, serial),
      casHead: async (channelId, expected, m) => {
        const r = expected === 0n
          ? await db.lwt(q.firstHead, [channelId, m.seq, ...messageValues(m)])
          : await db.lwt(q.nextHead, [m.seq, ...messageValues(m), channelId, expected]);
        return r.applied;
      },
      materialize: async (channelId, m) => {
        await Promise.all([
          db.write(q.insert, [channelId, bucketOf(m.seq, this.bucketSize), m.seq, ...messageValues(m)]),
          db.write(q.putDedup, [channelId, m.senderUserId, m.clientMsgId, m.seq, m.messageId]),
        ]);
      },
      findStored: async (channelId, m) => this.findByClientMsgId(channelId, m.senderUserId, m.clientMsgId),
      sameKey: (s, m) => s.senderUserId === m.senderUserId && s.clientMsgId === m.clientMsgId,
      withSeq: (m, seq) => ({ ...m, seq }),
      seqOf: (m) => m.seq,
    };
  }
}
