#!/usr/bin/env -S node --import tsx
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChannelKind, ChannelNoteKind, DevicePlatform, MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import type { Channel, ChannelNote, Message, User } from "../../gen/es/chat/v1/types_pb.js";
import { listOf, noteSentence, peopleIn } from "../../web/src/notes.js";
import { CliError, MAX_ID, Session, callTimeoutMs, cliErrorOf, describe, isDeadline, publicApi, toSavedLogin } from "./client.js";
import { backoffMs, follow, retryAfterMs } from "./follow.js";
import { DamagedLogin, LoginStore, type SavedLogin } from "./store.js";
import { displayWidth, padEnd, truncated } from "./width.js";

const USAGE = `chat-cli: a command-line client for chatd

Usage: npm run --silent chat -- <command> [arguments] [options]
   or: npx tsx cmd/chat-cli/main.ts <command> [arguments] [options]

Commands:
  signup <username>              create an account and sign this device in
  login <username>               sign this device in
  logout                         sign this device out (revokes its tokens)
  whoami                         who is signed in, on which server
  chats                          list your chats: id, name, unread, last message;
                                 pinned ones first, marked 📌; "marked unread" for
                                 one you marked with nothing unread in it
  chats --archived               list your archived chats
  send <chat> <text...>          send a message ("-" as the text reads stdin); with
                                 --reply SEQ, as a reply to message #SEQ
  edit <chat> <seq> <text...>    change the text of your message #seq ("-" reads stdin)
  delete <chat> <seq>            delete message #seq for everyone: your own, or any
                                 message of a group you are an admin or owner of
  react <chat> <seq> <emoji>     react to message #seq with one emoji, replacing your
                                 earlier reaction to it (one per person per message)
  unreact <chat> <seq>           take back your reaction to message #seq
  history <chat>                 print a chat's messages, oldest first, each with its
                                 #seq; "(edited)" and "[deleted]" mark changed ones,
                                 "↪ #SEQ" a reply to message #SEQ, "[👍 2 ❤️ 1]" its
                                 reactions; "#SEQ — alice added bob" is a group's note
                                 (members added, removed or gone, a new title or role,
                                 someone who joined with the invite link)
  follow <chat>                  print a chat's new messages and notes, edits (✎),
                                 deletes (✗) and reactions (☺) live until Ctrl+C
                                 (or until you are no longer in the group: exit 1)
  search <chat> <words...>       print a chat's messages with every word, newest first
  group <title> [@user...]       create a group with these members (or none yet)
  members <group>                a group's members: each one's role (owner, admin or
                                 member) and how far they have read ("read up to #SEQ")
  add <group> <@user...>         add people to a group (owner and admins)
  remove <group> <@user>         take someone out of a group (owner and admins; an admin
                                 removes plain members only)
  leave <group>                  leave a group; an owner leaving hands it to the
                                 longest-standing admin, else member
  rename <group> <title...>      give a group a new title (owner and admins)
  admin <group> <@user>          make a member an admin (the owner only)
  unadmin <group> <@user>        make an admin a plain member again (the owner only)
  invite <group>                 a group's invite link (owner and admins): its code and
                                 the web link; --reset makes a new one (the old one stops
                                 working), --revoke turns it off
  join <link>                    join the group of an invite link (or of its code alone)
  block <@user>                  block a user: no messages either way in your
                                 1:1 chat, no friend requests or group adds from them
  unblock <@user>                lift your block
  blocked                        list the users you blocked
  mute <chat>                    no push notifications of a chat (until unmuted)
  unmute <chat>                  push notifications of a chat again
  unread <chat>                  mark a chat unread on all your devices, to come back
                                 to it; history and follow leave the mark, as they
                                 leave its messages unread
  read <chat>                    take that mark away (unread messages stay unread)
  pin <chat>                     keep a chat at the top of "chats" (at most 5)
  unpin <chat>                   let a chat take its place by activity again
  archive <chat>                 move a chat out of "chats" into "chats --archived";
                                 its next message brings it back, unless muted
  unarchive <chat>               bring an archived chat back to "chats"
  clear <chat>                   clear a chat's history for you alone, through its
                                 newest message: history, search and "chats" start
                                 after it, on all your devices; the others keep theirs

  <chat> is a channel id (from "chats") or @username for the 1:1 chat with
  that person (opened if you have none yet). <group> is a group's channel id.

Options:
  --server URL        chatd's HTTP address (signup/login; default $CHAT_SERVER,
                      else http://127.0.0.1:8080); later commands use the saved one
                      and refuse another named by --server or $CHAT_SERVER
  --ws URL            follow: the realtime WebSocket (default $CHAT_WS_URL, else /ws
                      on the server; a cluster's is on a gateway: ws://host:8090/ws)
  --password-stdin    read the password from stdin (else $CHAT_PASSWORD, else a prompt)
  --display-name N    display name for signup
  --limit N           history: how many messages (default 50, at most 200)
  --before SEQ        history, search: only messages before this seq (paging back)
  --last N            follow: messages of history to print first (default 10)
  --reply SEQ         send: reply to message #SEQ of the chat
  --archived          chats: the archived chats instead of the list
  --reset             invite: a new link; the old one stops working
  --revoke            invite: no working link any more
  --json              one JSON object per line, for scripts (members: one array)
  -h, --help          this help

Credentials live in $CHAT_CLI_HOME (default $XDG_CONFIG_HOME/chat-cli, else
~/.config/chat-cli), mode 0600; a folder another user owns or others may write in
is refused.
A call unanswered for 15 s is given up (follow asks again; a change so given up may
have been made or not, as the error says); $CHAT_CLI_CALL_TIMEOUT_MS (100 to 15000 ms)
gives up sooner.
Exit codes: 0 ok, 1 error, 2 usage, 3 not signed in; 130 (Ctrl+C) or 143 (SIGTERM)
with a line saying so when a send, edit, delete, reaction, group, a group's change
(add, remove, rename, leave, admin, invite --reset/--revoke, join), a block, a clear
or a logout was interrupted before the server answered: it may have been taken or
not. A signup or login interrupted is saved first (a second Ctrl+C stops at once).`;

const OPTIONS = {
  server: { type: "string" },
  ws: { type: "string" },
  "password-stdin": { type: "boolean" },
  "display-name": { type: "string" },
  limit: { type: "string" },
  before: { type: "string" },
  last: { type: "string" },
  reply: { type: "string" },
  archived: { type: "boolean" },
  reset: { type: "boolean" },
  revoke: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parse>["values"];

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

/**
 * What to say of an argument parseArgs took for an unknown option. Its own
 * words name one letter of it ("-hello" is "-e": -h, then -e) and suggest
 * `-- "-e"`; a text that starts with "-" ("-1 from me", "- milk") is what
 * was meant more often than not.
 */
function unknownOption(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") return undefined;
    if (!arg.startsWith("-") || arg === "-") continue;
    const [name, value] = arg.startsWith("--") ? [arg.slice(2).split("=")[0]!, arg.includes("=")] : ["", false];
    const option = OPTIONS[name as keyof typeof OPTIONS];
    if (option) {
      if (option.type === "string" && !value) i++;
      continue;
    }
    if (arg === "-h") continue;
    if (arg.startsWith("--")) return `unknown option "${arg}"; see: chat-cli --help`;
    const rest = argv.filter((_, j) => j !== i).map(shellWord);
    return `unknown option "${arg}": a text that starts with "-" goes after "--", as in: chat-cli ${[...rest, "--", shellQuoted(arg)].join(" ")}`;
  }
  return undefined;
}

/** As a shell takes it back whole: in single quotes, each ' in it closed, escaped and opened again. */
function shellQuoted(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

const store = new LoginStore();

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

/**
 * Only signup and login take a server; every other command talks to the
 * saved login's. Another one named by --server, or by a CHAT_SERVER
 * exported for something else, was ignored without a word: the saved
 * server's answers were read as the other's.
 */
function refuseOtherServer(command: string, values: Values): void {
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

// ------------------------------------------------------------------ commands

async function signIn(command: "signup" | "login", args: string[], values: Values): Promise<void> {
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

/** A shell's exit code for a process a signal ended: 128 plus its number. */
function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === "SIGINT" ? 130 : 143;
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

async function logout(values: Values): Promise<void> {
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

async function whoami(values: Values): Promise<void> {
  const s = session();
  const me = (await s.api.users.getMe({})).user!;
  if (values.json) return json({ userId: me.userId, username: me.username, displayName: me.displayName, deviceId: s.login.deviceId, server: s.login.server });
  out(`@${me.username} (${me.displayName}) on ${s.login.server}, device ${s.login.deviceId}`);
}

async function chats(values: Values): Promise<void> {
  const s = session();
  const all: Channel[] = [];
  let pageToken = "";
  do {
    const res = await s.api.channels.listChannels({ limit: 200, pageToken, archived: values.archived });
    all.push(...res.channels);
    pageToken = res.nextPageToken;
  } while (pageToken);
  await s.usersById(all.flatMap((c) => [c.peerUserId, ...(c.lastMessage ? people(c.lastMessage) : [])]));
  if (values.json) {
    for (const c of all) {
      json({
        channelId: c.channelId,
        kind: c.kind === ChannelKind.GROUP ? "group" : "direct",
        name: await s.channelName(c),
        members: c.memberCount,
        unread: c.unreadCount,
        muted: c.mutedUntil !== undefined,
        pinnedAt: iso(c.pinnedAt),
        archived: c.archived,
        markedUnread: c.markedUnread,
        lastMessage: c.lastMessage ? await messageJson(s, c.lastMessage) : null,
      });
    }
    return;
  }
  if (all.length === 0) {
    if (values.archived) return out("No archived chats.");
    // "No chats yet" to someone whose chats are all archived reads as history lost.
    const archived = await s.api.channels.listChannels({ limit: 1, archived: true });
    if (archived.channels.length > 0) return out("No chats outside the archive. See the archived ones with: chat-cli chats --archived");
    return out('No chats yet. Start one with: chat-cli send @username "hello"');
  }
  const rows = await Promise.all(
    all.map(async (c) => {
      const m = c.lastMessage;
      const last = !m
        ? c.clearedThroughSeq > 0n
          ? "(history cleared)"
          : "(no messages)"
        : m.note
          ? oneLine(await noteText(s, m, m.note), 50)
          : `${await s.username(m.senderUserId)}: ${m.deleted ? "[deleted]" : oneLine(m.text, 50)}`;
      // A count says it already; the mark is for a chat with nothing to count, as the web client shows it.
      const count = c.unreadCount > 0n ? `${c.unreadCount} unread` : c.markedUnread ? "marked unread" : "";
      const unread = [count, c.mutedUntil ? "muted" : ""].filter(Boolean).join(", ");
      return [c.channelId.toString(), `${c.pinnedAt ? "📌 " : ""}${await s.channelName(c)}`, unread, last];
    }),
  );
  out(table([["CHANNEL", "NAME", "UNREAD", "LAST MESSAGE"], ...rows]));
}

async function send(args: string[], values: Values): Promise<void> {
  const [ref, ...words] = args;
  if (!ref || words.length === 0) throw new CliError('usage: chat-cli send <channel-id|@username> [--reply SEQ] <text...>   ("-" reads stdin)', 2);
  const replyToSeq = values.reply === undefined ? 0n : seqArgument(values.reply, "--reply");
  const text = await textArgument(words);
  if (!text.trim()) throw new CliError("the message is empty", 2);
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(s, { channelId: channel.channelId, text, replyToSeq }, `the message may have been sent or not; see chat-cli history ${shellWord(ref)} before sending it again`);
  if (values.json) return json({ channelId: channel.channelId, messageId: res.messageId, duplicate: res.duplicate, replyToSeq: replyToSeq === 0n ? null : replyToSeq });
  const reply = replyToSeq === 0n ? "" : ` as a reply to #${replyToSeq}`;
  out(`sent to ${await s.channelName(channel)}${reply} (channel ${channel.channelId}, message ${res.messageId})`);
}

async function changeCommand(command: "edit" | "delete", args: string[], values: Values): Promise<void> {
  const [ref, seqArg, ...words] = args;
  const usage =
    command === "edit" ? 'usage: chat-cli edit <channel-id|@username> <seq> <text...>   ("-" reads stdin)' : "usage: chat-cli delete <channel-id|@username> <seq>";
  if (!ref || !seqArg || (command === "edit" ? words.length === 0 : words.length > 0)) throw new CliError(usage, 2);
  const seq = seqArgument(seqArg);
  let text = "";
  if (command === "edit") {
    text = await textArgument(words);
    if (!text.trim()) throw new CliError("the new text is empty (to remove the message: chat-cli delete)", 2);
  }
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(
    s,
    { channelId: channel.channelId, text, ...(command === "edit" ? { editSeq: seq } : { deleteSeq: seq }) },
    `the ${command} may have been made or not; see chat-cli history ${shellWord(ref)}`,
  );
  if (values.json) return json({ channelId: channel.channelId, seq, messageId: res.messageId, duplicate: res.duplicate });
  out(`${command === "edit" ? "edited" : "deleted"} message #${seq} in ${await s.channelName(channel)}`);
}

async function reactCommand(command: "react" | "unreact", args: string[], values: Values): Promise<void> {
  const [ref, seqArg, emoji, ...extra] = args;
  const usage = command === "react" ? "usage: chat-cli react <channel-id|@username> <seq> <emoji>" : "usage: chat-cli unreact <channel-id|@username> <seq>";
  if (!ref || !seqArg || extra.length > 0 || (command === "react" ? !emoji?.trim() : emoji !== undefined)) throw new CliError(usage, 2);
  const seq = seqArgument(seqArg);
  // Whether it is one emoji is the server's call (INVALID_ARGUMENT, with its reason).
  const text = command === "react" ? emoji!.trim() : "";
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(s, { channelId: channel.channelId, text, reactSeq: seq }, `the reaction${text ? "" : "'s taking back"} may have been made or not; see chat-cli history ${shellWord(ref)}`);
  if (values.json) return json({ channelId: channel.channelId, seq, emoji: text || null, messageId: res.messageId, duplicate: res.duplicate });
  const where = await s.channelName(channel);
  out(text ? `reacted ${text} to message #${seq} in ${where}` : `took back your reaction to message #${seq} in ${where}`);
}

/** The words of a text as typed, or stdin (without its last newline) for "-". */
async function textArgument(words: string[]): Promise<string> {
  const text = words.join(" ");
  // At a terminal "-" waits for typing, which looked like a hang to whoever did not know how it ends.
  if (text === "-" && process.stdin.isTTY) warn("Type the text; end it with Ctrl+D on a line of its own (Ctrl+C cancels).");
  return withoutCr(text === "-" ? (await readStdin()).replace(/\r?\n$/, "") : text);
}

/**
 * A text with the \r of each CRLF line ending taken out: a file saved on
 * Windows, piped in or pasted as "$(cat file)", kept one at the end of every
 * line, which readers saw as a stray character (U+FFFD here).
 */
function withoutCr(text: string): string {
  return text.replace(/\r(?=\n|$)/g, "");
}

/** A message's seq as typed: the #number that history shows. */
function seqArgument(raw: string, option?: string): bigint {
  if (!/^\d+$/.test(raw) || BigInt(raw) === 0n || BigInt(raw) > MAX_ID) throw new CliError(`${option ? `${option}: ` : ""}"${raw}" is not a message's seq (the #number that history shows)`, 2);
  return BigInt(raw);
}

/**
 * MessageService/SendMessage: a message (or a reply), or an edit or delete of, or a reaction to, one.
 * `unknown`: what to say when interrupted (Ctrl+C, a script's timeout) before an answer.
 */
async function submit(
  s: Session,
  req: { channelId: bigint; text: string; editSeq?: bigint; deleteSeq?: bigint; replyToSeq?: bigint; reactSeq?: bigint },
  unknown: string,
) {
  return unsureIfInterrupted(unknown, () => submitTries(s, req));
}

/**
 * `fn`, a change asked of the server, with Ctrl+C and SIGTERM before its answer said as such: `unknown`
 * tells what may have been made or not and where to look (exit 130 or 143). So does a call given up at
 * its deadline (exit 1): the server may have made it and its answer been lost.
 */
async function unsureIfInterrupted<T>(unknown: string, fn: () => Promise<T>): Promise<T> {
  // Killed by the signal in silence, it left the person (and a script, with no exit code) not knowing
  // whether the server took it, and a second `send` to be sure made the message twice when it had.
  const interrupted = (signal: NodeJS.Signals) => {
    warn(`chat-cli: interrupted before the server answered: ${unknown}`);
    process.exit(exitCodeOf(signal));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    return await fn();
  } catch (err) {
    if (isDeadline(err)) throw new CliError(`${describe(err)}: ${unknown}`);
    throw err;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  }
}

/** The longest wait before a send is tried again; a server asking for longer is told back at once, in its words. */
const SEND_WAIT_MAX_MS = 15_000;

async function submitTries(s: Session, req: Parameters<typeof submit>[1]) {
  // One key for every try: a retry after a lost answer is never a second message.
  const clientMsgId = `cli-${randomUUID()}`;
  for (let attempt = 1; ; attempt++) {
    try {
      return await s.api.messages.sendMessage({ clientMsgId, ...req });
    } catch (err) {
      // Past the server's request size no try gets through: it was tried 5 times over 6 s, then named in its Node words.
      if (err instanceof ConnectError && err.metadata.get("chat-error-code") === "ERROR_CODE_FRAME_TOO_LARGE") {
        const size = `${[...req.text].length} characters, ${Buffer.byteLength(req.text)} bytes as UTF-8`;
        throw new CliError(`the text is too large for the server to take (${size}); a message holds at most 99,999 characters`);
      }
      const retryable = err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.ResourceExhausted);
      if (!retryable || attempt >= 5) throw err;
      // Jittered as follow's retries are: every CLI an overloaded server refused came back at the same 400 ms, 800 ms, ...
      const wait = Math.max(backoffMs(attempt - 1), retryAfterMs(err));
      // A spent text budget is refused for minutes: waited out four times over in silence, it looked like a hang.
      if (wait > SEND_WAIT_MAX_MS) throw err;
      if (wait >= 1_000) warn(`chat-cli: ${describe(err)}; trying again in ${Math.ceil(wait / 1000)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

async function history(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli history <channel-id|@username> [--limit N] [--before SEQ]", 2);
  const limit = intOption(values.limit, "--limit", 50, 1, 200);
  const before = values.before === undefined ? 0n : BigInt(intOption(values.before, "--before", 0, 1, Number.MAX_SAFE_INTEGER));
  const s = session();
  const channel = await s.resolveChannel(ref);
  // Only a look: no receipt, and a mark of "unread" stays, so a script reading the chat leaves the person's list as it was on every device.
  const res = await s.api.messages.listMessages({ channelId: channel.channelId, anchorSeq: before, direction: PageDirection.BACKWARD, limit });
  const messages = [...res.messages].reverse();
  await s.usersById(messages.flatMap(people));
  for (const m of messages) await printMessage(s, m, values);
  if (!values.json) {
    if (messages.length === 0) warn(channel.clearedThroughSeq > 0n ? "(no messages since you cleared the history)" : "(no messages)");
    // With the --limit asked: the page after one of 5 was 50.
    else if (res.hasMore) warn(`(older messages: chat-cli history ${ref} --before ${messages[0]!.seq}${values.limit === undefined ? "" : ` --limit ${limit}`})`);
  }
}

async function search(args: string[], values: Values): Promise<void> {
  const [ref, ...words] = args;
  if (!ref || words.length === 0) throw new CliError("usage: chat-cli search <channel-id|@username> <words...> [--limit N] [--before SEQ]", 2);
  const limit = intOption(values.limit, "--limit", 20, 1, 100);
  const beforeSeq = values.before === undefined ? 0n : BigInt(intOption(values.before, "--before", 0, 1, Number.MAX_SAFE_INTEGER));
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await s.api.messages.searchMessages({ channelId: channel.channelId, query: words.join(" "), beforeSeq, limit });
  await s.usersById(res.messages.flatMap(people));
  for (const m of res.messages) await printMessage(s, m, values);
  const next = res.nextBeforeSeq;
  // --before ahead of the words: one that starts with "-" was typed after "--", which ends the options.
  const dashed = words.some((w) => w.startsWith("-")) ? ["--"] : [];
  const options = [...(values.limit === undefined ? [] : ["--limit", String(limit)]), ...(values.json ? ["--json"] : [])];
  const older = `chat-cli search ${[ref, "--before", String(next), ...options, ...dashed, ...words].map(shellWord).join(" ")}`;
  // On stderr with --json too: a script that got no line could not tell "none" from "none yet".
  if (next === 0n) {
    if (res.messages.length === 0 && !values.json) warn("(no matches)");
  } else if (res.messages.length === 0) {
    // The server stops at its scan bound: nothing here is "no matches" while older messages are still unsearched.
    const upTo = beforeSeq > 0n ? `#${next} to #${beforeSeq - 1n}` : `#${next} and newer`;
    warn(`(no matches in messages ${upTo}; older messages are not searched yet: ${older})`);
  } else {
    warn(`(search older messages: ${older})`);
  }
}

/** An argument as a shell takes it back: as it is when plain, else quoted (a hint to paste must run as shown). */
function shellWord(arg: string): string {
  // A # starting a word starts a comment.
  return /^[\w@.:/=+,-][\w@#.:/=+,-]*$/u.test(arg) ? arg : shellQuoted(arg);
}

async function followCommand(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli follow <channel-id|@username> [--last N]", 2);
  const last = intOption(values.last, "--last", 10, 0, 200);
  // Checked before the history is printed: one refused after it read as a failure of following itself.
  const ws = values.ws !== undefined ? normalizeWs(values.ws, "--ws") : normalizeWs(process.env.CHAT_WS_URL, "CHAT_WS_URL");
  const s = session();
  const channel = await s.resolveChannel(ref);
  // Like history, only a look: what it prints stays unread, and so does a chat marked unread.
  // The last few messages first; then everything after them, live.
  let afterSeq = channel.lastSeq;
  let shown: Message[] = [];
  // On this machine's clock: reactions from before the history was read are in it already.
  const shownAtMs = Date.now();
  if (last > 0) {
    const res = await s.api.messages.listMessages({ channelId: channel.channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: last });
    shown = [...res.messages].reverse();
    await s.usersById(shown.flatMap(people));
    for (const m of shown) await printMessage(s, m, values);
    // Nothing shown may mean all of it is cleared: the inbox still replays what the clear covers.
    afterSeq = shown.at(-1)?.seq ?? channel.clearedThroughSeq;
  }

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let announced = false;
  try {
    await follow(s, {
      wsUrl: ws,
      channelId: channel.channelId,
      afterSeq,
      shown,
      shownAtMs,
      signal: stop.signal,
      print: (m) => printMessage(s, m, values),
      // A change to a message you cleared has nothing to show it on.
      printChange: async (ch) => {
        if (ch.targetSeq > channel.clearedThroughSeq) await printChange(s, ch, values);
      },
      status: (line) => {
        if (line === "connected") {
          if (!announced) warn(`following ${oneLine(channelLabel(channel), 60)}; Ctrl+C to stop`);
          else warn("reconnected");
          announced = true;
        } else if (line === "moved") {
          // Said "reconnected" before, as if the connection had been lost, where the gateways keep it through a chat server's failover.
          warn("the session moved to another chat server, on the same connection; following on");
        } else {
          warn(line);
        }
      },
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function group(args: string[], values: Values): Promise<void> {
  const [title, ...members] = args;
  if (!title || members.some((m) => !m.startsWith("@"))) throw new CliError("usage: chat-cli group <title> [@user...]", 2);
  const s = session();
  const ids: bigint[] = [];
  for (const m of members) ids.push((await s.findUser(m)).userId);
  // A second `group` to be sure made two groups of the same name.
  const c = (await unsureIfInterrupted(`the group may have been created or not; see chat-cli chats`, () => s.api.channels.createGroup({ title, memberUserIds: ids }))).channel!;
  if (values.json) return json({ channelId: c.channelId, title: c.title, members: c.memberCount });
  out(`created group "${c.title}" (channel ${c.channelId}, ${memberCount(c)})`);
}

/** What a member's role is called: the proto's enum names, lower-cased ("owner", "admin", "member"). */
/** "1 member", "3 members": a group of one is there as soon as it is made without anyone else. */
function memberCount(c: Channel): string {
  return `${c.memberCount} member${c.memberCount === 1 ? "" : "s"}`;
}

function roleName(role: MemberRole): string {
  return (MemberRole[role] ?? "unknown").toLowerCase();
}

async function members(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || ref.startsWith("@") || extra !== undefined) throw new CliError("usage: chat-cli members <group>", 2);
  const s = session();
  const { channelId } = await s.resolveChannel(ref);
  const list = (await s.api.channels.listMembers({ channelId })).members;
  const users = await s.usersById(list.map((m) => m.userId));
  if (values.json) {
    return json(
      list.map((m) => ({ userId: m.userId, username: users.get(m.userId.toString())?.username ?? null, role: roleName(m.role), readSeq: m.readSeq, joinedAt: iso(m.joinedAt) })),
    );
  }
  const rows = list.map((m) => {
    const u = users.get(m.userId.toString());
    const name = !u ? `user:${m.userId}` : u.deleted ? "(deleted account)" : u.displayName && u.displayName !== u.username ? `@${u.username} (${u.displayName})` : `@${u.username}`;
    return [name, roleName(m.role), m.readSeq === 0n ? "has read nothing" : `read up to #${m.readSeq}`];
  });
  out(table(rows));
}

async function addCommand(args: string[], values: Values): Promise<void> {
  const [ref, ...people] = args;
  if (!ref || ref.startsWith("@") || people.length === 0 || people.some((p) => !p.startsWith("@"))) throw new CliError("usage: chat-cli add <group> <@user...>", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  const { channelId } = group;
  const wanted: User[] = [];
  for (const p of people) {
    const user = await s.findUser(p);
    if (!wanted.some((u) => u.userId === user.userId)) wanted.push(user);
  }
  // Who is in already, to say so: the server adds the others and says nothing of them.
  const before = new Set((await s.api.channels.listMembers({ channelId })).members.map((m) => m.userId));
  const c = (
    await unsureIfInterrupted(`the add may have been made or not; see chat-cli members ${shellWord(ref)}`, () =>
      s.api.channels.addMembers({ channelId, userIds: wanted.map((u) => u.userId) }),
    )
  ).channel!;
  const added = wanted.filter((u) => !before.has(u.userId));
  const already = wanted.filter((u) => before.has(u.userId));
  if (values.json) {
    const who = (us: User[]) => us.map((u) => ({ userId: u.userId, username: u.username }));
    return json({ channelId, title: c.title, members: c.memberCount, added: who(added), alreadyMembers: who(already) });
  }
  const name = await s.channelName(c);
  const inAlready = already.length === 0 ? "" : `${listOf(already.map((u) => `@${u.username}`))} ${already.length === 1 ? "was" : "were"} in it already`;
  if (added.length === 0) return out(`nobody added to "${name}": ${inAlready}`);
  out(`added ${listOf(added.map((u) => `@${u.username}`))} to "${name}" (${memberCount(c)})${inAlready ? `; ${inAlready}` : ""}`);
}

async function removeCommand(args: string[], values: Values): Promise<void> {
  const [ref, who, extra] = args;
  if (!ref || ref.startsWith("@") || !who?.startsWith("@") || extra !== undefined) throw new CliError("usage: chat-cli remove <group> <@user>", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  const user = await s.findUser(who);
  if (user.userId === s.userId) throw new CliError(`that is you; to leave the group: chat-cli leave ${ref}`, 2);
  await unsureIfInterrupted(`@${user.username} may have been removed or not; see chat-cli members ${shellWord(ref)}`, () =>
    s.api.channels.removeMember({ channelId: group.channelId, userId: user.userId }),
  );
  if (values.json) return json({ channelId: group.channelId, userId: user.userId, username: user.username });
  out(`removed @${user.username} from "${await s.channelName(group)}"`);
}

async function leave(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || ref.startsWith("@") || extra !== undefined) throw new CliError("usage: chat-cli leave <group>", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  await unsureIfInterrupted(`you may have left the group or not; see chat-cli chats`, () => s.api.channels.leaveGroup({ channelId: group.channelId }));
  if (values.json) return json({ channelId: group.channelId, title: group.title });
  out(`left "${await s.channelName(group)}"`);
}

async function rename(args: string[], values: Values): Promise<void> {
  const [ref, ...words] = args;
  if (!ref || ref.startsWith("@") || words.length === 0) throw new CliError("usage: chat-cli rename <group> <title...>", 2);
  const title = words.join(" ");
  if (!title.trim()) throw new CliError("the title is empty", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  // Whether the title fits (1 to 128 characters) is the server's call.
  const c = (
    await unsureIfInterrupted(`the new title may have been set or not; see chat-cli chats`, () => s.api.channels.updateGroup({ channelId: group.channelId, title }))
  ).channel!;
  if (values.json) return json({ channelId: c.channelId, title: c.title, previousTitle: group.title });
  out(c.title === group.title ? `"${c.title}" is the group's title already` : `renamed "${group.title}" to "${c.title}"`);
}

async function roleCommand(command: "admin" | "unadmin", args: string[], values: Values): Promise<void> {
  const [ref, who, extra] = args;
  if (!ref || ref.startsWith("@") || !who?.startsWith("@") || extra !== undefined) throw new CliError(`usage: chat-cli ${command} <group> <@user>`, 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  const { channelId } = group;
  const user = await s.findUser(who);
  const role = command === "admin" ? MemberRole.ADMIN : MemberRole.MEMBER;
  // Their role before, to say when nothing changed: the server changes nothing then and says nothing of it.
  const was = (await s.api.channels.listMembers({ channelId })).members.find((m) => m.userId === user.userId)?.role;
  // Who may (the owner), and whom (not the owner), is the server's call, with its reason.
  await unsureIfInterrupted(`the role of @${user.username} may have been changed or not; see chat-cli members ${shellWord(ref)}`, () =>
    s.api.channels.setMemberRole({ channelId, userId: user.userId, role }),
  );
  if (values.json) return json({ channelId, userId: user.userId, username: user.username, role: roleName(role), changed: was !== role });
  const name = await s.channelName(group);
  const what = role === MemberRole.ADMIN ? "an admin" : "a plain member";
  out(was === role ? `@${user.username} is ${what} of "${name}" already` : `made @${user.username} ${what} of "${name}"${role === MemberRole.MEMBER ? " (no longer an admin)" : ""}`);
}

/** A group's invite link: the code the server keeps, and the web client's link around it (what people are sent). */
async function invite(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  // An @user would open a 1:1 chat just to be refused: only groups have links.
  if (!ref || ref.startsWith("@") || extra !== undefined || (values.reset && values.revoke)) throw new CliError("usage: chat-cli invite <group> [--reset | --revoke]", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  const { channelId } = group;
  if (values.revoke) {
    await unsureIfInterrupted(`the invite link may have been turned off or not; to be sure: chat-cli invite ${shellWord(ref)} --revoke`, () => s.api.channels.revokeInviteLink({ channelId }));
    if (values.json) return json({ channelId, code: null, url: null });
    return out(`turned off the invite link of ${await s.channelName(group)}: nobody can join with it now`);
  }
  // Only a reset changes anything: a plain ask shows the link (made on the first ask, which asking again finds).
  const ask = () => s.api.channels.getInviteLink({ channelId, reset: values.reset });
  const { code } = values.reset ? await unsureIfInterrupted(`a new invite link may have been made (the old one no longer working) or not; see chat-cli invite ${shellWord(ref)}`, ask) : await ask();
  const url = `${s.login.server}/#/join/${code}`;
  if (values.json) return json({ channelId, code, url });
  out(`${values.reset ? "new invite link (the old one no longer works)" : "invite link"} of ${await s.channelName(group)}: ${url}`);
  out(`code: ${code}`);
}

async function join(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli join <invite-link|code>", 2);
  const s = session();
  const c = (await unsureIfInterrupted(`you may have joined the group or not; see chat-cli chats`, () => s.api.channels.joinByInvite({ code: inviteCode(ref) }))).channel!;
  if (values.json) return json({ channelId: c.channelId, title: c.title });
  out(`joined "${c.title}" (channel ${c.channelId}, ${memberCount(c)})`);
}

/** The code of an invite as pasted: a link's part after #/join/ (the web client's links), else the whole. Whether it is one is the server's call. */
function inviteCode(ref: string): string {
  const at = ref.indexOf("#/join/");
  return (at < 0 ? ref : ref.slice(at + "#/join/".length)).trim();
}

async function blockCommand(command: "block" | "unblock", args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref?.startsWith("@") || extra !== undefined) throw new CliError(`usage: chat-cli ${command} <@user>`, 2);
  const s = session();
  const user = await s.findUser(ref);
  await unsureIfInterrupted(`@${user.username} may have been ${command}ed or not; see chat-cli blocked`, async () => {
    if (command === "block") await s.api.users.blockUser({ userId: user.userId });
    else await s.api.users.unblockUser({ userId: user.userId });
  });
  if (values.json) return json({ userId: user.userId, username: user.username, blocked: command === "block" });
  out(`${command}ed @${user.username}`);
}

async function muteCommand(command: "mute" | "unmute", args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError(`usage: chat-cli ${command} <channel-id|@username>`, 2);
  const s = session();
  const c = await s.resolveChannel(ref);
  // "Until unmuted" is the latest time the server takes.
  const mutedUntil = command === "mute" ? timestampFromMs(Date.UTC(9999, 11, 31)) : undefined;
  // Harmless twice, but a Ctrl+C in silence left the person not knowing whether to run it again.
  await unsureIfInterrupted(`the chat may have been ${command}d or not; running it again is harmless`, () => s.api.channels.muteChannel({ channelId: c.channelId, mutedUntil }));
  if (values.json) return json({ channelId: c.channelId, name: await s.channelName(c), muted: command === "mute" });
  out(`${command}d ${await s.channelName(c)}`);
}

/** What each of them did, as the confirming line says it of the chat's name. */
const PLACED = {
  pin: (name: string) => `pinned ${name}`,
  unpin: (name: string) => `unpinned ${name}`,
  archive: (name: string) => `archived ${name}`,
  unarchive: (name: string) => `unarchived ${name}`,
  unread: (name: string) => `marked ${name} unread`,
  read: (name: string) => `took the unread mark off ${name}`,
} as const;

/** What may have been done, said of a Ctrl+C before the server answered. */
const PLACED_UNSURE: Record<keyof typeof PLACED, string> = {
  pin: "the chat may have been pinned",
  unpin: "the chat may have been unpinned",
  archive: "the chat may have been archived",
  unarchive: "the chat may have been unarchived",
  unread: "the chat may have been marked unread",
  read: "the chat's unread mark may have been taken off",
};

/** Where a chat is in your own list: pinned at the top, put away in the archive, marked unread (and back). */
async function placeCommand(command: keyof typeof PLACED, args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError(`usage: chat-cli ${command} <channel-id|@username>`, 2);
  const s = session();
  const { channelId } = await s.resolveChannel(ref);
  const c = (await unsureIfInterrupted(`${PLACED_UNSURE[command]} or not; running it again is harmless`, () => place(s, command, channelId))).channel!;
  if (values.json) return json({ channelId, name: await s.channelName(c), pinnedAt: iso(c.pinnedAt), archived: c.archived, markedUnread: c.markedUnread });
  out(PLACED[command](await s.channelName(c)));
}

/** The server's call for each; "unread" puts its mark on, where the other "un"s take one off. */
function place(s: Session, command: keyof typeof PLACED, channelId: bigint): Promise<{ channel?: Channel }> {
  switch (command) {
    case "pin":
    case "unpin":
      return s.api.channels.pinChannel({ channelId, pinned: command === "pin" });
    case "archive":
    case "unarchive":
      return s.api.channels.archiveChannel({ channelId, archived: command === "archive" });
    case "unread":
    case "read":
      return s.api.channels.markUnread({ channelId, unread: command === "unread" });
  }
}

async function clearCommand(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli clear <channel-id|@username>", 2);
  const s = session();
  const { channelId } = await s.resolveChannel(ref);
  const c = (await unsureIfInterrupted(`the history may have been cleared or not; see chat-cli history ${shellWord(ref)}`, () => s.api.channels.clearHistory({ channelId }))).channel!;
  const name = await s.channelName(c);
  if (values.json) return json({ channelId, name, clearedThroughSeq: c.clearedThroughSeq });
  out(c.clearedThroughSeq === 0n ? `nothing to clear in ${name}` : `cleared the history of ${name} for you, through #${c.clearedThroughSeq} (the others keep theirs)`);
}

async function blocked(values: Values): Promise<void> {
  const s = session();
  const list = (await s.api.users.listBlockedUsers({})).blockedUsers;
  // Silence left someone at a terminal unsure it worked; a script reading --json lines gets none, as from an empty chats.
  if (list.length === 0 && !values.json) return out("You have blocked nobody. Block someone with: chat-cli block @username");
  for (const b of list) {
    const at = b.blockedAt ? new Date(timestampMs(b.blockedAt)).toISOString() : null;
    if (values.json) json({ userId: b.user!.userId, username: b.user!.username, blockedAt: at });
    else out(`@${b.user!.username}  blocked ${at ?? ""}`.trimEnd());
  }
}

// ------------------------------------------------------------------ helpers

function session(): Session {
  const login = store.readOrDamaged();
  if (login instanceof DamagedLogin) throw new CliError(login.message, 3);
  if (!login) throw new CliError("not logged in; run: chat-cli login <username> (or signup)", 3);
  return new Session(store, login);
}

function channelLabel(c: Channel): string {
  return c.title ? `"${c.title}" (channel ${c.channelId})` : `channel ${c.channelId}`;
}

async function messageJson(s: Session, m: Message) {
  return {
    channelId: m.channelId,
    seq: m.seq,
    messageId: m.messageId,
    senderId: m.senderUserId,
    sender: await s.username(m.senderUserId),
    text: m.text,
    sentAt: iso(m.sentAt),
    editedAt: iso(m.editedAt),
    deleted: m.deleted,
    replyToSeq: m.replyToSeq === 0n ? null : m.replyToSeq,
    reactions: await Promise.all(m.reactions.map(async (r) => ({ userId: r.userId, user: await s.username(r.userId), emoji: r.emoji }))),
    note: m.note ? await noteJson(s, m.note) : null,
  };
}

/** A note for scripts: its kind and members by name as well as by id; the title or role only for the kinds that have one. */
async function noteJson(s: Session, note: ChannelNote) {
  return {
    // The proto's enum names, lower-cased: "members_added", "role_changed", ….
    kind: (ChannelNoteKind[note.kind] ?? "unknown").toLowerCase(),
    userIds: note.userIds,
    users: await Promise.all(note.userIds.map((id) => s.username(id))),
    ...(note.kind === ChannelNoteKind.TITLE_CHANGED ? { title: note.title } : {}),
    ...(note.kind === ChannelNoteKind.ROLE_CHANGED ? { role: (MemberRole[note.role] ?? "unknown").toLowerCase() } : {}),
  };
}

/** A note's sentence in usernames ("alice added bob"), worded as the web client words it. */
async function noteText(s: Session, m: Message, note: ChannelNote): Promise<string> {
  const names = new Map<bigint, string>();
  for (const id of peopleIn(m)) names.set(id, await s.username(id));
  return noteSentence(note, names.get(m.senderUserId)!, (id) => names.get(id)!);
}

/** Whose names a message's printing needs: its sender, the members a note is about, and those who reacted to it. */
function people(m: Message): bigint[] {
  return [...peopleIn(m), ...m.reactions.map((r) => r.userId)];
}

/** "[👍 2 ❤️ 1]": a message's reactions by emoji, in the order each first appears; "" when none. */
function reactionSummary(m: Message): string {
  const counts = new Map<string, number>();
  for (const r of m.reactions) if (r.emoji) counts.set(r.emoji, (counts.get(r.emoji) ?? 0) + 1);
  return counts.size === 0 ? "" : `[${[...counts].map(([emoji, n]) => `${emoji} ${n}`).join(" ")}]`;
}

async function printMessage(s: Session, m: Message, values: Values): Promise<void> {
  if (values.json) return json(await messageJson(s, m));
  const when = stamp(m);
  // A note is nobody's words: no "name:", nothing to react to or edit.
  if (m.note) return out(`[${when}] #${m.seq} — ${await noteText(s, m, m.note)}`);
  const reactions = m.deleted ? "" : reactionSummary(m);
  const text = (m.deleted ? "[deleted]" : m.editedAt ? `${m.text} (edited)` : m.text) + (reactions ? ` ${reactions}` : "");
  const reply = m.replyToSeq === 0n ? "" : `↪ #${m.replyToSeq} `;
  out(`[${when}] #${m.seq} ${await s.username(m.senderUserId)}: ${reply}${indented(text)}`);
}

/** "2024-05-01 18:02": when a message was sent, on this machine's clock. */
function stamp(m: Message): string {
  const at = m.sentAt ? new Date(timestampMs(m.sentAt)) : undefined;
  return at ? `${at.toLocaleDateString("sv-SE")} ${at.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}` : "";
}

/** A change (target_seq set) to a message printed earlier, or to an older one. */
async function printChange(s: Session, ch: Message, values: Values): Promise<void> {
  if (values.json) {
    return json({
      channelId: ch.channelId,
      targetSeq: ch.targetSeq,
      change: ch.deleted ? "delete" : ch.reaction ? "reaction" : "edit",
      // None on a delete read from history, which does not say who deleted it.
      senderId: ch.senderUserId === 0n ? null : ch.senderUserId,
      sender: ch.senderUserId === 0n ? null : await s.username(ch.senderUserId),
      text: ch.text,
      at: iso(ch.sentAt),
    });
  }
  if (ch.reaction) {
    const who = await s.username(ch.senderUserId);
    return out(ch.text ? `☺ #${ch.targetSeq} ${who} reacted ${ch.text}` : `☺ #${ch.targetSeq} ${who} took back their reaction`);
  }
  out(ch.deleted ? `✗ #${ch.targetSeq} deleted` : `✎ #${ch.targetSeq} edited: ${indented(ch.text)}`);
}

/**
 * Later lines of a text indented under the first; a CRLF ends a line too (another client's text may have them), not a \r shown as U+FFFD.
 * So do U+2028 and U+2029: a script splitting lines as Python's splitlines() does took what followed one for a line of its own.
 */
function indented(text: string): string {
  const lines = text.split(/\r?\n|[\u2028\u2029]/);
  return `${lines[0]}${lines.slice(1).map((l) => `\n    ${l}`).join("")}`;
}

function iso(ts: Message["sentAt"]): string | null {
  return ts ? new Date(timestampMs(ts)).toISOString() : null;
}

function table(rows: string[][]): string {
  // Measured as printed: a control character in a name takes the column of the U+FFFD that stands for it.
  const cells = rows.map((r) => r.map(printable));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => displayWidth(r[i] ?? ""))));
  return cells.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : padEnd(cell, widths[i]!))).join("  ").trimEnd()).join("\n");
}

/**
 * A text on one line, in at most `max` columns as printed: cut after its bidi controls are shown as their
 * <U+202E> markers, which take 8 columns each; cut before, the column ran past `max` by 7 for each.
 */
function oneLine(text: string, max: number): string {
  return truncated(printable(text.replace(/\s+/g, " ").trim()), max);
}

function intOption(raw: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  // Plain digits only: Number() takes "" and " " as 0, "0x10" as 16 and "1e2" as 100.
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`${name} must be an integer from ${min} to ${max}`, 2);
  return n;
}

/** `by`: where the address came from, as the error names it. */
function normalizeServer(raw: string, by = "--server"): string {
  let u: URL;
  try {
    u = new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`${by}: "${raw}" is not a URL`, 2);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new CliError(`${by} must be an http:// or https:// URL`, 2);
  return u.origin;
}

/** Whether two server origins name one host and port, whatever their schemes. */
function sameListener(a: string, b: string): boolean {
  const port = (u: URL) => u.port || (u.protocol === "https:" ? "443" : "80");
  const [x, y] = [new URL(a), new URL(b)];
  return x.hostname === y.hostname && port(x) === port(y);
}

/** `by`: where the address came from, as the error names it. */
function normalizeWs(raw: string | undefined, by: string): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`${by}: "${raw}" is not a URL`, 2);
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new CliError(`${by} must be a ws:// or wss:// URL (the realtime WebSocket, as ws://host:8090/ws), not "${raw}"`, 2);
  return u.toString();
}

/**
 * Stdin as UTF-8 text, without the byte order mark a file saved on Windows starts with (an invisible
 * U+FEFF at the start of a message; a password with it was refused as wrong, without a hint).
 * Other bytes (a Latin-1 file) are refused: they were sent as U+FFFD in their place, without a word.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new CliError("stdin is not UTF-8 text (a file in another encoding? convert it first, as with: iconv -f latin1 -t utf-8)", 2);
  }
}

async function readPassword(values: Values, confirm: boolean): Promise<string> {
  // At a terminal, read as piped text, what was typed was echoed there (its scrollback, a screen share) until Ctrl+D.
  if (values["password-stdin"] && !process.stdin.isTTY) {
    const password = (await readStdin()).replace(/\r?\n$/, "");
    // `< /dev/null` or an unset variable piped: sent, it was refused as a wrong password (too short, at signup), as if mistyped.
    if (!password) throw new CliError("no password on stdin (it was empty)", 2);
    return password;
  }
  if (values["password-stdin"]) return promptPassword();
  if (process.env.CHAT_PASSWORD) return process.env.CHAT_PASSWORD;
  if (!process.stdin.isTTY) throw new CliError("no password: use --password-stdin, set CHAT_PASSWORD, or run in a terminal", 2);
  const first = await promptPassword();
  if (confirm && (await promptHidden("Password again: ")) !== first) throw new CliError("the passwords differ", 2);
  return first;
}

/** How many times Enter alone at the password prompt is asked again before giving up. */
const EMPTY_PASSWORD_TRIES = 3;

/**
 * A password typed at the terminal, asked again when Enter alone was pressed: sent, the empty one was
 * refused by the server as a wrong password, as if mistyped (a signup's as too short, or asked again to confirm).
 */
async function promptPassword(): Promise<string> {
  for (let i = 1; ; i++) {
    const answer = await promptHidden("Password: ");
    if (answer) return answer;
    if (i >= EMPTY_PASSWORD_TRIES) throw new CliError("no password given (empty three times); nothing was asked of the server", 2);
    warn("the password is empty; type it (Ctrl+C cancels)");
  }
}

/** Asks on the terminal without echoing what is typed. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const mutable = rl as unknown as { _writeToOutput?: (s: string) => void };
    process.stderr.write(question);
    mutable._writeToOutput = () => {};
    let answered = false;
    rl.question("", (answer) => {
      answered = true;
      rl.close();
      process.stderr.write("\n");
      resolve(answer);
    });
    rl.on("SIGINT", () => {
      answered = true;
      rl.close();
      // On a line of its own: "cancelled" alone was written after the prompt, and named nothing.
      process.stderr.write("\n");
      reject(new CliError("cancelled at the password prompt; nothing was asked of the server", 130));
    });
    // Ctrl+D: closed with no answer, the promise was left pending and the process ended with exit 0, without a word.
    rl.on("close", () => {
      if (answered) return;
      process.stderr.write("\n");
      reject(new CliError("no password given (the input ended)", 2));
    });
  });
}

/**
 * Control characters (C0 but tab and newline, DEL, C1) shown as U+FFFD: a
 * text, a name or a title is someone else's words, and an escape sequence
 * in them would otherwise drive the reader's terminal (retitle it, hide
 * lines, fake a prompt). The bidi embeddings, overrides and isolates are
 * shown as <U+202E>, where they were: a terminal that applies bidi (GNOME's)
 * showed "invoice\u202egpj.exe" as "invoice exe.jpg" and reordered the rest of
 * the line, the sender's name with it. The marks (U+200E, U+200F, U+061C)
 * stay: right-to-left writing needs them, and they only set the direction
 * of the punctuation beside them, not of whole runs of text.
 */
export function printable(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "\ufffd")
    .replace(/[\u202a-\u202e\u2066-\u2069]/g, (c) => `<U+${c.charCodeAt(0).toString(16).toUpperCase()}>`);
}

function out(line: string): void {
  process.stdout.write(`${printable(line)}\n`);
}

function warn(line: string): void {
  process.stderr.write(`${printable(line)}\n`);
}

/**
 * For scripts: JSON escapes the C0 controls itself, and a script gets every other character as it was sent.
 * DEL and the C1 controls (U+009B is CSI, U+009D OSC) are escaped here, as JSON allows: raw, they drove a
 * terminal the output was read on as their ESC forms would, and escaped they parse back the same. So are
 * U+2028 and U+2029, which JSON leaves raw: a script splitting lines as Python's splitlines() does broke
 * one message's line in two at them, neither of which parsed. And the bidi controls `printable` shows
 * escaped: a line read at a terminal (`| less`, a log) was reordered by them as a printed one was.
 */
function json(value: unknown): void {
  const line = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  process.stdout.write(`${line.replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}\n`);
}

// A reader that went away (`chat-cli history 1 | head`) is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
});

main(process.argv.slice(2)).then(
  () => finish(0),
  (err) => {
    warn(`chat-cli: ${describe(err)}`);
    finish(cliErrorOf(err)?.exitCode ?? 1);
  },
);

/** Lets stdout drain, and does not wait long for idle keep-alive sockets. */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}
