import { Code, ConnectError } from "@connectrpc/connect";
import { describeError } from "../api.js";
import { h, showModal, type Modal } from "../dom.js";

/** The server names the request's field ("current_password is wrong"), written for a program: here it is said to a person. */
const passwordError = (err: unknown, wrong: string) => (err instanceof ConnectError && err.code === Code.PermissionDenied ? wrong : describeError(err));

export interface AccountDialogActions {
  /** The name others see, as it is now. */
  displayName: string;
  /** Resolves to the name as the server keeps it. */
  rename(displayName: string): Promise<string>;
  /** Resolves to how many other devices were signed out. */
  changePassword(current: string, next: string): Promise<number>;
  deleteAccount(password: string): Promise<void>;
}

/** A modal for what changes the account itself: the name others see, its password, or its end. */
export function openAccountDialog(actions: AccountDialogActions): Modal {
  // The server takes 64 code points; maxlength counts UTF-16 units, as on the sign-up form.
  const name = h("input", { name: "displayName", autocomplete: "nickname", required: true, maxlength: 128, value: actions.displayName, "data-testid": "display-name" });
  const nameNote = h("p", { class: "form-error", role: "alert", "data-testid": "display-name-note" });
  const rename = h("button", { type: "submit", class: "primary", "data-testid": "rename" }, "Save name");
  const nameForm = h(
    "form",
    { class: "dialog-body" },
    h("h2", {}, "Display name"),
    h("label", { class: "field" }, h("span", {}, "The name others see"), name),
    nameNote,
    h("div", { class: "dialog-actions" }, rename),
  );
  const current = h("input", { type: "password", autocomplete: "current-password", required: true, "data-testid": "current-password" });
  const next = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8, "data-testid": "new-password" });
  const changeNote = h("p", { class: "form-error", role: "alert", "data-testid": "password-note" });
  const change = h("button", { type: "submit", class: "primary", "data-testid": "change-password" }, "Change password");
  const passwordForm = h(
    "form",
    { class: "dialog-body" },
    h("h2", {}, "Change password"),
    h("label", { class: "field" }, h("span", {}, "Current password"), current),
    h("label", { class: "field" }, h("span", {}, "New password (at least 8 characters)"), next),
    h("p", { class: "hint" }, "Your other devices will be signed out."),
    changeNote,
    h("div", { class: "dialog-actions" }, change),
  );

  const confirmPassword = h("input", { type: "password", autocomplete: "current-password", required: true, "data-testid": "delete-password" });
  const deleteNote = h("p", { class: "form-error", role: "alert", "data-testid": "delete-note" });
  const remove = h("button", { type: "submit", class: "danger", "data-testid": "delete-account" }, "Delete my account");
  const deleteForm = h(
    "form",
    { class: "dialog-body" },
    h("h2", {}, "Delete account"),
    h("p", { class: "hint" }, "Every device is signed out, you leave your groups and your username is freed. What you sent stays in its chats."),
    h("label", { class: "field" }, h("span", {}, "Password"), confirmPassword),
    deleteNote,
    h("div", { class: "dialog-actions" }, remove),
  );

  const close = h("button", { type: "button", class: "ghost" }, "Close");
  const dialog = h("dialog", { class: "dialog", "data-testid": "account-dialog" }, nameForm, passwordForm, deleteForm, h("div", { class: "dialog-actions" }, close));

  nameForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    rename.disabled = true;
    try {
      name.value = await actions.rename(name.value.trim());
      nameNote.textContent = "Saved.";
      nameNote.dataset.ok = "";
    } catch (err) {
      nameNote.textContent = describeError(err);
      delete nameNote.dataset.ok;
    } finally {
      rename.disabled = false;
    }
  });
  passwordForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    change.disabled = true;
    try {
      const others = await actions.changePassword(current.value, next.value);
      changeNote.textContent = `Password changed${others > 0 ? `; ${others} other device${others === 1 ? "" : "s"} signed out` : ""}.`;
      changeNote.dataset.ok = "";
      current.value = next.value = "";
    } catch (err) {
      changeNote.textContent = passwordError(err, "Your current password is not right.");
      delete changeNote.dataset.ok;
    } finally {
      change.disabled = false;
    }
  });
  deleteForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!window.confirm("Delete your account for good? This cannot be undone.")) return;
    remove.disabled = true;
    try {
      await actions.deleteAccount(confirmPassword.value);
      dialog.close();
    } catch (err) {
      deleteNote.textContent = passwordError(err, "That is not your password.");
      remove.disabled = false;
    }
  });
  close.addEventListener("click", () => dialog.close());
  const modal = showModal(dialog);
  name.focus();
  return modal;
}
