import { ChannelKind, PresenceStatus, type Channel, type Presence, type User } from "../../../gen/es/chat/v1/types_pb.js";
import { avatar, bidi, h } from "../dom.js";
import { preview, shortWhen, tsMs } from "../format.js";

export interface ChannelRow {
  channel: Channel;
  /** Now by the server's clock: the times shown are the server's, and this browser's clock may be off it. */
  now: number;
  name: string;
  /** For direct chats: the peer's presence, when known. */
  presence?: Presence;
  senderName?: string;
  /** The last message's sentence when it is a note, which stands without a "Name: " before it. */
  lastNote?: string;
  mine: boolean;
  active: boolean;
  typing: boolean;
  /** The chat's pushes are muted: its unread badge is shown quieter. */
  muted: boolean;
  pinned: boolean;
  /** I marked the chat unread and have not opened it since: shown unread, with a dot when there is nothing to count. */
  markedUnread: boolean;
}

export function channelItem(row: ChannelRow, open: (id: bigint) => void): HTMLElement {
  const c = row.channel;
  const last = c.lastMessage;
  const online = row.presence?.status === PresenceStatus.ONLINE;
  const pic = avatar(row.name, c.kind === ChannelKind.DIRECT ? c.peerUserId.toString() : c.channelId.toString(), c.kind === ChannelKind.GROUP ? "group" : "");
  if (c.kind === ChannelKind.DIRECT) pic.append(h("span", { class: `dot ${online ? "on" : ""}`, "data-testid": "channel-presence", "data-presence": online ? "online" : "offline" }));
  // A sender's name and their text each isolated: a U+202E in the name reversed the text after it.
  let text: (string | HTMLElement)[];
  if (row.typing) text = ["typing…"];
  else if (row.lastNote) text = [preview(row.lastNote)];
  else if (last)
    text = [
      ...(row.mine ? ["You: "] : row.senderName && c.kind === ChannelKind.GROUP ? [bidi(row.senderName), ": "] : []),
      last.deleted ? "This message was deleted" : bidi(preview(last.text)),
    ];
  else if (c.clearedThroughSeq > 0n) text = ["History cleared"];
  else text = [c.kind === ChannelKind.GROUP ? `${c.memberCount} member${c.memberCount === 1 ? "" : "s"}` : "No messages yet"];
  const unread = Number(c.unreadCount);
  // The marks are named in the row's own title, its tooltip anywhere over it: a press lands on the row's button, not on what it holds (style.css), so a mark's title would never show.
  const marks = [row.pinned ? "Pinned" : null, row.muted ? "Notifications off" : null, unread === 0 && row.markedUnread ? "Marked unread" : null].filter((m) => m !== null);
  // The time it is placed by: a clear of its history takes its last message, not its place.
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: `channel ${row.active ? "active" : ""} ${unread > 0 || row.markedUnread ? "has-unread" : ""}`,
        "data-testid": "channel",
        "data-channel-id": c.channelId.toString(),
        "data-name": row.name,
        "aria-current": row.active ? "true" : null,
        title: marks.length > 0 ? marks.join(" · ") : null,
        onclick: () => open(c.channelId),
      },
      pic,
      h(
        "span",
        { class: "channel-main" },
        h("span", { class: "channel-top" }, bidi(row.name, "span", { class: "channel-name" }), h("span", { class: "channel-when" }, shortWhen(tsMs(last?.sentAt) ?? tsMs(c.lastActivityAt) ?? tsMs(c.createdAt), row.now))),
        h(
          "span",
          { class: "channel-bottom" },
          h("span", { class: `channel-last ${row.typing ? "is-typing" : last?.deleted ? "is-deleted" : row.lastNote ? "is-note" : ""}`, "data-testid": "channel-last" }, ...text),
          row.pinned ? h("span", { class: "pinned-mark", "data-testid": "channel-pinned", "aria-label": "pinned" }, "📌") : null,
          row.muted ? h("span", { class: "muted-mark", "data-testid": "channel-muted", "aria-label": "muted" }, "🔕") : null,
          unread > 0
            ? h("span", { class: `badge ${row.muted ? "quiet" : ""}`, "data-testid": "unread", "aria-label": `${unread} unread` }, unread > 999 ? "999+" : String(unread))
            : row.markedUnread
              ? h("span", { class: `badge marked ${row.muted ? "quiet" : ""}`, "data-testid": "marked-unread", "aria-label": "marked unread" })
              : null,
        ),
      ),
    ),
  );
}

/** The last row of the chat list, which opens the archive; only there while something is archived. */
export function archivedItem(count: number, show: () => void): HTMLElement {
  return sidebarSwitch(`Archived (${count})`, "archived-toggle", show);
}

/** The first row of the archive, back to the chat list. */
export function chatsItem(back: () => void): HTMLElement {
  return sidebarSwitch("← Chats", "archived-back", back);
}

function sidebarSwitch(label: string, testid: string, onclick: () => void): HTMLElement {
  return h("li", {}, h("button", { type: "button", class: "channel sidebar-switch", "data-testid": testid, onclick }, label));
}

export function userItem(user: User, pick: (u: User) => void, extra?: string): HTMLElement {
  const name = user.displayName || user.username;
  return h(
    "li",
    {},
    h(
      "button",
      { type: "button", class: "channel", "data-testid": "search-result", "data-username": user.username, onclick: () => pick(user) },
      avatar(name, user.userId.toString()),
      h(
        "span",
        { class: "channel-main" },
        h("span", { class: "channel-top" }, bidi(name, "span", { class: "channel-name" })),
        h("span", { class: "channel-bottom" }, h("span", { class: "channel-last" }, `@${user.username}${extra ? ` · ${extra}` : ""}`)),
      ),
    ),
  );
}

export function sidebarNote(text: string, testid = "sidebar-note"): HTMLElement {
  return h("p", { class: "sidebar-note", "data-testid": testid }, text);
}
