import type { Message } from "../../../gen/es/chat/v1/types_pb.js";
import { isolate } from "../dom.js";
import { isNote } from "../notes.js";
import { myReaction } from "../reactions.js";
import type { Shell } from "../views/shell.js";
import type { Composer } from "./composer.js";
import type { OpenChat } from "./open-chat.js";
import type { Outbox } from "./outbox.js";
import type { Users } from "./users.js";

export interface MessageActionsHost {
  readonly ui: Shell;
  readonly me: bigint;
  readonly users: Users;
  readonly outbox: Outbox;
  readonly composer: Composer;
  open(): OpenChat | undefined;
  rerenderMessages(): void;
}

type Listen = <K extends keyof WindowEventMap>(type: K, fn: (ev: WindowEventMap[K]) => void) => void;

/** What a message's own buttons do beyond the composer's: its reaction palette, my reaction, and deleting it. */
export class MessageActions {
  /** The message whose reaction palette is open. */
  private reacting?: { channelId: bigint; seq: bigint };

  constructor(private readonly host: MessageActionsHost) {}

  /** The reaction palette closes on Escape and on a click anywhere else. */
  bind(listen: Listen): void {
    listen("keydown", (ev) => {
      if (ev.key === "Escape" && this.reacting) this.closeReactions();
    });
    listen("click", (ev) => {
      const t = ev.target;
      // The list may have been rendered anew by the click: closest() still works on the detached button.
      if (this.reacting && !(t instanceof Element && t.closest(".reaction-palette, [data-testid=react-message]"))) this.closeReactions();
    });
  }

  /** The seq of the chat's message whose palette is open, 0n when none. */
  reactingSeq(channelId: bigint): bigint {
    return this.reacting?.channelId === channelId ? this.reacting.seq : 0n;
  }

  /** Another chat opens (or none): the palette is not shown there. */
  reset(): void {
    this.reacting = undefined;
  }

  /** Opens the reaction palette of one of the open chat's messages, or closes it when it is open already. */
  openReactions(seq: bigint): void {
    const open = this.host.open();
    if (!open) return;
    const same = this.reacting?.channelId === open.id && this.reacting.seq === seq;
    this.reacting = same ? undefined : { channelId: open.id, seq };
    this.host.rerenderMessages();
    // The button that opened it was rendered anew: keyboard users go on from the first emoji.
    if (!same) this.host.ui.messages.querySelector<HTMLElement>(".reaction-palette button")?.focus({ preventScroll: true });
  }

  private closeReactions(): void {
    if (!this.reacting) return;
    this.reacting = undefined;
    this.host.rerenderMessages();
  }

  /**
   * Reacts to `m` (as shown, my unconfirmed reactions included) with `emoji`,
   * replacing my earlier reaction, or takes mine back when it is that emoji
   * already: one reaction per person per message.
   */
  react(m: Message, emoji: string): void {
    const open = this.host.open();
    this.reacting = undefined;
    if (!open || m.deleted || isNote(m) || m.channelId !== open.id) return this.host.rerenderMessages();
    this.host.outbox.change(open.id, m.seq, myReaction(m, this.host.me) === emoji ? "" : emoji, "reaction");
  }

  confirmDelete(m: Message): void {
    const open = this.host.open();
    if (!open || m.deleted || isNote(m)) return;
    const whose = m.senderUserId === this.host.me ? "this message" : `${isolate(this.host.users.name(m.senderUserId))}’s message`;
    if (!window.confirm(`Delete ${whose} for everyone? This cannot be undone.`)) return;
    this.host.composer.endEditOf(open.id, m.seq);
    this.host.outbox.change(open.id, m.seq, "", "delete");
  }

  /** A live change (`ch`) deleted a message: a deleted message has no actions, so nothing to react with either. */
  deleted(ch: Message): void {
    if (ch.deleted && this.reacting?.channelId === ch.channelId && this.reacting.seq === ch.targetSeq) this.reacting = undefined;
  }

  /** My clear of the chat's history took the messages through `through` away. */
  cleared(channelId: bigint, through: bigint): void {
    if (this.reacting?.channelId === channelId && this.reacting.seq <= through) this.reacting = undefined;
  }
}
