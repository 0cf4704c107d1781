import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelKind, PresenceVisibility, type Channel } from "../../gen/es/chat/v1/types_pb.js";
import { describeError, type Api } from "./api.js";
import type { Auth } from "./auth.js";
import { renderHeader, type ChatHeaderHost } from "./chat/chat-header.js";
import { ChatList, type ChatListHost } from "./chat/chat-list.js";
import { ChatListView, type ChatListViewHost } from "./chat/chat-list-view.js";
import { ChatSettings, type ChatSettingsHost } from "./chat/chat-settings.js";
import { Composer, type ComposerHost } from "./chat/composer.js";
import { Deliveries, type DeliveriesHost } from "./chat/deliveries.js";
import { Dialogs, type DialogsHost } from "./chat/dialogs.js";
import { FindInChat, type FindInChatHost } from "./chat/find-in-chat.js";
import { History, type HistoryHost } from "./chat/history.js";
import { MessageActions, type MessageActionsHost } from "./chat/message-actions.js";
import { MessagePane, type MessagePaneHost } from "./chat/message-pane.js";
import { key } from "./chat/keys.js";
import { newOpenChat, type OpenChat } from "./chat/open-chat.js";
import { Outbox, type OutboxHost } from "./chat/outbox.js";
import { PeopleSearch, type PeopleSearchHost } from "./chat/people-search.js";
import { Presence, PRESENCE_POLL_MS, type PresenceHost } from "./chat/presence.js";
import { PushToggle, type PushToggleHost } from "./chat/push-toggle.js";
import { Quotes, type QuotesHost } from "./chat/quotes.js";
import { ReadReceipts, type ReadReceiptsHost } from "./chat/read-receipts.js";
import { Typing, type TypingHost } from "./chat/typing.js";
import { Users } from "./chat/users.js";
import { avatar, replaceChildren } from "./dom.js";
import { startOfDay } from "./format.js";
import { chatToOpen, disablePush, forgetPush } from "./push.js";
import { RealtimeSession, type ConnectionState } from "./session.js";
import { emptyContent, renderShell, type Shell } from "./views/shell.js";

export interface AppHooks {
  /** The device is signed out; show the sign-in screen with this note. */
  signedOut(message: string): void;
}

/** What the parts of the app are given: the services they share, each other, and the coordinator's own steps. */
type AppHost = ChatListHost &
  ChatListViewHost &
  PresenceHost &
  PeopleSearchHost &
  TypingHost &
  PushToggleHost &
  ReadReceiptsHost &
  QuotesHost &
  OutboxHost &
  ComposerHost &
  MessageActionsHost &
  FindInChatHost &
  ChatSettingsHost &
  DialogsHost &
  ChatHeaderHost &
  HistoryHost &
  MessagePaneHost &
  DeliveriesHost;

/**
 * The signed-in client: state (chats, users, presence, the open
 * conversation, unacked sends) and the wiring between the Connect API, the
 * realtime session and the DOM. Each part keeps its own state (chat/); this
 * class opens and closes chats, takes what the session delivers, and hands
 * each part its share.
 */
export class ChatApp {
  private readonly session: RealtimeSession;
  private readonly ui: Shell;
  private readonly me: bigint;
  private readonly host: AppHost;
  private readonly users: Users;
  private readonly chats: ChatList;
  private readonly chatList: ChatListView;
  private readonly presence: Presence;
  private readonly peopleSearch: PeopleSearch;
  private readonly outbox: Outbox;
  private readonly composer: Composer;
  private readonly actions: MessageActions;
  private readonly quotes: Quotes;
  private readonly history: History;
  private readonly pane: MessagePane;
  private readonly typing: Typing;
  private readonly receipts: ReadReceipts;
  private readonly push: PushToggle;
  private readonly find: FindInChat;
  private readonly settings: ChatSettings;
  private readonly dialogs: Dialogs;
  private readonly deliveries: Deliveries;
  private readonly cleanups: (() => void)[] = [];
  private open?: OpenChat;
  private destroyed = false;
  /** The day (its midnight, by the server's clock) the chat list's times and the open chat's day lines were last drawn for. */
  private drawnDay = 0;

  constructor(
    root: HTMLElement,
    private readonly auth: Auth,
    private readonly api: Api,
    private readonly hooks: AppHooks,
  ) {
    this.me = auth.userId;
    this.ui = renderShell(root);
    this.session = new RealtimeSession(auth, {
      state: (s, detail) => this.onConnection(s, detail),
      welcome: (w) => {
        if (w.maxTextCodePoints) this.composer.maxTextCodePoints = w.maxTextCodePoints;
        void this.presence.refresh();
      },
      entries: (entries) => this.deliveries.take(entries.map((e) => e.message!).filter(Boolean)),
      caughtUp: (missed) => void this.reconcile(missed),
      sent: (id, ack) => this.outbox.sent(id, ack.messageId),
      failed: (id, err) => this.outbox.failed(id, err.message),
      stalled: (id, err) => this.outbox.stalled(id, err.message),
      readRefused: (channelId, seq, err) => this.receipts.refused(channelId, seq, err.code),
      presence: (p) => this.presence.pushed(p),
      channel: (ev) => {
        const c = ev.channel;
        if (!c) return;
        if (ev.kind === ChannelEventKind.LEFT && ev.userId === this.me) return this.removeChannel(c.channelId);
        void this.chats.describe(c.channelId);
        const open = this.open;
        const joinedOrLeft = ev.kind === ChannelEventKind.JOINED || ev.kind === ChannelEventKind.LEFT;
        if (joinedOrLeft && open?.id === c.channelId && this.chats.get(open.id)?.kind === ChannelKind.GROUP) void this.history.loadMembers(open, false).catch(() => undefined);
      },
      typing: (ev) => this.typing.heard(ev.channelId, ev.userId),
      receipt: (ev) => this.receipts.receipt(ev.channelId, ev.userId, ev.seq),
      signedOut: () => this.signOut("You were signed out on this device. Please log in again."),
    });
    this.users = new Users(api, auth, this.me);
    const host = (this.host = this.makeHost());
    this.chats = new ChatList(host);
    this.chatList = new ChatListView(host);
    this.presence = new Presence(host);
    this.peopleSearch = new PeopleSearch(host);
    this.outbox = new Outbox(host);
    this.composer = new Composer(host);
    this.actions = new MessageActions(host);
    this.quotes = new Quotes(host);
    this.history = new History(host);
    this.pane = new MessagePane(host);
    this.typing = new Typing(host);
    this.receipts = new ReadReceipts(host);
    this.push = new PushToggle(host);
    this.find = new FindInChat(host);
    this.settings = new ChatSettings(host);
    this.dialogs = new Dialogs(host);
    this.deliveries = new Deliveries(host);
    this.bindUi();
    this.push.showInitial();
  }

  private makeHost(): AppHost {
    // The getters below have a `this` of their own.
    const app = this;
    return {
      api: this.api,
      auth: this.auth,
      session: this.session,
      ui: this.ui,
      me: this.me,
      users: this.users,
      // The parts, made after this object: read when asked for.
      get chats() {
        return app.chats;
      },
      get outbox() {
        return app.outbox;
      },
      get composer() {
        return app.composer;
      },
      get actions() {
        return app.actions;
      },
      get history() {
        return app.history;
      },
      get quotes() {
        return app.quotes;
      },
      get typing() {
        return app.typing;
      },
      open: () => this.open,
      destroyed: () => this.destroyed,
      connected: () => this.connected(),
      toast: (text) => this.toast(text),
      go: (channelId) => this.go(channelId),
      closeChat: () => this.closeChat(),
      removeChannel: (channelId) => this.removeChannel(channelId),
      closeLeft: (channelId, c) => this.closeLeft(channelId, c),
      forgetCleared: (channelId, through) => this.forgetCleared(channelId, through),
      unmarkOwed: (k) => this.settings.unmarkOwed(k),
      fetchPresence: (ids) => this.presence.fetch(ids),
      presence: (userId) => this.presence.get(userId),
      presenceOf: (userId) => this.presence.of(userId),
      typingIn: (channelId) => this.typing.anyoneIn(channelId),
      typed: () => this.typing.typed(),
      editing: () => this.composer.isEditing(),
      editRefused: (channelId, seq, text) => this.composer.editRefused(channelId, seq, text),
      quoteLoaded: (channelId) => {
        if (this.open?.id === channelId && !this.destroyed) {
          this.pane.rerender();
          this.composer.renderReplyBar();
        }
      },
      startDirect: (user) => this.peopleSearch.startDirect(user),
      jumpTo: (seq) => this.history.jumpTo(seq),
      signOut: (message) => this.signOut(message),
      renderMe: (name, username) => this.renderMe(name, username),
      renderSidebar: () => this.chatList.render(),
      renderRowOf: (k) => this.chatList.renderRowOf(k),
      renderHeader: () => this.renderHeader(),
      renderMessages: () => this.pane.render(),
      rerenderMessages: () => this.pane.rerender(),
      renderToBottom: () => this.pane.renderToBottom(),
      nearBottom: () => this.pane.nearBottom(),
      markRead: () => this.receipts.markRead(),
    };
  }

  async start(): Promise<void> {
    const c = this.auth.current!;
    this.renderMe(c.displayName || c.username, c.username);
    this.session.start();
    void this.push.start();
    try {
      const me = (await this.api.users.getMe({})).user;
      if (me) {
        this.users.set(me);
        this.auth.updateProfile(me);
        this.renderMe(me.displayName || me.username, me.username);
      }
    } catch (err) {
      this.toast(describeError(err));
    }
    void this.api.presence.getPresenceSettings({}).then(
      (r) => {
        this.ui.visibility.value = String(r.settings?.visibility || PresenceVisibility.CHATS);
        this.ui.visibility.dataset.loaded = "";
      },
      () => {},
    );
    void this.api.users.listBlockedUsers({}).then(
      (r) => {
        this.users.blocked = new Set(r.blockedUsers.map((b) => key(b.user!.userId)));
        this.renderHeader();
      },
      () => {},
    );
    await this.chats.load();
    this.openFromHash();
  }

  destroy(): void {
    this.destroyed = true;
    this.dialogs.closeAll();
    // The socket only, while it is still open: MarkRead now would go out for whoever signed out.
    this.receipts.stop();
    this.session.stop();
    for (const c of this.cleanups) c();
  }

  // ---------------------------------------------------------------- wiring

  private bindUi(): void {
    const ui = this.ui;
    const listen = <K extends keyof WindowEventMap>(type: K, fn: (ev: WindowEventMap[K]) => void) => {
      window.addEventListener(type, fn);
      this.cleanups.push(() => window.removeEventListener(type, fn));
    };
    const every = (ms: number, fn: () => void) => {
      const t = window.setInterval(fn, ms);
      this.cleanups.push(() => clearInterval(t));
    };

    ui.logout.addEventListener("click", () => void this.logout());
    ui.push.addEventListener("click", () => void this.push.toggle());
    ui.friends.addEventListener("click", () => this.dialogs.friends());
    ui.account.addEventListener("click", () => this.dialogs.account());
    ui.visibility.addEventListener("change", () => void this.settings.setVisibility(Number(ui.visibility.value)));
    ui.block.addEventListener("click", () => void this.settings.toggleBlock());
    ui.mute.addEventListener("click", () => void this.settings.toggleMute());
    ui.pin.addEventListener("click", () => void this.settings.togglePin());
    ui.archive.addEventListener("click", () => void this.settings.toggleArchive());
    ui.markUnread.addEventListener("click", () => void this.settings.markUnread());
    ui.clearHistory.addEventListener("click", () => void this.settings.clearHistory());
    ui.invite.addEventListener("click", () => this.dialogs.inviteLink());
    ui.members.addEventListener("click", () => this.dialogs.members());
    ui.leave.addEventListener("click", () => void this.settings.leaveGroup());
    this.find.bind();
    this.peopleSearch.bind();
    ui.newGroup.addEventListener("click", () => this.dialogs.newGroup());
    ui.back.addEventListener("click", () => {
      location.hash = "";
    });
    this.composer.bind();
    ui.scroller.addEventListener("scroll", () => {
      if (ui.scroller.scrollTop < 120) void this.history.loadOlder();
      if (this.pane.nearBottom()) this.receipts.markRead();
      this.pane.renderToBottom();
    });
    ui.toBottom.addEventListener("click", () => {
      ui.scroller.scrollTop = ui.scroller.scrollHeight;
    });
    this.actions.bind(listen);
    listen("hashchange", () => this.openFromHash());
    // A notification clicked: the service worker (public/sw.js) asks this window to open its chat.
    if ("serviceWorker" in navigator) {
      const onWorkerMessage = (ev: MessageEvent) => {
        const channelId = chatToOpen(ev.data);
        if (channelId !== undefined) this.go(channelId);
      };
      navigator.serviceWorker.addEventListener("message", onWorkerMessage);
      this.cleanups.push(() => navigator.serviceWorker.removeEventListener("message", onWorkerMessage));
    }
    listen("focus", () => this.receipts.markRead());
    // What the server has not taken yet (sends, edits, reactions) lives only in this page: closing or reloading it lost them without a word.
    listen("beforeunload", (ev) => {
      if (!this.outbox.unsent()) return;
      ev.preventDefault();
      ev.returnValue = "unsent";
    });
    // Hidden (another tab, the page closing): a read held back goes now, its window's end may never come.
    const onVisible = () => (document.visibilityState === "visible" ? this.receipts.markRead() : this.receipts.flushReads());
    document.addEventListener("visibilitychange", onVisible);
    this.cleanups.push(() => document.removeEventListener("visibilitychange", onVisible));
    // Relative times ("last seen 3 minutes ago") and a presence check for
    // the open chat, in case a pushed change was missed while reconnecting.
    every(PRESENCE_POLL_MS, () => {
      this.presence.poll();
      this.renderHeader();
      // Past midnight, what said "Today" is yesterday's and a time in the chat list is no longer today's:
      // they stayed so in a page left open until something else drew them again.
      const today = startOfDay(this.session.serverNow());
      if (today === this.drawnDay) return;
      this.drawnDay = today;
      this.chatList.render();
      this.pane.render();
    });
    every(1000, () => this.typing.expire());
  }

  // ---------------------------------------------------------------- data

  /**
   * After (re)connecting and catching up: the server's view wins over ours.
   * `missed`: the inbox had let go of some of what happened meanwhile (past
   * its retention window), edits and deletes of the messages shown included,
   * so the open chat is read again from its newest page.
   */
  private async reconcile(missed = false): Promise<void> {
    // Until the first listing is in, start() reads it; one that failed is read here, or the list says "Loading chats…" for good.
    if (!this.chats.loaded && !this.chats.failed) return;
    await this.chats.load();
    const open = this.open;
    if (!open) return;
    if (!open.loaded) return this.history.loadFirstPage(open);
    return this.history.catchUp(open, missed);
  }

  /**
   * Takes the messages through `through` out of the open chat, and ends
   * what was under way on them here (an edit, a reply, reactions, quotes,
   * search hits): for me the chat now starts after them.
   */
  private forgetCleared(channelId: bigint, through: bigint): void {
    this.outbox.cleared(channelId, through);
    this.quotes.cleared(channelId, through);
    this.composer.cleared(channelId, through);
    this.actions.cleared(channelId, through);
    const open = this.open;
    if (open?.id !== channelId) return;
    open.messages = open.messages.filter((m) => m.seq > through);
    // Loaded from the first message after the clear (or none came since): nothing older is left to load.
    if (open.loaded && (open.messages[0]?.seq ?? through + 1n) === through + 1n) open.hasOlder = false;
    this.find.clear();
    this.pane.rerender();
  }

  /** I am no longer in the chat (removed, or left on another device): it goes, and closes with a notice if open. */
  private removeChannel(channelId: bigint): void {
    const c = this.chats.remove(channelId);
    this.closeLeft(channelId, c);
    this.chatList.render();
  }

  /** The chat I am no longer in, if open, closes at once (what is on its way for it is not shown), with a notice. */
  private closeLeft(channelId: bigint, c: Channel | undefined): void {
    if (this.open?.id !== channelId) return;
    if (this.settings.isLeaving(channelId)) this.toast(c ? `You left “${this.users.channelName(c)}”.` : "You left the group.");
    else this.toast(c ? `You are no longer a member of “${this.users.channelName(c)}”.` : "You are no longer a member of this chat.");
    this.closeChat();
    location.hash = "";
  }

  // ---------------------------------------------------------------- realtime

  private onConnection(state: ConnectionState, detail?: string): void {
    const el = this.ui.connection;
    el.dataset.state = state;
    el.dataset.sessions = String(this.session?.sessions ?? 0);
    el.textContent = state === "open" ? "Online" : state === "connecting" ? "Connecting…" : "Offline";
    el.title = detail ?? "";
    // Sends wait in the outbox while the socket is down. One shown not sent that the outbox kept (`stalled`) goes again on a new socket.
    if (this.outbox.connection(state)) this.pane.render();
    // Who is online is not known while the socket is down, and is read again once it is back.
    this.renderHeader();
    this.chatList.render();
    if (state === "open") {
      this.receipts.reconnected();
      this.settings.reconnected();
    }
  }

  // ---------------------------------------------------------------- actions

  private openFromHash(): void {
    const invite = /^#\/join\/(.+)$/.exec(location.hash);
    if (invite) return this.dialogs.invite(invite[1]!);
    const m = /^#\/c\/(\d+)$/.exec(location.hash);
    if (!m) {
      this.closeChat();
      return;
    }
    const id = BigInt(m[1]!);
    if (this.open?.id !== id) void this.openChannel(id);
  }

  private go(channelId: bigint): void {
    const hash = `#/c/${channelId}`;
    if (location.hash === hash) void this.openChannel(channelId);
    else location.hash = hash;
  }

  /** `opening`: a chat not in the list yet is being asked for, and the pane says so meanwhile. */
  private closeChat(opening = false): void {
    this.receipts.flushReads();
    this.composer.holdEdit();
    this.composer.endEdit();
    this.actions.reset();
    this.open = undefined;
    this.ui.layout.dataset.view = opening ? "chat" : "list";
    this.ui.chat.hidden = true;
    replaceChildren(this.ui.empty, emptyContent(opening));
    this.ui.empty.hidden = false;
    this.chatList.render();
  }

  private async openChannel(channelId: bigint): Promise<void> {
    let c = this.chats.get(channelId);
    if (!c) {
      // The chat open until now goes at once: left on screen while it is asked for, what was typed
      // meanwhile, meant for the one opening, went to it (its draft, or sent with Enter).
      this.closeChat(true);
      c = await this.chats.describe(channelId);
      // Another chat, or the list, was opened while it was asked for: that one stays.
      if (this.destroyed || location.hash !== `#/c/${channelId}`) return;
    }
    if (!c) {
      this.toast("That chat does not exist or you are not in it.");
      location.hash = "";
      return;
    }
    this.receipts.flushReads();
    const open = newOpenChat(channelId);
    void this.settings.unmark(channelId);
    // While this.open is still the chat left, so its draft is kept.
    this.composer.holdEdit();
    this.composer.endEdit();
    this.actions.reset();
    this.open = open;
    this.find.clear();
    this.ui.layout.dataset.view = "chat";
    this.ui.empty.hidden = true;
    this.ui.chat.hidden = false;
    this.composer.showDraft(channelId);
    // Read again as they now are: changes may have been missed while offline.
    this.quotes.forget(channelId);
    this.composer.renderReplyBar();
    this.composer.autosize();
    this.composer.renderCounter();
    this.chatList.render();
    this.renderHeader();
    this.pane.render();
    this.typing.render();
    this.ui.input.focus();

    // A 1:1 chat's members too: their read positions say what the peer has seen before any receipt arrives live.
    const direct = c.kind !== ChannelKind.GROUP;
    const presence = direct ? this.presence.fetch([c.peerUserId]) : Promise.resolve();
    const members = this.history.loadMembers(open, direct);
    await this.history.loadFirstPage(open);
    await Promise.all([members.catch(() => undefined), presence.catch(() => undefined)]);
  }

  private async logout(): Promise<void> {
    // While the tokens still work: the server forgets this device's push address, the browser its subscription.
    await disablePush(this.api).catch(() => undefined);
    try {
      await this.api.auth.logout({});
    } catch {
      // signed out locally all the same
    }
    this.signOut("");
  }

  private signOut(message: string): void {
    this.session.end();
    // Signed out by the server, the tokens are dead and the server dropped the endpoint already;
    // the browser's subscription goes too, so the next sign-in starts with notifications off
    // (after a logout, disablePush has done both).
    void forgetPush();
    this.auth.clear();
    this.hooks.signedOut(message);
  }

  // ---------------------------------------------------------------- rendering

  private renderMe(name: string, username: string): void {
    replaceChildren(this.ui.meName, name);
    replaceChildren(this.ui.meHandle, `@${username}`);
    const pic = avatar(name, this.me.toString());
    this.ui.meAvatar.replaceWith(pic);
    this.ui.meAvatar = pic;
  }

  private renderHeader(): void {
    renderHeader(this.host);
  }

  private toast(text: string): void {
    const el = this.ui.toast;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(Number(el.dataset.timer));
    el.dataset.timer = String(window.setTimeout(() => (el.hidden = true), 5000));
  }

  private connected(): boolean {
    return this.ui.connection.dataset.state === "open";
  }
}
