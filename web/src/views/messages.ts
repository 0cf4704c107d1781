import type { ChannelNote, Message } from "../../../gen/es/chat/v1/types_pb.js";
import { avatar, balanced, bidi, h, isolate, isolateIfBidi } from "../dom.js";
import { clock, dayLabel, preview, sameDay, tsMs } from "../format.js";
import { isNote, noteSentence } from "../notes.js";
import { myReaction, REACTION_CHOICES, reactionGroups } from "../reactions.js";

export interface PendingView {
  clientMsgId: string;
  text: string;
  state: "queued" | "sending" | "sent" | "failed";
  error?: string;
  at: number;
  /** The seq of the message this one replies to, 0n when none. */
  replyToSeq: bigint;
}

export interface MessageListInput {
  /** Now by the server's clock, for "Today" and "Yesterday": the messages' times are the server's. */
  now: number;
  messages: Message[];
  pending: PendingView[];
  me: bigint;
  group: boolean;
  /** The highest seq another member is known to have read (their read positions and receipts). */
  readByOthers: bigint;
  /** In a group: who of the others has seen my newest message (seq), and whether that is all of them. */
  seenBy?: { seq: bigint; names: string[]; everyone: boolean };
  /** The user may delete other members' messages too (a group's admin or owner). */
  moderator: boolean;
  /** The seq of the message being edited in the composer, 0n when none. */
  editing: bigint;
  /** The seq of the message the composer replies to, 0n when none. */
  replying: bigint;
  /** The seq of the message to highlight for a moment (a quote of it was clicked), 0n when none. */
  flash: bigint;
  /** The seq of the message whose reaction palette is open, 0n when none. */
  reacting: bigint;
  /** Edits, deletes and reactions of these messages (by seq) are not confirmed yet. */
  saving: Map<string, "queued" | "sending">;
  name(userId: bigint): string;
  retry(clientMsgId: string): void;
  discard(clientMsgId: string): void;
  edit(m: Message): void;
  remove(m: Message): void;
  reply(m: Message): void;
  /** Opens the reaction palette of the message with this seq, or closes it if open. */
  openReactions(seq: bigint): void;
  /** My reaction to `m` with this emoji: given, or taken back if it is the one I gave. */
  react(m: Message, emoji: string): void;
  /**
   * The message with this seq as it now is, when the client holds it (a
   * reply's quote shows a placeholder until then).
   */
  quoted(seq: bigint): Message | undefined;
  /** Shows the message with this seq (a quote was clicked). */
  jump(seq: bigint): void;
}

/** One line of a quoted message's text as it now is. */
export function quoteExcerpt(m: Message): string {
  return m.deleted ? "This message was deleted" : preview(m.text, 120);
}

/** Consecutive messages of one sender within this window share one header. */
const GROUP_WINDOW_MS = 5 * 60_000;

/** What a message's element shows, all it is built from: the same model, the same element. */
interface MessageModel {
  seq: bigint;
  sender: bigint;
  mine: boolean;
  continued: boolean;
  deleted: boolean;
  marks: string;
  edited?: number;
  replyTo: bigint;
  /** A group's message from another: the avatar column (the avatar with the sender's name, a gap below it). */
  avatarColumn: boolean;
  senderName?: string;
  quote?: QuoteModel;
  text: string;
  reactions: ChipModel[];
  saving?: "queued" | "sending";
  at: number;
  ticks: string;
  canDelete: boolean;
  /** The palette is open: my reaction now ("" for none). */
  palette?: string;
}

interface QuoteModel {
  seq: bigint;
  /** The quoted message's sender and excerpt, when it is held. */
  sender?: string;
  excerpt?: string;
  deleted: boolean;
}

interface ChipModel {
  emoji: string;
  count: number;
  mine: boolean;
  who: string;
}

type Handlers = Pick<MessageListInput, "retry" | "discard" | "openReactions" | "jump"> & {
  edit(seq: bigint): void;
  remove(seq: bigint): void;
  reply(seq: bigint): void;
  react(seq: bigint, emoji: string): void;
};

/**
 * The open chat's elements kept between redraws, each under its key (a
 * message's seq, a pending send's client_msg_id) with the model it was built
 * from: one whose model is the same is placed again as it is, so a receipt or
 * a new message no longer rebuilds every message on screen (three long ones
 * took Chromium up to 235 ms a redraw, hundreds on a long history for each
 * receipt), and paging in history above moves the nodes below rather than
 * making them anew. Their buttons reach the newest redraw's handlers and
 * message: a kept element outlives the input it was built with.
 */
export class KeptMessages {
  private channel?: bigint;
  private kept = new Map<string, { sig: string; el: HTMLElement }>();
  private used = new Map<string, { sig: string; el: HTMLElement }>();
  private input?: MessageListInput;
  private bySeq = new Map<bigint, Message>();

  readonly handlers: Handlers = {
    retry: (id) => this.input?.retry(id),
    discard: (id) => this.input?.discard(id),
    openReactions: (seq) => this.input?.openReactions(seq),
    jump: (seq) => this.input?.jump(seq),
    edit: (seq) => this.with(seq, (m, i) => i.edit(m)),
    remove: (seq) => this.with(seq, (m, i) => i.remove(m)),
    reply: (seq) => this.with(seq, (m, i) => i.reply(m)),
    react: (seq, emoji) => this.with(seq, (m, i) => i.react(m, emoji)),
  };

  /** This, for a redraw of chat `channelId`: another chat's elements are let go (its seqs are not this one's). */
  of(channelId: bigint): this {
    if (this.channel !== channelId) this.kept.clear();
    this.channel = channelId;
    return this;
  }

  begin(input: MessageListInput): void {
    this.input = input;
    this.bySeq = new Map(input.messages.map((m) => [m.seq, m]));
    this.used = new Map();
  }

  /** The element kept under `key` if it was built from the same model, else a new one from `build`. */
  take<M>(key: string, model: M, build: (model: M) => HTMLElement): HTMLElement {
    const sig = JSON.stringify(model, (_, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
    const had = this.kept.get(key);
    const item = had && had.sig === sig ? had : { sig, el: build(model) };
    this.used.set(key, item);
    return item.el;
  }

  /** Ends a redraw: what it did not show is let go. */
  end(): void {
    this.kept = this.used;
  }

  private with(seq: bigint, act: (m: Message, input: MessageListInput) => void): void {
    const m = this.bySeq.get(seq);
    if (m && this.input) act(m, this.input);
  }
}

export function messageList(input: MessageListInput, kept = new KeptMessages()): HTMLElement[] {
  kept.begin(input);
  const on = kept.handlers;
  const out: HTMLElement[] = [];
  let prev: { sender: bigint; at: number } | undefined;
  let lastAt = 0;
  for (const m of input.messages) {
    // Shown no earlier than the message above: each time is the clock of the chat server that took
    // it, and one a second behind another's put times, and across midnight the day, back and forth.
    const at = (lastAt = Math.max(lastAt, tsMs(m.sentAt) ?? 0));
    if (!prev || !sameDay(prev.at, at)) {
      out.push(kept.take(`d:${m.seq}`, dayLabel(at, input.now), (label) => h("div", { class: "day", role: "separator" }, h("span", {}, label))));
      prev = undefined;
    }
    if (isNote(m)) {
      out.push(kept.take(`n:${m.seq}`, noteModel(m, at, input), noteLine));
      // A note ends a run of one sender's messages: the next one shows its sender again.
      prev = { sender: 0n, at };
      continue;
    }
    const continued = !!prev && prev.sender === m.senderUserId && at - prev.at < GROUP_WINDOW_MS;
    out.push(kept.take(`m:${m.seq}`, messageModel(m, at, continued, input), (model) => messageItem(model, on)));
    if (input.seenBy?.seq === m.seq) out.push(kept.take(`s:${m.seq}`, input.seenBy, seenByLine));
    prev = { sender: m.senderUserId, at };
  }
  for (const p of input.pending) {
    const model = { id: p.clientMsgId, state: p.state, error: p.error, at: p.at, text: p.text, quote: p.replyToSeq !== 0n ? quoteModel(p.replyToSeq, input) : undefined };
    out.push(kept.take(`p:${p.clientMsgId}`, model, (model) => pendingItem(model, on)));
  }
  kept.end();
  return out;
}

function messageModel(m: Message, at: number, continued: boolean, input: MessageListInput): MessageModel {
  const mine = m.senderUserId === input.me;
  const showSender = input.group && !mine && !continued;
  const marks = [
    m.seq === input.editing && "editing",
    m.seq === input.replying && "replying",
    m.seq === input.flash && "flash",
    m.seq === input.reacting && "reacting",
  ].filter((c) => c !== false);
  const reacting = m.seq === input.reacting;
  return {
    seq: m.seq,
    sender: m.senderUserId,
    mine,
    continued,
    deleted: m.deleted,
    marks: marks.join(" "),
    edited: m.deleted ? undefined : tsMs(m.editedAt),
    replyTo: m.replyToSeq,
    avatarColumn: input.group && !mine,
    senderName: showSender ? input.name(m.senderUserId) : undefined,
    // A deleted reply keeps no trace of what it answered, as it keeps no text.
    quote: m.replyToSeq !== 0n && !m.deleted ? quoteModel(m.replyToSeq, input) : undefined,
    text: m.deleted ? "" : m.text,
    reactions: m.deleted ? [] : chipModels(m, input),
    saving: input.saving.get(m.seq.toString()),
    at,
    ticks: mine ? (m.seq <= input.readByOthers ? "✓✓" : "✓") : "",
    canDelete: mine || input.moderator,
    palette: reacting && !m.deleted ? myReaction(m, input.me) : undefined,
  };
}

function messageItem(v: MessageModel, on: Handlers): HTMLElement {
  return h(
    "div",
    {
      class: `msg ${v.mine ? "mine" : "theirs"} ${v.continued ? "cont" : ""} ${v.deleted ? "deleted" : ""} ${v.marks}`,
      "data-testid": "message",
      "data-seq": v.seq.toString(),
      "data-sender": v.sender.toString(),
      "data-edited": v.edited !== undefined ? "true" : null,
      "data-deleted": v.deleted ? "true" : null,
      "data-reply-to": v.replyTo !== 0n ? v.replyTo.toString() : null,
    },
    !v.avatarColumn ? null : v.senderName !== undefined ? avatar(v.senderName, v.sender.toString(), "small") : h("span", { class: "avatar-gap" }),
    h(
      "div",
      { class: "bubble" },
      v.senderName !== undefined ? bidi(v.senderName, "div", { class: "sender" }) : null,
      v.quote ? quote(v.quote, on) : null,
      v.deleted
        ? h("div", { class: "text deleted-note", "data-testid": "message-text" }, "This message was deleted")
        : h("div", { class: "text", "data-testid": "message-text", dir: "auto" }, ...linkify(balanced(v.text))),
      v.deleted ? null : reactionChips(v, on),
      h(
        "div",
        { class: "meta" },
        v.saving ? h("span", { "data-testid": "message-saving" }, v.saving === "queued" ? "waiting for connection…" : "saving…") : null,
        v.edited !== undefined ? h("span", { class: "edited", "data-testid": "message-edited", title: `Edited ${new Date(v.edited).toLocaleString()}` }, "edited") : null,
        h("time", { datetime: new Date(v.at).toISOString(), title: new Date(v.at).toLocaleString() }, clock(v.at)),
        v.ticks ? h("span", { class: `ticks ${v.ticks.length > 1 ? "read" : ""}` }, v.ticks) : null,
      ),
    ),
    messageActions(v, on),
  );
}

function pendingItem(p: { id: string; state: PendingView["state"]; error?: string; at: number; text: string; quote?: QuoteModel }, on: Handlers): HTMLElement {
  const status =
    p.state === "failed"
      ? h(
          "span",
          { class: "failed" },
          `Not sent${p.error ? `: ${p.error}` : ""} · `,
          h("button", { type: "button", class: "link", onclick: () => on.retry(p.id) }, "Retry"),
          " · ",
          h("button", { type: "button", class: "link", onclick: () => on.discard(p.id) }, "Discard"),
        )
      : h("span", {}, p.state === "queued" ? "waiting for connection…" : p.state === "sent" ? `${clock(p.at)} ✓` : "sending…");
  return h(
    "div",
    { class: `msg mine pending ${p.state}`, "data-testid": "pending-message", "data-state": p.state },
    h(
      "div",
      { class: "bubble" },
      p.quote ? quote(p.quote, on) : null,
      h("div", { class: "text", dir: "auto" }, ...linkify(balanced(p.text))),
      h("div", { class: "meta" }, status),
    ),
  );
}

/** Names shown before "and N others" under a group message. */
const SEEN_NAMES = 3;

/** Under my newest group message: who has seen it, as group chats show it. */
function seenByLine(seen: NonNullable<MessageListInput["seenBy"]>): HTMLElement {
  const { names } = seen;
  const more = names.length - SEEN_NAMES;
  // Each name isolated: a member's U+202E reordered the names after it.
  const list = (shown: string[]) => shown.flatMap((n, i) => (i === 0 ? [bidi(n)] : [", ", bidi(n)]));
  const who = seen.everyone ? ["everyone"] : more > 0 ? [...list(names.slice(0, SEEN_NAMES)), ` and ${more} other${more > 1 ? "s" : ""}`] : list(names);
  return h("div", { class: "seen-by", "data-testid": "seen-by", title: names.map(isolate).join(", ") }, "Seen by ", ...who);
}

/** A note as a quiet line across the list: no bubble, no actions (the server refuses any on a note), no ticks. */
function noteModel(m: Message & { note: ChannelNote }, at: number, input: MessageListInput): { seq: bigint; sentence: string; at: number } {
  // Each name and a new title an isolate of its own in the sentence: a U+202E in one reversed the rest of the line.
  const note = m.note.title ? { ...m.note, title: isolateIfBidi(m.note.title) } : m.note;
  const sentence = noteSentence(note, isolateIfBidi(input.name(m.senderUserId)), (id) => isolateIfBidi(input.name(id)), input.me);
  return { seq: m.seq, sentence, at };
}

function noteLine(v: { seq: bigint; sentence: string; at: number }): HTMLElement {
  // The line is cut to one line on a narrow screen; the tooltip has it whole.
  return h("div", { class: "note-line", "data-testid": "note", "data-seq": v.seq.toString(), title: `${v.sentence} · ${new Date(v.at).toLocaleString()}` }, v.sentence);
}

function quoteModel(seq: bigint, input: MessageListInput): QuoteModel {
  const q = input.quoted(seq);
  return q ? { seq, sender: input.name(q.senderUserId), excerpt: quoteExcerpt(q), deleted: q.deleted } : { seq, deleted: false };
}

/** The answered message above a reply's text; a click shows it. */
function quote(q: QuoteModel, on: Handlers): HTMLElement {
  return h(
    "button",
    {
      type: "button",
      class: `quote ${q.deleted ? "is-deleted" : ""}`,
      "data-testid": "message-quote",
      "data-quoted-seq": q.seq.toString(),
      title: "Show the message this replies to",
      onclick: () => on.jump(q.seq),
    },
    q.sender !== undefined ? bidi(q.sender, "span", { class: "quote-sender", "data-testid": "quote-sender" }) : null,
    q.excerpt !== undefined ? bidi(q.excerpt, "span", { class: "quote-text", "data-testid": "quote-text" }) : h("span", { class: "quote-text", "data-testid": "quote-text" }, "a message"),
  );
}

function chipModels(m: Message, input: MessageListInput): ChipModel[] {
  return reactionGroups(m.reactions, input.me).map((g) => ({
    emoji: g.emoji,
    count: g.userIds.length,
    mine: g.mine,
    who: g.userIds.map((id) => isolate(input.name(id))).join(", "),
  }));
}

/**
 * A message's reactions, one chip per emoji with how many chose it; mine
 * stands out, and a click on a chip gives (or takes back) mine with its emoji.
 */
function reactionChips(v: MessageModel, on: Handlers): HTMLElement | null {
  if (v.reactions.length === 0) return null;
  return h(
    "div",
    { class: "reactions", "data-testid": "reactions" },
    v.reactions.map((g) =>
      h(
        "button",
        {
          type: "button",
          class: `reaction ${g.mine ? "mine" : ""}`,
          "data-testid": "reaction",
          "data-emoji": g.emoji,
          "data-count": g.count,
          "data-mine": g.mine ? "true" : null,
          "aria-pressed": g.mine ? "true" : "false",
          title: `${g.who} reacted with ${g.emoji}${g.mine ? " (click to take yours back)" : ""}`,
          onclick: () => on.react(v.seq, g.emoji),
        },
        h("span", { class: "reaction-emoji" }, g.emoji),
        " ",
        h("span", { class: "reaction-count" }, String(g.count)),
      ),
    ),
  );
}

/** The emoji offered to react with; the one I chose (`current`) is marked, and choosing it again takes it back. */
function reactionPalette(seq: bigint, current: string, on: Handlers): HTMLElement {
  return h(
    "div",
    { class: "reaction-palette", role: "group", "aria-label": "React with", "data-testid": "reaction-palette" },
    REACTION_CHOICES.map((e) =>
      h(
        "button",
        {
          type: "button",
          class: `reaction-option ${e === current ? "chosen" : ""}`,
          "data-testid": "reaction-option",
          "data-emoji": e,
          "aria-pressed": e === current ? "true" : "false",
          title: e === current ? "Take back your reaction" : `React with ${e}`,
          onclick: () => on.react(seq, e),
        },
        e,
      ),
    ),
  );
}

/**
 * React and Reply (any message), Edit (own messages) and Delete (own, or
 * anyone's for a moderator); shown on hover or keyboard focus, and while the
 * message's reaction palette is open.
 */
function messageActions(v: MessageModel, on: Handlers): HTMLElement | null {
  if (v.deleted) return null;
  const reacting = v.palette !== undefined;
  return h(
    "div",
    { class: "msg-actions" },
    h(
      "button",
      {
        type: "button",
        class: "ghost small",
        "data-testid": "react-message",
        title: "React to this message",
        "aria-expanded": reacting ? "true" : "false",
        onclick: () => on.openReactions(v.seq),
      },
      "React",
    ),
    v.palette !== undefined ? reactionPalette(v.seq, v.palette, on) : null,
    h("button", { type: "button", class: "ghost small", "data-testid": "reply-message", title: "Reply to this message", onclick: () => on.reply(v.seq) }, "Reply"),
    v.mine ? h("button", { type: "button", class: "ghost small", "data-testid": "edit-message", title: "Edit this message", onclick: () => on.edit(v.seq) }, "Edit") : null,
    v.canDelete
      ? h("button", { type: "button", class: "ghost small danger-text", "data-testid": "delete-message", title: "Delete this message for everyone", onclick: () => on.remove(v.seq) }, "Delete")
      : null,
  );
}

const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

/** Text with http(s) links made clickable; everything else stays text. */
function linkify(text: string): Node[] {
  const out: Node[] = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(h("a", { href: m[0], target: "_blank", rel: "noopener noreferrer" }, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}
