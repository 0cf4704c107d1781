import { ErrorCode } from "../../../gen/es/chat/v1/types_pb.js";
import type { Api } from "../api.js";
import type { RealtimeSession } from "../session.js";
import { doneThrough } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";

/**
 * A chat's read receipts go out at most one per this long: one per live
 * message of a busy open chat (some 40 a second) went past the server's
 * frame rate for a connection (50/s) and was refused. A receipt up to seq N
 * covers every one before it, so the window's last says all of them.
 */
const READ_RECEIPT_WINDOW_MS = 500;

export interface ReadReceiptsHost {
  readonly api: Api;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  nearBottom(): boolean;
  renderSidebar(): void;
  renderMessages(): void;
}

/** How far I read each chat, told to the server (on the socket, else with MarkRead, else later), and how far the others read. */
export class ReadReceipts {
  /**
   * Per chat: how far I read that the server has not heard of, neither the
   * socket nor MarkRead having reached it (offline): told on the next
   * connection. The chat list shows it read already, so nothing else would.
   */
  private readonly untoldReads = new Map<string, bigint>();
  /**
   * Per chat whose last read receipt went out less than READ_RECEIPT_WINDOW_MS
   * ago: the window's timer, and the highest read held back for its end.
   */
  private readonly readWindows = new Map<string, { timer: number; seq?: bigint }>();

  constructor(private readonly host: ReadReceiptsHost) {}

  /**
   * Marks the open chat read up to the newest message it shows, the reader
   * being at its bottom: nothing before its first page is shown, and never
   * what only the chat list knows of (a listing, or a message, ahead of the
   * page on its way).
   */
  markRead(): void {
    const open = this.host.open();
    if (!open?.loaded || !isVisible() || !this.host.nearBottom()) return;
    const c = this.host.chats.get(open.id);
    const shown = open.messages.at(-1)?.seq ?? 0n;
    // A clear tells the others nothing: no receipt for the messages it took away unread either.
    if (!c || shown <= doneThrough(c)) return;
    c.readSeq = shown;
    c.unreadCount = c.lastSeq > shown ? c.lastSeq - shown : 0n;
    this.tellRead(open.id, shown);
    this.host.renderSidebar();
  }

  /**
   * Tells the server how far I read the chat, at once unless a receipt of it
   * went out less than READ_RECEIPT_WINDOW_MS ago: then the highest waits
   * for that window's end.
   */
  private tellRead(channelId: bigint, seq: bigint): void {
    const k = key(channelId);
    const w = this.readWindows.get(k);
    if (w) {
      if (w.seq === undefined || seq > w.seq) w.seq = seq;
      return;
    }
    this.sendRead(channelId, seq);
    this.readWindows.set(k, { timer: window.setTimeout(() => this.endReadWindow(k), READ_RECEIPT_WINDOW_MS) });
  }

  /** A chat's window is over: the read held back in it goes, and opens the next. */
  private endReadWindow(k: string): void {
    const w = this.readWindows.get(k);
    if (!w) return;
    clearTimeout(w.timer);
    this.readWindows.delete(k);
    if (w.seq !== undefined) this.tellRead(BigInt(k), w.seq);
  }

  /** Sends every read held back now (leaving a chat, the page hidden): nothing may come to send it later. */
  flushReads(): void {
    for (const [k, w] of [...this.readWindows]) if (w.seq !== undefined) this.endReadWindow(k);
  }

  /** On the socket, else with MarkRead, else on the next connection. */
  private sendRead(channelId: bigint, seq: bigint): void {
    const k = key(channelId);
    if (this.host.session.read(channelId, seq)) {
      this.untoldReads.delete(k);
      return;
    }
    this.markReadByCall(channelId, seq);
  }

  /** With MarkRead; until it answers, and if it fails, the read is owed to the next connection. */
  private markReadByCall(channelId: bigint, seq: bigint): void {
    const k = key(channelId);
    this.untoldReads.set(k, seq);
    void this.host.api.messages.markRead({ channelId, seq }).then(
      () => this.untoldReads.get(k) === seq && this.untoldReads.delete(k),
      () => undefined,
    );
  }

  /**
   * A read the socket carried and the server refused (its frame rate, its
   * store down): it has no other answer, and the page already shows the
   * chat read, so nothing else would tell it. Not one refused because I am
   * not in the chat: nothing would ever take that.
   */
  refused(channelId: bigint, seq: bigint, code: ErrorCode): void {
    if (code === ErrorCode.NOT_A_MEMBER) return;
    const untold = this.untoldReads.get(key(channelId));
    if (untold === undefined || seq > untold) this.markReadByCall(channelId, seq);
  }

  /** A live receipt: read on another of my devices, or by another member. */
  receipt(channelId: bigint, userId: bigint, seq: bigint): void {
    const c = this.host.chats.get(channelId);
    if (userId === this.host.me) {
      // Read on another of my devices.
      if (c && seq > c.readSeq) {
        c.readSeq = seq;
        const done = doneThrough(c);
        c.unreadCount = c.lastSeq > done ? c.lastSeq - done : 0n;
        this.host.renderSidebar();
      }
      return;
    }
    const open = this.host.open();
    if (open?.id === channelId && seq > (open.readBy.get(key(userId)) ?? 0n)) {
      open.readBy.set(key(userId), seq);
      this.host.renderMessages();
    }
  }

  /** A new connection has a frame rate of its own: what was held back goes with what was never told. */
  reconnected(): void {
    for (const [k, w] of this.readWindows) {
      clearTimeout(w.timer);
      const untold = this.untoldReads.get(k);
      if (w.seq !== undefined && (untold === undefined || w.seq > untold)) this.untoldReads.set(k, w.seq);
    }
    this.readWindows.clear();
    for (const [k, seq] of [...this.untoldReads]) this.tellRead(BigInt(k), seq);
  }

  /** The page signs out: held-back reads go on the socket only, while it is still open (MarkRead now would go out for whoever signed out). */
  stop(): void {
    for (const [k, w] of this.readWindows) {
      clearTimeout(w.timer);
      if (w.seq !== undefined) this.host.session.read(BigInt(k), w.seq);
    }
    this.readWindows.clear();
  }
}

function isVisible(): boolean {
  return document.visibilityState === "visible";
}
