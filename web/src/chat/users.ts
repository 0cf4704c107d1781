import { ChannelKind, type Channel, type ChannelNote, type Message, type User } from "../../../gen/es/chat/v1/types_pb.js";
import type { Api } from "../api.js";
import type { Auth } from "../auth.js";
import { isolateIfBidi } from "../dom.js";
import { noteSentence } from "../notes.js";
import { key } from "./keys.js";

/** The people the page has met (by user id), what they are called, and whom this account blocked. */
export class Users {
  private readonly byId = new Map<string, User>();
  /** Users this account blocked; undefined until read. */
  blocked?: Set<string>;

  constructor(
    private readonly api: Api,
    private readonly auth: Auth,
    private readonly me: bigint,
  ) {}

  get(userId: bigint): User | undefined {
    return this.byId.get(key(userId));
  }

  set(user: User): void {
    this.byId.set(key(user.userId), user);
  }

  async ensureUsers(ids: bigint[]): Promise<void> {
    const missing = [...new Set(ids.filter((id) => id !== 0n && !this.byId.has(key(id))).map(key))].map((s) => BigInt(s));
    for (let i = 0; i < missing.length; i += 100) {
      try {
        const res = await this.api.users.getUsers({ userIds: missing.slice(i, i + 100) });
        for (const u of res.users) this.byId.set(key(u.userId), u);
      } catch {
        // names fall back to "…" until the next try
      }
    }
  }

  async searchUsers(query: string): Promise<User[]> {
    const res = await this.api.users.searchUsers({ query: query.replace(/^@/, ""), limit: 20 });
    for (const u of res.users) this.byId.set(key(u.userId), u);
    return res.users.filter((u) => u.userId !== this.me);
  }

  /** A search for my own username finds no one (I am left out of the results), though someone does go by it. */
  isMyUsername(q: string): boolean {
    return q.replace(/^@/, "").toLowerCase() === (this.auth.current?.username ?? "").toLowerCase();
  }

  name(userId: bigint): string {
    if (userId === this.me) return "You";
    const u = this.byId.get(key(userId));
    if (u?.deleted) return "Deleted account";
    return u ? u.displayName || u.username : "…";
  }

  noteText(m: Message & { note: ChannelNote }): string {
    // Each name and a new title isolated in the sentence (as a string: the chat list shows it too, cut to a line).
    const note = m.note.title ? { ...m.note, title: isolateIfBidi(m.note.title) } : m.note;
    return noteSentence(note, isolateIfBidi(this.name(m.senderUserId)), (id) => isolateIfBidi(this.name(id)), this.me);
  }

  channelName(c: Channel): string {
    if (c.kind === ChannelKind.GROUP) return c.title || "Group";
    return c.peerUserId === 0n ? "Direct chat" : this.name(c.peerUserId);
  }
}
