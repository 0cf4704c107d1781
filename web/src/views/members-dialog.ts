import { MemberRole, type User } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError } from "../api.js";
import { h, replaceChildren, showModal, type Modal } from "../dom.js";
import { userItem } from "./sidebar.js";
import { searchAsTyped } from "./user-search.js";

export interface MemberRow {
  user: User;
  role: MemberRole;
  me: boolean;
}

export interface MembersDialogActions {
  /** The group's members as the server has them now. */
  members(): Promise<MemberRow[]>;
  /** My role in the group, read when the dialog draws: it says what I may change. */
  myRole(): MemberRole;
  search(query: string): Promise<User[]>;
  add(user: User): Promise<void>;
  remove(user: User): Promise<void>;
  setAdmin(user: User, admin: boolean): Promise<void>;
  /** A new title for the group; resolves to the title as the server keeps it. */
  rename(title: string): Promise<string>;
}

const ROLE_NAMES: Partial<Record<MemberRole, string>> = { [MemberRole.OWNER]: "owner", [MemberRole.ADMIN]: "admin" };

/**
 * Who is in a group, for every member; its owner and admins add people by
 * username and take them out (an admin, plain members only, as the server
 * has it), and the owner makes admins.
 */
export function openMembersDialog(groupName: string, actions: MembersDialogActions): Modal {
  const list = h("ul", { class: "members", "data-testid": "members-list" });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "members-error" });
  const query = h("input", { type: "search", placeholder: "Add people by username", autocomplete: "off", autocapitalize: "none", "data-testid": "members-search" });
  const results = h("ul", { class: "results" });
  const adding = h("label", { class: "field", hidden: true }, h("span", {}, "Add people"), query);
  const close = h("button", { type: "button", class: "ghost" }, "Close");
  const heading = h("h2", {}, `Members of ${groupName}`);
  // The server takes 128 code points; maxlength counts UTF-16 units, as in the new group's dialog.
  const title = h("input", { name: "title", required: true, maxlength: 256, value: groupName, "data-testid": "group-rename-title" });
  const renameForm = h(
    "form",
    { class: "rename", hidden: true },
    h("label", { class: "field" }, h("span", {}, "Group name"), h("span", { class: "rename-row" }, title, h("button", { type: "submit", class: "ghost small", "data-testid": "group-rename" }, "Rename"))),
  );
  const dialog = h(
    "dialog",
    { class: "dialog", "data-testid": "members-dialog" },
    h("div", { class: "dialog-body" }, heading, renameForm, list, adding, results, error, h("div", { class: "dialog-actions" }, close)),
  );
  renameForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const wanted = title.value.trim();
    if (!wanted) return;
    void change(async () => {
      groupName = await actions.rename(wanted);
      title.value = groupName;
      heading.textContent = `Members of ${groupName}`;
    });
  });
  let rows: MemberRow[] = [];

  /** Runs a change, then reads the members again; a refusal is said under the list. */
  const change = async (what: () => Promise<void>) => {
    error.textContent = "";
    try {
      await what();
    } catch (err) {
      error.textContent = describeError(err);
    }
    await load();
  };

  const render = () => {
    const mine = actions.myRole();
    const manager = mine === MemberRole.OWNER || mine === MemberRole.ADMIN;
    adding.hidden = !manager;
    renameForm.hidden = !manager;
    if (!manager) replaceChildren(results);
    replaceChildren(
      list,
      rows.map(({ user, role, me }) => {
        const name = user.displayName || user.username;
        const roleName = ROLE_NAMES[role];
        // What the server allows: the owner changes anyone but themselves; an admin removes plain members.
        const mayRemove = !me && (mine === MemberRole.OWNER || (mine === MemberRole.ADMIN && role === MemberRole.MEMBER));
        const mayPromote = !me && mine === MemberRole.OWNER;
        return h(
          "li",
          { class: "member", "data-testid": "member", "data-username": user.username, "data-role": roleName ?? "member" },
          h("span", { class: "member-name" }, me ? `${name} (you)` : name, h("span", { class: "muted" }, ` @${user.username}`), roleName ? h("span", { class: "role" }, roleName) : null),
          mayPromote
            ? h(
                "button",
                { type: "button", class: "ghost small", "data-testid": "member-admin", onclick: () => void change(() => actions.setAdmin(user, role !== MemberRole.ADMIN)) },
                role === MemberRole.ADMIN ? "Remove admin" : "Make admin",
              )
            : null,
          mayRemove
            ? h(
                "button",
                {
                  type: "button",
                  class: "ghost small danger-text",
                  "data-testid": "member-remove",
                  onclick: () => window.confirm(`Remove ${name} from ${groupName}?`) && void change(() => actions.remove(user)),
                },
                "Remove",
              )
            : null,
        );
      }),
    );
  };

  let loads = 0;
  const load = async () => {
    const turn = ++loads;
    try {
      const read = await actions.members();
      if (turn !== loads) return;
      rows = read;
      render();
    } catch (err) {
      if (turn === loads) error.textContent = describeError(err);
    }
  };

  const stopSearch = searchAsTyped(query, results, {
    search: actions.search,
    show: (users) => {
      const inIt = new Set(rows.map((r) => r.user.userId));
      return users.length === 0
        ? h("li", { class: "hint", "data-testid": "members-search-empty" }, "No one by that name.")
        : users.map((u) =>
            inIt.has(u.userId)
              ? userItem(u, () => undefined, "in the group")
              : userItem(u, (x) => {
                  query.value = "";
                  replaceChildren(results);
                  void change(() => actions.add(x));
                }),
          );
    },
    failed: (err) => (error.textContent = describeError(err)),
  });

  close.addEventListener("click", () => dialog.close());
  const modal = showModal(dialog, stopSearch);
  void load();
  return modal;
}
