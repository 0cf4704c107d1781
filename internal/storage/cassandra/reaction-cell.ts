import type { Id, Reaction, StoredMessage } from "../../model/types.js";

/**
 * One user's reaction to a message, as a cell of `messages.reactions`
 * (a map keyed by the user's id).
 *
 * Every reaction cell of a message is written with the message's seq as the
 * write timestamp, as its change cell is (change-cell.ts): on equal
 * timestamps Cassandra keeps the greater value, compared as unsigned bytes,
 * so the value starts with the reaction's change id, big-endian, and a
 * user's latest reaction wins on every replica whatever order the writes
 * land in. A reaction taken back is a cell with no emoji rather than a
 * tombstone, which would win the tie against any later reaction.
 *
 * Layout: change id (8) | UTF-8 emoji (empty once taken back).
 */
export interface ReactionCell {
  changeId: bigint;
  /** "" once taken back. */
  emoji: string;
}

const U64 = 1n << 64n;

export function encodeReaction(c: ReactionCell): Buffer {
  if (c.changeId < 0n || c.changeId >= U64) throw new RangeError(`reaction change id out of range: ${c.changeId}`);
  const emoji = Buffer.from(c.emoji, "utf8");
  const b = Buffer.allocUnsafe(8 + emoji.length);
  b.writeBigUInt64BE(c.changeId, 0);
  emoji.copy(b, 8);
  return b;
}

export function decodeReaction(cell: Buffer): ReactionCell {
  if (cell.length < 8) throw new Error(`reaction cell of ${cell.length} bytes, shorter than its change id`);
  return { changeId: cell.readBigUInt64BE(0), emoji: cell.toString("utf8", 8) };
}

/** The cells of a `reactions` column as the driver returns it (an object keyed by decimal id, or a Map), by user id. */
export function decodeReactions(column: unknown): ReadonlyMap<Id, ReactionCell> {
  // Most rows have none: no map allocated for each of them on a history page.
  if (column === null || column === undefined) return NONE;
  const out = new Map<Id, ReactionCell>();
  const entries = column instanceof Map ? [...column.entries()] : Object.entries(column as Record<string, unknown>);
  for (const [k, v] of entries) {
    if (!Buffer.isBuffer(v)) throw new TypeError(`expected a blob reaction cell, got ${typeof v}`);
    out.set(BigInt(k as string | bigint), decodeReaction(v));
  }
  return out;
}

const NONE: ReadonlyMap<Id, ReactionCell> = new Map();

/** The message with its standing reactions (by user id); none on a deleted message, and no key when none. */
export function withReactions(m: StoredMessage, cells: ReadonlyMap<Id, ReactionCell>): StoredMessage {
  if (m.deleted || cells.size === 0) return m;
  const reactions: Reaction[] = [];
  for (const [userId, c] of cells) if (c.emoji !== "") reactions.push({ userId, emoji: c.emoji });
  if (reactions.length === 0) return m;
  reactions.sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  return { ...m, reactions };
}
