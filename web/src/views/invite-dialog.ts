import { describeError } from "../api.js";
import { h, showModal, type Modal } from "../dom.js";

export interface InviteDialogActions {
  /** The group's invite link, made on first ask; `reset` makes a new one and the old one stops working. */
  link(reset: boolean): Promise<string>;
  /** Turns the link off: nobody joins with it any more. */
  revoke(): Promise<void>;
}

/** A modal for a group's owner and admins: the invite link to copy, reset or turn off. */
export function openInviteDialog(groupName: string, actions: InviteDialogActions): Modal {
  const url = h("input", { readonly: true, "aria-label": "Invite link", "data-testid": "invite-url" });
  const note = h("p", { class: "hint", role: "status", "data-testid": "invite-note" }, "Making the link…");
  const copy = h("button", { type: "button", class: "primary", "data-testid": "invite-copy", disabled: true }, "Copy");
  const reset = h("button", { type: "button", class: "ghost", "data-testid": "invite-reset", disabled: true }, "Reset link");
  const revoke = h("button", { type: "button", class: "danger", "data-testid": "invite-revoke", disabled: true }, "Turn off link");
  const close = h("button", { type: "button", class: "ghost" }, "Close");
  const dialog = h(
    "dialog",
    { class: "dialog", "data-testid": "invite-dialog" },
    h(
      "div",
      { class: "dialog-body" },
      h("h2", {}, "Invite link"),
      h("p", { class: "hint" }, `Anyone signed in who has this link can join ${groupName}.`),
      url,
      note,
      h("div", { class: "dialog-actions" }, revoke, reset, copy),
      h("div", { class: "dialog-actions" }, close),
    ),
  );

  const tell = (text: string, problem = false) => {
    note.textContent = text;
    note.className = problem ? "form-error" : "hint";
  };

  const hasLink = () => !url.hidden && url.value !== "";

  /** Runs one call with the buttons off, then shows the link it leaves (undefined: none) or the server's reason. */
  const act = async (call: () => Promise<string | undefined>, done: string) => {
    for (const b of [copy, reset, revoke]) b.disabled = true;
    try {
      const link = await call();
      url.value = link ?? "";
      url.hidden = link === undefined;
      tell(done);
    } catch (err) {
      tell(describeError(err), true);
    }
    const on = hasLink();
    copy.disabled = revoke.disabled = !on;
    reset.disabled = false;
    // With no link, "reset" is how a new one is made: there is nothing left to break.
    reset.textContent = on ? "Reset link" : "Make a new link";
  };

  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url.value);
      tell("Copied.");
    } catch {
      // No clipboard for this page (not a secure context, or permission refused): selected, the link is one keystroke away.
      url.focus();
      url.select();
      tell("Press Ctrl+C (⌘C on a Mac) to copy the selected link.");
    }
  });
  reset.addEventListener("click", () => {
    const on = hasLink();
    if (on && !window.confirm("Reset the invite link? The current one stops working for everyone who has it.")) return;
    void act(() => actions.link(true), on ? "A new link: the old one no longer works." : "A new link.");
  });
  revoke.addEventListener("click", () => {
    if (!window.confirm("Turn the invite link off? Nobody can join with it any more.")) return;
    const off = async () => {
      await actions.revoke();
      return undefined;
    };
    void act(off, "The link is off: nobody can join with it. Make a new one to invite again.");
  });
  close.addEventListener("click", () => dialog.close());
  const modal = showModal(dialog);
  void act(() => actions.link(false), "Share it with whoever should join.");
  return modal;
}
