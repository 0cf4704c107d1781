import { h, replaceChildren, type Child } from "../dom.js";

/** The signed-in layout: the chat list on the left, the open conversation on the right. */
export interface Shell {
  layout: HTMLElement;
  meAvatar: HTMLElement;
  meName: HTMLElement;
  meHandle: HTMLElement;
  connection: HTMLElement;
  logout: HTMLButtonElement;
  account: HTMLButtonElement;
  /** Friends and friend requests: who "Online shown to friends only" shows me to. */
  friends: HTMLButtonElement;
  /** The bell: this device's browser notifications, with data-state a PushState. */
  push: HTMLButtonElement;
  /** Who sees when I am online: a PresenceVisibility value. */
  visibility: HTMLSelectElement;
  search: HTMLInputElement;
  newGroup: HTMLButtonElement;
  sidebarBody: HTMLElement;
  conversation: HTMLElement;
  empty: HTMLElement;
  chat: HTMLElement;
  back: HTMLButtonElement;
  chatAvatar: HTMLElement;
  chatTitle: HTMLElement;
  chatStatus: HTMLElement;
  find: HTMLInputElement;
  findHits: HTMLElement;
  mute: HTMLButtonElement;
  /** Pins the open chat at the top of the list, or unpins it (aria-pressed). */
  pin: HTMLButtonElement;
  /** Moves the open chat to the archive, or back (aria-pressed). */
  archive: HTMLButtonElement;
  /** Marks the open chat unread on all my devices and leaves it, to come back to it. */
  markUnread: HTMLButtonElement;
  /** Clears the open chat's history for me alone (after asking). */
  clearHistory: HTMLButtonElement;
  block: HTMLButtonElement;
  /** Leaves the open group (after asking): shown for groups only. */
  leave: HTMLButtonElement;
  /** A group's invite link: shown to its owner and admins only, the ones the server gives it to. */
  invite: HTMLButtonElement;
  /** Who is in the open group: shown for groups only. */
  members: HTMLButtonElement;
  scroller: HTMLElement;
  /** Back to the newest message (with how many are unread), shown while the reader is scrolled up. */
  toBottom: HTMLButtonElement;
  older: HTMLElement;
  messages: HTMLElement;
  typing: HTMLElement;
  /** Shown above the composer while it holds an edit of an earlier message. */
  editBar: HTMLElement;
  editPreview: HTMLElement;
  editCancel: HTMLButtonElement;
  /** Shown above the composer while the message being written replies to an earlier one. */
  replyBar: HTMLElement;
  replyName: HTMLElement;
  replyPreview: HTMLElement;
  replyCancel: HTMLButtonElement;
  composer: HTMLFormElement;
  input: HTMLTextAreaElement;
  counter: HTMLElement;
  send: HTMLButtonElement;
  toast: HTMLElement;
}

export function renderShell(root: HTMLElement): Shell {
  const s = {
    meAvatar: h("span", { class: "avatar" }),
    meName: h("div", { class: "me-name", "data-testid": "me" }),
    meHandle: h("div", { class: "me-handle" }),
    connection: h("span", { class: "connection", "data-testid": "connection", "data-state": "connecting", role: "status" }, "Connecting…"),
    logout: h("button", { type: "button", class: "ghost small", title: "Log out of this device", "data-testid": "logout" }, "Log out"),
    account: h("button", { type: "button", class: "ghost small", title: "Password and account", "data-testid": "account" }, "Account"),
    friends: h("button", { type: "button", class: "ghost small", title: "Your friends and friend requests", "data-testid": "friends" }, "Friends"),
    push: h("button", { type: "button", class: "ghost icon push-toggle", "data-testid": "push-toggle", "data-state": "off" }, "🔕"),
    visibility: h(
      "select",
      { class: "visibility", "aria-label": "Who sees when you are online", "data-testid": "presence-visibility" },
      h("option", { value: "1" }, "Online shown to people I chat with"),
      h("option", { value: "2" }, "Online shown to friends only"),
      h("option", { value: "3" }, "Online shown to nobody"),
    ),
    search: h("input", {
      type: "search",
      class: "search",
      placeholder: "Find people…",
      "aria-label": "Find people by username",
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: "false",
      "data-testid": "search",
    }),
    newGroup: h("button", { type: "button", class: "ghost", title: "New group", "data-testid": "new-group" }, "New group"),
    sidebarBody: h("div", { class: "sidebar-body" }),
    back: h("button", { type: "button", class: "ghost icon back", "aria-label": "Back to chats" }, "‹"),
    chatAvatar: h("span", { class: "avatar" }),
    chatTitle: h("div", { class: "chat-title", "data-testid": "chat-title" }),
    chatStatus: h("div", { class: "chat-status", "data-testid": "chat-status" }),
    find: h("input", { type: "search", class: "find", placeholder: "Search this chat…", "aria-label": "Search this chat", "data-testid": "find" }),
    findHits: h("div", { class: "find-hits", "data-testid": "find-hits", hidden: true }),
    mute: h("button", { type: "button", class: "ghost small", "data-testid": "mute" }, "Mute"),
    pin: h("button", { type: "button", class: "ghost small", "data-testid": "pin-toggle", "aria-pressed": "false" }, "Pin"),
    archive: h("button", { type: "button", class: "ghost small", "data-testid": "archive-toggle", "aria-pressed": "false" }, "Archive"),
    markUnread: h("button", { type: "button", class: "ghost small", "data-testid": "mark-unread", title: "Show this chat as unread on all your devices until you open it again" }, "Mark unread"),
    clearHistory: h("button", { type: "button", class: "ghost small clear-history", "data-testid": "clear-history", title: "Clear this chat's messages for you; the others keep theirs" }, "Clear history"),
    block: h("button", { type: "button", class: "ghost small block", "data-testid": "block", hidden: true }, "Block"),
    leave: h("button", { type: "button", class: "ghost small leave", "data-testid": "leave-group", title: "Leave this group: its chat goes from all your devices", hidden: true }, "Leave"),
    members: h("button", { type: "button", class: "ghost small", "data-testid": "members", title: "Who is in this group", hidden: true }, "Members"),
    invite: h("button", { type: "button", class: "ghost small", "data-testid": "invite-link", title: "A link that lets people join this group", hidden: true }, "Invite link"),
    older: h("div", { class: "older", "data-testid": "older" }),
    toBottom: h("button", { type: "button", class: "to-bottom", "data-testid": "to-bottom", title: "Go to the newest message", hidden: true }, "↓"),
    messages: h("div", { class: "messages", "data-testid": "messages", role: "log", "aria-live": "polite" }),
    typing: h("div", { class: "typing", "data-testid": "typing" }),
    editPreview: h("span", { class: "edit-preview" }),
    editCancel: h("button", { type: "button", class: "ghost small", "data-testid": "edit-cancel", title: "Stop editing (Esc)" }, "Cancel"),
    replyName: h("span", { class: "edit-label", "data-testid": "reply-name" }),
    replyPreview: h("span", { class: "edit-preview", "data-testid": "reply-preview" }),
    replyCancel: h("button", { type: "button", class: "ghost small", "data-testid": "reply-cancel", title: "Do not reply (Esc)" }, "Cancel"),
    // No maxlength: it counts UTF-16 units and cut a pasted text of emoji at half the limit, silently; the counter (code points) and the send button keep it.
    input: h("textarea", { rows: 1, placeholder: "Write a message…", "aria-label": "Message", "data-testid": "composer" }),
    counter: h("span", { class: "counter" }),
    send: h("button", { type: "submit", class: "primary send", "data-testid": "send", "aria-label": "Send" }, "Send"),
    toast: h("div", { class: "toast", role: "alert", "data-testid": "toast", hidden: true }),
  };
  const scroller = h("div", { class: "scroller" }, s.older, s.messages);
  const composer = h("form", { class: "composer" }, s.input, s.counter, s.send);
  const editBar = h("div", { class: "edit-bar", "data-testid": "edit-bar", hidden: true }, h("span", { class: "edit-label" }, "Editing"), s.editPreview, s.editCancel);
  const replyBar = h("div", { class: "edit-bar reply-bar", "data-testid": "reply-bar", hidden: true }, s.replyName, s.replyPreview, s.replyCancel);
  const chat = h(
    "div",
    { class: "chat", hidden: true },
    h("header", { class: "chat-header" }, s.back, s.chatAvatar, h("div", { class: "chat-heading" }, s.chatTitle, s.chatStatus), h("div", { class: "chat-actions" }, s.find, s.members, s.invite, s.mute, s.pin, s.archive, s.markUnread, s.clearHistory, s.block, s.leave)),
    s.findHits,
    h("div", { class: "scroll-area" }, scroller, s.toBottom),
    s.typing,
    editBar,
    replyBar,
    composer,
  );
  const empty = h("div", { class: "empty", "data-testid": "empty" }, emptyContent());
  const conversation = h("section", { class: "conversation" }, empty, chat);
  const layout = h(
    "div",
    { class: "layout", "data-view": "list" },
    h(
      "aside",
      { class: "sidebar" },
      h(
        "header",
        { class: "me" },
        s.meAvatar,
        h("div", { class: "me-text" }, s.meName, s.meHandle),
        s.connection,
        h("div", { class: "me-actions" }, s.push, s.friends, s.account, s.logout),
      ),
      h("div", { class: "sidebar-tools" }, s.search, s.newGroup),
      h("div", { class: "sidebar-settings" }, s.visibility),
      s.sidebarBody,
    ),
    conversation,
    s.toast,
  );
  replaceChildren(root, layout);
  return { ...s, layout, conversation, empty, chat, scroller, editBar, replyBar, composer };
}

/** The pane with no chat open; `opening`: one not in the list yet (a link's, a notification's) is being asked for. */
export function emptyContent(opening = false): Child[] {
  const mark = h("div", { class: "empty-mark", "aria-hidden": "true" });
  if (opening) return [mark, h("h2", { "data-testid": "opening" }, "Opening…")];
  return [mark, h("h2", {}, "No chat open"), h("p", {}, "Pick a chat on the left, or find someone by username to start one.")];
}
