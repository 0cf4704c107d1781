import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ChannelNoteKind, MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import type { ChannelNote, Message } from "../../gen/es/chat/v1/types_pb.js";
import { noteSentence, peopleIn } from "../../web/src/notes.js";
import type { Session } from "./client.js";
import { indented, iso, json, out } from "./output.js";
import type { Values } from "./usage.js";

export async function messageJson(s: Session, m: Message) {
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
export async function noteText(s: Session, m: Message, note: ChannelNote): Promise<string> {
  const names = new Map<bigint, string>();
  for (const id of peopleIn(m)) names.set(id, await s.username(id));
  return noteSentence(note, names.get(m.senderUserId)!, (id) => names.get(id)!);
}

/** Whose names a message's printing needs: its sender, the members a note is about, and those who reacted to it. */
export function people(m: Message): bigint[] {
  return [...peopleIn(m), ...m.reactions.map((r) => r.userId)];
}

/** "[👍 2 ❤️ 1]": a message's reactions by emoji, in the order each first appears; "" when none. */
function reactionSummary(m: Message): string {
  const counts = new Map<string, number>();
  for (const r of m.reactions) if (r.emoji) counts.set(r.emoji, (counts.get(r.emoji) ?? 0) + 1);
  return counts.size === 0 ? "" : `[${[...counts].map(([emoji, n]) => `${emoji} ${n}`).join(" ")}]`;
}

export async function printMessage(s: Session, m: Message, values: Values): Promise<void> {
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
export async function printChange(s: Session, ch: Message, values: Values): Promise<void> {
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
