import { ChannelKind, type Presence as PresenceRecord } from "../../../gen/es/chat/v1/types_pb.js";
import type { Api } from "../api.js";
import type { ChatList } from "./chat-list.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";

/** How often the open chat's presence is read again, in case a pushed change was missed while reconnecting. */
export const PRESENCE_POLL_MS = 30_000;

export interface PresenceHost {
  readonly api: Api;
  readonly me: bigint;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  /** The page's own socket is open. */
  connected(): boolean;
  renderRowOf(k: string): void;
  renderSidebar(): void;
  renderHeader(): void;
}

/** Who is online, as pushed live and read with GetPresence, and what of it the page may show. */
export class Presence {
  private readonly byUser = new Map<string, PresenceRecord>();
  /**
   * Live presence events, counted: by user, the turn of the last one. A
   * GetPresence asked before that turn may have read what the event replaced.
   */
  private turn = 0;
  private readonly at = new Map<string, number>();

  constructor(private readonly host: PresenceHost) {}

  /** A live presence event. */
  pushed(p: PresenceRecord): void {
    this.at.set(key(p.userId), ++this.turn);
    this.byUser.set(key(p.userId), p);
    // Only a direct chat's row shows its peer's presence: the whole list was drawn again at every event.
    for (const c of this.host.chats.values()) if (c.kind === ChannelKind.DIRECT && c.peerUserId === p.userId) this.host.renderRowOf(key(c.channelId));
    this.host.renderHeader();
  }

  /** As last heard, shown or not. */
  get(userId: bigint): PresenceRecord | undefined {
    return this.byUser.get(key(userId));
  }

  /** Returns the ids whose presence could not be read. */
  async fetch(ids: bigint[]): Promise<bigint[]> {
    const wanted = [...new Set(ids.filter((id) => id !== 0n && id !== this.host.me).map(key))].map((s) => BigInt(s));
    for (let i = 0; i < wanted.length; i += 500) {
      try {
        const asked = this.turn;
        const res = await this.host.api.presence.getPresence({ userIds: wanted.slice(i, i + 500) });
        this.set(res.presences.filter((p) => (this.at.get(key(p.userId)) ?? 0) <= asked));
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
  async refresh(): Promise<void> {
    const welcomed = this.turn;
    const peers = [...this.host.chats.values()].filter((c) => c.kind === ChannelKind.DIRECT).map((c) => c.peerUserId);
    const unread = await this.fetch([...peers, ...(this.host.open()?.members ?? [])]);
    const stale = unread.filter((id) => (this.at.get(key(id)) ?? 0) <= welcomed && this.byUser.delete(key(id)));
    if (stale.length > 0) this.set([]);
  }

  /** The poll's check of the open chat's people. */
  poll(): void {
    const open = this.host.open();
    if (open) void this.fetch(this.targets(open.id));
  }

  private set(list: PresenceRecord[]): void {
    for (const p of list) this.byUser.set(key(p.userId), p);
    this.host.renderSidebar();
    this.host.renderHeader();
  }

  private targets(channelId: bigint): bigint[] {
    const c = this.host.chats.get(channelId);
    if (!c) return [];
    return c.kind === ChannelKind.DIRECT ? [c.peerUserId] : (this.host.open()?.members ?? []);
  }

  /**
   * Someone's presence as this page may show it: none while its own socket is down, when the last
   * word it had may be long out of date ("online" for one gone meanwhile); it is read again on reconnecting.
   */
  of(userId: bigint): PresenceRecord | undefined {
    return this.host.connected() ? this.byUser.get(key(userId)) : undefined;
  }
}
