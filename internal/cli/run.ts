import { callTimeoutMs, CliError, cliErrorOf, describe } from "./client.js";
import { logout, signIn, whoami } from "./commands/accounts.js";
import { blockCommand, blocked, chats, clearCommand, muteCommand, placeCommand } from "./commands/chats.js";
import { addCommand, group, invite, join, leave, members, removeCommand, rename, roleCommand } from "./commands/groups.js";
import { changeCommand, followCommand, history, reactCommand, search, send } from "./commands/messages.js";
import { out, warn } from "./output.js";
import { refuseOtherServer } from "./session.js";
import { parse, unknownOption, USAGE } from "./usage.js";

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (err) {
    const unknown = (err as NodeJS.ErrnoException).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? unknownOption(argv) : undefined;
    if (unknown !== undefined) throw new CliError(unknown, 2);
    throw new CliError(`${(err as Error).message}; see: chat-cli --help`, 2);
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;
  if (values.help || !command || command === "help") {
    out(USAGE);
    return;
  }
  // A bad CHAT_CLI_CALL_TIMEOUT_MS is refused before any call, not at the first call (in follow, midway).
  callTimeoutMs();
  // Silently sending a plain message (or editing) instead of the reply asked for would be worse than refusing.
  if (values.reply !== undefined && command !== "send") throw new CliError(`--reply goes with send, not ${command}; see: chat-cli --help`, 2);
  if (values.archived && command !== "chats") throw new CliError(`--archived goes with chats, not ${command}; see: chat-cli --help`, 2);
  for (const option of ["reset", "revoke"] as const) {
    if (values[option] && command !== "invite") throw new CliError(`--${option} goes with invite, not ${command}; see: chat-cli --help`, 2);
  }
  if (command !== "signup" && command !== "login") refuseOtherServer(command, values);
  switch (command) {
    case "signup":
    case "login":
      return signIn(command, args, values);
    case "logout":
      return logout(values);
    case "whoami":
      return whoami(values);
    case "chats":
      return chats(values);
    case "send":
      return send(args, values);
    case "edit":
    case "delete":
      return changeCommand(command, args, values);
    case "react":
    case "unreact":
      return reactCommand(command, args, values);
    case "history":
      return history(args, values);
    case "search":
      return search(args, values);
    case "follow":
      return followCommand(args, values);
    case "group":
      return group(args, values);
    case "members":
      return members(args, values);
    case "add":
      return addCommand(args, values);
    case "remove":
      return removeCommand(args, values);
    case "leave":
      return leave(args, values);
    case "rename":
      return rename(args, values);
    case "admin":
    case "unadmin":
      return roleCommand(command, args, values);
    case "invite":
      return invite(args, values);
    case "join":
      return join(args, values);
    case "block":
    case "unblock":
      return blockCommand(command, args, values);
    case "blocked":
      return blocked(values);
    case "mute":
    case "unmute":
      return muteCommand(command, args, values);
    case "pin":
    case "unpin":
    case "archive":
    case "unarchive":
    case "unread":
    case "read":
      return placeCommand(command, args, values);
    case "clear":
      return clearCommand(args, values);
    default:
      throw new CliError(`unknown command "${command}"; see: chat-cli --help`, 2);
  }
}

export function run(argv: string[]): void {
  // A reader that went away (`chat-cli history 1 | head`) is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
  });

  main(argv).then(
    () => finish(0),
    (err) => {
      warn(`chat-cli: ${describe(err)}`);
      finish(cliErrorOf(err)?.exitCode ?? 1);
    },
  );
}

/** Lets stdout drain, and does not wait long for idle keep-alive sockets. */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}
