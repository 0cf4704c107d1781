import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelKind, MemberRole, type Channel } from "../../../gen/es/chat/v1/types_pb.js";
import { tsMs } from "../format.js";

/** "Muted until further notice": the latest time MuteChannel takes. */
export const MUTED_FOR_GOOD = timestampFromMs(Date.UTC(9999, 11, 31));

/** `now` by the server's clock: mutedUntil is the server's time, and this browser's clock may be minutes off it. */
export const isMuted = (c: Channel, now: number) => c.mutedUntil !== undefined && tsMs(c.mutedUntil)! > now;

/** Where the chat's unread starts: after what I read, or cleared (ClearHistory), whichever goes further. */
export const doneThrough = (c: Channel) => (c.readSeq > c.clearedThroughSeq ? c.readSeq : c.clearedThroughSeq);

/** A group I own or help run: I may delete anyone's message there, and hand out its invite link. */
export const manages = (c: Channel | undefined) => c?.kind === ChannelKind.GROUP && (c.myRole === MemberRole.ADMIN || c.myRole === MemberRole.OWNER);

/** The server's order of the chat list: pinned first, the most recently pinned first; then by latest activity. */
export const listOrder = (a: Channel, b: Channel) => pinned(b) - pinned(a) || activity(b) - activity(a);

/** When the chat was pinned; 0 when it is not, which sorts it after the pinned ones. */
function pinned(c: Channel): number {
  return tsMs(c.pinnedAt) ?? 0;
}

/** When the chat last had a message, even one I cleared (a clear keeps the chat's place), or else when it began. */
function activity(c: Channel): number {
  return Math.max(tsMs(c.lastMessage?.sentAt) ?? 0, tsMs(c.lastActivityAt) ?? 0) || (tsMs(c.createdAt) ?? 0);
}

/**
 * `c`, an answer about a chat, with what `prev` (another record of it) saw
 * later: a delivery after the answer was read, or a receipt of my reading.
 * Both only move forward.
 */
export function keepNewer(c: Channel, prev: Channel, now: number): Channel {
  if (prev.lastSeq > c.lastSeq) {
    c.lastSeq = prev.lastSeq;
    c.lastMessage = prev.lastMessage;
    c.unreadCount = prev.unreadCount;
    // That later message brought the chat back from the archive unless muted (Deliveries.take, the server's rule).
    if (c.archived && !prev.archived && !isMuted(c, now)) c.archived = false;
  }
  if (prev.readSeq > c.readSeq) c.readSeq = prev.readSeq;
  // The count taken with a later message was made from prev's read position, which may be behind c's.
  const done = doneThrough(c);
  const left = c.lastSeq > done ? c.lastSeq - done : 0n;
  if (c.unreadCount > left) c.unreadCount = left;
  return c;
}

/**
 * The chat list's record as my clear of its history leaves it: a message
 * at or before the clear is neither its last message nor unread (an answer
 * read before the clear, or a delivery kept over a newer answer, may still
 * count one).
 */
export function hideCleared(c: Channel): void {
  if (c.lastMessage && c.lastMessage.seq <= c.clearedThroughSeq) c.lastMessage = undefined;
  const after = c.lastSeq > c.clearedThroughSeq ? c.lastSeq - c.clearedThroughSeq : 0n;
  if (c.unreadCount > after) c.unreadCount = after;
}
