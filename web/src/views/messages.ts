import type { Message } from "../../../gen/es/chat/v1/types_pb.js";
import { avatar, h } from "../dom.js";
import { clock, dayLabel, sameDay, tsMs } from "../format.js";

export interface PendingView {
  clientMsgId: string;
  text: string;
  state: "queued" | "sending" | "sent" | "failed";
  error?: string;
  at: number;
}

export interface MessageListInput {
  messages: Message[];
  pending: PendingView[];
  me: bigint;
  group: boolean;
  /** The highest seq another member is known to have read (live receipts). */
  readByOthers: bigint;
  name(userId: bigint): string;
  retry(clientMsgId: string): void;
  discard(clientMsgId: string): void;
}

/** Consecutive messages of one sender within this window share one header. */
const GROUP_WINDOW_MS = 5 * 60_000;

export function messageList(input: MessageListInput): Node[] {
  const out: Node[] = [];
  let prev: { sender: bigint; at: number } | undefined;
  for (const m of input.messages) {
    const at = tsMs(m.sentAt) ?? 0;
    if (!prev || !sameDay(prev.at, at)) {
      out.push(h("div", { class: "day", role: "separator" }, h("span", {}, dayLabel(at))));
      prev = undefined;
    }
    const mine = m.senderUserId === input.me;
    const continued = !!prev && prev.sender === m.senderUserId && at - prev.at < GROUP_WINDOW_MS;
    const showSender = input.group && !mine && !continued;
    const ticks = mine ? (m.seq <= input.readByOthers ? "✓✓" : "✓") : "";
    out.push(
      h(
        "div",
        {
          class: `msg ${mine ? "mine" : "theirs"} ${continued ? "cont" : ""}`,
          "data-testid": "message",
          "data-seq": m.seq.toString(),
          "data-sender": m.senderUserId.toString(),
        },
        input.group && !mine ? (showSender ? avatar(input.name(m.senderUserId), m.senderUserId.toString(), "small") : h("span", { class: "avatar-gap" })) : null,
        h(
          "div",
          { class: "bubble" },
          showSender ? h("div", { class: "sender" }, input.name(m.senderUserId)) : null,
          h("div", { class: "text", "data-testid": "message-text" }, ...linkify(m.text)),
          h("div", { class: "meta" }, h("time", { datetime: new Date(at).toISOString(), title: new Date(at).toLocaleString() }, clock(at)), ticks ? h("span", { class: `ticks ${ticks.length > 1 ? "read" : ""}` }, ticks) : null),
        ),
      ),
    );
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
        h("div", { class: "bubble" }, h("div", { class: "text" }, ...linkify(p.text)), h("div", { class: "meta" }, status)),
      ),
    );
  }
  return out;
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
