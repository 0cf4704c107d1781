import type { Id, StoredMessage } from "../model/types.js";
import type { MessageLog } from "./log.js";
import { readByItsActor } from "./notes.js";

/**
 * How far back a view looks for a member's own newest message among the
 * unread ones: past it the count is large anyway, and clients show "99+".
 */
export const OWN_MESSAGE_WINDOW = 100n;

/**
 * Whether `userId` sent a message of the channel after `seq`, among its newest
 * OWN_MESSAGE_WINDOW (a note of theirs counting as ListMembers counts it):
 * then ListMembers shows them past `seq`, and a receipt at `seq` would move
 * the other members' view of them back. `last` is the channel's newest
 * message as advanceReadSeq read it to cap the position; read again here, each
 * moved receipt cost a second read of it. The MarkRead RPC and the realtime
 * ReadReceipt both ask this.
 */
export async function sentAfter(
  log: Pick<MessageLog, "lastSentBy">,
  channelId: Id,
  userId: Id,
  seq: bigint,
  last: StoredMessage | undefined,
): Promise<boolean> {
  if (!last || last.seq <= seq) return false;
  if (last.senderUserId === userId && (!last.note || readByItsActor(last.note))) return true;
  const windowStart = last.seq - OWN_MESSAGE_WINDOW + 1n;
  const from = seq + 1n > windowStart ? seq + 1n : windowStart;
  return from <= last.seq - 1n && (await log.lastSentBy(channelId, userId, from, last.seq - 1n)) !== undefined;
}
