import type { StoredMessage } from "../../model/types.js";

/**
 * The last change (an edit or a delete) applied to a message, as one blob
 * cell: `messages.change` and, while the message is the newest,
 * `channel_newest.change`.
 *
 * Every change of a message is written with the same write timestamp (the
 * message's seq), so which one a replica keeps is decided by Cassandra's
 * tie-break on equal timestamps: the greater value wins, compared as
 * unsigned bytes. The bytes therefore start with what orders changes: the
 * target's seq (equal for all blobs at one timestamp), then the kind (a
 * delete above any edit: a delete wins over every edit, as amend decides),
 * then the change's message id, big-endian, so the latest edit wins
 * whatever order the writes land in (two writers replaying a partition, a
 * writer that stalled and woke). The empty blob a head write puts in its place is below every
 * change, and being a live cell, unlike a null, it loses the tie instead of
 * erasing a change written at the same timestamp.
 *
 * Layout: seq (8) | kind (1: 1 delete, 0 edit) | change message id (8) | flags (1) | edited at ms (8) | UTF-8 text.
 */
export interface ChangeCell {
  /** The seq of the message changed: a head's blob counts only for the head's own seq. */
  seq: bigint;
  /** The message id of the change: later changes have greater ones. */
  changedBy: bigint;
  deleted: boolean;
  editedAtMs?: number;
  /** The message's text after the change ("" when deleted). */
  text: string;
}

const HEADER = 26;
const DELETED = 1;
const EDITED = 2;
const U64 = 1n << 64n;

/** What a head write puts in `change`: no change, and below any change in the tie-break. */
export const NO_CHANGE = Buffer.alloc(0);

export function encodeChange(c: ChangeCell): Buffer {
  for (const [name, v] of [["seq", c.seq], ["changedBy", c.changedBy]] as const) {
    // Negative values would sort above positive ones as unsigned bytes.
    if (v < 0n || v >= U64) throw new RangeError(`change ${name} out of range: ${v}`);
  }
  const text = Buffer.from(c.text, "utf8");
  const b = Buffer.allocUnsafe(HEADER + text.length);
  b.writeBigUInt64BE(c.seq, 0);
  b.writeUInt8(c.deleted ? 1 : 0, 8);
  b.writeBigUInt64BE(c.changedBy, 9);
  b.writeUInt8((c.deleted ? DELETED : 0) | (c.editedAtMs !== undefined ? EDITED : 0), 17);
  b.writeBigInt64BE(BigInt(Math.trunc(c.editedAtMs ?? 0)), 18);
  text.copy(b, HEADER);
  return b;
}

/** Undefined for no change: a missing cell, or the empty blob of a head write. */
export function decodeChange(cell: unknown): ChangeCell | undefined {
  if (cell === null || cell === undefined) return undefined;
  if (!Buffer.isBuffer(cell)) throw new TypeError(`expected a blob change cell, got ${typeof cell}`);
  if (cell.length === 0) return undefined;
  if (cell.length < HEADER) throw new Error(`change cell of ${cell.length} bytes, shorter than its header`);
  const flags = cell.readUInt8(17);
  // A bit this build does not know is a change it cannot apply faithfully.
  if ((flags & ~(DELETED | EDITED)) !== 0) throw new Error(`change cell with unknown flags ${flags}`);
  const c: ChangeCell = {
    seq: cell.readBigUInt64BE(0),
    changedBy: cell.readBigUInt64BE(9),
    deleted: (flags & DELETED) !== 0,
    text: cell.toString("utf8", HEADER),
  };
  if (flags & EDITED) c.editedAtMs = Number(cell.readBigInt64BE(18));
  return c;
}

/** The message as the change left it; the optional keys only when set, as a plain message has none. */
export function applyChange(m: StoredMessage, c: ChangeCell | undefined): StoredMessage {
  if (!c) return m;
  const { deleted: _d, editedAtMs: _e, ...base } = m;
  const out: StoredMessage = { ...base, text: c.text };
  if (c.editedAtMs !== undefined) out.editedAtMs = c.editedAtMs;
  if (c.deleted) out.deleted = true;
  return out;
}
