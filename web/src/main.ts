import "./style.css";
import { DevicePlatform } from "../../gen/es/chat/v1/types_pb.js";
import { createApi, describeError } from "./api.js";
import { ChatApp } from "./app.js";
import { Auth } from "./auth.js";
import { renderAuthView, type AuthForm } from "./views/auth-view.js";

const root = document.getElementById("app")!;
const auth = new Auth();
const api = createApi(auth);
let app: ChatApp | undefined;

function deviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Mac OS X/.test(ua) ? "macOS" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

async function signIn(kind: "login" | "signUp", form: AuthForm): Promise<void> {
  const device = { name: deviceName(), platform: DevicePlatform.WEB };
  try {
    const res =
      kind === "login"
        ? await api.auth.login({ username: form.username, password: form.password, device })
        : await api.auth.signUp({ username: form.username, password: form.password, displayName: form.displayName, device });
    auth.store(res.credentials!, res.user);
  } catch (err) {
    throw new Error(describeError(err));
  }
  showChat();
}

function showAuth(message = ""): void {
  // The chat in the address was the account's that signed out: whoever signs in next here was told it is not theirs.
  // An invite link stays, to be taken up after signing in.
  if (app && location.hash.startsWith("#/c/")) history.replaceState(null, "", location.pathname + location.search);
  app?.destroy();
  app = undefined;
  document.title = "Chat";
  renderAuthView(root, { login: (f) => signIn("login", f), signUp: (f) => signIn("signUp", f) }, message);
}

function showChat(): void {
  app?.destroy();
  app = new ChatApp(root, auth, api, { signedOut: (why) => showAuth(why) });
  void app.start();
}

auth.onLost(() => {
  if (app) showAuth("You were signed out. Please log in again.");
});
// One signed-in device for every tab: a sign-in in another tab is followed here.
auth.onSwitched(() => showChat());

if (auth.current) showChat();
else showAuth();
