import type { Message } from "../../../gen/es/chat/v1/types_pb.js";
import { bidi, replaceChildren } from "../dom.js";
import { codePoints, preview } from "../format.js";
import { isNote } from "../notes.js";
import { quoteExcerpt } from "../views/messages.js";
import type { Shell } from "../views/shell.js";
import { key } from "./keys.js";
import { lastWhere, type OpenChat } from "./open-chat.js";
import type { Outbox } from "./outbox.js";
import type { Quotes } from "./quotes.js";
import type { Users } from "./users.js";

interface Editing {
  channelId: bigint;
  seq: bigint;
  /** The text as it was when the edit began: saving it unchanged sends nothing. */
  original: string;
  /** What the composer held before, given back when the edit ends. */
  draft: string;
}

export interface ComposerHost {
  readonly ui: Shell;
  readonly me: bigint;
  readonly users: Users;
  readonly outbox: Outbox;
  readonly quotes: Quotes;
  open(): OpenChat | undefined;
  renderMessages(): void;
  rerenderMessages(): void;
  toast(text: string): void;
  /** The composer's text changed (typed). */
  typed(): void;
}

/**
 * The composer under the open chat: a new message (maybe a reply), or an
 * edit of one of mine; the drafts of the other chats, and the edits not saved.
 */
export class Composer {
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
  /** Unsent composer text per chat. */
  private readonly drafts = new Map<string, string>();
  maxTextCodePoints = 99_999;

  constructor(private readonly host: ComposerHost) {}

  bind(): void {
    const ui = this.host.ui;
    ui.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.sendFromComposer();
    });
    ui.input.addEventListener("keydown", (ev) => {
      if (ev.isComposing) return;
      const open = this.host.open();
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        this.sendFromComposer();
      } else if (ev.key === "Escape" && this.editing) {
        ev.preventDefault();
        this.endEdit();
        this.resumeHeldEdit();
      } else if (ev.key === "Escape" && open && this.replies.has(key(open.id))) {
        ev.preventDefault();
        this.endReply(open.id);
        this.resumeHeldEdit();
      } else if (ev.key === "ArrowUp" && !this.editing && ui.input.value === "" && !(open && this.replies.has(key(open.id)))) {
        // As in most chat apps: up in an empty composer edits your last message.
        const last = open && lastWhere(this.host.outbox.shown(open).messages, (m) => m.senderUserId === this.host.me && !m.deleted && !isNote(m));
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
      const open = this.host.open();
      if (open) this.endReply(open.id);
      this.resumeHeldEdit();
      ui.input.focus();
    });
    ui.input.addEventListener("input", () => {
      this.autosize();
      this.renderCounter();
      this.host.typed();
    });
  }

  /** The chat opened: its draft back in the composer. */
  showDraft(channelId: bigint): void {
    this.host.ui.input.value = this.drafts.get(key(channelId)) ?? "";
  }

  isEditing(): boolean {
    return this.editing !== undefined;
  }

  /** The seq of the chat's message being edited, 0n when none. */
  editingSeq(channelId: bigint): bigint {
    return this.editing?.channelId === channelId ? this.editing.seq : 0n;
  }

  /** The seq of the message the chat's composer replies to, 0n when none. */
  replyingSeq(channelId: bigint): bigint {
    return this.replies.get(key(channelId))?.seq ?? 0n;
  }

  private sendFromComposer(): void {
    const { ui } = this.host;
    const open = this.host.open();
    const text = ui.input.value;
    if (!open || !text.trim()) return;
    if (codePoints(text) > this.maxTextCodePoints) {
      this.host.toast(`A message can have at most ${this.maxTextCodePoints.toLocaleString()} characters.`);
      return;
    }
    if (this.editing) return this.saveEdit(text);
    this.host.outbox.send(open.id, text, this.replies.get(key(open.id))?.seq ?? 0n);
    this.replies.delete(key(open.id));
    this.renderReplyBar();
    ui.input.value = "";
    this.drafts.delete(key(open.id));
    this.autosize();
    this.renderCounter();
    this.host.renderMessages();
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    this.resumeHeldEdit();
  }

  /** The edit under way in the open chat, changed, is kept for when the chat is opened again, as a draft is. */
  holdEdit(): void {
    const e = this.editing;
    const text = this.host.ui.input.value;
    if (e && this.host.open()?.id === e.channelId && text.trim() && text !== e.original) this.heldEdits.set(key(e.channelId), { seq: e.seq, text });
  }

  /** My edit was refused: what was typed for it goes back to the edit box. */
  editRefused(channelId: bigint, seq: bigint, text: string): void {
    this.heldEdits.set(key(channelId), { seq, text });
    this.resumeHeldEdit();
  }

  /** Back in the edit box, the open chat's edit not saved, if its message is shown, and no edit or reply is under way. */
  resumeHeldEdit(): void {
    const open = this.host.open();
    // An edit takes the place of a reply being written, which would be lost: the held edit waits for it to be sent.
    const held = open?.loaded && !this.editing && !this.replies.has(key(open.id)) ? this.heldEdits.get(key(open.id)) : undefined;
    if (!open || !held) return;
    const m = this.host.outbox.shown(open).messages.find((x) => x.seq === held.seq);
    if (!m) return;
    this.heldEdits.delete(key(open.id));
    this.startEdit(m, held.text);
  }

  /** Puts one of my messages in the composer to edit (with `text`, an edit typed before); the draft there comes back when the edit ends. */
  startEdit(m: Message, text = m.text): void {
    const open = this.host.open();
    if (!open || m.senderUserId !== this.host.me || m.deleted || isNote(m)) return;
    this.endReply(open.id);
    const ui = this.host.ui;
    const draft = this.editing ? this.editing.draft : ui.input.value;
    this.editing = { channelId: open.id, seq: m.seq, original: m.text, draft };
    replaceChildren(ui.editPreview, preview(m.text));
    ui.editBar.hidden = false;
    ui.send.textContent = "Save";
    ui.send.setAttribute("aria-label", "Save the edit");
    ui.input.value = text;
    this.autosize();
    this.renderCounter();
    this.host.rerenderMessages();
    ui.input.focus();
    ui.input.setSelectionRange(ui.input.value.length, ui.input.value.length);
  }

  endEdit(): void {
    const e = this.editing;
    if (!e) return;
    this.editing = undefined;
    const ui = this.host.ui;
    ui.editBar.hidden = true;
    ui.send.textContent = "Send";
    ui.send.setAttribute("aria-label", "Send");
    if (this.host.open()?.id === e.channelId) {
      ui.input.value = e.draft;
      this.autosize();
      this.renderCounter();
      this.host.rerenderMessages();
    } else {
      this.drafts.set(key(e.channelId), e.draft);
    }
  }

  /** Ends the edit of this message, if it is the one under way. */
  endEditOf(channelId: bigint, seq: bigint): void {
    const e = this.editing;
    if (e && e.channelId === channelId && e.seq === seq) this.endEdit();
  }

  /** The composer's next message will answer `m`; an edit in progress ends (its draft comes back to be the reply). */
  startReply(m: Message): void {
    const open = this.host.open();
    if (!open || m.deleted || isNote(m) || m.channelId !== open.id) return;
    this.endEdit();
    this.replies.set(key(open.id), m);
    this.renderReplyBar();
    this.host.rerenderMessages();
    this.host.ui.input.focus();
  }

  private endReply(channelId: bigint): void {
    if (!this.replies.delete(key(channelId))) return;
    if (this.host.open()?.id !== channelId) return;
    this.renderReplyBar();
    this.host.rerenderMessages();
  }

  private saveEdit(text: string): void {
    const e = this.editing!;
    this.endEdit();
    if (text !== e.original) this.host.outbox.change(e.channelId, e.seq, text, "edit");
    this.resumeHeldEdit();
  }

  /** A live change (`ch`) deleted a message: the edit of it, or a reply to it, ends. */
  deleted(ch: Message): void {
    const e = this.editing;
    if (ch.deleted && e && e.channelId === ch.channelId && e.seq === ch.targetSeq) {
      this.endEdit();
      this.host.toast("The message you were editing was deleted.");
    }
    // The server would refuse the reply; better to say so before it is written.
    if (ch.deleted && this.replies.get(key(ch.channelId))?.seq === ch.targetSeq) {
      this.endReply(ch.channelId);
      if (this.host.open()?.id === ch.channelId) this.host.toast("The message you were replying to was deleted.");
    }
  }

  /** My clear of the chat's history took the messages through `through` away: a reply to, or an edit of, one of them ends. */
  cleared(channelId: bigint, through: bigint): void {
    const reply = this.replies.get(key(channelId));
    if (reply && reply.seq <= through) this.endReply(channelId);
    if (this.editing?.channelId === channelId && this.editing.seq <= through) this.endEdit();
    if ((this.heldEdits.get(key(channelId))?.seq ?? through + 1n) <= through) this.heldEdits.delete(key(channelId));
  }

  /** "Replying to …" above the composer, with the answered message as it now is. */
  renderReplyBar(): void {
    const { ui, users } = this.host;
    const open = this.host.open();
    const started = open && this.replies.get(key(open.id));
    ui.replyBar.hidden = !started;
    if (!open || !started) return;
    const m = this.host.outbox.shown(open).messages.find((x) => x.seq === started.seq) ?? this.host.quotes.get(open.id, started.seq) ?? started;
    replaceChildren(ui.replyName, "Replying to ", m.senderUserId === this.host.me ? "yourself" : bidi(users.name(m.senderUserId)), ":");
    replaceChildren(ui.replyPreview, quoteExcerpt(m));
  }

  renderCounter(): void {
    const { ui } = this.host;
    const open = this.host.open();
    // The composer holds an edit, not the draft, while editing.
    if (open && !this.editing) this.drafts.set(key(open.id), ui.input.value);
    const n = codePoints(ui.input.value);
    const left = this.maxTextCodePoints - n;
    ui.counter.textContent = left < 1000 ? left.toLocaleString() : "";
    ui.counter.classList.toggle("over", left < 0);
    ui.send.disabled = !ui.input.value.trim() || left < 0;
  }

  autosize(): void {
    const el = this.host.ui.input;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
  }
}
