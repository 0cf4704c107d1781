import { MemberRole } from "../../../gen/es/chat/v1/types_pb.js";
import type { Channel, User } from "../../../gen/es/chat/v1/types_pb.js";
import { listOf } from "../../../web/src/notes.js";
import { CliError } from "../client.js";
import { unsureIfInterrupted } from "../interrupts.js";
import { iso, json, out, table } from "../output.js";
import { session } from "../session.js";
import { shellWord } from "../shell.js";
import type { Values } from "../usage.js";

export async function group(args: string[], values: Values): Promise<void> {
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

/** "1 member", "3 members": a group of one is there as soon as it is made without anyone else. */
function memberCount(c: Channel): string {
  return `${c.memberCount} member${c.memberCount === 1 ? "" : "s"}`;
}

/** What a member's role is called: the proto's enum names, lower-cased ("owner", "admin", "member"). */
function roleName(role: MemberRole): string {
  return (MemberRole[role] ?? "unknown").toLowerCase();
}

export async function members(args: string[], values: Values): Promise<void> {
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

export async function addCommand(args: string[], values: Values): Promise<void> {
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

export async function removeCommand(args: string[], values: Values): Promise<void> {
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

export async function leave(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || ref.startsWith("@") || extra !== undefined) throw new CliError("usage: chat-cli leave <group>", 2);
  const s = session();
  const group = await s.resolveChannel(ref);
  await unsureIfInterrupted(`you may have left the group or not; see chat-cli chats`, () => s.api.channels.leaveGroup({ channelId: group.channelId }));
  if (values.json) return json({ channelId: group.channelId, title: group.title });
  out(`left "${await s.channelName(group)}"`);
}

export async function rename(args: string[], values: Values): Promise<void> {
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

export async function roleCommand(command: "admin" | "unadmin", args: string[], values: Values): Promise<void> {
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
export async function invite(args: string[], values: Values): Promise<void> {
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

export async function join(args: string[], values: Values): Promise<void> {
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
