import { ChannelKind, MemberRole, type Channel, type PresenceVisibility } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError, unreachable, type Api } from "../api.js";
import { isolate } from "../dom.js";
import type { RealtimeSession } from "../session.js";
import { isMuted, MUTED_FOR_GOOD } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface ChatSettingsHost {
  readonly api: Api;
  readonly session: RealtimeSession;
  readonly users: Users;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  removeChannel(channelId: bigint): void;
  renderHeader(): void;
  renderSidebar(): void;
  toast(text: string): void;
}

/**
 * What I set for myself about the open chat (mute, pin, archive, the unread
 * mark, where its history starts), its peer blocked, the group left, and who
 * sees me online.
 */
export class ChatSettings {
  /**
   * Chats opened while their unread mark could not be taken away on the
   * server (offline): shown read here, and asked again on the next
   * connection. Without it the mark stayed on every other device and came
   * back here with the next chat list.
   */
  private readonly untoldUnmarks = new Set<string>();
  /** Groups I asked to leave, the answer not in yet: their chat closes saying I left, not that I was taken out. */
  private readonly leaving = new Set<string>();

  constructor(private readonly host: ChatSettingsHost) {}

  /** The open chat, as the chat list has it. */
  private openChat(): Channel | undefined {
    const open = this.host.open();
    return open && this.host.chats.get(open.id);
  }

  /** The chat was opened here while offline, and the server has not taken its unread mark away yet. */
  unmarkOwed(k: string): boolean {
    return this.untoldUnmarks.has(k);
  }

  isLeaving(channelId: bigint): boolean {
    return this.leaving.has(key(channelId));
  }

  /** Mutes the open chat's notifications for good, or unmutes it. */
  toggleMute(): Promise<void> {
    return this.changeOwnSetting((c) => this.host.api.channels.muteChannel({ channelId: c.channelId, mutedUntil: isMuted(c, this.host.session.serverNow()) ? undefined : MUTED_FOR_GOOD }));
  }

  togglePin(): Promise<void> {
    return this.changeOwnSetting((c) => this.host.api.channels.pinChannel({ channelId: c.channelId, pinned: !c.pinnedAt }));
  }

  toggleArchive(): Promise<void> {
    return this.changeOwnSetting((c) => this.host.api.channels.archiveChannel({ channelId: c.channelId, archived: !c.archived }));
  }

  /** Marks the open chat unread and goes back to the list: staying in it would be reading it, and opening it again takes the mark away. */
  async markUnread(): Promise<void> {
    const open = this.host.open();
    if (!open) return;
    // Marked again: an unmark still owed from offline must not take this one away.
    this.untoldUnmarks.delete(key(open.id));
    await this.changeOwnSetting((c) => this.host.api.channels.markUnread({ channelId: c.channelId, unread: true }));
    // Refused, the chat stays open (the toast says why); nor is another chat opened meanwhile left.
    if (this.host.open() === open && this.host.chats.get(open.id)?.markedUnread) location.hash = "";
  }

  /**
   * Opening a chat marked unread takes the mark away on every device: the
   * server tells the others with a channel event. The realtime receipt
   * would not (it leaves the mark), so it is asked for here.
   */
  async unmark(channelId: bigint): Promise<void> {
    const c = this.host.chats.get(channelId);
    if (!c?.markedUnread) return;
    // At once, so that opening it again before the answer asks nothing more.
    c.markedUnread = false;
    this.host.chats.changed(channelId);
    this.untoldUnmarks.add(key(channelId));
    await this.tellUnmark(channelId);
  }

  /** Asks the server to take a chat's unread mark away; unreachable, it stays owed until the next connection. */
  private async tellUnmark(channelId: bigint): Promise<void> {
    const k = key(channelId);
    try {
      const res = await this.host.api.channels.markUnread({ channelId, unread: false });
      if (!this.untoldUnmarks.delete(k)) return; // marked again meanwhile: that answer stands
      if (res.channel) this.host.chats.upsert(res.channel);
    } catch (err) {
      if (unreachable(err)) return;
      this.untoldUnmarks.delete(k);
      this.host.toast(describeError(err));
    }
    this.host.renderSidebar();
  }

  /** A new connection: the unmarks owed are asked for again. */
  reconnected(): void {
    for (const k of [...this.untoldUnmarks]) void this.tellUnmark(BigInt(k));
  }

  /** Clears the open chat's history for me alone, once confirmed; the answer's clearedThroughSeq takes the messages away. */
  async clearHistory(): Promise<void> {
    const c = this.openChat();
    if (!c) return;
    if (c.lastSeq <= c.clearedThroughSeq) return this.host.toast("There is nothing to clear in this chat.");
    const others = c.kind === ChannelKind.DIRECT ? `${this.host.users.channelName(c)} keeps them` : "the other members keep them";
    if (!window.confirm(`Clear the history of this chat for you? Its messages so far go from all your devices; ${others}. This cannot be undone.`)) return;
    // Through what this page has shown, not the server's newest: a message arriving meanwhile is not cleared unseen.
    await this.changeOwnSetting((chat) => this.host.api.channels.clearHistory({ channelId: chat.channelId, throughSeq: chat.lastSeq }));
  }

  /**
   * One of my own settings of the open chat (mute, pin, archive, the unread
   * mark, where its history starts). The answer is the chat with all of them as they now
   * are: one can change another (pinning unarchives, archiving unpins,
   * unmuting may bring a chat back).
   */
  private async changeOwnSetting(call: (c: Channel) => Promise<{ channel?: Channel }>): Promise<void> {
    const c = this.openChat();
    if (!c) return;
    try {
      const res = await call(c);
      if (res.channel) this.host.chats.upsert(res.channel);
    } catch (err) {
      this.host.toast(describeError(err));
    }
    this.host.renderHeader();
    this.host.renderSidebar();
  }

  /**
   * Leaves the open group, once confirmed. Its chat goes at the answer; the
   * LEFT event that tells my other devices may come first here, and closes
   * it the same way.
   */
  async leaveGroup(): Promise<void> {
    const c = this.openChat();
    if (!c || c.kind !== ChannelKind.GROUP) return;
    const owner = c.myRole === MemberRole.OWNER ? " You own it: the longest-standing admin, else member, becomes its owner." : "";
    if (!window.confirm(`Leave “${this.host.users.channelName(c)}”? It goes from all your devices, and only a member can bring you back.${owner}`)) return;
    this.leaving.add(key(c.channelId));
    try {
      await this.host.api.channels.leaveGroup({ channelId: c.channelId });
      if (this.host.chats.has(c.channelId)) this.host.removeChannel(c.channelId);
    } catch (err) {
      this.host.toast(describeError(err));
    } finally {
      this.leaving.delete(key(c.channelId));
    }
  }

  /** Blocks or unblocks the peer of the open direct chat. */
  async toggleBlock(): Promise<void> {
    const { users } = this.host;
    const c = this.openChat();
    if (!c || c.kind !== ChannelKind.DIRECT || !users.blocked) return;
    const peer = c.peerUserId;
    const blocking = !users.blocked.has(key(peer));
    if (blocking && !window.confirm(`Block ${isolate(users.name(peer))}? Neither of you can message the other here, and they stop seeing when you are online.`)) return;
    try {
      if (blocking) await this.host.api.users.blockUser({ userId: peer });
      else await this.host.api.users.unblockUser({ userId: peer });
      if (blocking) users.blocked.add(key(peer));
      else users.blocked.delete(key(peer));
    } catch (err) {
      this.host.toast(describeError(err));
    }
    this.host.renderHeader();
  }

  async setVisibility(visibility: PresenceVisibility): Promise<void> {
    try {
      await this.host.api.presence.updatePresenceSettings({ settings: { visibility } });
    } catch (err) {
      this.host.toast(describeError(err));
    }
  }
}
