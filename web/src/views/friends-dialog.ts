import type { FriendRequest } from "../../../gen/es/chat/v1/users_pb.js";
import type { User } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError } from "../api.js";
import { h, replaceChildren, showModal, type Modal } from "../dom.js";
import { userItem } from "./sidebar.js";
import { searchAsTyped } from "./user-search.js";

export interface FriendsDialogActions {
  /** My friends and the requests either way, as the server has them now. */
  read(): Promise<{ friends: User[]; requests: FriendRequest[] }>;
  search(query: string): Promise<User[]>;
  /** Asks them; asking one who asked me already makes us friends. */
  ask(user: User): Promise<void>;
  answer(user: User, accept: boolean): Promise<void>;
  /** Ends a friendship, or withdraws my request. */
  remove(user: User): Promise<void>;
  message(user: User): void;
}

/**
 * Friends: who they are, the requests to answer and the ones waiting, and
 * asking someone by username. Friends are who "Online shown to friends
 * only" shows one's presence to. Nothing tells the page of a request live:
 * the lists are read when the dialog opens and after each change made here.
 */
export function openFriendsDialog(actions: FriendsDialogActions): Modal {
  const body = h("div", { class: "friends", "data-testid": "friends-lists" });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "friends-error" });
  const query = h("input", { type: "search", placeholder: "Find people by username", autocomplete: "off", autocapitalize: "none", "data-testid": "friends-search" });
  const results = h("ul", { class: "results" });
  const close = h("button", { type: "button", class: "ghost" }, "Close");
  const dialog = h(
    "dialog",
    { class: "dialog", "data-testid": "friends-dialog" },
    h(
      "div",
      { class: "dialog-body" },
      h("h2", {}, "Friends"),
      h("p", { class: "hint" }, "Friends can see when you are online if you show it to friends only."),
      body,
      h("label", { class: "field" }, h("span", {}, "Add a friend"), query),
      results,
      error,
      h("div", { class: "dialog-actions" }, close),
    ),
  );
  let known = new Map<bigint, string>();

  const change = async (what: () => Promise<void>) => {
    error.textContent = "";
    try {
      await what();
    } catch (err) {
      error.textContent = describeError(err);
    }
    await load();
  };

  const button = (label: string, testid: string, act: () => void, cls = "ghost small") => h("button", { type: "button", class: cls, "data-testid": testid, onclick: act }, label);
  const row = (user: User, state: string, ...buttons: HTMLElement[]) =>
    h(
      "li",
      { class: "member", "data-testid": "friend", "data-username": user.username, "data-state": state },
      h("span", { class: "member-name" }, user.displayName || user.username, h("span", { class: "muted" }, ` @${user.username}`)),
      ...buttons,
    );
  const section = (title: string, rows: HTMLElement[]) => (rows.length === 0 ? null : h("div", {}, h("div", { class: "section-title" }, title), h("ul", { class: "members" }, rows)));

  let loads = 0;
  const load = async () => {
    const turn = ++loads;
    try {
      const { friends, requests } = await actions.read();
      if (turn !== loads) return;
      const incoming = requests.filter((r) => !r.outgoing && r.user).map((r) => r.user!);
      const outgoing = requests.filter((r) => r.outgoing && r.user).map((r) => r.user!);
      known = new Map([...friends.map((u) => [u.userId, "a friend"] as const), ...incoming.map((u) => [u.userId, "asked you"] as const), ...outgoing.map((u) => [u.userId, "asked"] as const)]);
      replaceChildren(
        body,
        section(
          "Asked you",
          incoming.map((u) =>
            row(u, "incoming", button("Accept", "friend-accept", () => void change(() => actions.answer(u, true)), "primary small"), button("Decline", "friend-decline", () => void change(() => actions.answer(u, false)))),
          ),
        ),
        section(
          "Friends",
          friends.map((u) =>
            row(
              u,
              "friend",
              button("Message", "friend-message", () => {
                dialog.close();
                actions.message(u);
              }),
              button("Remove", "friend-remove", () => window.confirm(`Remove ${u.displayName || u.username} from your friends?`) && void change(() => actions.remove(u)), "ghost small danger-text"),
            ),
          ),
        ),
        section("Waiting for an answer", outgoing.map((u) => row(u, "outgoing", button("Cancel", "friend-cancel", () => void change(() => actions.remove(u)))))),
        friends.length + incoming.length + outgoing.length === 0 ? h("p", { class: "hint", "data-testid": "no-friends" }, "No friends yet.") : null,
      );
    } catch (err) {
      if (turn === loads) error.textContent = describeError(err);
    }
  };

  const stopSearch = searchAsTyped(query, results, {
    search: actions.search,
    show: (users) =>
      users.length === 0
        ? h("li", { class: "hint", "data-testid": "friends-search-empty" }, "No one by that name.")
        : users.map((u) => {
            const state = known.get(u.userId);
            // One who asked me is accepted by asking back, as the server has it.
            if (state && state !== "asked you") return userItem(u, () => undefined, state);
            return userItem(u, (x) => {
              query.value = "";
              replaceChildren(results);
              void change(() => actions.ask(x));
            }, state ?? "ask to be friends");
          }),
    failed: (err) => (error.textContent = describeError(err)),
  });

  close.addEventListener("click", () => dialog.close());
  const modal = showModal(dialog, stopSearch);
  void load();
  return modal;
}
