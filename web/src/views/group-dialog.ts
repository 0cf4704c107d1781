import type { User } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError } from "../api.js";
import { h, replaceChildren, showModal, type Modal } from "../dom.js";
import { userItem } from "./sidebar.js";
import { searchAsTyped } from "./user-search.js";

export interface GroupDialogActions {
  search(query: string): Promise<User[]>;
  /** Whether the query is my own username, which the search leaves out. */
  isMe(query: string): boolean;
  create(title: string, members: User[]): Promise<void>;
}

/** A modal to name a group and pick its first members by username. */
export function openGroupDialog(actions: GroupDialogActions): Modal {
  const picked = new Map<string, User>();
  // The server takes 128 code points; maxlength counts UTF-16 units, two for an emoji: twice that lets every title it takes in, and it names the limit past it.
  const title = h("input", { name: "title", required: true, maxlength: 256, placeholder: "Weekend plans", "data-testid": "group-title" });
  const query = h("input", { type: "search", placeholder: "Add people by username", autocomplete: "off", autocapitalize: "none", "data-testid": "group-search" });
  const chips = h("div", { class: "chips", "data-testid": "group-members" });
  const results = h("ul", { class: "results" });
  const error = h("p", { class: "form-error", role: "alert" });
  const create = h("button", { type: "submit", class: "primary", "data-testid": "group-create" }, "Create group");
  const cancel = h("button", { type: "button", class: "ghost" }, "Cancel");

  const renderChips = () =>
    replaceChildren(
      chips,
      [...picked.values()].map((u) =>
        h(
          "span",
          { class: "chip" },
          u.displayName || u.username,
          h("button", { type: "button", "aria-label": `Remove ${u.username}`, onclick: () => (picked.delete(u.userId.toString()), renderChips()) }, "×"),
        ),
      ),
      picked.size === 0 ? h("span", { class: "hint" }, "Nobody added yet (you can add up to 99).") : null,
    );

  const stopSearch = searchAsTyped(query, results, {
    search: actions.search,
    show: (users, q) =>
      users.length === 0
        ? h("li", { class: "hint", "data-testid": "group-search-empty" }, actions.isMe(q) ? "That is you: you are in the groups you create." : "No one by that name.")
        : users.map((u) =>
            userItem(u, (x) => {
              picked.set(x.userId.toString(), x);
              query.value = "";
              replaceChildren(results);
              renderChips();
              query.focus();
            }),
          ),
    failed: (err) => (error.textContent = describeError(err)),
  });

  const form = h(
    "form",
    { class: "dialog-body", method: "dialog" },
    h("h2", {}, "New group"),
    h("label", { class: "field" }, h("span", {}, "Group name"), title),
    h("label", { class: "field" }, h("span", {}, "Members"), query),
    results,
    chips,
    error,
    h("div", { class: "dialog-actions" }, cancel, create),
  );
  const dialog = h("dialog", { class: "dialog", "data-testid": "group-dialog" }, form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!title.value.trim()) {
      error.textContent = "Give the group a name.";
      return;
    }
    create.disabled = true;
    try {
      await actions.create(title.value.trim(), [...picked.values()]);
      dialog.close();
    } catch (err) {
      error.textContent = err instanceof Error ? err.message : String(err);
      create.disabled = false;
    }
  });
  cancel.addEventListener("click", () => dialog.close());
  renderChips();
  const modal = showModal(dialog, stopSearch);
  title.focus();
  return modal;
}
