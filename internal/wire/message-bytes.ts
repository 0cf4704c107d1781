import { toBinary } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import type { StoredMessage } from "../model/types.js";
import { messageToProto } from "./messages.js";

/**
 * chat.v1.Message and the delivery frame around it, written straight into one
 * buffer of the exact size: byte for byte what `toBinary` writes, at a fraction
 * of its cost. Every message a device receives is one of these, and the
 * reflective encoder (a growing writer, a fork and a join per nested message,
 * a copy at the end) was the largest share of protobuf time on the delivery
 * path. Anything this does not expect (unknown fields, a negative value in an
 * unsigned field, a time before 1970) goes to `toBinary`, so the bytes are
 * always the same as the generic encoder's.
 */

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const I64_MAX = 0x7fff_ffff_ffff_ffffn;
const isU64 = (v: bigint) => v >= 0n && v <= U64_MAX;

/** The bytes of a chat.v1.Message. */
export function encodeMessage(m: Message): Uint8Array {
  return fastMessage(m) ?? toBinary(MessageSchema, m);
}

/**
 * The bytes of a stored message as chat.v1.Message, those of
 * `toBinary(MessageSchema, messageToProto(m))`, without making the Message:
 * live delivery hands on messages just written, and building their protobuf
 * objects (the Message, its Timestamp) cost more than encoding them.
 */
export function encodeStoredMessage(m: StoredMessage): Uint8Array {
  return fastStoredMessage(m) ?? toBinary(MessageSchema, messageToProto(m));
}

/**
 * A ServerFrame{message: MessageDelivery{entry: InboxEntry{inbox_seq, message}}}
 * with ref 0, around a Message already encoded (`encodeMessage`), so the
 * members of a group share one encoding of it.
 */
export function encodeDeliveryFrame(inboxSeq: bigint, message: Uint8Array): Uint8Array | undefined {
  if (!isU64(inboxSeq)) return undefined;
  const seqSize = inboxSeq === 0n ? 0 : 1 + bigVarintSize(inboxSeq);
  const entrySize = seqSize + 1 + varintSize(message.length) + message.length;
  const deliverySize = 1 + varintSize(entrySize) + entrySize;
  const buf = Buffer.allocUnsafe(1 + varintSize(deliverySize) + deliverySize);
  let pos = 0;
  buf[pos++] = 0x22; // ServerFrame.message = 4, length-delimited
  pos = writeVarint(buf, pos, deliverySize);
  buf[pos++] = 0x0a; // MessageDelivery.entry = 1
  pos = writeVarint(buf, pos, entrySize);
  if (inboxSeq !== 0n) {
    buf[pos++] = 0x08; // InboxEntry.inbox_seq = 1, varint
    pos = writeBigVarint(buf, pos, inboxSeq);
  }
  buf[pos++] = 0x12; // InboxEntry.message = 2
  pos = writeVarint(buf, pos, message.length);
  buf.set(message, pos);
  return buf;
}

/**
 * A ServerFrame{ref, send_ack: SendAck{client_msg_id, message_id, channel_id,
 * duplicate}}: the answer to every send, byte for byte what `toBinary` writes.
 * Undefined for a number out of uint64's range, which is `toBinary`'s to refuse.
 */
export function encodeSendAckFrame(ref: bigint, clientMsgId: string, messageId: bigint, channelId: bigint, duplicate: boolean): Uint8Array | undefined {
  if (!isU64(ref) || !isU64(messageId) || !isU64(channelId)) return undefined;
  const idBytes = Buffer.byteLength(clientMsgId);
  const ackSize =
    (idBytes > 0 ? 1 + varintSize(idBytes) + idBytes : 0) +
    (messageId !== 0n ? 1 + bigVarintSize(messageId) : 0) +
    (channelId !== 0n ? 1 + bigVarintSize(channelId) : 0) +
    (duplicate ? 2 : 0);
  const buf = Buffer.allocUnsafe((ref !== 0n ? 1 + bigVarintSize(ref) : 0) + 1 + varintSize(ackSize) + ackSize);
  let pos = 0;
  if (ref !== 0n) {
    buf[pos++] = 0x08; // ServerFrame.ref = 1, varint
    pos = writeBigVarint(buf, pos, ref);
  }
  buf[pos++] = 0x1a; // ServerFrame.send_ack = 3
  pos = writeVarint(buf, pos, ackSize);
  if (idBytes > 0) {
    buf[pos++] = 0x0a; // client_msg_id = 1
    pos = writeVarint(buf, pos, idBytes);
    pos += buf.write(clientMsgId, pos, idBytes, "utf8");
  }
  if (messageId !== 0n) {
    buf[pos++] = 0x10; // message_id = 2
    pos = writeBigVarint(buf, pos, messageId);
  }
  if (channelId !== 0n) {
    buf[pos++] = 0x18; // channel_id = 3
    pos = writeBigVarint(buf, pos, channelId);
  }
  if (duplicate) {
    buf[pos++] = 0x20; // duplicate = 4
    buf[pos++] = 1;
  }
  return buf;
}

const ID_FIELDS = ["messageId", "channelId", "seq", "senderUserId", "senderDeviceId"] as const;

/** The fields the fast path writes, which a Message and a StoredMessage name alike. */
type PlainFields = Pick<Message, (typeof ID_FIELDS)[number] | "clientMsgId" | "text"> & { replyToSeq?: bigint };

function fastMessage(m: Message): Uint8Array | undefined {
  if (m.$unknown !== undefined && m.$unknown.length > 0) return undefined;
  // Edited, deleted, reacted-to, change and note entries are rare on the delivery path: the generic encoder writes their fields.
  if (m.editedAt !== undefined || m.deleted || m.targetSeq !== 0n || m.reactions.length > 0 || m.reaction || m.note !== undefined) return undefined;
  const ts = m.sentAt;
  if (ts !== undefined && ((ts.$unknown !== undefined && ts.$unknown.length > 0) || ts.seconds < 0n || ts.nanos < 0 || ts.seconds > I64_MAX)) {
    return undefined;
  }
  return ts === undefined ? writePlain(m, false, 0n, 0) : writePlain(m, true, ts.seconds, ts.nanos);
}

function fastStoredMessage(m: StoredMessage): Uint8Array | undefined {
  // As messageToProto: an unset field is left at its default, which writes nothing.
  if (m.editedAtMs !== undefined || m.deleted || (m.targetSeq ?? 0n) !== 0n || (m.reactions?.length ?? 0) > 0 || m.reaction || m.note) return undefined;
  // timestampFromMs's arithmetic; a time before 1970 or with a fraction of a millisecond is the generic encoder's.
  const ms = m.sentAtMs;
  if (!Number.isSafeInteger(ms) || ms < 0) return undefined;
  const seconds = Math.floor(ms / 1000);
  return writePlain(m, true, BigInt(seconds), (ms - seconds * 1000) * 1_000_000);
}

/** A Message of only PlainFields and sent_at (when `hasTime`), or undefined for an id out of uint64's range (toBinary's to refuse). */
function writePlain(m: PlainFields, hasTime: boolean, seconds: bigint, nanos: number): Uint8Array | undefined {
  let size = 0;
  for (let f = 0; f < ID_FIELDS.length; f++) {
    const v = m[ID_FIELDS[f]!];
    if (!isU64(v)) return undefined;
    if (v !== 0n) size += 1 + bigVarintSize(v);
  }
  const clientMsgIdBytes = Buffer.byteLength(m.clientMsgId);
  if (clientMsgIdBytes > 0) size += 1 + varintSize(clientMsgIdBytes) + clientMsgIdBytes;
  const textBytes = Buffer.byteLength(m.text);
  if (textBytes > 0) size += 1 + varintSize(textBytes) + textBytes;
  let tsSize = 0;
  if (hasTime) {
    if (seconds !== 0n) tsSize += 1 + bigVarintSize(seconds);
    if (nanos !== 0) tsSize += 1 + varintSize(nanos);
    size += 1 + varintSize(tsSize) + tsSize;
  }
  const replyTo = m.replyToSeq ?? 0n;
  if (!isU64(replyTo)) return undefined;
  if (replyTo !== 0n) size += 1 + bigVarintSize(replyTo);

  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let f = 0; f < ID_FIELDS.length; f++) {
    const v = m[ID_FIELDS[f]!];
    if (v === 0n) continue;
    buf[pos++] = (f + 1) << 3; // fields 1 to 5, varint
    pos = writeBigVarint(buf, pos, v);
  }
  if (clientMsgIdBytes > 0) {
    buf[pos++] = 0x32; // client_msg_id = 6
    pos = writeVarint(buf, pos, clientMsgIdBytes);
    pos += buf.write(m.clientMsgId, pos, clientMsgIdBytes, "utf8");
  }
  if (textBytes > 0) {
    buf[pos++] = 0x3a; // text = 7
    pos = writeVarint(buf, pos, textBytes);
    pos += buf.write(m.text, pos, textBytes, "utf8");
  }
  if (hasTime) {
    buf[pos++] = 0x42; // sent_at = 8
    pos = writeVarint(buf, pos, tsSize);
    if (seconds !== 0n) {
      buf[pos++] = 0x08;
      pos = writeBigVarint(buf, pos, seconds);
    }
    if (nanos !== 0) {
      buf[pos++] = 0x10;
      pos = writeVarint(buf, pos, nanos);
    }
  }
  // Replies are common enough to stay on this path.
  if (replyTo !== 0n) {
    buf[pos++] = 0x60; // reply_to_seq = 12, varint
    pos = writeBigVarint(buf, pos, replyTo);
  }
  return buf;
}

/** Size of a varint of a non-negative number below 2^32. */
function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/**
 * The 32-bit words of a bigint in [0, 2^64) are read through this view: a
 * shift or a mask of a bigint makes a new bigint, three for every id written
 * (ids are snowflakes, past 2^32), a fifth of a message's encoding's garbage.
 */
const words = new DataView(new ArrayBuffer(8));

/** Size of a varint of a bigint in [0, 2^64). */
function bigVarintSize(v: bigint): number {
  if (v <= 0xffff_ffffn) return varintSize(Number(v));
  words.setBigUint64(0, v, true);
  const hi = words.getUint32(4, true);
  // 32 low bits and the high word's significant bits, 7 to a byte.
  return Math.ceil((32 + (32 - Math.clz32(hi))) / 7);
}

/** A varint of a bigint in [0, 2^64), as two 32-bit words: bigint arithmetic allocates. */
function writeBigVarint(buf: Uint8Array, pos: number, v: bigint): number {
  if (v <= 0xffff_ffffn) return writeVarint(buf, pos, Number(v));
  words.setBigUint64(0, v, true);
  let lo = words.getUint32(0, true);
  let hi = words.getUint32(4, true);
  while (hi > 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}
