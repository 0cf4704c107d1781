import { ChannelKind, type Channel, type Presence } from "../../../gen/es/chat/v1/types_pb.js";
import { h, morph, placeChildren, replaceChildren } from "../dom.js";
import { isNote } from "../notes.js";
import type { RealtimeSession } from "../session.js";
import type { Shell } from "../views/shell.js";
import { archivedItem, channelItem, chatsItem, sidebarNote, type ChannelRow } from "../views/sidebar.js";
import { isMuted, listOrder } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface ChatListViewHost {
  readonly ui: Shell;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  destroyed(): boolean;
  open(): OpenChat | undefined;
  presenceOf(userId: bigint): Presence | undefined;
  /** Someone is typing in the chat. */
  typingIn(channelId: bigint): boolean;
  go(channelId: bigint): void;
  renderToBottom(): void;
}

/** The sidebar's chat list (or the archive) and the page's title, drawn from the chat records. */
export class ChatListView {
  /**
   * The chat list's rows (by chat id, or the switch they are) and the lists, kept over redraws and
   * updated in place: a row replaced between the press and the release of a click lost the click.
   */
  private readonly rowEls = new Map<string, HTMLElement>();
  private readonly listEls = new Map<string, HTMLElement>();
  /** The sidebar shows the archived chats instead of the list. */
  private showArchive = false;

  constructor(private readonly host: ChatListViewHost) {}

  render(): void {
    const { ui, chats } = this.host;
    // The open chat's unread count, which the button beside its messages says too.
    this.host.renderToBottom();
    if (this.host.destroyed() || ui.search.value.trim()) return;
    const all = [...chats.values()];
    const listed = all.filter((c) => !c.archived);
    // Archived chats are put out of sight, muted ones quieted (their badge too): their unread does
    // not call for attention from another tab. A chat marked unread with nothing to count calls
    // for it as one message would.
    const now = this.host.session.serverNow();
    const total = listed.filter((c) => !isMuted(c, now)).reduce((n, c) => n + (Number(c.unreadCount) || (c.markedUnread ? 1 : 0)), 0);
    document.title = total > 0 ? `(${total}) Chat` : "Chat";
    if (!chats.loaded) {
      replaceChildren(ui.sidebarBody, sidebarNote("Loading chats…"));
      return;
    }
    const archived = all.length - listed.length;
    if (this.showArchive) return this.renderArchive(all.filter((c) => c.archived));
    if (all.length === 0) {
      replaceChildren(ui.sidebarBody, sidebarNote("No chats yet. Find someone by username above, or start a group.", "no-chats"));
      return;
    }
    const list = this.listEl("channels");
    placeChildren(list, [...this.channelItems(listed), ...(archived > 0 ? [this.keptRow("archived-toggle", archivedItem(archived, () => this.switchSidebar(true)))] : [])]);
    placeChildren(ui.sidebarBody, [list]);
  }

  private renderArchive(archived: Channel[]): void {
    const list = this.listEl("archived-channels");
    placeChildren(list, [this.keptRow("archived-back", chatsItem(() => this.switchSidebar(false))), ...this.channelItems(archived)]);
    placeChildren(this.host.ui.sidebarBody, [list, ...(archived.length === 0 ? [sidebarNote("No archived chats.", "no-archived")] : [])]);
  }

  private listEl(testid: string): HTMLElement {
    let list = this.listEls.get(testid);
    if (!list) this.listEls.set(testid, (list = h("ul", { class: "list", "data-testid": testid })));
    return list;
  }

  /** The row kept under `id`, made to show what `fresh` shows; `fresh` itself the first time. */
  private keptRow(id: string, fresh: HTMLElement): HTMLElement {
    const kept = this.rowEls.get(id);
    if (!kept) {
      this.rowEls.set(id, fresh);
      return fresh;
    }
    morph(kept.firstElementChild!, fresh.firstElementChild!);
    return kept;
  }

  /**
   * One chat's row drawn again where nothing but what it shows changed (who
   * is typing, its peer's presence): the whole list, rebuilt and compared
   * row by row, was drawn again at every such event of every chat. A row not
   * drawn yet is the whole list's to place.
   */
  renderRowOf(k: string): void {
    const c = this.host.chats.byKey(k);
    if (!c || !this.rowEls.has(`c:${k}`)) return this.render();
    this.keptChannelRow(c, this.host.session.serverNow());
  }

  private switchSidebar(archive: boolean): void {
    this.showArchive = archive;
    this.render();
  }

  /** Rows in the server's order: pinned first, the most recently pinned first; then by latest activity. */
  private channelItems(list: Channel[]): HTMLElement[] {
    const now = this.host.session.serverNow();
    // Rows of chats gone from the page go from the kept ones.
    for (const id of this.rowEls.keys()) if (id.startsWith("c:") && !this.host.chats.byKey(id.slice(2))) this.rowEls.delete(id);
    return list.sort(listOrder).map((c) => this.keptChannelRow(c, now));
  }

  private keptChannelRow(c: Channel, now: number): HTMLElement {
    return this.keptRow(`c:${key(c.channelId)}`, channelItem(this.channelRow(c, now), (id) => this.host.go(id)));
  }

  private channelRow(c: Channel, now: number): ChannelRow {
    const { users, me } = this.host;
    return {
      channel: c,
      now,
      name: users.channelName(c),
      presence: c.kind === ChannelKind.DIRECT ? this.host.presenceOf(c.peerUserId) : undefined,
      senderName: c.lastMessage ? users.name(c.lastMessage.senderUserId) : undefined,
      lastNote: c.lastMessage && isNote(c.lastMessage) ? users.noteText(c.lastMessage) : undefined,
      mine: c.lastMessage?.senderUserId === me,
      active: this.host.open()?.id === c.channelId,
      typing: this.host.typingIn(c.channelId),
      muted: isMuted(c, now),
      pinned: c.pinnedAt !== undefined,
      markedUnread: c.markedUnread,
    };
  }
}
