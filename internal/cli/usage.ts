import { parseArgs } from "node:util";
import { shellQuoted, shellWord } from "./shell.js";

export const USAGE = `chat-cli: a command-line client for chatd

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

export type Values = ReturnType<typeof parse>["values"];

export function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

/**
 * What to say of an argument parseArgs took for an unknown option. Its own
 * words name one letter of it ("-hello" is "-e": -h, then -e) and suggest
 * `-- "-e"`; a text that starts with "-" ("-1 from me", "- milk") is what
 * was meant more often than not.
 */
export function unknownOption(argv: string[]): string | undefined {
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
