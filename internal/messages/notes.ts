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

/**
 * Whether a note tells that its actor has read the channel up to it, as a
 * send does: they made the change, and their own unread count has them so
 * (ListMembers shows the same). Not the note of a join by link, whose actor
 * is the joiner: they never read what came before them.
 */
export function readByItsActor(note: ChannelNote): boolean {
  return note.kind !== "joined_by_invite";
}

const KINDS = new Set<ChannelNoteKind>(["joined_by_invite", "members_added", "member_removed", "member_left", "title_changed", "role_changed"]);
const ROLES = new Set<MemberRole>(["member", "admin", "owner"]);

/**
 * The note a stored text holds. Never throws: a reader of a history, a
 * chat list or an inbox must not stop at one note it cannot read (written
 * by a later build, or damaged), so that note reads as `unknown`, with what
 * of it could be read.
 */
export function decodeNote(text: string): ChannelNote {
  let raw: { kind?: unknown; userIds?: unknown; title?: unknown; role?: unknown };
  try {
    const parsed: unknown = JSON.parse(text);
    raw = parsed !== null && typeof parsed === "object" ? parsed : {};
  } catch {
    raw = {};
  }
  const kind = KINDS.has(raw.kind as ChannelNoteKind) ? (raw.kind as ChannelNoteKind) : "unknown";
  const note: ChannelNote = { kind, userIds: Array.isArray(raw.userIds) ? raw.userIds.flatMap(userId) : [] };
  if (typeof raw.title === "string") note.title = raw.title;
  if (ROLES.has(raw.role as MemberRole)) note.role = raw.role as MemberRole;
  return note;
}

function userId(v: unknown): Id[] {
  if (typeof v !== "string" || !/^\d{1,20}$/.test(v)) return [];
  const id = BigInt(v);
  return id < 1n << 64n ? [id] : [];
}

