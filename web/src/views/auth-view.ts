import { h, replaceChildren } from "../dom.js";

export interface AuthForm {
  username: string;
  password: string;
  displayName: string;
}

export interface AuthViewActions {
  login(form: AuthForm): Promise<void>;
  signUp(form: AuthForm): Promise<void>;
}

/** The sign-in screen: one form, two modes (log in, sign up). */
export function renderAuthView(root: HTMLElement, actions: AuthViewActions, initialError = ""): void {
  let mode: "login" | "signup" = "login";

  const username = h("input", {
    name: "username",
    autocomplete: "username",
    required: true,
    minlength: 3,
    maxlength: 32,
    pattern: "[A-Za-z0-9_.]{3,32}",
    title: "3 to 32 letters, digits, '_' or '.'",
    autocapitalize: "none",
    spellcheck: "false",
  });
  // The server takes 64 code points; maxlength counts UTF-16 units, two for an emoji: twice that lets every name it takes in, and it names the limit past it.
  const displayName = h("input", { name: "displayName", autocomplete: "nickname", maxlength: 128, placeholder: "optional" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, minlength: 8 });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "auth-error" }, initialError);
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "auth-submit" }, "Log in");
  const nameRow = h("label", { class: "field", hidden: true }, h("span", {}, "Display name"), displayName);
  const tabLogin = h("button", { type: "button", role: "tab", "data-testid": "tab-login" }, "Log in");
  const tabSignup = h("button", { type: "button", role: "tab", "data-testid": "tab-signup" }, "Sign up");
  const hint = h("p", { class: "hint" });

  const setMode = (m: typeof mode) => {
    mode = m;
    tabLogin.setAttribute("aria-selected", String(m === "login"));
    tabSignup.setAttribute("aria-selected", String(m === "signup"));
    nameRow.hidden = m === "login";
    submit.textContent = m === "login" ? "Log in" : "Create account";
    password.autocomplete = m === "login" ? "current-password" : "new-password";
    hint.textContent = m === "signup" ? "Usernames are 3–32 letters, digits, '_' or '.'; passwords at least 8 characters." : "";
    error.textContent = "";
  };
  tabLogin.addEventListener("click", () => setMode("login"));
  tabSignup.addEventListener("click", () => setMode("signup"));

  const form = h(
    "form",
    { class: "auth-card", "data-testid": "auth-form", novalidate: false },
    h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), h("h1", {}, "Chat")),
    h("div", { class: "tabs", role: "tablist" }, tabLogin, tabSignup),
    h("label", { class: "field" }, h("span", {}, "Username"), username),
    nameRow,
    h("label", { class: "field" }, h("span", {}, "Password"), password),
    hint,
    error,
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    submit.classList.add("busy");
    const values = { username: username.value.trim(), password: password.value, displayName: displayName.value.trim() };
    try {
      await (mode === "login" ? actions.login(values) : actions.signUp(values));
    } catch (err) {
      error.textContent = err instanceof Error ? err.message : String(err);
      submit.disabled = false;
      submit.classList.remove("busy");
    }
  });

  setMode("login");
  error.textContent = initialError;
  replaceChildren(root, h("main", { class: "auth-screen" }, form));
  username.focus();
}
