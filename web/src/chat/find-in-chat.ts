import { describeError, type Api } from "../api.js";
import { bidi, h, replaceChildren } from "../dom.js";
import { excerpt } from "../format.js";
import type { Shell } from "../views/shell.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface FindInChatHost {
  readonly api: Api;
  readonly ui: Shell;
  readonly users: Users;
  open(): OpenChat | undefined;
  /** Shows the open chat's message with this seq, reading history up to it. */
  jumpTo(seq: bigint): Promise<void>;
  toast(text: string): void;
}

/** The open chat's search box and its hits. */
export class FindInChat {
  /** Searches asked (and clears): only the answer to the last one is shown. */
  private finds = 0;

  constructor(private readonly host: FindInChatHost) {}

  bind(): void {
    const ui = this.host.ui;
    ui.find.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") void this.find(0n);
      if (ev.key === "Escape") this.clear();
    });
    ui.find.addEventListener("search", () => ui.find.value === "" && this.clear());
  }

  /**
   * Searches the open chat for the words typed, older than `before` (0: from
   * the newest); adds to the hits shown. "Search older messages" goes on
   * with the words of the hits above it (`query`), not with what the box
   * holds since; an answer to a search made before the last one is dropped.
   */
  private async find(before: bigint, query = this.host.ui.find.value.trim()): Promise<void> {
    const open = this.host.open();
    if (!open || !query) return this.clear();
    const hits = this.host.ui.findHits;
    const asked = ++this.finds;
    try {
      const res = await this.host.api.messages.searchMessages({ channelId: open.id, query, beforeSeq: before });
      await this.host.users.ensureUsers(res.messages.map((m) => m.senderUserId));
      if (this.host.open() !== open || asked !== this.finds) return;
      if (before === 0n) replaceChildren(hits);
      hits.querySelector("[data-testid=find-more]")?.remove();
      hits.querySelector("[data-testid=find-none-yet]")?.remove();
      for (const m of res.messages) {
        // A hit opens its message in the chat, loading the history up to it as a quote's click does.
        hits.append(
          h(
            "button",
            { type: "button", class: "find-hit", "data-testid": "find-hit", "data-seq": String(m.seq), onclick: () => void this.host.jumpTo(m.seq) },
            h("span", { class: "muted" }, bidi(this.host.users.name(m.senderUserId)), " ·"),
            bidi(excerpt(m.text, query.split(/\s+/))),
            m.editedAt ? h("span", { class: "muted find-edited", "data-testid": "find-edited" }, "(edited)") : null,
          ),
        );
      }
      const none = hits.querySelector("[data-testid=find-hit]") === null;
      if (res.nextBeforeSeq > 0n) {
        // The server stops at its scan bound: no hit yet is not "nothing found" while older messages are unsearched.
        if (none) {
          hits.append(h("span", { class: "muted", "data-testid": "find-none-yet" }, "No matches in the messages searched so far."));
        }
        hits.append(h("button", { type: "button", class: "link", "data-testid": "find-more", onclick: () => void this.find(res.nextBeforeSeq, query) }, "Search older messages"));
      } else if (none) {
        hits.append(h("span", { class: "muted", "data-testid": "find-none" }, "No messages found."));
      }
      hits.hidden = false;
    } catch (err) {
      this.host.toast(describeError(err));
    }
  }

  clear(): void {
    this.finds++;
    this.host.ui.find.value = "";
    this.host.ui.findHits.hidden = true;
    replaceChildren(this.host.ui.findHits);
  }
}
