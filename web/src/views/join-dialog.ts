import { describeError } from "../api.js";
import { h, replaceChildren, showModal } from "../dom.js";

/** Where an invite link leads, as DescribeInvite tells it. */
export interface InviteTarget {
  channelId: bigint;
  title: string;
  memberCount: number;
  /** I am in the group already: the button opens it. */
  member: boolean;
}

export interface JoinDialogActions {
  describe(): Promise<InviteTarget>;
  /** Joins the group (or, for a member, opens it); the dialog closes once it resolves. */
  join(target: InviteTarget): Promise<void>;
  /** The dialog is gone, joined or not. */
  closed(): void;
}

/** A modal for an opened invite link: the group's name and size first, and nothing joined until asked. */
export function openJoinDialog(actions: JoinDialogActions): { close(): void } {
  const about = h("div", { class: "join-about" }, h("p", { class: "hint" }, "Reading the invite link…"));
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "join-error" });
  const join = h("button", { type: "button", class: "primary", "data-testid": "join-confirm", hidden: true }, "Join");
  const cancel = h("button", { type: "button", class: "ghost", "data-testid": "join-cancel" }, "Cancel");
  const dialog = h(
    "dialog",
    { class: "dialog", "data-testid": "join-dialog" },
    h("div", { class: "dialog-body" }, h("h2", {}, "Join a group"), about, error, h("div", { class: "dialog-actions" }, cancel, join)),
  );

  let target: InviteTarget | undefined;
  const show = (t: InviteTarget) => {
    target = t;
    const count = `${t.memberCount} member${t.memberCount === 1 ? "" : "s"}${t.member ? ", you among them" : ""}`;
    replaceChildren(about, h("div", { class: "chat-title", "data-testid": "join-title" }, t.title), h("div", { class: "hint", "data-testid": "join-count" }, count));
    join.textContent = t.member ? "Open" : "Join";
    join.hidden = false;
  };
  const fail = (err: unknown) => {
    error.textContent = describeError(err);
  };

  join.addEventListener("click", async () => {
    if (!target) return;
    join.disabled = true;
    error.textContent = "";
    try {
      await actions.join(target);
      dialog.close();
    } catch (err) {
      fail(err);
      join.disabled = false;
    }
  });
  cancel.addEventListener("click", () => dialog.close());
  const modal = showModal(dialog, () => actions.closed());
  actions.describe().then(show, (err) => {
    replaceChildren(about);
    cancel.textContent = "Close";
    fail(err);
  });
  return modal;
}
