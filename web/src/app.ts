import { clone } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { PageDirection, type ListMessagesResponse } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind, ChannelNoteKind, ChannelSchema, ErrorCode, MemberRole, PresenceStatus, PresenceVisibility, type Channel, type ChannelNote, type Member, type Message, type Presence, type User } from "../../gen/es/chat/v1/types_pb.js";
import { describeError, notAMember, unreachable, type Api } from "./api.js";
import type { Auth } from "./auth.js";
import { applyChange, applyLate, isChange, isOutdated, moreCurrent, outdatedBelow, type ChangeKind } from "./changes.js";
import { avatar, bidi, h, isolate, isolateIfBidi, morph, placeChildren, replaceChildren, type Modal } from "./dom.js";
import { codePoints, excerpt, lastSeen, preview, startOfDay, tsMs } from "./format.js";
import { isNote, noteSentence, peopleIn } from "./notes.js";
import { chatToOpen, disablePush, enablePush, forgetPush, initialPushState, pushFailure, pushSupport, refreshPush, type PushState } from "./push.js";
import { myReaction } from "./reactions.js";
import { RealtimeSession, type ConnectionState } from "./session.js";
import { openAccountDialog } from "./views/account-dialog.js";
import { openFriendsDialog } from "./views/friends-dialog.js";
import { openGroupDialog } from "./views/group-dialog.js";
import { openInviteDialog } from "./views/invite-dialog.js";
import { openJoinDialog } from "./views/join-dialog.js";
import { openMembersDialog } from "./views/members-dialog.js";
import { KeptMessages, messageList, quoteExcerpt, type MessageListInput, type PendingView } from "./views/messages.js";
import { emptyContent, renderShell, type Shell } from "./views/shell.js";
import { archivedItem, channelItem, chatsItem, sidebarNote, userItem, type ChannelRow } from "./views/sidebar.js";

/** "Muted until further notice": the latest time MuteChannel takes. */
const MUTED_FOR_GOOD = timestampFromMs(Date.UTC(9999, 11, 31));

/** The bell's title in each state: what a click does. */
const PUSH_TITLES: Record<PushState, string> = {
  unsupported: "This browser cannot show notifications from this site",
  off: "Notifications are off on this device: click to turn them on",
  on: "Notifications are on for this device: click to turn them off",
  blocked: "Notifications are blocked for this site in the browser's settings",
  error: "Notifications could not be turned on: click to try again",
};

/** `now` by the server's clock: mutedUntil is the server's time, and this browser's clock may be minutes off it. */
const isMuted = (c: Channel, now: number) => c.mutedUntil !== undefined && tsMs(c.mutedUntil)! > now;

/** Where the chat's unread starts: after what I read, or cleared (ClearHistory), whichever goes further. */
const doneThrough = (c: Channel) => (c.readSeq > c.clearedThroughSeq ? c.readSeq : c.clearedThroughSeq);

/** A group I own or help run: I may delete anyone's message there, and hand out its invite link. */
const manages = (c: Channel | undefined) => c?.kind === ChannelKind.GROUP && (c.myRole === MemberRole.ADMIN || c.myRole === MemberRole.OWNER);

/** The web client's link for an invite code (what GetInviteLink gives is the code alone). */
const inviteUrl = (code: string) => `${location.origin}/#/join/${code}`;

export interface AppHooks {
  /** The device is signed out; show the sign-in screen with this note. */
  signedOut(message: string): void;
}

interface Pending extends PendingView {
  channelId: bigint;
}

/** An edit or delete of, or my reaction to, one of the open chat's messages, shown at once and until its inbox entry comes back. */
interface PendingChange {
  clientMsgId: string;
  channelId: bigint;
  seq: bigint;
  /** The new text; empty for a delete; a reaction's emoji, empty when taken back. */
  text: string;
  kind: ChangeKind;
  state: "queued" | "sending" | "sent";
  at: number;
  /** The id the server acked it under. */
  ackedId?: bigint;
  /** Acked under an id below this, it will never apply (`outdatedBelow`): the highest such bar of the changes seen since it was made. */
  bar: bigint;
}

interface Editing {
  channelId: bigint;
  seq: bigint;
  /** The text as it was when the edit began: saving it unchanged sends nothing. */
  original: string;
  /** What the composer held before, given back when the edit ends. */
  draft: string;
}

interface OpenChat {
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

const PAGE = 50;
/**
 * The most messages the open chat keeps while the reader is at its bottom;
 * older ones are dropped and paging back reads them again. Every live
 * message, receipt and ack renders the whole list anew, so this bounds that
 * work and the page's memory in a busy chat left open for days. 500 is ten
 * pages: many screens to scroll back through before history is read again.
 */
const WINDOW = 500;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 6000;
const PRESENCE_POLL_MS = 30_000;
/**
 * A chat's read receipts go out at most one per this long: one per live
 * message of a busy open chat (some 40 a second) went past the server's
 * frame rate for a connection (50/s) and was refused. A receipt up to seq N
 * covers every one before it, so the window's last says all of them.
 */
const READ_RECEIPT_WINDOW_MS = 500;
/** As long as the .flash animation in style.css. */
const FLASH_MS = 1600;

const key = (id: bigint) => id.toString();
const quoteKey = (channelId: bigint, seq: bigint) => `${channelId}:${seq}`;

/**
 * The signed-in client: state (chats, users, presence, the open
 * conversation, unacked sends) and the wiring between the Connect API, the
 * realtime session and the DOM.
 */
export class ChatApp {
  private readonly channels = new Map<string, Channel>();
  /**
   * The chat list's rows (by chat id, or the switch they are) and the lists, kept over redraws and
   * updated in place: a row replaced between the press and the release of a click lost the click.
   */
  private readonly rowEls = new Map<string, HTMLElement>();
  private readonly listEls = new Map<string, HTMLElement>();
  /** The open chat's message elements, kept between its redraws (`messageList`). */
  private readonly keptMessages = new KeptMessages();
  private readonly users = new Map<string, User>();
  private readonly presence = new Map<string, Presence>();
  /** Users this account blocked; undefined until read. */
  private blocked?: Set<string>;
  private readonly pending = new Map<string, Pending>();
  /** Searches asked (and clears): only the answer to the last one is shown. */
  private finds = 0;
  private readonly changes = new Map<string, PendingChange>();
  private editing?: Editing;
  /**
   * Per chat: my edit not saved, the server having refused it (the edit
   * window passed, too many edits, the server down) or another chat opened
   * while it was under way: its text kept for the edit box until it can go
   * back there, its chat open, its message shown, no other edit under way.
   */
  private readonly heldEdits = new Map<string, { seq: bigint; text: string }>();
  /** Per chat: the message the composer's text replies to, as it was when the reply began. */
  private readonly replies = new Map<string, Message>();
  /**
   * Answered messages fetched from history because the open chat had not
   * loaded them (by quoteKey; null when there is no such message, or it
   * could not be read), kept current by the changes that arrive.
   */
  private readonly quotes = new Map<string, Message | null>();
  /** Quotes being fetched, with the changes to their messages that arrived meanwhile. */
  private readonly quoteLoads = new Map<string, Message[]>();
  /** The message a clicked quote led to, highlighted until `until` (ms). */
  private flash?: { channelId: bigint; seq: bigint; until: number };
  /** The message whose reaction palette is open. */
  private reacting?: { channelId: bigint; seq: bigint };
  /** channel -> user -> shown until (ms, on the monotonic clock). */
  private readonly typing = new Map<string, Map<string, number>>();
  /**
   * DescribeChannel calls by channel: the last one asked, and the last whose
   * answer was kept. Every event asks anew (an answer read before the change
   * it announces would miss it), and an answer that comes back after a later
   * one is not kept over it.
   */
  private readonly describeTurns = new Map<string, { asked: number; kept: number }>();
  /**
   * Live changes to the chat list, counted: by chat, the turn at which an
   * answer about it (DescribeChannel, one of my settings, a join) put it
   * whole, or my leaving took it away. A listing or a describe asked before
   * that turn is older than what the page knows of the chat.
   */
  private channelTurn = 0;
  private readonly changedAt = new Map<string, number>();
  /**
   * Live presence events, counted: by user, the turn of the last one. A
   * GetPresence asked before that turn may have read what the event replaced.
   */
  private presenceTurn = 0;
  private readonly presenceAt = new Map<string, number>();
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
  /**
   * Chats opened while their unread mark could not be taken away on the
   * server (offline): shown read here, and asked again on the next
   * connection. Without it the mark stayed on every other device and came
   * back here with the next chat list.
   */
  private readonly untoldUnmarks = new Set<string>();
  /** Groups I asked to leave, the answer not in yet: their chat closes saying I left, not that I was taken out. */
  private readonly leaving = new Set<string>();
  /** Unsent composer text per chat. */
  private readonly drafts = new Map<string, string>();
  private readonly session: RealtimeSession;
  private readonly ui: Shell;
  private readonly me: bigint;
  private readonly cleanups: (() => void)[] = [];
  private open?: OpenChat;
  private channelsLoaded = false;
  /** The chat list could not be read (yet): the next catch-up asks again. */
  private channelsFailed = false;
  /** The sidebar shows the archived chats instead of the list. */
  private showArchive = false;
  /** The dialog of the invite link the page was opened at (#/join/<code>). */
  private joining?: { code: string; close(): void };
  /**
   * The other dialogs opened (new group, account, a group's invite link):
   * modal, over the whole page, so they close with the app. Left open after a
   * sign-out (here or in another tab) they kept the sign-in screen under them
   * out of reach, and acted for whoever signed in next. Each leaves the set
   * when it closes: kept, every dialog opened stayed in memory until sign-out.
   */
  private readonly dialogs = new Set<Modal>();
  private searchSeq = 0;
  private searchTimer?: number;
  /** On the monotonic clock, as the typing map's times: a wall clock stepped back held typing back, or kept it shown, for the step. */
  private lastTypingSent = -Infinity;
  /** A bell click or the start-up refresh is under way. */
  private pushBusy = false;
  private maxTextCodePoints = 99_999;
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
        if (w.maxTextCodePoints) this.maxTextCodePoints = w.maxTextCodePoints;
        void this.refreshPresence();
      },
      entries: (entries) => this.onMessages(entries.map((e) => e.message!).filter(Boolean)),
      caughtUp: (missed) => void this.reconcile(missed),
      sent: (id, ack) => this.onSent(id, ack.messageId),
      failed: (id, err) => this.onFailed(id, err.message),
      stalled: (id, err) => this.onStalled(id, err.message),
      readRefused: (channelId, seq, err) => this.onReadRefused(channelId, seq, err.code),
      presence: (p) => {
        this.presenceAt.set(key(p.userId), ++this.presenceTurn);
        this.presence.set(key(p.userId), p);
        // Only a direct chat's row shows its peer's presence: the whole list was drawn again at every event.
        for (const c of this.channels.values()) if (c.kind === ChannelKind.DIRECT && c.peerUserId === p.userId) this.renderRowOf(key(c.channelId));
        this.renderHeader();
      },
      channel: (ev) => {
        const c = ev.channel;
        if (!c) return;
        if (ev.kind === ChannelEventKind.LEFT && ev.userId === this.me) return this.removeChannel(c.channelId);
        void this.describe(c.channelId);
        const open = this.open;
        const joinedOrLeft = ev.kind === ChannelEventKind.JOINED || ev.kind === ChannelEventKind.LEFT;
        if (joinedOrLeft && open?.id === c.channelId && this.channels.get(key(open.id))?.kind === ChannelKind.GROUP) void this.loadMembers(open, false).catch(() => undefined);
      },
      typing: (ev) => this.onTyping(ev.channelId, ev.userId),
      receipt: (ev) => this.onReceipt(ev.channelId, ev.userId, ev.seq),
      signedOut: () => this.signOut("You were signed out on this device. Please log in again."),
    });
    this.bindUi();
    const support = pushSupport();
    this.renderPush(initialPushState(), support.supported ? undefined : support.reason);
  }

  async start(): Promise<void> {
    const c = this.auth.current!;
    this.renderMe(c.displayName || c.username, c.username);
    this.session.start();
    void this.startPush();
    try {
      const me = (await this.api.users.getMe({})).user;
      if (me) {
        this.users.set(key(me.userId), me);
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
        this.blocked = new Set(r.blockedUsers.map((b) => key(b.user!.userId)));
        this.renderHeader();
      },
      () => {},
    );
    await this.loadChannels();
    this.openFromHash();
  }

  /**
   * Searches the open chat for the words typed, older than `before` (0: from
   * the newest); adds to the hits shown. "Search older messages" goes on
   * with the words of the hits above it (`query`), not with what the box
   * holds since; an answer to a search made before the last one is dropped.
   */
  private async find(before: bigint, query = this.ui.find.value.trim()): Promise<void> {
    const open = this.open;
    if (!open || !query) return this.clearFind();
    const hits = this.ui.findHits;
    const asked = ++this.finds;
    try {
      const res = await this.api.messages.searchMessages({ channelId: open.id, query, beforeSeq: before });
      await this.ensureUsers(res.messages.map((m) => m.senderUserId));
      if (this.open !== open || asked !== this.finds) return;
      if (before === 0n) replaceChildren(hits);
      hits.querySelector("[data-testid=find-more]")?.remove();
      hits.querySelector("[data-testid=find-none-yet]")?.remove();
      for (const m of res.messages) {
        // A hit opens its message in the chat, loading the history up to it as a quote's click does.
        hits.append(
          h(
            "button",
            { type: "button", class: "find-hit", "data-testid": "find-hit", "data-seq": String(m.seq), onclick: () => void this.jumpTo(m.seq) },
            h("span", { class: "muted" }, bidi(this.name(m.senderUserId)), " ·"),
            bidi(excerpt(m.text, query.split(/\s+/))),
            m.editedAt ? h("span", { class: "muted find-edited", "data-testid": "find-edited" }, "(edited)") : null,
          ),
        );
      }
      const none = hits.querySelector("[data-testid=find-hit]") === null;
      if (res.nextBeforeSeq > 0n) {
        // The server stops at its scan bound: no hit yet is not "nothing found" while older messages are unsearched.
        if (none) {
          hits.append(h("span", { class: "muted", "data-testid": "find-none-yet" }, "No matches in the messages searched so far."));
        }
        hits.append(h("button", { type: "button", class: "link", "data-testid": "find-more", onclick: () => void this.find(res.nextBeforeSeq, query) }, "Search older messages"));
      } else if (none) {
        hits.append(h("span", { class: "muted", "data-testid": "find-none" }, "No messages found."));
      }
      hits.hidden = false;
    } catch (err) {
      this.toast(describeError(err));
    }
  }

  private clearFind(): void {
    this.finds++;
    this.ui.find.value = "";
    this.ui.findHits.hidden = true;
    replaceChildren(this.ui.findHits);
  }

  /** Mutes the open chat's notifications for good, or unmutes it. */
  private toggleMute(): Promise<void> {
    return this.changeOwnSetting((c) => this.api.channels.muteChannel({ channelId: c.channelId, mutedUntil: isMuted(c, this.session.serverNow()) ? undefined : MUTED_FOR_GOOD }));
  }

  private togglePin(): Promise<void> {
    return this.changeOwnSetting((c) => this.api.channels.pinChannel({ channelId: c.channelId, pinned: !c.pinnedAt }));
  }

  private toggleArchive(): Promise<void> {
    return this.changeOwnSetting((c) => this.api.channels.archiveChannel({ channelId: c.channelId, archived: !c.archived }));
  }

  /** Marks the open chat unread and goes back to the list: staying in it would be reading it, and opening it again takes the mark away. */
  private async markUnread(): Promise<void> {
    const open = this.open;
    if (!open) return;
    // Marked again: an unmark still owed from offline must not take this one away.
    this.untoldUnmarks.delete(key(open.id));
    await this.changeOwnSetting((c) => this.api.channels.markUnread({ channelId: c.channelId, unread: true }));
    // Refused, the chat stays open (the toast says why); nor is another chat opened meanwhile left.
    if (this.open === open && this.channels.get(key(open.id))?.markedUnread) location.hash = "";
  }

  /**
   * Opening a chat marked unread takes the mark away on every device: the
   * server tells the others with a channel event. The realtime receipt
   * would not (it leaves the mark), so it is asked for here.
   */
  private async unmark(channelId: bigint): Promise<void> {
    const c = this.channels.get(key(channelId));
    if (!c?.markedUnread) return;
    // At once, so that opening it again before the answer asks nothing more.
    c.markedUnread = false;
    this.changed(channelId);
    this.untoldUnmarks.add(key(channelId));
    await this.tellUnmark(channelId);
  }

  /** Asks the server to take a chat's unread mark away; unreachable, it stays owed until the next connection. */
  private async tellUnmark(channelId: bigint): Promise<void> {
    const k = key(channelId);
    try {
      const res = await this.api.channels.markUnread({ channelId, unread: false });
      if (!this.untoldUnmarks.delete(k)) return; // marked again meanwhile: that answer stands
      if (res.channel) this.upsertChannel(res.channel);
    } catch (err) {
      if (unreachable(err)) return;
      this.untoldUnmarks.delete(k);
      this.toast(describeError(err));
    }
    this.renderSidebar();
  }

  /** Clears the open chat's history for me alone, once confirmed; the answer's clearedThroughSeq takes the messages away. */
  private async clearHistory(): Promise<void> {
    const c = this.open && this.channels.get(key(this.open.id));
    if (!c) return;
    if (c.lastSeq <= c.clearedThroughSeq) return this.toast("There is nothing to clear in this chat.");
    const others = c.kind === ChannelKind.DIRECT ? `${this.channelName(c)} keeps them` : "the other members keep them";
    if (!window.confirm(`Clear the history of this chat for you? Its messages so far go from all your devices; ${others}. This cannot be undone.`)) return;
    // Through what this page has shown, not the server's newest: a message arriving meanwhile is not cleared unseen.
    await this.changeOwnSetting((chat) => this.api.channels.clearHistory({ channelId: chat.channelId, throughSeq: chat.lastSeq }));
  }

  /**
   * One of my own settings of the open chat (mute, pin, archive, the unread
   * mark, where its history starts). The answer is the chat with all of them as they now
   * are: one can change another (pinning unarchives, archiving unpins,
   * unmuting may bring a chat back).
   */
  private async changeOwnSetting(call: (c: Channel) => Promise<{ channel?: Channel }>): Promise<void> {
    const c = this.open && this.channels.get(key(this.open.id));
    if (!c) return;
    try {
      const res = await call(c);
      if (res.channel) this.upsertChannel(res.channel);
    } catch (err) {
      this.toast(describeError(err));
    }
    this.renderHeader();
    this.renderSidebar();
  }

  /**
   * Leaves the open group, once confirmed. Its chat goes at the answer; the
   * LEFT event that tells my other devices may come first here, and closes
   * it the same way.
   */
  private async leaveGroup(): Promise<void> {
    const c = this.open && this.channels.get(key(this.open.id));
    if (!c || c.kind !== ChannelKind.GROUP) return;
    const owner = c.myRole === MemberRole.OWNER ? " You own it: the longest-standing admin, else member, becomes its owner." : "";
    if (!window.confirm(`Leave “${this.channelName(c)}”? It goes from all your devices, and only a member can bring you back.${owner}`)) return;
    this.leaving.add(key(c.channelId));
    try {
      await this.api.channels.leaveGroup({ channelId: c.channelId });
      if (this.channels.has(key(c.channelId))) this.removeChannel(c.channelId);
    } catch (err) {
      this.toast(describeError(err));
    } finally {
      this.leaving.delete(key(c.channelId));
    }
  }

  /** Blocks or unblocks the peer of the open direct chat. */
  private async toggleBlock(): Promise<void> {
    const c = this.open && this.channels.get(key(this.open.id));
    if (!c || c.kind !== ChannelKind.DIRECT || !this.blocked) return;
    const peer = c.peerUserId;
    const blocking = !this.blocked.has(key(peer));
    if (blocking && !window.confirm(`Block ${isolate(this.name(peer))}? Neither of you can message the other here, and they stop seeing when you are online.`)) return;
    try {
      if (blocking) await this.api.users.blockUser({ userId: peer });
      else await this.api.users.unblockUser({ userId: peer });
      if (blocking) this.blocked.add(key(peer));
      else this.blocked.delete(key(peer));
    } catch (err) {
      this.toast(describeError(err));
    }
    this.renderHeader();
  }

  /** At start: notifications turned on before are registered again, for this sign-in's device. */
  private async startPush(): Promise<void> {
    if (!pushSupport().supported) return;
    this.pushBusy = true;
    this.ui.push.disabled = true;
    try {
      this.renderPush(await refreshPush(this.api));
    } catch (err) {
      // No toast: nothing was asked for; the bell's state and title tell.
      const failure = pushFailure(err);
      this.renderPush(failure.state, failure.message);
    } finally {
      this.pushBusy = false;
      this.ui.push.disabled = false;
    }
  }

  /** The bell: turns this device's notifications on (prompting, so only from a click) or off. */
  private async togglePush(): Promise<void> {
    if (this.pushBusy) return;
    this.pushBusy = true;
    const bell = this.ui.push;
    bell.disabled = true;
    try {
      this.renderPush(bell.dataset.state === "on" ? await disablePush(this.api) : await enablePush(this.api));
    } catch (err) {
      const failure = pushFailure(err);
      this.renderPush(failure.state, failure.message);
      this.toast(failure.message);
    } finally {
      this.pushBusy = false;
      bell.disabled = false;
    }
  }

  private async setVisibility(visibility: PresenceVisibility): Promise<void> {
    try {
      await this.api.presence.updatePresenceSettings({ settings: { visibility } });
    } catch (err) {
      this.toast(describeError(err));
    }
  }

  private keepDialog(modal: Modal): void {
    this.dialogs.add(modal);
    void modal.closed.then(() => this.dialogs.delete(modal));
  }

  destroy(): void {
    this.destroyed = true;
    this.joining?.close();
    for (const d of this.dialogs) d.close();
    this.dialogs.clear();
    // The socket only, while it is still open: MarkRead now would go out for whoever signed out.
    for (const [k, w] of this.readWindows) {
      clearTimeout(w.timer);
      if (w.seq !== undefined) this.session.read(BigInt(k), w.seq);
    }
    this.readWindows.clear();
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
    ui.push.addEventListener("click", () => void this.togglePush());
    ui.friends.addEventListener("click", () =>
      this.keepDialog(openFriendsDialog({
        read: async () => {
          const [{ friends }, { requests }] = await Promise.all([this.api.users.listFriends({}), this.api.users.listFriendRequests({})]);
          return { friends, requests };
        },
        search: (q) => this.searchUsers(q),
        ask: async (user) => {
          await this.api.users.sendFriendRequest({ userId: user.userId });
        },
        answer: async (user, accept) => {
          await this.api.users.respondFriendRequest({ userId: user.userId, accept });
        },
        remove: async (user) => {
          await this.api.users.removeFriend({ userId: user.userId });
        },
        message: (user) => void this.startDirect(user),
      })),
    );
    ui.account.addEventListener("click", () =>
      this.keepDialog(openAccountDialog({
        displayName: this.auth.current?.displayName ?? "",
        rename: async (displayName) => {
          const user = (await this.api.users.updateProfile({ displayName })).user!;
          this.users.set(key(user.userId), user);
          this.auth.updateProfile(user);
          this.renderMe(user.displayName || user.username, user.username);
          return user.displayName;
        },
        changePassword: async (currentPassword, newPassword) =>
          (await this.api.auth.changePassword({ currentPassword, newPassword })).devicesSignedOut,
        deleteAccount: async (password) => {
          await this.api.auth.deleteAccount({ password });
          this.signOut("Your account was deleted.");
        },
      })),
    );
    ui.visibility.addEventListener("change", () => void this.setVisibility(Number(ui.visibility.value)));
    ui.block.addEventListener("click", () => void this.toggleBlock());
    ui.mute.addEventListener("click", () => void this.toggleMute());
    ui.pin.addEventListener("click", () => void this.togglePin());
    ui.archive.addEventListener("click", () => void this.toggleArchive());
    ui.markUnread.addEventListener("click", () => void this.markUnread());
    ui.clearHistory.addEventListener("click", () => void this.clearHistory());
    ui.invite.addEventListener("click", () => this.showInviteLink());
    ui.members.addEventListener("click", () => this.showMembers());
    ui.leave.addEventListener("click", () => void this.leaveGroup());
    ui.find.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") void this.find(0n);
      if (ev.key === "Escape") this.clearFind();
    });
    ui.find.addEventListener("search", () => ui.find.value === "" && this.clearFind());
    ui.search.addEventListener("input", () => this.onSearchInput());
    ui.search.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ui.search.value = "";
        this.renderSidebar();
      }
    });
    ui.newGroup.addEventListener("click", () => this.newGroup());
    ui.back.addEventListener("click", () => {
      location.hash = "";
    });
    ui.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.sendFromComposer();
    });
    ui.input.addEventListener("keydown", (ev) => {
      if (ev.isComposing) return;
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        this.sendFromComposer();
      } else if (ev.key === "Escape" && this.editing) {
        ev.preventDefault();
        this.endEdit();
        this.resumeHeldEdit();
      } else if (ev.key === "Escape" && this.open && this.replies.has(key(this.open.id))) {
        ev.preventDefault();
        this.endReply(this.open.id);
        this.resumeHeldEdit();
      } else if (ev.key === "ArrowUp" && !this.editing && ui.input.value === "" && !(this.open && this.replies.has(key(this.open.id)))) {
        // As in most chat apps: up in an empty composer edits your last message.
        const last = this.open && lastWhere(this.shownMessages(this.open).messages, (m) => m.senderUserId === this.me && !m.deleted && !isNote(m));
        if (last) {
          ev.preventDefault();
          this.startEdit(last);
        }
      }
    });
    ui.editCancel.addEventListener("click", () => {
      this.endEdit();
      this.resumeHeldEdit();
      ui.input.focus();
    });
    ui.replyCancel.addEventListener("click", () => {
      if (this.open) this.endReply(this.open.id);
      this.resumeHeldEdit();
      ui.input.focus();
    });
    ui.input.addEventListener("input", () => {
      this.autosize();
      this.renderCounter();
      if (this.open && !this.editing && ui.input.value.trim() && performance.now() - this.lastTypingSent > TYPING_SEND_EVERY_MS) {
        this.lastTypingSent = performance.now();
        this.session.typing(this.open.id);
      }
    });
    ui.scroller.addEventListener("scroll", () => {
      if (ui.scroller.scrollTop < 120) void this.loadOlder();
      if (this.nearBottom()) this.markRead();
      this.renderToBottom();
    });
    ui.toBottom.addEventListener("click", () => {
      ui.scroller.scrollTop = ui.scroller.scrollHeight;
    });
    // The reaction palette closes on Escape and on a click anywhere else.
    listen("keydown", (ev) => {
      if (ev.key === "Escape" && this.reacting) this.closeReactions();
    });
    listen("click", (ev) => {
      const t = ev.target;
      // The list may have been rendered anew by the click: closest() still works on the detached button.
      if (this.reacting && !(t instanceof Element && t.closest(".reaction-palette, [data-testid=react-message]"))) this.closeReactions();
    });
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
    listen("focus", () => this.markRead());
    // What the server has not taken yet (sends, edits, reactions) lives only in this page: closing or reloading it lost them without a word.
    listen("beforeunload", (ev) => {
      if (![...this.pending.values(), ...this.changes.values()].some((p) => this.session?.has(p.clientMsgId))) return;
      ev.preventDefault();
      ev.returnValue = "unsent";
    });
    // Hidden (another tab, the page closing): a read held back goes now, its window's end may never come.
    const onVisible = () => (document.visibilityState === "visible" ? this.markRead() : this.flushReads());
    document.addEventListener("visibilitychange", onVisible);
    this.cleanups.push(() => document.removeEventListener("visibilitychange", onVisible));
    // Relative times ("last seen 3 minutes ago") and a presence check for
    // the open chat, in case a pushed change was missed while reconnecting.
    every(PRESENCE_POLL_MS, () => {
      if (this.open) void this.fetchPresence(this.presenceTargets(this.open.id));
      this.renderHeader();
      // Past midnight, what said "Today" is yesterday's and a time in the chat list is no longer today's:
      // they stayed so in a page left open until something else drew them again.
      const today = startOfDay(this.session.serverNow());
      if (today === this.drawnDay) return;
      this.drawnDay = today;
      this.renderSidebar();
      this.renderMessages();
    });
    every(1000, () => this.expireTyping());
  }

  // ---------------------------------------------------------------- data

  /** The list and the archive both: the list shows how many are archived, and a live message may bring one back. */
  private async loadChannels(): Promise<void> {
    const asked = this.channelTurn;
    try {
      const lists = await Promise.all([this.listChannels(false), this.listChannels(true)]);
      const all = lists.flatMap((l) => l.channels);
      if (this.destroyed) return;
      this.takeListing(all, asked, lists.every((l) => l.complete));
      this.channelsLoaded = true;
      const peers = all.filter((c) => c.kind === ChannelKind.DIRECT).map((c) => c.peerUserId);
      const senders = all.flatMap((c) => (c.lastMessage ? peopleIn(c.lastMessage) : []));
      await this.ensureUsers([...peers, ...senders]);
      this.renderSidebar();
      // A chat opened while the names were on their way shows "…" for its peer until now.
      this.renderHeader();
      await this.fetchPresence(peers);
    } catch (err) {
      this.channelsFailed = true;
      this.toast(describeError(err));
      this.renderSidebar();
    }
  }

  /**
   * The server's list of my chats, asked at turn `asked`, over what the page
   * knows: it may have been read before what came live meanwhile. A chat put
   * or left since stays as it now is, deliveries and reading never go back,
   * and a chat the listing leaves out goes unless it came since.
   */
  private takeListing(listed: Channel[], asked: number, complete: boolean): void {
    const since = (k: string) => (this.changedAt.get(k) ?? 0) > asked;
    const keys = new Set(listed.map((c) => key(c.channelId)));
    for (const [k, c] of [...this.channels]) {
      // A listing cut short (more chats than it reads) says nothing of those it left out.
      if (keys.has(k) || since(k) || !complete) continue;
      this.channels.delete(k);
      // Removed, or left on another device, while this tab did not hear of it (offline): as a LEFT event would.
      this.closeLeft(c.channelId, c);
    }
    const now = this.session.serverNow();
    for (const c of listed) {
      const live = this.channels.get(key(c.channelId));
      if (!since(key(c.channelId))) this.putChannel(live ? keepNewer(c, live, now) : c, live);
      // A copy: putChannel compares the clear with the record it replaces.
      else if (live) this.putChannel(keepNewer(clone(ChannelSchema, live), c, now), live);
    }
  }

  /** The first 2,000 of my chats (in the list or the archive), and whether that was all of them. */
  private async listChannels(archived: boolean): Promise<{ channels: Channel[]; complete: boolean }> {
    const channels: Channel[] = [];
    let pageToken = "";
    for (let page = 0; page < 10; page++) {
      const res = await this.api.channels.listChannels({ limit: 200, pageToken, archived });
      channels.push(...res.channels);
      pageToken = res.nextPageToken;
      if (!pageToken) break;
    }
    return { channels, complete: pageToken === "" };
  }

  /** One channel, as the caller sees it (unread, role, peer). */
  private async describe(channelId: bigint): Promise<Channel | undefined> {
    const k = key(channelId);
    const turns = this.describeTurns.get(k) ?? { asked: 0, kept: 0 };
    this.describeTurns.set(k, turns);
    const turn = ++turns.asked;
    const asked = this.channelTurn;
    try {
      const c = (await this.api.channels.describeChannel({ channelId })).channel;
      if (!c) return undefined;
      // I left it after asking: the answer, read before, would bring it back. A later JOINED asks anew.
      if (!this.channels.has(k) && (this.changedAt.get(k) ?? 0) > asked) return undefined;
      if (turn < turns.kept) return this.channels.get(k) ?? c;
      turns.kept = turn;
      const wasModerator = manages(this.channels.get(k));
      this.upsertChannel(c);
      if (c.kind === ChannelKind.DIRECT) {
        await this.ensureUsers([c.peerUserId]);
        await this.fetchPresence([c.peerUserId]);
      }
      this.renderSidebar();
      if (this.open?.id === channelId) this.renderHeader();
      // Made an admin, or no longer one: Delete is offered on the others' messages, or not.
      if (this.open?.id === channelId && manages(c) !== wasModerator) this.rerenderMessages();
      return c;
    } catch {
      return undefined;
    }
  }

  /** An answer about one chat: a listing asked before it does not undo it (takeListing), nor it what came live since it was read. */
  private upsertChannel(c: Channel): void {
    const prev = this.channels.get(key(c.channelId));
    this.putChannel(prev ? keepNewer(c, prev, this.session.serverNow()) : c, prev);
    this.changed(c.channelId);
  }

  private changed(channelId: bigint): void {
    this.changedAt.set(key(channelId), ++this.channelTurn);
  }

  /** Keeps the server's record of a chat; when my clear of its history moved forward, what it covers goes from this page too. */
  private putChannel(c: Channel, prev: Channel | undefined): void {
    const was = prev?.clearedThroughSeq ?? 0n;
    // A clear only moves forward: an answer read before it does not bring the messages back.
    if (was > c.clearedThroughSeq) c.clearedThroughSeq = was;
    // Opened here while offline: read, whatever a list read before the server heard of it says.
    if (this.untoldUnmarks.has(key(c.channelId))) c.markedUnread = false;
    hideCleared(c);
    this.channels.set(key(c.channelId), c);
    if (c.clearedThroughSeq > was) this.forgetCleared(c.channelId, c.clearedThroughSeq);
  }

  /**
   * Takes the messages through `through` out of the open chat, and ends
   * what was under way on them here (an edit, a reply, reactions, quotes,
   * search hits): for me the chat now starts after them.
   */
  private forgetCleared(channelId: bigint, through: bigint): void {
    for (const [id, p] of this.changes) if (p.channelId === channelId && p.seq <= through) this.changes.delete(id);
    const prefix = `${channelId}:`;
    for (const k of this.quotes.keys()) if (k.startsWith(prefix) && BigInt(k.slice(prefix.length)) <= through) this.quotes.set(k, null);
    const reply = this.replies.get(key(channelId));
    if (reply && reply.seq <= through) this.endReply(channelId);
    if (this.editing?.channelId === channelId && this.editing.seq <= through) this.endEdit();
    if ((this.heldEdits.get(key(channelId))?.seq ?? through + 1n) <= through) this.heldEdits.delete(key(channelId));
    if (this.reacting?.channelId === channelId && this.reacting.seq <= through) this.reacting = undefined;
    const open = this.open;
    if (open?.id !== channelId) return;
    open.messages = open.messages.filter((m) => m.seq > through);
    // Loaded from the first message after the clear (or none came since): nothing older is left to load.
    if (open.loaded && (open.messages[0]?.seq ?? through + 1n) === through + 1n) open.hasOlder = false;
    this.clearFind();
    this.rerenderMessages();
  }

  /** I am no longer in the chat (removed, or left on another device): it goes, and closes with a notice if open. */
  private removeChannel(channelId: bigint): void {
    const c = this.channels.get(key(channelId));
    this.channels.delete(key(channelId));
    this.changed(channelId);
    this.closeLeft(channelId, c);
    this.renderSidebar();
  }

  /** The chat I am no longer in, if open, closes at once (what is on its way for it is not shown), with a notice. */
  private closeLeft(channelId: bigint, c: Channel | undefined): void {
    if (this.open?.id !== channelId) return;
    if (this.leaving.has(key(channelId))) this.toast(c ? `You left “${this.channelName(c)}”.` : "You left the group.");
    else this.toast(c ? `You are no longer a member of “${this.channelName(c)}”.` : "You are no longer a member of this chat.");
    this.closeChat();
    location.hash = "";
  }

  /** A read of the open chat refused because I am not in it (any more): the chat list had not heard of it yet. */
  private notInIt(open: OpenChat, err: unknown): boolean {
    if (!notAMember(err)) return false;
    if (this.open === open) this.removeChannel(open.id);
    return true;
  }

  private async ensureUsers(ids: bigint[]): Promise<void> {
    const missing = [...new Set(ids.filter((id) => id !== 0n && !this.users.has(key(id))).map(key))].map((s) => BigInt(s));
    for (let i = 0; i < missing.length; i += 100) {
      try {
        const res = await this.api.users.getUsers({ userIds: missing.slice(i, i + 100) });
        for (const u of res.users) this.users.set(key(u.userId), u);
      } catch {
        // names fall back to "…" until the next try
      }
    }
  }

  /** Returns the ids whose presence could not be read. */
  private async fetchPresence(ids: bigint[]): Promise<bigint[]> {
    const wanted = [...new Set(ids.filter((id) => id !== 0n && id !== this.me).map(key))].map((s) => BigInt(s));
    for (let i = 0; i < wanted.length; i += 500) {
      try {
        const asked = this.presenceTurn;
        const res = await this.api.presence.getPresence({ userIds: wanted.slice(i, i + 500) });
        this.setPresence(res.presences.filter((p) => (this.presenceAt.get(key(p.userId)) ?? 0) <= asked));
      } catch {
        // presence is a nicety: keep what we had
        return wanted.slice(i);
      }
    }
    return [];
  }

  /**
   * At a welcome: the events of the time offline were missed. What could not
   * be read again, and no event has told since, is from before the connection
   * dropped, maybe long out of date ("online" for one gone meanwhile, for as
   * long as they stay away): not shown.
   */
  private async refreshPresence(): Promise<void> {
    const welcomed = this.presenceTurn;
    const peers = [...this.channels.values()].filter((c) => c.kind === ChannelKind.DIRECT).map((c) => c.peerUserId);
    const unread = await this.fetchPresence([...peers, ...(this.open?.members ?? [])]);
    const stale = unread.filter((id) => (this.presenceAt.get(key(id)) ?? 0) <= welcomed && this.presence.delete(key(id)));
    if (stale.length > 0) this.setPresence([]);
  }

  private setPresence(list: Presence[]): void {
    for (const p of list) this.presence.set(key(p.userId), p);
    this.renderSidebar();
    this.renderHeader();
  }

  private presenceTargets(channelId: bigint): bigint[] {
    const c = this.channels.get(key(channelId));
    if (!c) return [];
    return c.kind === ChannelKind.DIRECT ? [c.peerUserId] : (this.open?.members ?? []);
  }

  /**
   * After (re)connecting and catching up: the server's view wins over ours.
   * `missed`: the inbox had let go of some of what happened meanwhile (past
   * its retention window), edits and deletes of the messages shown included,
   * so the open chat is read again from its newest page.
   */
  private async reconcile(missed = false): Promise<void> {
    // Until the first listing is in, start() reads it; one that failed is read here, or the list says "Loading chats…" for good.
    if (!this.channelsLoaded && !this.channelsFailed) return;
    await this.loadChannels();
    const open = this.open;
    if (!open) return;
    if (!open.loaded) return this.loadFirstPage(open);
    const newest = open.messages.at(-1)?.seq ?? 0n;
    const page = this.pageOnItsWay(open);
    try {
      // Receipts are live only: what the others read while this tab was away comes from their members' positions.
      const [res, members] = await Promise.all([
        missed
          ? this.api.messages.listMessages({ channelId: open.id, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: PAGE })
          : this.api.messages.listMessages({ channelId: open.id, anchorSeq: newest, direction: PageDirection.FORWARD, limit: 200 }),
        this.api.channels.listMembers({ channelId: open.id }),
      ]);
      await this.ensureUsers(res.messages.flatMap(peopleIn));
      if (this.open === open && missed) this.reloadMessages(open, res);
      else if (this.open === open) this.mergeMessages(open, res.messages);
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
    for (const k of this.quotes.keys()) if (k.startsWith(`${open.id}:`)) this.quotes.delete(k);
    this.mergeMessages(open, page.messages, "bottom");
  }

  /** Members' read positions from the server, forward only: a receipt that came live meanwhile may be ahead of them. */
  private mergeReadPositions(open: OpenChat, members: readonly Member[]): void {
    let moved = false;
    for (const m of members) {
      if (m.userId === this.me || m.readSeq <= (open.readBy.get(key(m.userId)) ?? 0n)) continue;
      open.readBy.set(key(m.userId), m.readSeq);
      moved = true;
    }
    if (moved && this.open === open && open.loaded) this.renderMessages();
  }

  // ---------------------------------------------------------------- realtime

  private onMessages(entries: Message[]): void {
    const changes = entries.filter(isChange);
    const messages = changes.length === 0 ? entries : entries.filter((m) => !isChange(m));
    const unknown = new Set<bigint>();
    const senders: bigint[] = [];
    let openUnarchived = false;
    const open = this.open;
    for (const m of messages) {
      const c = this.channels.get(key(m.channelId));
      const mine = m.senderUserId === this.me;
      // A chat still opening shows it once its first page lands (mergeMessages takes it out then); until then it stays pending.
      const opening = open?.id === m.channelId && !open.loaded;
      if (mine && m.senderDeviceId === this.auth.deviceId && !opening) this.pending.delete(m.clientMsgId);
      // Renaming the group or adding someone is not the end of what they were typing.
      if (!isNote(m)) this.typing.get(key(m.channelId))?.delete(key(m.senderUserId));
      senders.push(...peopleIn(m));
      if (!c) {
        unknown.add(m.channelId);
        continue;
      }
      // The inbox keeps its copies of what I cleared (a device syncing after the clear): not shown, last or unread.
      if (m.seq <= c.clearedThroughSeq) continue;
      if (m.seq > c.lastSeq) {
        c.lastSeq = m.seq;
        c.lastMessage = m;
        // The server's rule (internal/channels/places.ts), so the chat is back in the list without asking:
        // a new message brings an archived chat back unless it is muted.
        if (c.archived && !isMuted(c, this.session.serverNow())) {
          c.archived = false;
          openUnarchived ||= this.open?.id === c.channelId;
        }
        // Unread even in the open chat: markRead, below, takes it away only when it tells the server (the reader is at the bottom).
        // The note of my own add or join by link is my join point, as the server counts it: what came
        // before it and it are not unread (its writer moves my join point to it).
        const myJoin = (m.note?.kind === ChannelNoteKind.MEMBERS_ADDED && m.note.userIds.includes(this.me)) || (mine && m.note?.kind === ChannelNoteKind.JOINED_BY_INVITE);
        if (mine || myJoin) {
          c.readSeq = m.seq;
          c.unreadCount = 0n;
        } else if (m.seq > c.readSeq) {
          c.unreadCount += 1n;
        }
      }
    }
    if (open?.loaded) {
      const here = messages.filter((m) => m.channelId === open.id);
      if (here.length > 0) this.mergeMessages(open, here);
    } else if (open) {
      open.early.push(...entries.filter((m) => m.channelId === open.id));
    }
    // After the messages: a change always comes after the message it changes.
    if (changes.length > 0) this.applyChanges(changes);
    this.renderTyping();
    if (openUnarchived) this.renderHeader();
    for (const id of unknown) void this.describe(id);
    // A note may name members this client has not met yet: its line is shown again once their names are in.
    const notesHere = open?.loaded && messages.some((m) => isNote(m) && m.channelId === open.id);
    void this.ensureUsers(senders).then(() => {
      this.renderSidebar();
      if (notesHere && this.open === open) this.rerenderMessages();
    });
    this.renderSidebar();
    this.markRead();
  }

  /**
   * Edits, deletes and reactions, in inbox order: applied to the open chat's
   * messages and (not reactions, which the list does not show) to the chat
   * list's last message. A change to a message not loaded needs nothing:
   * history shows messages as they now are.
   */
  private applyChanges(changes: Message[]): void {
    const open = this.open?.loaded ? this.open : undefined;
    let openChanged = false;
    for (const ch of changes) {
      if (ch.senderUserId === this.me && ch.senderDeviceId === this.auth.deviceId && this.changes.delete(ch.clientMsgId)) {
        openChanged ||= open?.id === ch.channelId;
      }
      const c = this.channels.get(key(ch.channelId));
      // A message I cleared is nowhere here: nothing to apply the change to.
      if (c && ch.targetSeq <= c.clearedThroughSeq) continue;
      if (this.outdateChanges(ch)) openChanged ||= open?.id === ch.channelId;
      if (!ch.reaction && c?.lastMessage && c.lastMessage.seq === ch.targetSeq) c.lastMessage = applyChange(c.lastMessage, ch);
      const qk = quoteKey(ch.channelId, ch.targetSeq);
      const quoted = this.quotes.get(qk);
      if (quoted) {
        this.quotes.set(qk, applyChange(quoted, ch));
        openChanged ||= open?.id === ch.channelId;
      }
      this.quoteLoads.get(qk)?.push(ch);
      if (open?.id === ch.channelId) {
        for (const meanwhile of open.paging) meanwhile.push(ch);
        const i = open.messages.findIndex((m) => m.seq === ch.targetSeq);
        if (i >= 0) {
          open.messages[i] = applyChange(open.messages[i]!, ch);
          openChanged = true;
        }
      }
      const e = this.editing;
      if (ch.deleted && e && e.channelId === ch.channelId && e.seq === ch.targetSeq) {
        this.endEdit();
        this.toast("The message you were editing was deleted.");
      }
      // The server would refuse the reply; better to say so before it is written.
      if (ch.deleted && this.replies.get(key(ch.channelId))?.seq === ch.targetSeq) {
        this.endReply(ch.channelId);
        if (this.open?.id === ch.channelId) this.toast("The message you were replying to was deleted.");
      }
      // A deleted message has no actions, so nothing to react with either.
      if (ch.deleted && this.reacting?.channelId === ch.channelId && this.reacting.seq === ch.targetSeq) this.reacting = undefined;
    }
    if (openChanged) this.rerenderMessages();
    this.renderReplyBar();
  }

  /**
   * Forgets my awaited changes that `entry` (a change) leaves with no chance
   * to apply; says whether there were any. Their message shows as it is.
   */
  private outdateChanges(entry: Message): boolean {
    let any = false;
    for (const p of this.changes.values()) {
      if (p.channelId !== entry.channelId) continue;
      const bar = outdatedBelow(entry, p.seq, p.kind, this.me);
      if (bar > p.bar) p.bar = bar;
      if (!isOutdated(p.bar, p.ackedId)) continue;
      this.changes.delete(p.clientMsgId);
      any = true;
    }
    return any;
  }

  private onSent(clientMsgId: string, messageId: bigint): void {
    const change = this.changes.get(clientMsgId);
    if (change) {
      change.ackedId = messageId;
      // A newer change of the same kind came back before this ack: this one will not.
      if (isOutdated(change.bar, messageId)) this.changes.delete(clientMsgId);
      // Otherwise still shown as changed until its entry arrives, so the bubble does not flicker back.
      else change.state = "sent";
      if (this.open?.id === change.channelId) this.rerenderMessages();
      return;
    }
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = "sent";
    if (this.open?.id === p.channelId) this.renderMessages();
  }

  private onFailed(clientMsgId: string, error: string): void {
    const change = this.changes.get(clientMsgId);
    if (change) {
      this.changes.delete(clientMsgId);
      const what = { edit: "Could not edit the message", delete: "Could not delete the message", reaction: "Could not react to the message" }[change.kind];
      this.toast(`${what}: ${error}`);
      if (this.open?.id === change.channelId) this.rerenderMessages();
      // What was typed for the edit is not lost with it: it goes back to the edit box.
      if (change.kind === "edit") {
        this.heldEdits.set(key(change.channelId), { seq: change.seq, text: change.text });
        this.resumeHeldEdit();
      }
      return;
    }
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = "failed";
    p.error = error;
    if (this.open?.id === p.channelId) this.renderMessages();
  }

  /**
   * A send the server kept refusing as unavailable. A message shows as not
   * sent, its text kept, with Retry and Discard; the session keeps it and
   * sends it again by itself after the next reconnect. An edit, delete or
   * reaction is given up, as when refused for good: shown saved for long
   * after, it would look done.
   */
  private onStalled(clientMsgId: string, error: string): void {
    if (this.changes.has(clientMsgId)) this.session.discard(clientMsgId);
    this.onFailed(clientMsgId, error);
  }

  private onTyping(channelId: bigint, userId: bigint): void {
    if (userId === this.me) return;
    const k = key(channelId);
    const m = this.typing.get(k) ?? new Map<string, number>();
    m.set(key(userId), performance.now() + TYPING_SHOW_MS);
    this.typing.set(k, m);
    void this.ensureUsers([userId]).then(() => this.renderTyping());
    this.renderRowOf(k);
  }

  private expireTyping(): void {
    const now = performance.now();
    const changed: string[] = [];
    for (const [k, m] of this.typing) {
      for (const [u, until] of m) {
        if (until >= now) continue;
        m.delete(u);
        if (changed.at(-1) !== k) changed.push(k);
      }
      if (m.size === 0) this.typing.delete(k);
    }
    if (changed.length > 0) {
      this.renderTyping();
      for (const k of changed) this.renderRowOf(k);
    }
  }

  private onReceipt(channelId: bigint, userId: bigint, seq: bigint): void {
    const c = this.channels.get(key(channelId));
    if (userId === this.me) {
      // Read on another of my devices.
      if (c && seq > c.readSeq) {
        c.readSeq = seq;
        const done = doneThrough(c);
        c.unreadCount = c.lastSeq > done ? c.lastSeq - done : 0n;
        this.renderSidebar();
      }
      return;
    }
    if (this.open?.id === channelId && seq > (this.open.readBy.get(key(userId)) ?? 0n)) {
      this.open.readBy.set(key(userId), seq);
      this.renderMessages();
    }
  }

  private onConnection(state: ConnectionState, detail?: string): void {
    const el = this.ui.connection;
    el.dataset.state = state;
    el.dataset.sessions = String(this.session?.sessions ?? 0);
    el.textContent = state === "open" ? "Online" : state === "connecting" ? "Connecting…" : "Offline";
    el.title = detail ?? "";
    // Sends wait in the outbox while the socket is down. One shown not sent that the outbox kept (onStalled) goes again on a new socket.
    let changed = false;
    for (const p of [...this.pending.values(), ...this.changes.values()]) {
      const again = p.state === "queued" || (p.state === "failed" && this.session?.has(p.clientMsgId));
      const next = state === "open" ? (again ? "sending" : p.state) : p.state === "sending" ? "queued" : p.state;
      if (next === p.state) continue;
      p.state = next;
      if (next === "sending" && "error" in p) p.error = undefined;
      changed = true;
    }
    if (changed) this.renderMessages();
    // Who is online is not known while the socket is down, and is read again once it is back.
    this.renderHeader();
    this.renderSidebar();
    if (state === "open") {
      // A new connection has a frame rate of its own: what was held back goes with what was never told.
      for (const [k, w] of this.readWindows) {
        clearTimeout(w.timer);
        const untold = this.untoldReads.get(k);
        if (w.seq !== undefined && (untold === undefined || w.seq > untold)) this.untoldReads.set(k, w.seq);
      }
      this.readWindows.clear();
      for (const [k, seq] of [...this.untoldReads]) this.tellRead(BigInt(k), seq);
      for (const k of [...this.untoldUnmarks]) void this.tellUnmark(BigInt(k));
    }
  }

  // ---------------------------------------------------------------- actions

  private openFromHash(): void {
    const invite = /^#\/join\/(.+)$/.exec(location.hash);
    if (invite) return this.showInvite(invite[1]!);
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

  /**
   * An invite link opened (#/join/<code>): where it leads, and a join only
   * when asked. A link opened signed out keeps its hash through the sign-in
   * screen, so it lands here after logging in or signing up.
   */
  private showInvite(code: string): void {
    if (this.joining?.code === code) return;
    this.joining?.close();
    this.closeChat();
    const hash = location.hash;
    const dialog = openJoinDialog({
      describe: () => this.api.channels.describeInvite({ code }),
      join: async (target) => this.go(target.member ? target.channelId : await this.joinByInvite(code)),
      closed: () => {
        if (this.joining === dialog) this.joining = undefined;
        // Dismissed: the link is done with. Joined: the hash is the chat's already.
        if (location.hash === hash && !this.destroyed) location.hash = "";
      },
    });
    this.joining = Object.assign(dialog, { code });
  }

  private async joinByInvite(code: string): Promise<bigint> {
    const c = (await this.api.channels.joinByInvite({ code })).channel!;
    this.upsertChannel(c);
    this.renderSidebar();
    return c.channelId;
  }

  /** The open group's invite link, for its owner and admins. */
  private showInviteLink(): void {
    const c = this.open && this.channels.get(key(this.open.id));
    if (!c || !manages(c)) return;
    const channelId = c.channelId;
    this.keepDialog(openInviteDialog(this.channelName(c), {
      link: async (reset) => inviteUrl((await this.api.channels.getInviteLink({ channelId, reset })).code),
      revoke: async () => {
        await this.api.channels.revokeInviteLink({ channelId });
      },
    }));
  }

  /** The open group's members: every member sees who is in it; its owner and admins change that. */
  private showMembers(): void {
    const c = this.open && this.channels.get(key(this.open.id));
    if (c?.kind !== ChannelKind.GROUP) return;
    const channelId = c.channelId;
    this.keepDialog(openMembersDialog(this.channelName(c), {
      members: async () => {
        const { members } = await this.api.channels.listMembers({ channelId });
        await this.ensureUsers(members.map((m) => m.userId));
        // One whose name could not be read (gone meanwhile) is left out rather than shown nameless.
        return members.flatMap((m) => {
          const user = this.users.get(key(m.userId));
          return user ? [{ user, role: m.role, me: m.userId === this.me }] : [];
        });
      },
      myRole: () => this.channels.get(key(channelId))?.myRole ?? MemberRole.MEMBER,
      search: (q) => this.searchUsers(q),
      // The chat's new member count and notes come as channel events, as for anyone's change.
      add: async (user) => {
        await this.api.channels.addMembers({ channelId, userIds: [user.userId] });
      },
      remove: async (user) => {
        await this.api.channels.removeMember({ channelId, userId: user.userId });
      },
      setAdmin: async (user, admin) => {
        await this.api.channels.setMemberRole({ channelId, userId: user.userId, role: admin ? MemberRole.ADMIN : MemberRole.MEMBER });
      },
      rename: async (title) => (await this.api.channels.updateGroup({ channelId, title })).channel?.title ?? title,
    }));
  }

  /** `opening`: a chat not in the list yet is being asked for, and the pane says so meanwhile. */
  private closeChat(opening = false): void {
    this.flushReads();
    this.holdEdit();
    this.endEdit();
    this.reacting = undefined;
    this.open = undefined;
    this.ui.layout.dataset.view = opening ? "chat" : "list";
    this.ui.chat.hidden = true;
    replaceChildren(this.ui.empty, emptyContent(opening));
    this.ui.empty.hidden = false;
    this.renderSidebar();
  }

  private async openChannel(channelId: bigint): Promise<void> {
    let c = this.channels.get(key(channelId));
    if (!c) {
      // The chat open until now goes at once: left on screen while it is asked for, what was typed
      // meanwhile, meant for the one opening, went to it (its draft, or sent with Enter).
      this.closeChat(true);
      c = await this.describe(channelId);
      // Another chat, or the list, was opened while it was asked for: that one stays.
      if (this.destroyed || location.hash !== `#/c/${channelId}`) return;
    }
    if (!c) {
      this.toast("That chat does not exist or you are not in it.");
      location.hash = "";
      return;
    }
    this.flushReads();
    const open: OpenChat = { id: channelId, messages: [], hasOlder: true, loadingOlder: false, loaded: false, loading: false, failed: false, early: [], paging: new Set(), members: [], membersAsked: 0, readBy: new Map() };
    void this.unmark(channelId);
    // While this.open is still the chat left, so its draft is kept.
    this.holdEdit();
    this.endEdit();
    this.reacting = undefined;
    this.open = open;
    this.clearFind();
    this.ui.layout.dataset.view = "chat";
    this.ui.empty.hidden = true;
    this.ui.chat.hidden = false;
    this.ui.input.value = this.drafts.get(key(channelId)) ?? "";
    // Read again as they now are: changes may have been missed while offline.
    for (const k of this.quotes.keys()) if (k.startsWith(`${channelId}:`)) this.quotes.delete(k);
    this.renderReplyBar();
    this.autosize();
    this.renderCounter();
    this.renderSidebar();
    this.renderHeader();
    this.renderMessages();
    this.renderTyping();
    this.ui.input.focus();

    // A 1:1 chat's members too: their read positions say what the peer has seen before any receipt arrives live.
    const direct = c.kind !== ChannelKind.GROUP;
    const presence = direct ? this.fetchPresence([c.peerUserId]) : Promise.resolve();
    const members = this.loadMembers(open, direct);
    await this.loadFirstPage(open);
    await Promise.all([members.catch(() => undefined), presence.catch(() => undefined)]);
  }

  /**
   * The open chat's members and their read positions: when it opens, and
   * in a group again when someone joins or leaves ("Seen by" and "N online"
   * count the members). An answer asked before a later one is not kept.
   */
  private async loadMembers(open: OpenChat, direct: boolean): Promise<void> {
    const turn = ++open.membersAsked;
    const r = await this.api.channels.listMembers({ channelId: open.id });
    if (turn < open.membersAsked) return;
    // A group's "Seen by" counts and names its members: they must be known before the
    // read positions render it, or the messages, loaded first, show none until the next render.
    if (!direct) {
      open.members = r.members.map((m) => m.userId);
      await this.ensureUsers(open.members);
    }
    this.mergeReadPositions(open, r.members);
    if (direct) return;
    await this.fetchPresence(open.members);
    if (this.open === open) {
      this.renderHeader();
      this.rerenderMessages();
    }
  }

  /** The open chat's newest page, with what came live after it was read. */
  private async loadFirstPage(open: OpenChat): Promise<void> {
    if (open.loaded || open.loading) return;
    open.loading = true;
    open.failed = false;
    this.renderOlder();
    try {
      const res = await this.api.messages.listMessages({ channelId: open.id, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: PAGE });
      if (this.open !== open) return;
      await this.ensureUsers(res.messages.flatMap(peopleIn));
      open.loaded = true;
      open.hasOlder = res.hasMore;
      const early = open.early;
      open.early = [];
      this.mergeMessages(open, [...res.messages, ...early], "bottom");
      this.applyLateChanges(open, early.filter(isChange));
      this.resumeHeldEdit();
    } catch (err) {
      if (this.notInIt(open, err)) return;
      open.failed = true;
      if (this.open === open) this.toast(describeError(err));
    } finally {
      open.loading = false;
      if (this.open === open) this.renderOlder();
    }
  }

  private async loadOlder(): Promise<void> {
    const open = this.open;
    if (!open || !open.loaded || !open.hasOlder || open.loadingOlder) return;
    open.loadingOlder = true;
    this.renderOlder();
    const page = this.pageOnItsWay(open);
    try {
      const oldest = open.messages[0]?.seq ?? 0n;
      if (oldest === (this.channels.get(key(open.id))?.clearedThroughSeq ?? 0n) + 1n) {
        open.hasOlder = false;
        return;
      }
      const res = await this.api.messages.listMessages({ channelId: open.id, anchorSeq: oldest, direction: PageDirection.BACKWARD, limit: PAGE });
      if (this.open !== open) return;
      await this.ensureUsers(res.messages.flatMap(peopleIn));
      // The oldest went meanwhile (the window trimmed, or the chat read again): the page would leave a gap. Paging back asks again.
      if ((open.messages[0]?.seq ?? 0n) !== oldest) return;
      open.hasOlder = res.hasMore;
      this.mergeMessages(open, res.messages, "keep");
      page.merged();
    } catch (err) {
      this.toast(describeError(err));
    } finally {
      page.done();
      open.loadingOlder = false;
      if (this.open === open) this.renderOlder();
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
    if (changed && this.open === open) this.rerenderMessages();
  }

  /** Adds messages to the open chat in seq order, each once, and keeps the scroll where the reader expects it. */
  private mergeMessages(open: OpenChat, incoming: Message[], scroll: "auto" | "bottom" | "keep" = "auto"): void {
    const bySeq = new Map(open.messages.map((m) => [key(m.seq), m]));
    const cleared = this.channels.get(key(open.id))?.clearedThroughSeq ?? 0n;
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
      if (m.senderUserId === this.me) {
        // Sent here, the writer wants to see it; sent from my phone, a reader reading back stays where they are.
        if (m.senderDeviceId === this.auth.deviceId) mineAdded = true;
        this.pending.delete(m.clientMsgId);
      }
    }
    if (!added && open.loaded && scroll !== "bottom") return;
    open.messages = [...bySeq.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    const sc = this.ui.scroller;
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    const stick = scroll === "bottom" || (scroll === "auto" && (this.nearBottom() || mineAdded));
    if (stick) this.trimWindow(open);
    this.renderMessages();
    if (stick) sc.scrollTop = sc.scrollHeight;
    else sc.scrollTop = sc.scrollHeight - fromBottom;
    this.markRead();
    // A short first page may not fill the screen: fetch more until it does.
    if (open.hasOlder && sc.scrollHeight <= sc.clientHeight) void this.loadOlder();
  }

  /** At the bottom the reader does not see the oldest messages: past WINDOW they go, and paging back reads them again. */
  private trimWindow(open: OpenChat): void {
    if (open.messages.length <= WINDOW) return;
    open.messages = open.messages.slice(-WINDOW);
    open.hasOlder = true;
  }

  private sendFromComposer(): void {
    const open = this.open;
    const text = this.ui.input.value;
    if (!open || !text.trim()) return;
    if (codePoints(text) > this.maxTextCodePoints) {
      this.toast(`A message can have at most ${this.maxTextCodePoints.toLocaleString()} characters.`);
      return;
    }
    if (this.editing) return this.saveEdit(text);
    const clientMsgId = newClientMsgId();
    const replyToSeq = this.replies.get(key(open.id))?.seq ?? 0n;
    this.pending.set(clientMsgId, {
      clientMsgId,
      channelId: open.id,
      text,
      state: this.session.state === "open" ? "sending" : "queued",
      // Shown as the time it was sent: by the server's clock, as the messages around it are.
      at: this.session.serverNow(),
      replyToSeq,
    });
    this.session.send(open.id, text, clientMsgId, replyToSeq !== 0n ? { replyToSeq } : {});
    this.replies.delete(key(open.id));
    this.renderReplyBar();
    this.ui.input.value = "";
    this.drafts.delete(key(open.id));
    this.autosize();
    this.renderCounter();
    this.renderMessages();
    this.ui.scroller.scrollTop = this.ui.scroller.scrollHeight;
    this.resumeHeldEdit();
  }

  /** The edit under way in the open chat, changed, is kept for when the chat is opened again, as a draft is. */
  private holdEdit(): void {
    const e = this.editing;
    const text = this.ui.input.value;
    if (e && this.open?.id === e.channelId && text.trim() && text !== e.original) this.heldEdits.set(key(e.channelId), { seq: e.seq, text });
  }

  /** Back in the edit box, the open chat's edit not saved, if its message is shown, and no edit or reply is under way. */
  private resumeHeldEdit(): void {
    const open = this.open;
    // An edit takes the place of a reply being written, which would be lost: the held edit waits for it to be sent.
    const held = open?.loaded && !this.editing && !this.replies.has(key(open.id)) ? this.heldEdits.get(key(open.id)) : undefined;
    if (!open || !held) return;
    const m = this.shownMessages(open).messages.find((x) => x.seq === held.seq);
    if (!m) return;
    this.heldEdits.delete(key(open.id));
    this.startEdit(m, held.text);
  }

  /** Puts one of my messages in the composer to edit (with `text`, an edit typed before); the draft there comes back when the edit ends. */
  private startEdit(m: Message, text = m.text): void {
    const open = this.open;
    if (!open || m.senderUserId !== this.me || m.deleted || isNote(m)) return;
    this.endReply(open.id);
    const draft = this.editing ? this.editing.draft : this.ui.input.value;
    this.editing = { channelId: open.id, seq: m.seq, original: m.text, draft };
    const ui = this.ui;
    replaceChildren(ui.editPreview, preview(m.text));
    ui.editBar.hidden = false;
    ui.send.textContent = "Save";
    ui.send.setAttribute("aria-label", "Save the edit");
    ui.input.value = text;
    this.autosize();
    this.renderCounter();
    this.rerenderMessages();
    ui.input.focus();
    ui.input.setSelectionRange(ui.input.value.length, ui.input.value.length);
  }

  private endEdit(): void {
    const e = this.editing;
    if (!e) return;
    this.editing = undefined;
    const ui = this.ui;
    ui.editBar.hidden = true;
    ui.send.textContent = "Send";
    ui.send.setAttribute("aria-label", "Send");
    if (this.open?.id === e.channelId) {
      ui.input.value = e.draft;
      this.autosize();
      this.renderCounter();
      this.rerenderMessages();
    } else {
      this.drafts.set(key(e.channelId), e.draft);
    }
  }

  /** The composer's next message will answer `m`; an edit in progress ends (its draft comes back to be the reply). */
  private startReply(m: Message): void {
    const open = this.open;
    if (!open || m.deleted || isNote(m) || m.channelId !== open.id) return;
    this.endEdit();
    this.replies.set(key(open.id), m);
    this.renderReplyBar();
    this.rerenderMessages();
    this.ui.input.focus();
  }

  private endReply(channelId: bigint): void {
    if (!this.replies.delete(key(channelId))) return;
    if (this.open?.id !== channelId) return;
    this.renderReplyBar();
    this.rerenderMessages();
  }

  private saveEdit(text: string): void {
    const e = this.editing!;
    this.endEdit();
    if (text !== e.original) this.change(e.channelId, e.seq, text, "edit");
    this.resumeHeldEdit();
  }

  private confirmDelete(m: Message): void {
    const open = this.open;
    if (!open || m.deleted || isNote(m)) return;
    const whose = m.senderUserId === this.me ? "this message" : `${isolate(this.name(m.senderUserId))}’s message`;
    if (!window.confirm(`Delete ${whose} for everyone? This cannot be undone.`)) return;
    const e = this.editing;
    if (e && e.channelId === open.id && e.seq === m.seq) this.endEdit();
    this.change(open.id, m.seq, "", "delete");
  }

  /** Opens the reaction palette of one of the open chat's messages, or closes it when it is open already. */
  private openReactions(seq: bigint): void {
    const open = this.open;
    if (!open) return;
    const same = this.reacting?.channelId === open.id && this.reacting.seq === seq;
    this.reacting = same ? undefined : { channelId: open.id, seq };
    this.rerenderMessages();
    // The button that opened it was rendered anew: keyboard users go on from the first emoji.
    if (!same) this.ui.messages.querySelector<HTMLElement>(".reaction-palette button")?.focus({ preventScroll: true });
  }

  private closeReactions(): void {
    if (!this.reacting) return;
    this.reacting = undefined;
    this.rerenderMessages();
  }

  /**
   * Reacts to `m` (as shown, my unconfirmed reactions included) with `emoji`,
   * replacing my earlier reaction, or takes mine back when it is that emoji
   * already: one reaction per person per message.
   */
  private react(m: Message, emoji: string): void {
    const open = this.open;
    this.reacting = undefined;
    if (!open || m.deleted || isNote(m) || m.channelId !== open.id) return this.rerenderMessages();
    this.change(open.id, m.seq, myReaction(m, this.me) === emoji ? "" : emoji, "reaction");
  }

  /**
   * Sends an edit (text), a delete of, or my reaction (emoji, or "" to take
   * it back) to a message; it shows at once and waits in the outbox like a
   * send, under a client_msg_id of its own.
   */
  private change(channelId: bigint, seq: bigint, text: string, kind: ChangeKind): void {
    const clientMsgId = newClientMsgId();
    const state = this.session.state === "open" ? "sending" : "queued";
    // An edit shows when it was made by the server's clock, as the server's copy will.
    this.changes.set(clientMsgId, { clientMsgId, channelId, seq, text, kind, state, at: this.session.serverNow(), bar: 0n });
    const target = kind === "delete" ? { deleteSeq: seq } : kind === "reaction" ? { reactSeq: seq } : { editSeq: seq };
    this.session.send(channelId, text, clientMsgId, target);
    if (this.open?.id === channelId) this.rerenderMessages();
  }

  private retry(clientMsgId: string): void {
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = this.session.state === "open" ? "sending" : "queued";
    p.error = undefined;
    this.session.send(p.channelId, p.text, clientMsgId, p.replyToSeq !== 0n ? { replyToSeq: p.replyToSeq } : {});
    this.renderMessages();
  }

  private discard(clientMsgId: string): void {
    this.pending.delete(clientMsgId);
    this.session.discard(clientMsgId);
    this.renderMessages();
  }

  /**
   * Marks the open chat read up to the newest message it shows, the reader
   * being at its bottom: nothing before its first page is shown, and never
   * what only the chat list knows of (a listing, or a message, ahead of the
   * page on its way).
   */
  private markRead(): void {
    const open = this.open;
    if (!open?.loaded || !this.isVisible() || !this.nearBottom()) return;
    const c = this.channels.get(key(open.id));
    const shown = open.messages.at(-1)?.seq ?? 0n;
    // A clear tells the others nothing: no receipt for the messages it took away unread either.
    if (!c || shown <= doneThrough(c)) return;
    c.readSeq = shown;
    c.unreadCount = c.lastSeq > shown ? c.lastSeq - shown : 0n;
    this.tellRead(open.id, shown);
    this.renderSidebar();
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
  private flushReads(): void {
    for (const [k, w] of [...this.readWindows]) if (w.seq !== undefined) this.endReadWindow(k);
  }

  /** On the socket, else with MarkRead, else on the next connection. */
  private sendRead(channelId: bigint, seq: bigint): void {
    const k = key(channelId);
    if (this.session.read(channelId, seq)) {
      this.untoldReads.delete(k);
      return;
    }
    this.markReadByCall(channelId, seq);
  }

  /** With MarkRead; until it answers, and if it fails, the read is owed to the next connection. */
  private markReadByCall(channelId: bigint, seq: bigint): void {
    const k = key(channelId);
    this.untoldReads.set(k, seq);
    void this.api.messages.markRead({ channelId, seq }).then(
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
  private onReadRefused(channelId: bigint, seq: bigint, code: ErrorCode): void {
    if (code === ErrorCode.NOT_A_MEMBER) return;
    const untold = this.untoldReads.get(key(channelId));
    if (untold === undefined || seq > untold) this.markReadByCall(channelId, seq);
  }

  private onSearchInput(): void {
    clearTimeout(this.searchTimer);
    const q = this.ui.search.value.trim();
    if (!q) return this.renderSidebar();
    this.searchTimer = window.setTimeout(() => void this.search(q), 200);
  }

  private async searchUsers(query: string): Promise<User[]> {
    const res = await this.api.users.searchUsers({ query: query.replace(/^@/, ""), limit: 20 });
    for (const u of res.users) this.users.set(key(u.userId), u);
    return res.users.filter((u) => u.userId !== this.me);
  }

  /** A search for my own username finds no one (I am left out of the results), though someone does go by it. */
  private isMyUsername(q: string): boolean {
    return q.replace(/^@/, "").toLowerCase() === (this.auth.current?.username ?? "").toLowerCase();
  }

  private async search(q: string): Promise<void> {
    const mine = ++this.searchSeq;
    try {
      const users = await this.searchUsers(q);
      if (mine !== this.searchSeq || this.ui.search.value.trim() !== q) return;
      replaceChildren(
        this.ui.sidebarBody,
        h("div", { class: "section-title" }, "People"),
        users.length === 0
          ? sidebarNote(this.isMyUsername(q) ? "That is you. Find others by their username." : `No one goes by “${q}”.`, "search-empty")
          : h("ul", { class: "list", "data-testid": "search-results" }, users.map((u) => userItem(u, (x) => void this.startDirect(x)))),
      );
    } catch (err) {
      if (mine === this.searchSeq) replaceChildren(this.ui.sidebarBody, sidebarNote(describeError(err)));
    }
  }

  private async startDirect(user: User): Promise<void> {
    // The chat open until now goes at once: left on screen while OpenDirect is on its way, what was typed
    // meanwhile, meant for the person just picked, went to it (its draft, or sent with Enter).
    if (this.open && this.channels.get(key(this.open.id))?.peerUserId !== user.userId) {
      this.closeChat();
      location.hash = "";
    }
    try {
      const c = (await this.api.channels.openDirect({ userId: user.userId })).channel!;
      this.users.set(key(user.userId), user);
      // OpenDirect answers a chat opened again with my own settings of it (mute, pin, archive).
      this.upsertChannel(c);
      this.ui.search.value = "";
      this.renderSidebar();
      this.go(c.channelId);
    } catch (err) {
      this.toast(describeError(err));
    }
  }

  private newGroup(): void {
    this.keepDialog(openGroupDialog({
      search: (q) => this.searchUsers(q),
      isMe: (q) => this.isMyUsername(q),
      create: async (title, members) => {
        try {
          const c = (await this.api.channels.createGroup({ title, memberUserIds: members.map((m) => m.userId) })).channel!;
          this.upsertChannel(c);
          this.renderSidebar();
          this.go(c.channelId);
        } catch (err) {
          throw new Error(describeError(err));
        }
      },
    }));
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

  private name(userId: bigint): string {
    if (userId === this.me) return "You";
    const u = this.users.get(key(userId));
    if (u?.deleted) return "Deleted account";
    return u ? u.displayName || u.username : "…";
  }

  private noteText(m: Message & { note: ChannelNote }): string {
    // Each name and a new title isolated in the sentence (as a string: the chat list shows it too, cut to a line).
    const note = m.note.title ? { ...m.note, title: isolateIfBidi(m.note.title) } : m.note;
    return noteSentence(note, isolateIfBidi(this.name(m.senderUserId)), (id) => isolateIfBidi(this.name(id)), this.me);
  }

  private channelName(c: Channel): string {
    if (c.kind === ChannelKind.GROUP) return c.title || "Group";
    return c.peerUserId === 0n ? "Direct chat" : this.name(c.peerUserId);
  }

  private renderMe(name: string, username: string): void {
    replaceChildren(this.ui.meName, name);
    replaceChildren(this.ui.meHandle, `@${username}`);
    const pic = avatar(name, this.me.toString());
    this.ui.meAvatar.replaceWith(pic);
    this.ui.meAvatar = pic;
  }

  /** The bell: its state, what a click does, and the reason when it failed. */
  private renderPush(state: PushState, problem?: string): void {
    const bell = this.ui.push;
    bell.dataset.state = state;
    bell.textContent = state === "on" ? "🔔" : "🔕";
    bell.setAttribute("aria-pressed", String(state === "on"));
    const title = problem && state !== "off" ? (state === "error" ? `${problem} Click to try again.` : problem) : PUSH_TITLES[state];
    bell.title = title;
    bell.setAttribute("aria-label", title);
  }

  private renderSidebar(): void {
    // The open chat's unread count, which the button beside its messages says too.
    this.renderToBottom();
    if (this.destroyed || this.ui.search.value.trim()) return;
    const all = [...this.channels.values()];
    const listed = all.filter((c) => !c.archived);
    // Archived chats are put out of sight, muted ones quieted (their badge too): their unread does
    // not call for attention from another tab. A chat marked unread with nothing to count calls
    // for it as one message would.
    const now = this.session.serverNow();
    const total = listed.filter((c) => !isMuted(c, now)).reduce((n, c) => n + (Number(c.unreadCount) || (c.markedUnread ? 1 : 0)), 0);
    document.title = total > 0 ? `(${total}) Chat` : "Chat";
    if (!this.channelsLoaded) {
      replaceChildren(this.ui.sidebarBody, sidebarNote("Loading chats…"));
      return;
    }
    const archived = all.length - listed.length;
    if (this.showArchive) return this.renderArchive(all.filter((c) => c.archived));
    if (all.length === 0) {
      replaceChildren(this.ui.sidebarBody, sidebarNote("No chats yet. Find someone by username above, or start a group.", "no-chats"));
      return;
    }
    const list = this.listEl("channels");
    placeChildren(list, [...this.channelItems(listed), ...(archived > 0 ? [this.keptRow("archived-toggle", archivedItem(archived, () => this.switchSidebar(true)))] : [])]);
    placeChildren(this.ui.sidebarBody, [list]);
  }

  private renderArchive(archived: Channel[]): void {
    const list = this.listEl("archived-channels");
    placeChildren(list, [this.keptRow("archived-back", chatsItem(() => this.switchSidebar(false))), ...this.channelItems(archived)]);
    placeChildren(this.ui.sidebarBody, [list, ...(archived.length === 0 ? [sidebarNote("No archived chats.", "no-archived")] : [])]);
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
  private renderRowOf(k: string): void {
    const c = this.channels.get(k);
    if (!c || !this.rowEls.has(`c:${k}`)) return this.renderSidebar();
    this.keptChannelRow(c, this.session.serverNow());
  }

  private switchSidebar(archive: boolean): void {
    this.showArchive = archive;
    this.renderSidebar();
  }

  /** Rows in the server's order: pinned first, the most recently pinned first; then by latest activity. */
  private channelItems(list: Channel[]): HTMLElement[] {
    const now = this.session.serverNow();
    // Rows of chats gone from the page go from the kept ones.
    for (const id of this.rowEls.keys()) if (id.startsWith("c:") && !this.channels.has(id.slice(2))) this.rowEls.delete(id);
    return list
      .sort((a, b) => pinned(b) - pinned(a) || activity(b) - activity(a))
      .map((c) => this.keptChannelRow(c, now));
  }

  private keptChannelRow(c: Channel, now: number): HTMLElement {
    return this.keptRow(`c:${key(c.channelId)}`, channelItem(this.channelRow(c, now), (id) => this.go(id)));
  }

  private channelRow(c: Channel, now: number): ChannelRow {
    return {
      channel: c,
      now,
      name: this.channelName(c),
      presence: c.kind === ChannelKind.DIRECT ? this.presenceOf(c.peerUserId) : undefined,
      senderName: c.lastMessage ? this.name(c.lastMessage.senderUserId) : undefined,
      lastNote: c.lastMessage && isNote(c.lastMessage) ? this.noteText(c.lastMessage) : undefined,
      mine: c.lastMessage?.senderUserId === this.me,
      active: this.open?.id === c.channelId,
      typing: (this.typing.get(key(c.channelId))?.size ?? 0) > 0,
      muted: isMuted(c, now),
      pinned: c.pinnedAt !== undefined,
      markedUnread: c.markedUnread,
    };
  }

  private renderHeader(): void {
    const open = this.open;
    if (!open) return;
    const c = this.channels.get(key(open.id));
    if (!c) return;
    const name = this.channelName(c);
    replaceChildren(this.ui.chatTitle, bidi(name));
    const pic = avatar(name, c.kind === ChannelKind.DIRECT ? c.peerUserId.toString() : c.channelId.toString(), c.kind === ChannelKind.GROUP ? "group" : "");
    this.ui.chatAvatar.replaceWith(pic);
    this.ui.chatAvatar = pic;
    const status = this.ui.chatStatus;
    const muted = isMuted(c, this.session.serverNow());
    this.ui.mute.textContent = muted ? "Unmute" : "Mute";
    this.ui.mute.title = muted ? "Notifications of this chat are off" : "Turn off notifications of this chat";
    this.ui.mute.dataset.muted = String(muted);
    const isPinned = c.pinnedAt !== undefined;
    this.renderToggle(this.ui.pin, isPinned, isPinned ? ["Unpin", "Pinned at the top of your chats"] : ["Pin", "Keep this chat at the top of your chats"]);
    this.renderToggle(this.ui.archive, c.archived, c.archived ? ["Unarchive", "Archived: back in your chats with its next message, unless muted"] : ["Archive", "Move this chat out of your list until its next message"]);
    this.ui.invite.hidden = !manages(c);
    this.ui.members.hidden = c.kind !== ChannelKind.GROUP;
    this.ui.leave.hidden = c.kind !== ChannelKind.GROUP;
    const block = this.ui.block;
    block.hidden = c.kind !== ChannelKind.DIRECT || !this.blocked;
    if (c.kind === ChannelKind.DIRECT && this.blocked) {
      const isBlocked = this.blocked.has(key(c.peerUserId));
      block.textContent = isBlocked ? "Unblock" : "Block";
      block.dataset.blocked = String(isBlocked);
    }
    if (c.kind === ChannelKind.DIRECT) {
      const u = this.users.get(key(c.peerUserId));
      if (!this.connected()) {
        status.dataset.presence = "unknown";
        replaceChildren(status, u ? h("span", { class: "muted" }, `@${u.username}`) : null);
        return;
      }
      const p = this.presence.get(key(c.peerUserId));
      const online = p?.status === PresenceStatus.ONLINE;
      status.dataset.presence = online ? "online" : "offline";
      // How long ago by the server's clock, which says when they were last seen: this browser's may be minutes off.
      replaceChildren(status, h("span", { class: `dot ${online ? "on" : ""}` }), online ? "online" : lastSeen(tsMs(p?.lastSeenAt), this.session.serverNow()), u ? h("span", { class: "muted" }, ` · @${u.username}`) : null);
    } else {
      const online = open.members.filter((id) => id !== this.me && this.presenceOf(id)?.status === PresenceStatus.ONLINE).length;
      delete status.dataset.presence;
      replaceChildren(status, `${c.memberCount} member${c.memberCount === 1 ? "" : "s"}${online > 0 ? `, ${online} online` : ""}`);
      status.title = open.members.map((id) => isolate(this.name(id))).join(", ");
    }
  }

  private renderToggle(button: HTMLButtonElement, pressed: boolean, [label, title]: [string, string]): void {
    button.textContent = label;
    button.title = title;
    button.setAttribute("aria-pressed", String(pressed));
  }

  private renderOlder(): void {
    const open = this.open;
    const el = this.ui.older;
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
    if (this.isCleared(open.id)) return replaceChildren(el, h("span", { class: "muted", "data-testid": "history-start", "data-cleared": "true" }, "History cleared: what came before is gone for you alone."));
    replaceChildren(el, open.messages.length > 0 || this.pendingFor(open.id).length > 0 ? h("span", { class: "muted", "data-testid": "history-start" }, "This is the beginning of the chat.") : null);
  }

  private isCleared(channelId: bigint): boolean {
    return (this.channels.get(key(channelId))?.clearedThroughSeq ?? 0n) > 0n;
  }

  private pendingFor(channelId: bigint): Pending[] {
    return [...this.pending.values()].filter((p) => p.channelId === channelId);
  }

  /** The open chat's messages with my unconfirmed edits, deletes and reactions applied, and which of them are unconfirmed. */
  private shownMessages(open: OpenChat): { messages: Message[]; saving: Map<string, "queued" | "sending"> } {
    const saving = new Map<string, "queued" | "sending">();
    const mine = [...this.changes.values()].filter((p) => p.channelId === open.id);
    if (mine.length === 0) return { messages: open.messages, saving };
    const index = new Map(open.messages.map((m, i) => [key(m.seq), i]));
    const messages = [...open.messages];
    for (const p of mine) {
      const i = index.get(key(p.seq));
      if (i === undefined) continue;
      messages[i] = applyChange(messages[i]!, {
        text: p.text,
        deleted: p.kind === "delete",
        reaction: p.kind === "reaction",
        senderUserId: this.me,
        sentAt: timestampFromMs(p.at),
      });
      if (p.state !== "sent") saving.set(key(p.seq), p.state);
    }
    return { messages, saving };
  }

  /** Renders the messages again in place: the reader stays where they were, or at the bottom if there. */
  private rerenderMessages(): void {
    const sc = this.ui.scroller;
    const stick = this.nearBottom();
    const top = sc.scrollTop;
    this.renderMessages();
    sc.scrollTop = stick ? sc.scrollHeight : top;
  }

  /**
   * What the open chat shows of the others' reading: ✓✓ on my messages any
   * of them has seen, and in a group, under my newest message, who has.
   */
  private seen(open: OpenChat, messages: Message[], c: Channel | undefined): Pick<MessageListInput, "readByOthers" | "seenBy"> {
    const positions = seenPositions(open, this.me);
    const readByOthers = [...positions.values()].reduce((max, seq) => (seq > max ? seq : max), 0n);
    const newestMine = c?.kind === ChannelKind.GROUP ? lastWhere(messages, (m) => m.senderUserId === this.me && !isNote(m)) : undefined;
    if (!newestMine) return { readByOthers };
    const readers = [...positions].filter(([id, seq]) => seq >= newestMine.seq && open.members.some((m) => key(m) === id)).map(([id]) => BigInt(id));
    if (readers.length === 0) return { readByOthers };
    const everyone = open.members.length > 1 && readers.length >= open.members.length - 1;
    return { readByOthers, seenBy: { seq: newestMine.seq, names: readers.map((id) => this.name(id)), everyone } };
  }

  private renderMessages(): void {
    const open = this.open;
    if (!open) return;
    const c = this.channels.get(key(open.id));
    const { messages, saving } = this.shownMessages(open);
    const bySeq = new Map(messages.map((m) => [key(m.seq), m]));
    const items = messageList({
      now: this.session.serverNow(),
      messages,
      pending: this.pendingFor(open.id),
      me: this.me,
      group: c?.kind === ChannelKind.GROUP,
      moderator: manages(c),
      editing: this.editing?.channelId === open.id ? this.editing.seq : 0n,
      replying: this.replies.get(key(open.id))?.seq ?? 0n,
      flash: this.flash && this.flash.channelId === open.id && this.flash.until > Date.now() ? this.flash.seq : 0n,
      reacting: this.reacting?.channelId === open.id ? this.reacting.seq : 0n,
      saving,
      ...this.seen(open, messages, c),
      name: (id) => this.name(id),
      retry: (id) => this.retry(id),
      discard: (id) => this.discard(id),
      edit: (m) => this.startEdit(m),
      remove: (m) => this.confirmDelete(m),
      reply: (m) => this.startReply(m),
      openReactions: (seq) => this.openReactions(seq),
      react: (m, emoji) => this.react(m, emoji),
      quoted: (seq) => bySeq.get(key(seq)) ?? this.fetchedQuote(open.id, seq),
      jump: (seq) => void this.jumpTo(seq),
    }, this.keptMessages.of(open.id));
    if (open.loaded && items.length === 0 && !this.isCleared(open.id)) items.push(h("div", { class: "no-messages" }, "No messages yet. Say hello!"));
    // Moved, not made anew: an unchanged message keeps its node (a click pressed on it still lands, and the browser lays out only what changed).
    placeChildren(this.ui.messages, items);
    this.renderOlder();
    this.renderToBottom();
  }

  /** "Replying to …" above the composer, with the answered message as it now is. */
  private renderReplyBar(): void {
    const open = this.open;
    const started = open && this.replies.get(key(open.id));
    this.ui.replyBar.hidden = !started;
    if (!open || !started) return;
    const m = this.shownMessages(open).messages.find((x) => x.seq === started.seq) ?? this.quotes.get(quoteKey(open.id, started.seq)) ?? started;
    replaceChildren(this.ui.replyName, "Replying to ", m.senderUserId === this.me ? "yourself" : bidi(this.name(m.senderUserId)), ":");
    replaceChildren(this.ui.replyPreview, quoteExcerpt(m));
  }

  /** An answered message the open chat has not loaded, from history; undefined while it is being read, or if it cannot be. */
  private fetchedQuote(channelId: bigint, seq: bigint): Message | undefined {
    const k = quoteKey(channelId, seq);
    const have = this.quotes.get(k);
    if (have !== undefined) return have ?? undefined;
    if (!this.quoteLoads.has(k)) void this.loadQuote(channelId, seq);
    return undefined;
  }

  private async loadQuote(channelId: bigint, seq: bigint): Promise<void> {
    const k = quoteKey(channelId, seq);
    const meanwhile: Message[] = [];
    this.quoteLoads.set(k, meanwhile);
    let got: Message | null = null;
    try {
      // FORWARD pages start after the anchor: this reads exactly `seq`.
      const res = await this.api.messages.listMessages({ channelId, anchorSeq: seq - 1n, direction: PageDirection.FORWARD, limit: 1 });
      const m = res.messages[0];
      if (m && m.seq === seq) {
        await this.ensureUsers([m.senderUserId]);
        got = m;
      }
    } catch {
      // the placeholder stays until the chat is opened again
    } finally {
      this.quoteLoads.delete(k);
    }
    // A change that arrived while the page was read may or may not be in it.
    for (const ch of meanwhile) if (got) got = applyLate(got, ch);
    this.quotes.set(k, got);
    if (this.open?.id === channelId && !this.destroyed) {
      this.rerenderMessages();
      this.renderReplyBar();
    }
  }

  /** Scrolls to the message with this seq (a quote was clicked), reading older history up to it when that is not far. */
  private async jumpTo(seq: bigint): Promise<void> {
    const open = this.open;
    if (!open) return;
    const find = () => this.ui.messages.querySelector<HTMLElement>(`[data-testid=message][data-seq="${seq}"]`);
    let el = find();
    const oldest = open.messages[0]?.seq;
    if (!el && open.loaded && open.hasOlder && !open.loadingOlder && oldest !== undefined && oldest > seq) {
      if (oldest - seq > 200n) return this.toast("That message is far back in the chat: scroll up to load it.");
      open.loadingOlder = true;
      this.renderOlder();
      const page = this.pageOnItsWay(open);
      try {
        // A few more than needed, so the answered message is not the very first shown.
        const limit = Math.min(200, Number(oldest - seq) + 5);
        const res = await this.api.messages.listMessages({ channelId: open.id, anchorSeq: oldest, direction: PageDirection.BACKWARD, limit });
        if (this.open !== open) return;
        await this.ensureUsers(res.messages.flatMap(peopleIn));
        // As in loadOlder: merged after the oldest went, the page would leave a gap.
        if (open.messages[0]?.seq !== oldest) return;
        open.hasOlder = res.hasMore;
        this.mergeMessages(open, res.messages, "keep");
        page.merged();
      } catch (err) {
        return this.toast(describeError(err));
      } finally {
        page.done();
        open.loadingOlder = false;
        if (this.open === open) this.renderOlder();
      }
      el = find();
    }
    if (!el) return this.toast("That message is not available.");
    // Kept as state, not as a class on the element: a receipt or an ack renders the list anew meanwhile.
    this.flash = { channelId: open.id, seq, until: Date.now() + FLASH_MS };
    this.rerenderMessages();
    find()?.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  private renderTyping(): void {
    const open = this.open;
    const who = open ? [...(this.typing.get(key(open.id))?.keys() ?? [])].map((u) => this.name(BigInt(u))) : [];
    // Each name isolated: a U+202E in one reordered the rest of the line.
    const names = who.map((n, i) => (i === 0 ? [bidi(n)] : [i === who.length - 1 ? " and " : ", ", bidi(n)]));
    replaceChildren(this.ui.typing, ...(who.length === 0 ? [] : [...names, who.length === 1 ? " is typing…" : " are typing…"]));
  }

  private renderCounter(): void {
    const open = this.open;
    // The composer holds an edit, not the draft, while editing.
    if (open && !this.editing) this.drafts.set(key(open.id), this.ui.input.value);
    const n = codePoints(this.ui.input.value);
    const left = this.maxTextCodePoints - n;
    this.ui.counter.textContent = left < 1000 ? left.toLocaleString() : "";
    this.ui.counter.classList.toggle("over", left < 0);
    this.ui.send.disabled = !this.ui.input.value.trim() || left < 0;
  }

  private autosize(): void {
    const el = this.ui.input;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
  }

  private toast(text: string): void {
    const el = this.ui.toast;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(Number(el.dataset.timer));
    el.dataset.timer = String(window.setTimeout(() => (el.hidden = true), 5000));
  }

  /**
   * Scrolled up in the open chat, a new message below showed nowhere but in the chat list:
   * the button says how many are unread and takes the reader back down.
   */
  private renderToBottom(): void {
    const open = this.open;
    const button = this.ui.toBottom;
    button.hidden = !open?.loaded || this.nearBottom();
    if (button.hidden) return;
    const unread = this.channels.get(key(open!.id))?.unreadCount ?? 0;
    button.textContent = unread > 0 ? `↓ ${unread} new` : "↓";
    button.dataset.unread = String(unread);
  }

  private connected(): boolean {
    return this.ui.connection.dataset.state === "open";
  }

  /**
   * Someone's presence as this page may show it: none while its own socket is down, when the last
   * word it had may be long out of date ("online" for one gone meanwhile); it is read again on reconnecting.
   */
  private presenceOf(userId: bigint): Presence | undefined {
    return this.connected() ? this.presence.get(key(userId)) : undefined;
  }

  private nearBottom(): boolean {
    const sc = this.ui.scroller;
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }

  private isVisible(): boolean {
    return document.visibilityState === "visible";
  }
}

function lastWhere<T>(list: T[], pred: (x: T) => boolean): T | undefined {
  for (let i = list.length - 1; i >= 0; i--) if (pred(list[i]!)) return list[i];
  return undefined;
}

/** When the chat was pinned; 0 when it is not, which sorts it after the pinned ones. */
function pinned(c: Channel): number {
  return tsMs(c.pinnedAt) ?? 0;
}

/**
 * `c`, an answer about a chat, with what `prev` (another record of it) saw
 * later: a delivery after the answer was read, or a receipt of my reading.
 * Both only move forward.
 */
function keepNewer(c: Channel, prev: Channel, now: number): Channel {
  if (prev.lastSeq > c.lastSeq) {
    c.lastSeq = prev.lastSeq;
    c.lastMessage = prev.lastMessage;
    c.unreadCount = prev.unreadCount;
    // That later message brought the chat back from the archive unless muted (onMessages, the server's rule).
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
function hideCleared(c: Channel): void {
  if (c.lastMessage && c.lastMessage.seq <= c.clearedThroughSeq) c.lastMessage = undefined;
  const after = c.lastSeq > c.clearedThroughSeq ? c.lastSeq - c.clearedThroughSeq : 0n;
  if (c.unreadCount > after) c.unreadCount = after;
}

/**
 * How far each other member has seen the open chat: the furthest of their
 * read position and their own newest message, since whoever sends has read
 * up to there (as the server counts a read position). So has the maker of
 * a change its note tells, as their own unread count has it; not one who
 * joined by link, who never read what came before them.
 */
function seenPositions(open: OpenChat, me: bigint): Map<string, bigint> {
  const seen = new Map(open.readBy);
  for (const m of open.messages) {
    if (m.senderUserId === me || m.note?.kind === ChannelNoteKind.JOINED_BY_INVITE) continue;
    const k = key(m.senderUserId);
    if (m.seq > (seen.get(k) ?? 0n)) seen.set(k, m.seq);
  }
  return seen;
}

/** When the chat last had a message, even one I cleared (a clear keeps the chat's place), or else when it began. */
function activity(c: Channel): number {
  return Math.max(tsMs(c.lastMessage?.sentAt) ?? 0, tsMs(c.lastActivityAt) ?? 0) || (tsMs(c.createdAt) ?? 0);
}

function newClientMsgId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
