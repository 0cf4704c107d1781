import { ChannelKind, type Channel, type Message } from "../../../gen/es/chat/v1/types_pb.js";
import { h, placeChildren } from "../dom.js";
import { isNote } from "../notes.js";
import type { RealtimeSession } from "../session.js";
import { KeptMessages, messageList, type MessageListInput } from "../views/messages.js";
import type { Shell } from "../views/shell.js";
import { manages } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import type { Composer } from "./composer.js";
import type { History } from "./history.js";
import { key } from "./keys.js";
import type { MessageActions } from "./message-actions.js";
import { lastWhere, seenPositions, type OpenChat } from "./open-chat.js";
import type { Outbox } from "./outbox.js";
import type { Quotes } from "./quotes.js";
import type { Users } from "./users.js";

export interface MessagePaneHost {
  readonly ui: Shell;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  readonly outbox: Outbox;
  readonly composer: Composer;
  readonly actions: MessageActions;
  readonly history: History;
  readonly quotes: Quotes;
  open(): OpenChat | undefined;
}

/** The open chat's messages as drawn, and where the reader is in them. */
export class MessagePane {
  /** The open chat's message elements, kept between its redraws (`messageList`). */
  private readonly keptMessages = new KeptMessages();

  constructor(private readonly host: MessagePaneHost) {}

  render(): void {
    const { ui, users, composer, actions, outbox, history } = this.host;
    const open = this.host.open();
    if (!open) return;
    const c = this.host.chats.get(open.id);
    const { messages, saving } = outbox.shown(open);
    const bySeq = new Map(messages.map((m) => [key(m.seq), m]));
    const items = messageList({
      now: this.host.session.serverNow(),
      messages,
      pending: outbox.pendingFor(open.id),
      me: this.host.me,
      group: c?.kind === ChannelKind.GROUP,
      moderator: manages(c),
      editing: composer.editingSeq(open.id),
      replying: composer.replyingSeq(open.id),
      flash: history.flashSeq(open.id),
      reacting: actions.reactingSeq(open.id),
      saving,
      ...this.seen(open, messages, c),
      name: (id) => users.name(id),
      retry: (id) => outbox.retry(id),
      discard: (id) => outbox.discard(id),
      edit: (m) => composer.startEdit(m),
      remove: (m) => actions.confirmDelete(m),
      reply: (m) => composer.startReply(m),
      openReactions: (seq) => actions.openReactions(seq),
      react: (m, emoji) => actions.react(m, emoji),
      quoted: (seq) => bySeq.get(key(seq)) ?? this.host.quotes.fetched(open.id, seq),
      jump: (seq) => void history.jumpTo(seq),
    }, this.keptMessages.of(open.id));
    if (open.loaded && items.length === 0 && !this.host.chats.isCleared(open.id)) items.push(h("div", { class: "no-messages" }, "No messages yet. Say hello!"));
    // Moved, not made anew: an unchanged message keeps its node (a click pressed on it still lands, and the browser lays out only what changed).
    placeChildren(ui.messages, items);
    history.renderOlder();
    this.renderToBottom();
  }

  /** Renders the messages again in place: the reader stays where they were, or at the bottom if there. */
  rerender(): void {
    const sc = this.host.ui.scroller;
    const stick = this.nearBottom();
    const top = sc.scrollTop;
    this.render();
    sc.scrollTop = stick ? sc.scrollHeight : top;
  }

  /**
   * What the open chat shows of the others' reading: ✓✓ on my messages any
   * of them has seen, and in a group, under my newest message, who has.
   */
  private seen(open: OpenChat, messages: Message[], c: Channel | undefined): Pick<MessageListInput, "readByOthers" | "seenBy"> {
    const { me } = this.host;
    const positions = seenPositions(open, me);
    const readByOthers = [...positions.values()].reduce((max, seq) => (seq > max ? seq : max), 0n);
    const newestMine = c?.kind === ChannelKind.GROUP ? lastWhere(messages, (m) => m.senderUserId === me && !isNote(m)) : undefined;
    if (!newestMine) return { readByOthers };
    const readers = [...positions].filter(([id, seq]) => seq >= newestMine.seq && open.members.some((m) => key(m) === id)).map(([id]) => BigInt(id));
    if (readers.length === 0) return { readByOthers };
    const everyone = open.members.length > 1 && readers.length >= open.members.length - 1;
    return { readByOthers, seenBy: { seq: newestMine.seq, names: readers.map((id) => this.host.users.name(id)), everyone } };
  }

  /**
   * Scrolled up in the open chat, a new message below showed nowhere but in the chat list:
   * the button says how many are unread and takes the reader back down.
   */
  renderToBottom(): void {
    const open = this.host.open();
    const button = this.host.ui.toBottom;
    button.hidden = !open?.loaded || this.nearBottom();
    if (button.hidden) return;
    const unread = this.host.chats.get(open!.id)?.unreadCount ?? 0;
    button.textContent = unread > 0 ? `↓ ${unread} new` : "↓";
    button.dataset.unread = String(unread);
  }

  nearBottom(): boolean {
    const sc = this.host.ui.scroller;
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }
}
