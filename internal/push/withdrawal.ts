import type { StoredMessage } from "../model/types.js";
import type { NotificationRequest } from "./records.js";

/** Read marks remembered at most (about 100 bytes each): a burst of reads past it forgets the oldest early. */
const READ_MARKS_MAX = 100_000;

/**
 * Each (user, chat)'s read mark, by "user:channel", for `keepMs` (the
 * notifier's repeatWindowMs) after it last moved (the time a late request of
 * a message already read can still come, as a repeat can), least recently
 * moved first, at most READ_MARKS_MAX. Only consulted when a request comes:
 * what is held is taken out when the read comes.
 */
export class ReadMarks {
  private readonly marks = new Map<string, { seq: bigint; until: number }>();

  constructor(
    private readonly monotonicNow: () => number,
    private readonly keepMs: number,
  ) {}

  /** The user's read mark of the chat ("user:channel") while kept. */
  get(key: string): bigint | undefined {
    const mark = this.marks.get(key);
    if (mark === undefined) return undefined;
    if (mark.until > this.monotonicNow()) return mark.seq;
    this.marks.delete(key);
    return undefined;
  }

  /**
   * Moves the chat's mark up to `seq`; false when it is there already (the
   * mark only moves forward: an older read that comes after a newer one
   * changes nothing).
   */
  moveTo(key: string, seq: bigint): boolean {
    const mark = this.get(key);
    if (mark !== undefined && mark >= seq) return false;
    // Re-inserted, so the map stays oldest first and the bound forgets the least recently read.
    this.marks.delete(key);
    this.marks.set(key, { seq, until: this.monotonicNow() + this.keepMs });
    this.forget();
    return true;
  }

  private forget(): void {
    const now = this.monotonicNow();
    for (const [key, { until }] of this.marks) {
      if (until > now && this.marks.size <= READ_MARKS_MAX) break;
      this.marks.delete(key);
    }
  }
}

/**
 * Whether a read mark covers `req`'s push: a message (not a change, a
 * reaction having no seq of its own) at or below the seq read.
 */
export function readCovers(readSeq: bigint | undefined, req: NotificationRequest): boolean {
  const m = req.message;
  return readSeq !== undefined && m.seq > 0n && (m.targetSeq === undefined || m.targetSeq === 0n) && m.seq <= readSeq;
}

/**
 * Whether `change` withdraws `req`'s push: a delete, of its message or of the
 * message it reacts to; a reaction taken back, of that reactor's reaction to
 * the same message (one they replaced too).
 */
export function withdraws(change: StoredMessage, req: NotificationRequest): boolean {
  const m = req.message;
  if (m.channelId !== change.channelId) return false;
  if (m.reaction) return m.targetSeq === change.targetSeq && (change.deleted === true || m.senderUserId === change.senderUserId);
  return change.deleted === true && m.seq === change.targetSeq;
}
