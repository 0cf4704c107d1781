import { DevicePlatform } from "../../../gen/es/chat/v1/types_pb.js";
import { normalizeServer } from "../arguments.js";
import { CliError, Session, cliErrorOf, describe, isDeadline, publicApi, toSavedLogin } from "../client.js";
import { exitCodeOf } from "../interrupts.js";
import { json, out, warn } from "../output.js";
import { readPassword } from "../prompt.js";
import { session, store } from "../session.js";
import { DamagedLogin, type SavedLogin } from "../store.js";
import type { Values } from "../usage.js";

export async function signIn(command: "signup" | "login", args: string[], values: Values): Promise<void> {
  const [username, extra] = args;
  if (!username || extra !== undefined) throw new CliError(`usage: chat-cli ${command} <username>`, 2);
  const server =
    values.server !== undefined ? normalizeServer(values.server) : process.env.CHAT_SERVER ? normalizeServer(process.env.CHAT_SERVER, "CHAT_SERVER") : "http://127.0.0.1:8080";
  // Before the server makes a device that could be saved nowhere.
  store.checkHome();
  const password = await readPassword(values, command === "signup");
  const api = publicApi(server);
  const device = { name: `chat-cli on ${process.env.HOSTNAME || "a terminal"}`.slice(0, 64), platform: DevicePlatform.CLI };
  const done = command === "signup" ? "Signed up and logged in" : "Logged in";
  // Killed in silence while the server made the account or device, the login was saved nowhere: a
  // signup run again was refused as a name taken, and the device stayed signed in, unseen, until pruned.
  // The signal waits for the answer and the save; a second one stops at once, saying what may be left.
  let interrupted: NodeJS.Signals | undefined;
  const hold = (signal: NodeJS.Signals) => {
    if (interrupted) {
      warn(`chat-cli: stopped before the server answered: ${command === "signup" ? "the account may have been made" : "a device may have been signed in"}, saved nowhere here; see: chat-cli login ${username}`);
      process.exit(exitCodeOf(signal));
    }
    interrupted = signal;
    warn(`chat-cli: interrupted; saving the ${command} the server is making first (Ctrl+C again stops at once)`);
  };
  process.on("SIGINT", hold);
  process.on("SIGTERM", hold);
  try {
    const res = await (command === "signup"
      ? api.auth.signUp({ username, password, displayName: values["display-name"] ?? "", device })
      : api.auth.login({ username, password, device })
    ).catch((err: unknown) => {
      if (isDeadline(err)) throw new CliError(`${describe(err)}: ${command === "signup" ? "the account may have been made" : "a device may have been signed in"}; see: chat-cli login ${username}`);
      throw err;
    });
    const user = res.user!;
    await signOutReplaced(replacedLogin(), server);
    store.write(toSavedLogin(server, user.username, res.credentials!));
    if (interrupted) throw new CliError(`interrupted, once the ${command} was saved: ${done} as @${user.username} on ${server}`, exitCodeOf(interrupted));
    if (values.json) return json({ userId: user.userId, username: user.username, deviceId: res.credentials!.deviceId, server });
    out(`${done} as @${user.username} on ${server}`);
  } finally {
    process.off("SIGINT", hold);
    process.off("SIGTERM", hold);
  }
}

/**
 * The login a new one replaces is signed out on its server: this home keeps
 * one login, so a device left behind signed in would stay so, unseen, until
 * the account's device limit pruned it. Best effort, as a logout's is.
 */
function replacedLogin(): SavedLogin | undefined {
  const previous = store.readOrDamaged();
  if (!(previous instanceof DamagedLogin)) return previous;
  // The login just made must be kept whatever was there: failing now would leave its device signed in, saved nowhere.
  warn(`${previous.file} ${previous.reason}: the damaged file is replaced, and a device it held stays signed in until the account's device limit prunes it`);
  return undefined;
}

async function signOutReplaced(previous: SavedLogin | undefined, server: string): Promise<void> {
  if (!previous) return;
  // A port speaks http or https, never both: a login at the same host and port under the other
  // scheme (chatd restarted with CHAT_TLS_CERT, as the README's TLS steps do) found the old
  // device's server there, while its old URL only hangs up, and the device stayed signed in.
  const at = sameListener(previous.server, server) ? { ...previous, server } : previous;
  try {
    await new Session(store, at).api.auth.logout({});
  } catch (err) {
    // Refused there (exit 3: signed out already, or another server's login): nothing to sign out.
    if (cliErrorOf(err)?.exitCode === 3) return;
    warn(`the device logged in before (@${previous.username} on ${previous.server}) was not signed out (${describe(err)})`);
  }
}

/** Whether two server origins name one host and port, whatever their schemes. */
function sameListener(a: string, b: string): boolean {
  const port = (u: URL) => u.port || (u.protocol === "https:" ? "443" : "80");
  const [x, y] = [new URL(a), new URL(b)];
  return x.hostname === y.hostname && port(x) === port(y);
}

export async function logout(values: Values): Promise<void> {
  const login = store.readOrDamaged();
  if (login instanceof DamagedLogin) {
    store.remove();
    if (values.json) return json({ username: null, confirmed: false });
    return out(`Removed the damaged ${login.file} (it ${login.reason}); a device it held was not signed out.`);
  }
  if (!login) return values.json ? json({ username: null, confirmed: false }) : out("Not logged in.");
  let confirmed = true;
  // Interrupted, the login is kept: the person stopped the logout, and the device may still be signed in; a logout run again ends it either way.
  const interrupted = (signal: NodeJS.Signals) => {
    warn(`chat-cli: interrupted before the server answered: the device may have been signed out or not; the login is kept here: chat-cli logout ends it`);
    process.exit(exitCodeOf(signal));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    await new Session(store, login).api.auth.logout({});
  } catch (err) {
    // The server may be gone or the device already revoked: forget it locally all the same.
    warn(`server did not confirm the logout (${describe(err)}); credentials removed anyway`);
    confirmed = false;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  }
  store.remove();
  if (values.json) return json({ username: login.username, deviceId: login.deviceId, confirmed });
  out(`Logged out @${login.username}.`);
}

export async function whoami(values: Values): Promise<void> {
  const s = session();
  const me = (await s.api.users.getMe({})).user!;
  if (values.json) return json({ userId: me.userId, username: me.username, displayName: me.displayName, deviceId: s.login.deviceId, server: s.login.server });
  out(`@${me.username} (${me.displayName}) on ${s.login.server}, device ${s.login.deviceId}`);
}
