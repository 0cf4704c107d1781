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

export function messageList(input: MessageListInput): Node[] {
  const out: Node[] = [];
  let prev: { sender: bigint; at: number } | undefined;
  let lastAt = 0;
  for (const m of input.messages) {
    // Shown no earlier than the message above: each time is the clock of the chat server that took
    // it, and one a second behind another's put times, and across midnight the day, back and forth.
    const at = (lastAt = Math.max(lastAt, tsMs(m.sentAt) ?? 0));
    if (!prev || !sameDay(prev.at, at)) {
      out.push(h("div", { class: "day", role: "separator" }, h("span", {}, dayLabel(at, input.now))));
      prev = undefined;
    }
    if (isNote(m)) {
      out.push(noteLine(m, at, input));
      // A note ends a run of one sender's messages: the next one shows its sender again.
      prev = { sender: 0n, at };
      continue;
    }
    const mine = m.senderUserId === input.me;
    const continued = !!prev && prev.sender === m.senderUserId && at - prev.at < GROUP_WINDOW_MS;
    const showSender = input.group && !mine && !continued;
    const ticks = mine ? (m.seq <= input.readByOthers ? "✓✓" : "✓") : "";
    const saving = input.saving.get(m.seq.toString());
    const editedMs = m.deleted ? undefined : tsMs(m.editedAt);
    out.push(
      h(
        "div",
        {
          class: `msg ${mine ? "mine" : "theirs"} ${continued ? "cont" : ""} ${m.deleted ? "deleted" : ""} ${m.seq === input.editing ? "editing" : ""} ${m.seq === input.replying ? "replying" : ""} ${m.seq === input.flash ? "flash" : ""} ${m.seq === input.reacting ? "reacting" : ""}`,
          "data-testid": "message",
          "data-seq": m.seq.toString(),
          "data-sender": m.senderUserId.toString(),
          "data-edited": editedMs !== undefined ? "true" : null,
          "data-deleted": m.deleted ? "true" : null,
          "data-reply-to": m.replyToSeq !== 0n ? m.replyToSeq.toString() : null,
        },
        input.group && !mine ? (showSender ? avatar(input.name(m.senderUserId), m.senderUserId.toString(), "small") : h("span", { class: "avatar-gap" })) : null,
        h(
          "div",
          { class: "bubble" },
          showSender ? bidi(input.name(m.senderUserId), "div", { class: "sender" }) : null,
          // A deleted reply keeps no trace of what it answered, as it keeps no text.
          m.replyToSeq !== 0n && !m.deleted ? quote(m.replyToSeq, input) : null,
          m.deleted
            ? h("div", { class: "text deleted-note", "data-testid": "message-text" }, "This message was deleted")
            : h("div", { class: "text", "data-testid": "message-text", dir: "auto" }, ...linkify(balanced(m.text))),
          m.deleted ? null : reactionChips(m, input),
          h(
            "div",
            { class: "meta" },
            saving ? h("span", { "data-testid": "message-saving" }, saving === "queued" ? "waiting for connection…" : "saving…") : null,
            editedMs !== undefined ? h("span", { class: "edited", "data-testid": "message-edited", title: `Edited ${new Date(editedMs).toLocaleString()}` }, "edited") : null,
            h("time", { datetime: new Date(at).toISOString(), title: new Date(at).toLocaleString() }, clock(at)),
            ticks ? h("span", { class: `ticks ${ticks.length > 1 ? "read" : ""}` }, ticks) : null,
          ),
        ),
        messageActions(m, mine, input),
      ),
    );
    if (input.seenBy?.seq === m.seq) out.push(seenByLine(input.seenBy));
    prev = { sender: m.senderUserId, at };
  }
  for (const p of input.pending) {
    const status =
      p.state === "failed"
        ? h(
            "span",
            { class: "failed" },
            `Not sent${p.error ? `: ${p.error}` : ""} · `,
            h("button", { type: "button", class: "link", onclick: () => input.retry(p.clientMsgId) }, "Retry"),
            " · ",
            h("button", { type: "button", class: "link", onclick: () => input.discard(p.clientMsgId) }, "Discard"),
          )
        : h("span", {}, p.state === "queued" ? "waiting for connection…" : p.state === "sent" ? `${clock(p.at)} ✓` : "sending…");
    out.push(
      h(
        "div",
        { class: `msg mine pending ${p.state}`, "data-testid": "pending-message", "data-state": p.state },
        h(
          "div",
          { class: "bubble" },
          p.replyToSeq !== 0n ? quote(p.replyToSeq, input) : null,
          h("div", { class: "text", dir: "auto" }, ...linkify(balanced(p.text))),
          h("div", { class: "meta" }, status),
        ),
      ),
    );
  }
  return out;
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
function noteLine(m: Message & { note: ChannelNote }, at: number, input: MessageListInput): HTMLElement {
  // Each name and a new title an isolate of its own in the sentence: a U+202E in one reversed the rest of the line.
  const note = m.note.title ? { ...m.note, title: isolateIfBidi(m.note.title) } : m.note;
  const sentence = noteSentence(note, isolateIfBidi(input.name(m.senderUserId)), (id) => isolateIfBidi(input.name(id)), input.me);
  // The line is cut to one line on a narrow screen; the tooltip has it whole.
  return h("div", { class: "note-line", "data-testid": "note", "data-seq": m.seq.toString(), title: `${sentence} · ${new Date(at).toLocaleString()}` }, sentence);
}

/** The answered message above a reply's text; a click shows it. */
function quote(seq: bigint, input: MessageListInput): HTMLElement {
  const q = input.quoted(seq);
  return h(
    "button",
    {
      type: "button",
      class: `quote ${q?.deleted ? "is-deleted" : ""}`,
      "data-testid": "message-quote",
      "data-quoted-seq": seq.toString(),
      title: "Show the message this replies to",
      onclick: () => input.jump(seq),
    },
    q ? bidi(input.name(q.senderUserId), "span", { class: "quote-sender", "data-testid": "quote-sender" }) : null,
    q ? bidi(quoteExcerpt(q), "span", { class: "quote-text", "data-testid": "quote-text" }) : h("span", { class: "quote-text", "data-testid": "quote-text" }, "a message"),
  );
}

/**
 * A message's reactions, one chip per emoji with how many chose it; mine
 * stands out, and a click on a chip gives (or takes back) mine with its emoji.
 */
function reactionChips(m: Message, input: MessageListInput): HTMLElement | null {
  const groups = reactionGroups(m.reactions, input.me);
  if (groups.length === 0) return null;
  return h(
    "div",
    { class: "reactions", "data-testid": "reactions" },
    groups.map((g) => {
      const who = g.userIds.map((id) => isolate(input.name(id))).join(", ");
      return h(
        "button",
        {
          type: "button",
          class: `reaction ${g.mine ? "mine" : ""}`,
          "data-testid": "reaction",
          "data-emoji": g.emoji,
          "data-count": g.userIds.length,
          "data-mine": g.mine ? "true" : null,
          "aria-pressed": g.mine ? "true" : "false",
          title: `${who} reacted with ${g.emoji}${g.mine ? " (click to take yours back)" : ""}`,
          onclick: () => input.react(m, g.emoji),
        },
        h("span", { class: "reaction-emoji" }, g.emoji),
        " ",
        h("span", { class: "reaction-count" }, String(g.userIds.length)),
      );
    }),
  );
}

/** The emoji offered to react with; the one I chose is marked, and choosing it again takes it back. */
function reactionPalette(m: Message, input: MessageListInput): HTMLElement {
  const current = myReaction(m, input.me);
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
          onclick: () => input.react(m, e),
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
function messageActions(m: Message, mine: boolean, input: MessageListInput): HTMLElement | null {
  if (m.deleted) return null;
  const canEdit = mine;
  const canDelete = mine || input.moderator;
  const reacting = m.seq === input.reacting;
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
        onclick: () => input.openReactions(m.seq),
      },
      "React",
    ),
    reacting ? reactionPalette(m, input) : null,
    h("button", { type: "button", class: "ghost small", "data-testid": "reply-message", title: "Reply to this message", onclick: () => input.reply(m) }, "Reply"),
    canEdit ? h("button", { type: "button", class: "ghost small", "data-testid": "edit-message", title: "Edit this message", onclick: () => input.edit(m) }, "Edit") : null,
    canDelete
      ? h("button", { type: "button", class: "ghost small danger-text", "data-testid": "delete-message", title: "Delete this message for everyone", onclick: () => input.remove(m) }, "Delete")
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
