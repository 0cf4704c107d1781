import type { User } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError, type Api } from "../api.js";
import { h, replaceChildren } from "../dom.js";
import type { Shell } from "../views/shell.js";
import { sidebarNote, userItem } from "../views/sidebar.js";
import type { ChatList } from "./chat-list.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface PeopleSearchHost {
  readonly api: Api;
  readonly ui: Shell;
  readonly users: Users;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  closeChat(): void;
  go(channelId: bigint): void;
  renderSidebar(): void;
  toast(text: string): void;
}

/** The sidebar's search box: people by username, shown in place of the chat list, and a direct chat with one of them. */
export class PeopleSearch {
  private searchSeq = 0;
  private searchTimer?: number;

  constructor(private readonly host: PeopleSearchHost) {}

  bind(): void {
    const ui = this.host.ui;
    ui.search.addEventListener("input", () => this.onSearchInput());
    ui.search.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ui.search.value = "";
        this.host.renderSidebar();
      }
    });
  }

  private onSearchInput(): void {
    clearTimeout(this.searchTimer);
    const q = this.host.ui.search.value.trim();
    if (!q) return this.host.renderSidebar();
    this.searchTimer = window.setTimeout(() => void this.search(q), 200);
  }

  private async search(q: string): Promise<void> {
    const { ui, users } = this.host;
    const mine = ++this.searchSeq;
    try {
      const found = await users.searchUsers(q);
      if (mine !== this.searchSeq || ui.search.value.trim() !== q) return;
      replaceChildren(
        ui.sidebarBody,
        h("div", { class: "section-title" }, "People"),
        found.length === 0
          ? sidebarNote(users.isMyUsername(q) ? "That is you. Find others by their username." : `No one goes by “${q}”.`, "search-empty")
          : h("ul", { class: "list", "data-testid": "search-results" }, found.map((u) => userItem(u, (x) => void this.startDirect(x)))),
      );
    } catch (err) {
      if (mine === this.searchSeq) replaceChildren(ui.sidebarBody, sidebarNote(describeError(err)));
    }
  }

  async startDirect(user: User): Promise<void> {
    const open = this.host.open();
    // The chat open until now goes at once: left on screen while OpenDirect is on its way, what was typed
    // meanwhile, meant for the person just picked, went to it (its draft, or sent with Enter).
    if (open && this.host.chats.get(open.id)?.peerUserId !== user.userId) {
      this.host.closeChat();
      location.hash = "";
    }
    try {
      const c = (await this.host.api.channels.openDirect({ userId: user.userId })).channel!;
      this.host.users.set(user);
      // OpenDirect answers a chat opened again with my own settings of it (mute, pin, archive).
      this.host.chats.upsert(c);
      this.host.ui.search.value = "";
      this.host.renderSidebar();
      this.host.go(c.channelId);
    } catch (err) {
      this.host.toast(describeError(err));
    }
  }
}
