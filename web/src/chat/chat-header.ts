import { ChannelKind, PresenceStatus, type Presence } from "../../../gen/es/chat/v1/types_pb.js";
import { avatar, bidi, h, isolate, replaceChildren } from "../dom.js";
import { lastSeen, tsMs } from "../format.js";
import type { RealtimeSession } from "../session.js";
import type { Shell } from "../views/shell.js";
import { isMuted, manages } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import { key } from "./keys.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

export interface ChatHeaderHost {
  readonly ui: Shell;
  readonly session: RealtimeSession;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  /** The page's own socket is open. */
  connected(): boolean;
  /** As last heard, shown or not. */
  presence(userId: bigint): Presence | undefined;
  /** As the page may show it. */
  presenceOf(userId: bigint): Presence | undefined;
}

/** Draws the open chat's header: its name and picture, who is online, and the buttons of what I may do with it. */
export function renderHeader(host: ChatHeaderHost): void {
  const { ui, users } = host;
  const open = host.open();
  if (!open) return;
  const c = host.chats.get(open.id);
  if (!c) return;
  const name = users.channelName(c);
  replaceChildren(ui.chatTitle, bidi(name));
  const pic = avatar(name, c.kind === ChannelKind.DIRECT ? c.peerUserId.toString() : c.channelId.toString(), c.kind === ChannelKind.GROUP ? "group" : "");
  ui.chatAvatar.replaceWith(pic);
  ui.chatAvatar = pic;
  const status = ui.chatStatus;
  const muted = isMuted(c, host.session.serverNow());
  ui.mute.textContent = muted ? "Unmute" : "Mute";
  ui.mute.title = muted ? "Notifications of this chat are off" : "Turn off notifications of this chat";
  ui.mute.dataset.muted = String(muted);
  const isPinned = c.pinnedAt !== undefined;
  renderToggle(ui.pin, isPinned, isPinned ? ["Unpin", "Pinned at the top of your chats"] : ["Pin", "Keep this chat at the top of your chats"]);
  renderToggle(ui.archive, c.archived, c.archived ? ["Unarchive", "Archived: back in your chats with its next message, unless muted"] : ["Archive", "Move this chat out of your list until its next message"]);
  ui.invite.hidden = !manages(c);
  ui.members.hidden = c.kind !== ChannelKind.GROUP;
  ui.leave.hidden = c.kind !== ChannelKind.GROUP;
  const block = ui.block;
  block.hidden = c.kind !== ChannelKind.DIRECT || !users.blocked;
  if (c.kind === ChannelKind.DIRECT && users.blocked) {
    const isBlocked = users.blocked.has(key(c.peerUserId));
    block.textContent = isBlocked ? "Unblock" : "Block";
    block.dataset.blocked = String(isBlocked);
  }
  if (c.kind === ChannelKind.DIRECT) {
    const u = users.get(c.peerUserId);
    if (!host.connected()) {
      status.dataset.presence = "unknown";
      replaceChildren(status, u ? h("span", { class: "muted" }, `@${u.username}`) : null);
      return;
    }
    const p = host.presence(c.peerUserId);
    const online = p?.status === PresenceStatus.ONLINE;
    status.dataset.presence = online ? "online" : "offline";
    // How long ago by the server's clock, which says when they were last seen: this browser's may be minutes off.
    replaceChildren(status, h("span", { class: `dot ${online ? "on" : ""}` }), online ? "online" : lastSeen(tsMs(p?.lastSeenAt), host.session.serverNow()), u ? h("span", { class: "muted" }, ` · @${u.username}`) : null);
  } else {
    const online = open.members.filter((id) => id !== host.me && host.presenceOf(id)?.status === PresenceStatus.ONLINE).length;
    delete status.dataset.presence;
    replaceChildren(status, `${c.memberCount} member${c.memberCount === 1 ? "" : "s"}${online > 0 ? `, ${online} online` : ""}`);
    status.title = open.members.map((id) => isolate(users.name(id))).join(", ");
  }
}

function renderToggle(button: HTMLButtonElement, pressed: boolean, [label, title]: [string, string]): void {
  button.textContent = label;
  button.title = title;
  button.setAttribute("aria-pressed", String(pressed));
}
