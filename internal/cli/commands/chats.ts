import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { ChannelKind } from "../../../gen/es/chat/v1/types_pb.js";
import type { Channel } from "../../../gen/es/chat/v1/types_pb.js";
import { CliError, type Session } from "../client.js";
import { unsureIfInterrupted } from "../interrupts.js";
import { iso, json, oneLine, out, table } from "../output.js";
import { messageJson, noteText, people } from "../print-messages.js";
import { session } from "../session.js";
import { shellWord } from "../shell.js";
import type { Values } from "../usage.js";

export async function chats(values: Values): Promise<void> {
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

export async function blockCommand(command: "block" | "unblock", args: string[], values: Values): Promise<void> {
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

export async function blocked(values: Values): Promise<void> {
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

export async function muteCommand(command: "mute" | "unmute", args: string[], values: Values): Promise<void> {
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
export const PLACED = {
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
export async function placeCommand(command: keyof typeof PLACED, args: string[], values: Values): Promise<void> {
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

export async function clearCommand(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli clear <channel-id|@username>", 2);
  const s = session();
  const { channelId } = await s.resolveChannel(ref);
  const c = (await unsureIfInterrupted(`the history may have been cleared or not; see chat-cli history ${shellWord(ref)}`, () => s.api.channels.clearHistory({ channelId }))).channel!;
  const name = await s.channelName(c);
  if (values.json) return json({ channelId, name, clearedThroughSeq: c.clearedThroughSeq });
  out(c.clearedThroughSeq === 0n ? `nothing to clear in ${name}` : `cleared the history of ${name} for you, through #${c.clearedThroughSeq} (the others keep theirs)`);
}
