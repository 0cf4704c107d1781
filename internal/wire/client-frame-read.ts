import { Buffer, isUtf8 } from "node:buffer";
import type { ClientFrame, SendMessage } from "../../gen/es/chat/v1/session_pb.js";

/**
 * The frames a device sends most, read by hand: a ClientFrame of a ref and a
 * SendMessage, a DeliveryAck or an empty Heartbeat, each field at most once.
 * Every send and about every message's ack is one of these, and the generic
 * decoder's reader, tags and reflective message objects cost more than the
 * frame. The same objects `fromBinary` makes; undefined for anything else
 * (another kind, a field twice, an unknown field, text that is not UTF-8, a
 * uint64 of ten bytes, bytes cut short), which is then the generic decoder's
 * to read or refuse.
 */
export function readClientFrame(bytes: Uint8Array): ClientFrame | undefined {
  // Strings are sliced out of a Buffer (what a socket hands over) without a view per field.
  if (!(bytes instanceof Buffer)) return undefined;
  let ref: bigint | undefined;
  let kind: ClientFrame["kind"] | undefined;
  let at = 0;
  while (at < bytes.length) {
    const tag = bytes[at++]!;
    if (tag === 0x08) {
      // ref = 1
      if (ref !== undefined) return undefined;
      ref = readU64(bytes, at, bytes.length);
      if (ref === undefined) return undefined;
      at = end;
      continue;
    }
    if (kind !== undefined || (tag !== 0x12 && tag !== 0x22 && tag !== 0x32)) return undefined;
    const len = readLength(bytes, at);
    if (len < 0) return undefined;
    at = end;
    const stop = at + len;
    if (tag === 0x12) kind = readSend(bytes, at, stop);
    else if (tag === 0x22) kind = readDeliveryAck(bytes, at, stop);
    else kind = len === 0 ? { case: "heartbeat", value: { $typeName: "chat.v1.Heartbeat" } } : undefined;
    if (kind === undefined) return undefined;
    at = stop;
  }
  if (kind === undefined) return undefined;
  return { $typeName: "chat.v1.ClientFrame", ref: ref ?? 0n, kind } as ClientFrame;
}

/**
 * SendMessage's uint64 fields by tag (wire type 0): fields 2 and 4 to 7. A
 * setter each rather than the field's name: a store to a name that varies
 * costs a send with edit_seq 2-3 % more (hunt micro-benchmark); these stay even.
 */
const SEND_U64: { readonly [tag: number]: ((m: SendMessage, v: bigint) => void) | undefined } = {
  0x10: (m, v) => (m.channelId = v),
  0x20: (m, v) => (m.editSeq = v),
  0x28: (m, v) => (m.deleteSeq = v),
  0x30: (m, v) => (m.replyToSeq = v),
  0x38: (m, v) => (m.reactSeq = v),
};

/** SendMessage, fields 1 to 7, in bytes[at, stop). */
function readSend(bytes: Buffer, at: number, stop: number): ClientFrame["kind"] | undefined {
  const value: SendMessage = {
    $typeName: "chat.v1.SendMessage",
    clientMsgId: "",
    channelId: 0n,
    text: "",
    editSeq: 0n,
    deleteSeq: 0n,
    replyToSeq: 0n,
    reactSeq: 0n,
  };
  // A bit per field number read: a field twice is the generic decoder's (it keeps the last).
  let seen = 0;
  while (at < stop) {
    const tag = bytes[at++]!;
    const bit = 1 << (tag >>> 3);
    if (seen & bit) return undefined;
    seen |= bit;
    if (tag === 0x0a || tag === 0x1a) {
      const s = readString(bytes, at, stop);
      if (s === undefined) return undefined;
      if (tag === 0x0a) value.clientMsgId = s;
      else value.text = s;
    } else {
      const set = SEND_U64[tag];
      if (set === undefined) return undefined;
      const v = readU64(bytes, at, stop);
      if (v === undefined) return undefined;
      set(value, v);
    }
    at = end;
  }
  if (at !== stop) return undefined;
  return { case: "send", value };
}

/** DeliveryAck, its inbox_seq (field 1), in bytes[at, stop). */
function readDeliveryAck(bytes: Buffer, at: number, stop: number): ClientFrame["kind"] | undefined {
  let inboxSeq = 0n;
  if (at < stop) {
    if (bytes[at] !== 0x08) return undefined;
    const v = readU64(bytes, at + 1, stop);
    if (v === undefined || end !== stop) return undefined;
    inboxSeq = v;
  }
  return { case: "deliveryAck", value: { $typeName: "chat.v1.DeliveryAck", inboxSeq } };
}

/** Where the last read ended: the readers' second answer, kept here rather than in an object per field. */
let end = 0;

/** A length of at most four bytes (under 2^28) that fits in what follows, or -1. */
function readLength(bytes: Buffer, at: number): number {
  let v = 0;
  for (let i = 0; i < 4 && at + i < bytes.length; i++) {
    const b = bytes[at + i]!;
    v |= (b & 0x7f) << (7 * i);
    if (b < 0x80) {
      end = at + i + 1;
      return end + v <= bytes.length ? v : -1;
    }
  }
  return -1;
}

/** A uint64 varint of at most nine bytes (below 2^63) ending before `stop`, or undefined. */
function readU64(bytes: Buffer, at: number, stop: number): bigint | undefined {
  // Up to 28 bits in `lo` and 35 in `hi`: both exact as numbers.
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 9 && at + i < stop; i++) {
    const b = bytes[at + i]!;
    if (i < 4) lo += (b & 0x7f) * 2 ** (7 * i);
    else hi += (b & 0x7f) * 2 ** (7 * (i - 4));
    if (b < 0x80) {
      end = at + i + 1;
      return hi === 0 ? BigInt(lo) : hi < 2 ** 25 ? BigInt(hi * 2 ** 28 + lo) : (BigInt(hi) << 28n) | BigInt(lo);
    }
  }
  return undefined;
}

/** A length-prefixed UTF-8 string ending before `stop`, or undefined (cut short, or not UTF-8). */
function readString(bytes: Buffer, at: number, stop: number): string | undefined {
  const len = readLength(bytes, at);
  if (len < 0 || end + len > stop) return undefined;
  const from = end;
  end = from + len;
  for (let i = from; i < end; i++) if (bytes[i]! >= 0x80) return isUtf8(bytes.subarray(from, end)) ? bytes.toString("utf8", from, end) : undefined;
  return bytes.toString("latin1", from, end);
}
