import { ChannelNoteKind, MemberRole, type ChannelNote, type Message } from "../../gen/es/chat/v1/types_pb.js";

/** A note the server wrote about the group (members, title, roles, a join by invite link): shown as a line of its own, never as a message one can act on. */
export const isNote = (m: Message): m is Message & { note: ChannelNote } => m.note !== undefined;

/** Whose names a message's showing needs: its sender, and the members a note is about. */
export const peopleIn = (m: Message): bigint[] => [m.senderUserId, ...(m.note?.userIds ?? [])];

/** "Bob", "Bob and Carol", "Bob, Carol and Dave". */
export function listOf(names: string[]): string {
  return names.length <= 1 ? (names[0] ?? "someone") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/**
 * What a note says, as one sentence: "Alice added Bob and Carol", "You
 * renamed the group to “Trip”". `senderName` is how the one who did it is
 * called (capitalised, "You" for the signed-in user); `nameOf` names the
 * others, and `me` (when given) is called "you" among them. The CLI shares
 * it (with usernames and no `me`), so every client tells one story.
 */
export function noteSentence(note: ChannelNote, senderName: string, nameOf: (id: bigint) => string, me?: bigint): string {
  const object = (id: bigint) => (id === me ? "you" : nameOf(id));
  const whom = listOf(note.userIds.map(object));
  switch (note.kind) {
    case ChannelNoteKind.MEMBERS_ADDED:
      return `${senderName} added ${whom}`;
    case ChannelNoteKind.MEMBER_REMOVED:
      return `${senderName} removed ${whom}`;
    case ChannelNoteKind.MEMBER_LEFT:
      return `${senderName} left the group${note.userIds.length > 0 ? ` · ${newOwner(note.userIds[0]!, nameOf, me)}` : ""}`;
    case ChannelNoteKind.TITLE_CHANGED:
      return `${senderName} renamed the group to “${note.title}”`;
    case ChannelNoteKind.ROLE_CHANGED:
      return note.role === MemberRole.ADMIN ? `${senderName} made ${whom} an admin` : `${senderName} made ${whom} a member (no longer an admin)`;
    case ChannelNoteKind.JOINED_BY_INVITE:
      return `${senderName} joined with the invite link`;
    default:
      // A kind newer than this client: still a line, never a blank one.
      return `${senderName} changed the group`;
  }
}

function newOwner(id: bigint, nameOf: (id: bigint) => string, me?: bigint): string {
  return id === me ? "You are now the owner" : `${nameOf(id)} is now the owner`;
}
