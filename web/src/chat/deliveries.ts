import { ChannelNoteKind, type Message } from "../../../gen/es/chat/v1/types_pb.js";
import type { Auth } from "../auth.js";
import { applyChange, isChange } from "../changes.js";
import { isNote, peopleIn } from "../notes.js";
import type { RealtimeSession } from "../session.js";
import { isMuted } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import type { Composer } from "./composer.js";
import type { History } from "./history.js";
import type { MessageActions } from "./message-actions.js";
import type { OpenChat } from "./open-chat.js";
import type { Outbox } from "./outbox.js";
import type { Quotes } from "./quotes.js";
import type { Typing } from "./typing.js";
import type { Users } from "./users.js";

export interface DeliveriesHost {
  readonly auth: Auth;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  readonly outbox: Outbox;
  readonly typing: Typing;
  readonly history: History;
  readonly quotes: Quotes;
  readonly composer: Composer;
  readonly actions: MessageActions;
  open(): OpenChat | undefined;
  renderHeader(): void;
  renderSidebar(): void;
  rerenderMessages(): void;
  markRead(): void;
}

/**
 * What the inbox delivers live: new messages, into the chat list and the
 * open chat; and changes (edits, deletes, reactions), into everything here
 * that shows the message they change.
 */
export class Deliveries {
  constructor(private readonly host: DeliveriesHost) {}

  take(entries: Message[]): void {
    const { chats, me } = this.host;
    const changes = entries.filter(isChange);
    const messages = changes.length === 0 ? entries : entries.filter((m) => !isChange(m));
    const unknown = new Set<bigint>();
    const senders: bigint[] = [];
    let openUnarchived = false;
    const open = this.host.open();
    for (const m of messages) {
      const c = chats.get(m.channelId);
      const mine = m.senderUserId === me;
      // A chat still opening shows it once its first page lands (mergeMessages takes it out then); until then it stays pending.
      const opening = open?.id === m.channelId && !open.loaded;
      if (mine && m.senderDeviceId === this.host.auth.deviceId && !opening) this.host.outbox.delivered(m.clientMsgId);
      // Renaming the group or adding someone is not the end of what they were typing.
      if (!isNote(m)) this.host.typing.stopped(m.channelId, m.senderUserId);
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
        if (c.archived && !isMuted(c, this.host.session.serverNow())) {
          c.archived = false;
          openUnarchived ||= this.host.open()?.id === c.channelId;
        }
        // Unread even in the open chat: markRead, below, takes it away only when it tells the server (the reader is at the bottom).
        // The note of my own add or join by link is my join point, as the server counts it: what came
        // before it and it are not unread (its writer moves my join point to it).
        const myJoin = (m.note?.kind === ChannelNoteKind.MEMBERS_ADDED && m.note.userIds.includes(me)) || (mine && m.note?.kind === ChannelNoteKind.JOINED_BY_INVITE);
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
      if (here.length > 0) this.host.history.mergeMessages(open, here);
    } else if (open) {
      open.early.push(...entries.filter((m) => m.channelId === open.id));
    }
    // After the messages: a change always comes after the message it changes.
    if (changes.length > 0) this.applyChanges(changes);
    this.host.typing.render();
    if (openUnarchived) this.host.renderHeader();
    for (const id of unknown) void chats.describe(id);
    // A note may name members this client has not met yet: its line is shown again once their names are in.
    const notesHere = open?.loaded && messages.some((m) => isNote(m) && m.channelId === open.id);
    void this.host.users.ensureUsers(senders).then(() => {
      this.host.renderSidebar();
      if (notesHere && this.host.open() === open) this.host.rerenderMessages();
    });
    this.host.renderSidebar();
    this.host.markRead();
  }

  /**
   * Edits, deletes and reactions, in inbox order: applied to the open chat's
   * messages and (not reactions, which the list does not show) to the chat
   * list's last message. A change to a message not loaded needs nothing:
   * history shows messages as they now are.
   */
  private applyChanges(changes: Message[]): void {
    const { outbox } = this.host;
    const current = this.host.open();
    const open = current?.loaded ? current : undefined;
    let openChanged = false;
    for (const ch of changes) {
      if (ch.senderUserId === this.host.me && ch.senderDeviceId === this.host.auth.deviceId && outbox.changeBack(ch.clientMsgId)) {
        openChanged ||= open?.id === ch.channelId;
      }
      const c = this.host.chats.get(ch.channelId);
      // A message I cleared is nowhere here: nothing to apply the change to.
      if (c && ch.targetSeq <= c.clearedThroughSeq) continue;
      if (outbox.outdate(ch)) openChanged ||= open?.id === ch.channelId;
      if (!ch.reaction && c?.lastMessage && c.lastMessage.seq === ch.targetSeq) c.lastMessage = applyChange(c.lastMessage, ch);
      if (this.host.quotes.applyChange(ch)) openChanged ||= open?.id === ch.channelId;
      if (open?.id === ch.channelId) {
        for (const meanwhile of open.paging) meanwhile.push(ch);
        const i = open.messages.findIndex((m) => m.seq === ch.targetSeq);
        if (i >= 0) {
          open.messages[i] = applyChange(open.messages[i]!, ch);
          openChanged = true;
        }
      }
      this.host.composer.deleted(ch);
      this.host.actions.deleted(ch);
    }
    if (openChanged) this.host.rerenderMessages();
    this.host.composer.renderReplyBar();
  }
}
