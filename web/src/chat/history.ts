import { PageDirection, type ListMessagesResponse } from "../../../gen/es/chat/v1/messages_pb.js";
import type { Member, Message } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError, notAMember, type Api } from "../api.js";
import type { Auth } from "../auth.js";
import { applyLate, isChange, moreCurrent } from "../changes.js";
import { h, replaceChildren } from "../dom.js";
import { peopleIn } from "../notes.js";
import type { Shell } from "../views/shell.js";
import type { ChatList } from "./chat-list.js";
import type { Composer } from "./composer.js";
import { key } from "./keys.js";
import { PAGE, trimWindow, type OpenChat } from "./open-chat.js";
import type { Outbox } from "./outbox.js";
import type { Quotes } from "./quotes.js";
import type { Users } from "./users.js";

/** As long as the .flash animation in style.css. */
const FLASH_MS = 1600;

export interface HistoryHost {
  readonly api: Api;
  readonly auth: Auth;
  readonly ui: Shell;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  readonly outbox: Outbox;
  readonly quotes: Quotes;
  readonly composer: Composer;
  open(): OpenChat | undefined;
  fetchPresence(ids: bigint[]): Promise<bigint[]>;
  removeChannel(channelId: bigint): void;
  renderHeader(): void;
  renderMessages(): void;
  rerenderMessages(): void;
  markRead(): void;
  nearBottom(): boolean;
  toast(text: string): void;
}

/**
 * The open chat's history as read from the server: its first page, older
 * pages as the reader scrolls back, what is read again after a reconnect,
 * and its members' read positions; merged with what came live meanwhile.
 */
export class History {
  /** The message a clicked quote led to, highlighted until `until` (ms). */
  private flash?: { channelId: bigint; seq: bigint; until: number };

  constructor(private readonly host: HistoryHost) {}

  /** The seq of the chat's message to highlight for a moment, 0n when none. */
  flashSeq(channelId: bigint): bigint {
    return this.flash && this.flash.channelId === channelId && this.flash.until > Date.now() ? this.flash.seq : 0n;
  }

  /** A read of the open chat refused because I am not in it (any more): the chat list had not heard of it yet. */
  private notInIt(open: OpenChat, err: unknown): boolean {
    if (!notAMember(err)) return false;
    if (this.host.open() === open) this.host.removeChannel(open.id);
    return true;
  }

  /**
   * After (re)connecting and catching up, for the loaded open chat: what
   * came after its newest message, and its members' read positions.
   * `missed`: the inbox had let go of some of what happened meanwhile (past
   * its retention window), edits and deletes of the messages shown included,
   * so it is read again from its newest page.
   */
  async catchUp(open: OpenChat, missed: boolean): Promise<void> {
    const { api } = this.host;
    const newest = open.messages.at(-1)?.seq ?? 0n;
    const page = this.pageOnItsWay(open);
    try {
      // Receipts are live only: what the others read while this tab was away comes from their members' positions.
      const [res, members] = await Promise.all([
        missed
          ? api.messages.listMessages({ channelId: open.id, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: PAGE })
          : api.messages.listMessages({ channelId: open.id, anchorSeq: newest, direction: PageDirection.FORWARD, limit: 200 }),
        api.channels.listMembers({ channelId: open.id }),
      ]);
      await this.host.users.ensureUsers(res.messages.flatMap(peopleIn));
      if (this.host.open() === open && missed) this.reloadMessages(open, res);
      else if (this.host.open() === open) this.mergeMessages(open, res.messages);
      page.merged();
      this.mergeReadPositions(open, members.members);
    } catch (err) {
      // Otherwise the next reconnect tries again.
      this.notInIt(open, err);
    } finally {
      page.done();
    }
  }

  /**
   * The open chat as history now has it: its newest page, and what came live
   * after the page was read. What was shown before may be out of date.
   */
  private reloadMessages(open: OpenChat, page: ListMessagesResponse): void {
    // A BACKWARD page comes newest first; what it covers is history's copy, reactions too (moreCurrent does not weigh them).
    const newest = page.messages.reduce((max, m) => (m.seq > max ? m.seq : max), 0n);
    open.messages = open.messages.filter((m) => m.seq > newest);
    open.hasOlder = page.hasMore;
    this.host.quotes.forget(open.id);
    this.mergeMessages(open, page.messages, "bottom");
  }

  /** Members' read positions from the server, forward only: a receipt that came live meanwhile may be ahead of them. */
  private mergeReadPositions(open: OpenChat, members: readonly Member[]): void {
    let moved = false;
    for (const m of members) {
      if (m.userId === this.host.me || m.readSeq <= (open.readBy.get(key(m.userId)) ?? 0n)) continue;
      open.readBy.set(key(m.userId), m.readSeq);
      moved = true;
    }
    if (moved && this.host.open() === open && open.loaded) this.host.renderMessages();
  }

  /**
   * The open chat's members and their read positions: when it opens, and
   * in a group again when someone joins or leaves ("Seen by" and "N online"
   * count the members). An answer asked before a later one is not kept.
   */
  async loadMembers(open: OpenChat, direct: boolean): Promise<void> {
    const turn = ++open.membersAsked;
    const r = await this.host.api.channels.listMembers({ channelId: open.id });
    if (turn < open.membersAsked) return;
    // A group's "Seen by" counts and names its members: they must be known before the
    // read positions render it, or the messages, loaded first, show none until the next render.
    if (!direct) {
      open.members = r.members.map((m) => m.userId);
      await this.host.users.ensureUsers(open.members);
    }
    this.mergeReadPositions(open, r.members);
    if (direct) return;
    await this.host.fetchPresence(open.members);
    if (this.host.open() === open) {
      this.host.renderHeader();
      this.host.rerenderMessages();
    }
  }

  /** The open chat's newest page, with what came live after it was read. */
  async loadFirstPage(open: OpenChat): Promise<void> {
    if (open.loaded || open.loading) return;
    open.loading = true;
    open.failed = false;
    this.renderOlder();
    try {
      const res = await this.host.api.messages.listMessages({ channelId: open.id, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: PAGE });
      if (this.host.open() !== open) return;
      await this.host.users.ensureUsers(res.messages.flatMap(peopleIn));
      open.loaded = true;
      open.hasOlder = res.hasMore;
      const early = open.early;
      open.early = [];
      this.mergeMessages(open, [...res.messages, ...early], "bottom");
      this.applyLateChanges(open, early.filter(isChange));
      this.host.composer.resumeHeldEdit();
    } catch (err) {
      if (this.notInIt(open, err)) return;
      open.failed = true;
      if (this.host.open() === open) this.host.toast(describeError(err));
    } finally {
      open.loading = false;
      if (this.host.open() === open) this.renderOlder();
    }
  }

  async loadOlder(): Promise<void> {
    const open = this.host.open();
    if (!open || !open.loaded || !open.hasOlder || open.loadingOlder) return;
    open.loadingOlder = true;
    this.renderOlder();
    const page = this.pageOnItsWay(open);
    try {
      const oldest = open.messages[0]?.seq ?? 0n;
      if (oldest === (this.host.chats.get(open.id)?.clearedThroughSeq ?? 0n) + 1n) {
        open.hasOlder = false;
        return;
      }
      const res = await this.host.api.messages.listMessages({ channelId: open.id, anchorSeq: oldest, direction: PageDirection.BACKWARD, limit: PAGE });
      if (this.host.open() !== open) return;
      await this.host.users.ensureUsers(res.messages.flatMap(peopleIn));
      // The oldest went meanwhile (the window trimmed, or the chat read again): the page would leave a gap. Paging back asks again.
      if ((open.messages[0]?.seq ?? 0n) !== oldest) return;
      open.hasOlder = res.hasMore;
      this.mergeMessages(open, res.messages, "keep");
      page.merged();
    } catch (err) {
      this.host.toast(describeError(err));
    } finally {
      page.done();
      open.loadingOlder = false;
      if (this.host.open() === open) this.renderOlder();
    }
  }

  /** A read of a page of the open chat starts: `merged()` once its page is in applies the changes that came meanwhile; `done()` ends it. */
  private pageOnItsWay(open: OpenChat): { merged: () => void; done: () => void } {
    const meanwhile: Message[] = [];
    open.paging.add(meanwhile);
    return { merged: () => this.applyLateChanges(open, meanwhile), done: () => void open.paging.delete(meanwhile) };
  }

  /** Changes that came while a page was read, once it is merged: it may or may not show them. */
  private applyLateChanges(open: OpenChat, changes: Message[]): void {
    let changed = false;
    for (const ch of changes) {
      const i = open.messages.findIndex((m) => m.seq === ch.targetSeq);
      if (i < 0) continue;
      open.messages[i] = applyLate(open.messages[i]!, ch);
      changed = true;
    }
    if (changed && this.host.open() === open) this.host.rerenderMessages();
  }

  /** Adds messages to the open chat in seq order, each once, and keeps the scroll where the reader expects it. */
  mergeMessages(open: OpenChat, incoming: Message[], scroll: "auto" | "bottom" | "keep" = "auto"): void {
    const bySeq = new Map(open.messages.map((m) => [key(m.seq), m]));
    const cleared = this.host.chats.get(open.id)?.clearedThroughSeq ?? 0n;
    let added = false;
    let mineAdded = false;
    for (const m of incoming) {
      // A page read before my clear took effect, or a delivery the inbox kept, may still hold what it covers.
      if (m.channelId !== open.id || isChange(m) || m.seq <= cleared) continue;
      const have = bySeq.get(key(m.seq));
      if (have) {
        // A page fetched around a live edit or delete: keep whichever copy saw more.
        if (moreCurrent(have, m) !== have) {
          bySeq.set(key(m.seq), m);
          added = true;
        }
        continue;
      }
      bySeq.set(key(m.seq), m);
      added = true;
      if (m.senderUserId === this.host.me) {
        // Sent here, the writer wants to see it; sent from my phone, a reader reading back stays where they are.
        if (m.senderDeviceId === this.host.auth.deviceId) mineAdded = true;
        this.host.outbox.delivered(m.clientMsgId);
      }
    }
    if (!added && open.loaded && scroll !== "bottom") return;
    open.messages = [...bySeq.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    const sc = this.host.ui.scroller;
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    const stick = scroll === "bottom" || (scroll === "auto" && (this.host.nearBottom() || mineAdded));
    if (stick) trimWindow(open);
    this.host.renderMessages();
    if (stick) sc.scrollTop = sc.scrollHeight;
    else sc.scrollTop = sc.scrollHeight - fromBottom;
    this.host.markRead();
    // A short first page may not fill the screen: fetch more until it does.
    if (open.hasOlder && sc.scrollHeight <= sc.clientHeight) void this.loadOlder();
  }

  /** Scrolls to the message with this seq (a quote was clicked), reading older history up to it when that is not far. */
  async jumpTo(seq: bigint): Promise<void> {
    const { ui } = this.host;
    const open = this.host.open();
    if (!open) return;
    const find = () => ui.messages.querySelector<HTMLElement>(`[data-testid=message][data-seq="${seq}"]`);
    let el = find();
    const oldest = open.messages[0]?.seq;
    if (!el && open.loaded && open.hasOlder && !open.loadingOlder && oldest !== undefined && oldest > seq) {
      if (oldest - seq > 200n) return this.host.toast("That message is far back in the chat: scroll up to load it.");
      open.loadingOlder = true;
      this.renderOlder();
      const page = this.pageOnItsWay(open);
      try {
        // A few more than needed, so the answered message is not the very first shown.
        const limit = Math.min(200, Number(oldest - seq) + 5);
        const res = await this.host.api.messages.listMessages({ channelId: open.id, anchorSeq: oldest, direction: PageDirection.BACKWARD, limit });
        if (this.host.open() !== open) return;
        await this.host.users.ensureUsers(res.messages.flatMap(peopleIn));
        // As in loadOlder: merged after the oldest went, the page would leave a gap.
        if (open.messages[0]?.seq !== oldest) return;
        open.hasOlder = res.hasMore;
        this.mergeMessages(open, res.messages, "keep");
        page.merged();
      } catch (err) {
        return this.host.toast(describeError(err));
      } finally {
        page.done();
        open.loadingOlder = false;
        if (this.host.open() === open) this.renderOlder();
      }
      el = find();
    }
    if (!el) return this.host.toast("That message is not available.");
    // Kept as state, not as a class on the element: a receipt or an ack renders the list anew meanwhile.
    this.flash = { channelId: open.id, seq, until: Date.now() + FLASH_MS };
    this.host.rerenderMessages();
    find()?.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  /** Above the messages: loading, a retry, "Load older messages", or where the chat starts. */
  renderOlder(): void {
    const open = this.host.open();
    const el = this.host.ui.older;
    if (open?.failed) {
      return replaceChildren(
        el,
        h("span", { class: "muted", "data-testid": "load-failed" }, "Messages could not be loaded. "),
        h("button", { type: "button", class: "link", "data-testid": "load-retry", onclick: () => void this.loadFirstPage(open) }, "Try again"),
      );
    }
    if (!open || !open.loaded) return replaceChildren(el, h("span", { class: "spinner" }, "Loading messages…"));
    if (open.loadingOlder) return replaceChildren(el, h("span", { class: "spinner" }, "Loading older messages…"));
    if (open.hasOlder) return replaceChildren(el, h("button", { type: "button", class: "link", "data-testid": "load-older", onclick: () => void this.loadOlder() }, "Load older messages"));
    // For me the chat starts after the clear, whether or not anything came since.
    if (this.host.chats.isCleared(open.id)) return replaceChildren(el, h("span", { class: "muted", "data-testid": "history-start", "data-cleared": "true" }, "History cleared: what came before is gone for you alone."));
    replaceChildren(el, open.messages.length > 0 || this.host.outbox.pendingFor(open.id).length > 0 ? h("span", { class: "muted", "data-testid": "history-start" }, "This is the beginning of the chat.") : null);
  }
}
