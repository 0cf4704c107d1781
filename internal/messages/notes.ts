import type { ChannelNote, ChannelNoteKind, Id, MemberRole } from "../model/types.js";

/**
 * How a note is kept in storage (SQLite and Cassandra alike): a small JSON
 * text, readable in a database shell, with ids as decimal strings (JSON
 * numbers lose precision past 2^53). A field a later build adds is simply
 * another key.
 */
export function encodeNote(note: ChannelNote): string {
  return JSON.stringify({
    kind: note.kind,
    userIds: note.userIds.map(String),
    ...(note.title !== undefined ? { title: note.title } : {}),
    ...(note.role !== undefined ? { role: note.role } : {}),
  });
}

const KINDS = new Set<ChannelNoteKind>(["joined_by_invite", "members_added", "member_removed", "member_left", "title_changed", "role_changed"]);
const ROLES = new Set<MemberRole>(["member", "admin", "owner"]);

/** The note a stored text holds; a text this build cannot read is an error, never a note made up. */
export function decodeNote(text: string): ChannelNote {
  const raw = JSON.parse(text) as { kind?: unknown; userIds?: unknown; title?: unknown; role?: unknown };
  if (!KINDS.has(raw.kind as ChannelNoteKind)) throw new Error(`stored note of unknown kind ${JSON.stringify(raw.kind)}`);
  const userIds: Id[] = Array.isArray(raw.userIds) ? raw.userIds.map((id) => BigInt(id as string)) : [];
  const note: ChannelNote = { kind: raw.kind as ChannelNoteKind, userIds };
  if (typeof raw.title === "string") note.title = raw.title;
  if (ROLES.has(raw.role as MemberRole)) note.role = raw.role as MemberRole;
  return note;
}

