import type { Id, NewMessage } from "../model/types.js";

/**
 * Those a note says came into the group: whom an add names, or the one who
 * joined by link (its sender). Their join point moves to the note's seq as it
 * is stored (ChannelStore.markJoined): what the history shows before the note
 * of their own coming, and that note, are not unread for them, in chatd and
 * the cluster alike, whatever was still on its way to the log as they came.
 */
export function joinersOf(m: NewMessage): readonly Id[] {
  if (m.note?.kind === "members_added") return m.note.userIds;
  if (m.note?.kind === "joined_by_invite") return [m.senderUserId];
  return [];
}
