import { ChannelNoteKind, type Message } from "../../../gen/es/chat/v1/types_pb.js";
import { key } from "./keys.js";

/** The chat shown: what it holds of its history, and how far its other members have read. */
export interface OpenChat {
  id: bigint;
  messages: Message[];
  hasOlder: boolean;
  loadingOlder: boolean;
  loaded: boolean;
  /** Its first page is on its way. */
  loading: boolean;
  /** Its first page could not be read: a reconnect, or the reader, asks again. */
  failed: boolean;
  /**
   * What came live for it, messages and changes in inbox order, before its
   * first page landed: the page may have been read before them.
   */
  early: Message[];
  /**
   * For each page on its way once the chat is loaded (older messages, or
   * the newest read again), the changes that arrived meanwhile: the page
   * may have been read before them, and a change to a message not held
   * applies to nothing when it arrives.
   */
  paging: Set<Message[]>;
  members: bigint[];
  /** ListMembers calls asked for it (loadMembers). */
  membersAsked: number;
  /** How far each other member has read, by user id: their stored position (ListMembers), then their live receipts. */
  readBy: Map<string, bigint>;
}

export function newOpenChat(id: bigint): OpenChat {
  return { id, messages: [], hasOlder: true, loadingOlder: false, loaded: false, loading: false, failed: false, early: [], paging: new Set(), members: [], membersAsked: 0, readBy: new Map() };
}

export const PAGE = 50;
/**
 * The most messages the open chat keeps while the reader is at its bottom;
 * older ones are dropped and paging back reads them again. Every live
 * message, receipt and ack renders the whole list anew, so this bounds that
 * work and the page's memory in a busy chat left open for days. 500 is ten
 * pages: many screens to scroll back through before history is read again.
 */
const WINDOW = 500;

/** At the bottom the reader does not see the oldest messages: past WINDOW they go, and paging back reads them again. */
export function trimWindow(open: OpenChat): void {
  if (open.messages.length <= WINDOW) return;
  open.messages = open.messages.slice(-WINDOW);
  open.hasOlder = true;
}

/**
 * How far each other member has seen the open chat: the furthest of their
 * read position and their own newest message, since whoever sends has read
 * up to there (as the server counts a read position). So has the maker of
 * a change its note tells, as their own unread count has it; not one who
 * joined by link, who never read what came before them.
 */
export function seenPositions(open: OpenChat, me: bigint): Map<string, bigint> {
  const seen = new Map(open.readBy);
  for (const m of open.messages) {
    if (m.senderUserId === me || m.note?.kind === ChannelNoteKind.JOINED_BY_INVITE) continue;
    const k = key(m.senderUserId);
    if (m.seq > (seen.get(k) ?? 0n)) seen.set(k, m.seq);
  }
  return seen;
}

export function lastWhere<T>(list: T[], pred: (x: T) => boolean): T | undefined {
  for (let i = list.length - 1; i >= 0; i--) if (pred(list[i]!)) return list[i];
  return undefined;
}
