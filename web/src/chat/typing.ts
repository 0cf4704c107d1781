import { bidi, replaceChildren } from "../dom.js";
import type { RealtimeSession } from "../session.js";
import type { Shell } from "../views/shell.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 6000;

export interface TypingHost {
  readonly ui: Shell;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly users: Users;
  open(): OpenChat | undefined;
  /** The composer holds an edit, not a new message. */
  editing(): boolean;
  renderRowOf(k: string): void;
}

/** Who is typing where (shown under the open chat and in the chat list), and telling the others that I am. */
export class Typing {
  /** channel -> user -> shown until (ms, on the monotonic clock). */
  private readonly byChat = new Map<string, Map<string, number>>();
  /** On the monotonic clock, as the typing map's times: a wall clock stepped back held typing back, or kept it shown, for the step. */
  private lastTypingSent = -Infinity;

  constructor(private readonly host: TypingHost) {}

  /** Someone is typing (a live event). */
  heard(channelId: bigint, userId: bigint): void {
    if (userId === this.host.me) return;
    const k = key(channelId);
    const m = this.byChat.get(k) ?? new Map<string, number>();
    m.set(key(userId), performance.now() + TYPING_SHOW_MS);
    this.byChat.set(k, m);
    void this.host.users.ensureUsers([userId]).then(() => this.render());
    this.host.renderRowOf(k);
  }

  /** Their message came: what they typed is sent. */
  stopped(channelId: bigint, userId: bigint): void {
    this.byChat.get(key(channelId))?.delete(key(userId));
  }

  anyoneIn(channelId: bigint): boolean {
    return (this.byChat.get(key(channelId))?.size ?? 0) > 0;
  }

  expire(): void {
    const now = performance.now();
    const changed: string[] = [];
    for (const [k, m] of this.byChat) {
      for (const [u, until] of m) {
        if (until >= now) continue;
        m.delete(u);
        if (changed.at(-1) !== k) changed.push(k);
      }
      if (m.size === 0) this.byChat.delete(k);
    }
    if (changed.length > 0) {
      this.render();
      for (const k of changed) this.host.renderRowOf(k);
    }
  }

  /** The composer's text changed: the others are told I am typing, at most every TYPING_SEND_EVERY_MS. */
  typed(): void {
    const open = this.host.open();
    if (open && !this.host.editing() && this.host.ui.input.value.trim() && performance.now() - this.lastTypingSent > TYPING_SEND_EVERY_MS) {
      this.lastTypingSent = performance.now();
      this.host.session.typing(open.id);
    }
  }

  render(): void {
    const open = this.host.open();
    const who = open ? [...(this.byChat.get(key(open.id))?.keys() ?? [])].map((u) => this.host.users.name(BigInt(u))) : [];
    // Each name isolated: a U+202E in one reordered the rest of the line.
    const names = who.map((n, i) => (i === 0 ? [bidi(n)] : [i === who.length - 1 ? " and " : ", ", bidi(n)]));
    replaceChildren(this.host.ui.typing, ...(who.length === 0 ? [] : [...names, who.length === 1 ? " is typing…" : " are typing…"]));
  }
}
