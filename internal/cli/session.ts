import { normalizeServer } from "./arguments.js";
import { CliError, Session } from "./client.js";
import { DamagedLogin, LoginStore } from "./store.js";
import type { Values } from "./usage.js";

export const store = new LoginStore();

/**
 * Only signup and login take a server; every other command talks to the
 * saved login's. Another one named by --server, or by a CHAT_SERVER
 * exported for something else, was ignored without a word: the saved
 * server's answers were read as the other's.
 */
export function refuseOtherServer(command: string, values: Values): void {
  const [raw, by] = values.server !== undefined ? [values.server, "--server"] : [process.env.CHAT_SERVER, "CHAT_SERVER"];
  if (!raw) return;
  const saved = store.readOrDamaged();
  // None, or none to compare with: the command's own read tells what is wrong with the file.
  if (!saved || saved instanceof DamagedLogin) return;
  const asked = normalizeServer(raw, by);
  if (saved.server === asked) return;
  const named = by === "--server" ? `--server ${asked}` : `CHAT_SERVER=${asked}`;
  const move = by === "--server" ? `chat-cli login ${saved.username} --server ${asked}` : `chat-cli login ${saved.username} (it logs in on CHAT_SERVER); to stay, unset CHAT_SERVER`;
  throw new CliError(`${named} is not the server this home is logged in on (${saved.server}), which ${command} talks to; to move: ${move}`, 2);
}

export function session(): Session {
  const login = store.readOrDamaged();
  if (login instanceof DamagedLogin) throw new CliError(login.message, 3);
  if (!login) throw new CliError("not logged in; run: chat-cli login <username> (or signup)", 3);
  return new Session(store, login);
}
