import { clone } from "@bufbuild/protobuf";
import { ChannelKind, ChannelSchema, type Channel } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError, type Api } from "../api.js";
import { peopleIn } from "../notes.js";
import type { RealtimeSession } from "../session.js";
import { hideCleared, keepNewer, manages } from "./channel-rules.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface ChatListHost {
  readonly api: Api;
  readonly session: RealtimeSession;
  destroyed(): boolean;
  open(): OpenChat | undefined;
  /** The chat was opened here while offline, and the server has not taken its unread mark away yet. */
  unmarkOwed(k: string): boolean;
  /** My clear of the chat's history moved forward, through `through`. */
  forgetCleared(channelId: bigint, through: bigint): void;
  /** I am no longer in the chat (`c`, its last record, if any). */
  closeLeft(channelId: bigint, c: Channel | undefined): void;
  readonly users: Users;
  fetchPresence(ids: bigint[]): Promise<bigint[]>;
  renderSidebar(): void;
  renderHeader(): void;
  rerenderMessages(): void;
  toast(text: string): void;
}

/**
 * My chats (the list and the archive) as this page knows them: the
 * server's listings and answers merged with what came live, neither undoing
 * what the other saw later.
 */
export class ChatList {
  private readonly channels = new Map<string, Channel>();
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
  loaded = false;
  /** The chat list could not be read (yet): the next catch-up asks again. */
  failed = false;

  constructor(private readonly host: ChatListHost) {}

  get(channelId: bigint): Channel | undefined {
    return this.channels.get(key(channelId));
  }

  has(channelId: bigint): boolean {
    return this.channels.has(key(channelId));
  }

  /** My clear of the chat's history took something away: for me the chat starts after it. */
  isCleared(channelId: bigint): boolean {
    return (this.channels.get(key(channelId))?.clearedThroughSeq ?? 0n) > 0n;
  }

  byKey(k: string): Channel | undefined {
    return this.channels.get(k);
  }

  values(): IterableIterator<Channel> {
    return this.channels.values();
  }

  /** The list and the archive both: the list shows how many are archived, and a live message may bring one back. */
  async load(): Promise<void> {
    const asked = this.channelTurn;
    try {
      const lists = await Promise.all([this.listChannels(false), this.listChannels(true)]);
      const all = lists.flatMap((l) => l.channels);
      if (this.host.destroyed()) return;
      this.takeListing(all, asked, lists.every((l) => l.complete));
      this.loaded = true;
      const peers = all.filter((c) => c.kind === ChannelKind.DIRECT).map((c) => c.peerUserId);
      const senders = all.flatMap((c) => (c.lastMessage ? peopleIn(c.lastMessage) : []));
      await this.host.users.ensureUsers([...peers, ...senders]);
      this.host.renderSidebar();
      // A chat opened while the names were on their way shows "…" for its peer until now.
      this.host.renderHeader();
      await this.host.fetchPresence(peers);
    } catch (err) {
      this.failed = true;
      this.host.toast(describeError(err));
      this.host.renderSidebar();
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
      this.host.closeLeft(c.channelId, c);
    }
    const now = this.host.session.serverNow();
    for (const c of listed) {
      const live = this.channels.get(key(c.channelId));
      if (!since(key(c.channelId))) this.put(live ? keepNewer(c, live, now) : c, live);
      // A copy: put compares the clear with the record it replaces.
      else if (live) this.put(keepNewer(clone(ChannelSchema, live), c, now), live);
    }
  }

  /** The first 2,000 of my chats (in the list or the archive), and whether that was all of them. */
  private async listChannels(archived: boolean): Promise<{ channels: Channel[]; complete: boolean }> {
    const channels: Channel[] = [];
    let pageToken = "";
    for (let page = 0; page < 10; page++) {
      const res = await this.host.api.channels.listChannels({ limit: 200, pageToken, archived });
      channels.push(...res.channels);
      pageToken = res.nextPageToken;
      if (!pageToken) break;
    }
    return { channels, complete: pageToken === "" };
  }

  /** One channel, as the caller sees it (unread, role, peer). */
  async describe(channelId: bigint): Promise<Channel | undefined> {
    const k = key(channelId);
    const turns = this.describeTurns.get(k) ?? { asked: 0, kept: 0 };
    this.describeTurns.set(k, turns);
    const turn = ++turns.asked;
    const asked = this.channelTurn;
    try {
      const c = (await this.host.api.channels.describeChannel({ channelId })).channel;
      if (!c) return undefined;
      // I left it after asking: the answer, read before, would bring it back. A later JOINED asks anew.
      if (!this.channels.has(k) && (this.changedAt.get(k) ?? 0) > asked) return undefined;
      if (turn < turns.kept) return this.channels.get(k) ?? c;
      turns.kept = turn;
      const wasModerator = manages(this.channels.get(k));
      this.upsert(c);
      if (c.kind === ChannelKind.DIRECT) {
        await this.host.users.ensureUsers([c.peerUserId]);
        await this.host.fetchPresence([c.peerUserId]);
      }
      this.host.renderSidebar();
      if (this.host.open()?.id === channelId) this.host.renderHeader();
      // Made an admin, or no longer one: Delete is offered on the others' messages, or not.
      if (this.host.open()?.id === channelId && manages(c) !== wasModerator) this.host.rerenderMessages();
      return c;
    } catch {
      return undefined;
    }
  }

  /** An answer about one chat: a listing asked before it does not undo it (takeListing), nor it what came live since it was read. */
  upsert(c: Channel): void {
    const prev = this.channels.get(key(c.channelId));
    this.put(prev ? keepNewer(c, prev, this.host.session.serverNow()) : c, prev);
    this.changed(c.channelId);
  }

  changed(channelId: bigint): void {
    this.changedAt.set(key(channelId), ++this.channelTurn);
  }

  /** I am no longer in the chat: its record goes; returned, if there was one. */
  remove(channelId: bigint): Channel | undefined {
    const c = this.channels.get(key(channelId));
    this.channels.delete(key(channelId));
    this.changed(channelId);
    return c;
  }

  /** Keeps the server's record of a chat; when my clear of its history moved forward, what it covers goes from this page too. */
  private put(c: Channel, prev: Channel | undefined): void {
    const was = prev?.clearedThroughSeq ?? 0n;
    // A clear only moves forward: an answer read before it does not bring the messages back.
    if (was > c.clearedThroughSeq) c.clearedThroughSeq = was;
    // Opened here while offline: read, whatever a list read before the server heard of it says.
    if (this.host.unmarkOwed(key(c.channelId))) c.markedUnread = false;
    hideCleared(c);
    this.channels.set(key(c.channelId), c);
    if (c.clearedThroughSeq > was) this.host.forgetCleared(c.channelId, c.clearedThroughSeq);
  }
}
