import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ChannelNoteKind as PbNoteKind,
  ChannelNoteSchema,
  InboxEntrySchema,
  MemberRole as PbMemberRole,
  MessageSchema,
  ReactionSchema,
  type ChannelNote as PbChannelNote,
  type InboxEntry as PbInboxEntry,
  type Message,
} from "../../gen/es/chat/v1/types_pb.js";
import type { ChannelNote, ChannelNoteKind, InboxEntry, MemberRole, StoredMessage } from "../model/types.js";

/**
 * The one mapping between the domain's messages and chat.v1.Message, used
 * by every edge that puts a message on the wire (the api, the session
 * frames, the pipeline's records).
 */
export function messageToProto(m: StoredMessage): Message {
  return create(MessageSchema, {
    messageId: m.messageId,
    channelId: m.channelId,
    seq: m.seq,
    senderUserId: m.senderUserId,
    senderDeviceId: m.senderDeviceId,
    clientMsgId: m.clientMsgId,
    text: m.text,
    sentAt: timestampFromMs(m.sentAtMs),
    editedAt: m.editedAtMs !== undefined ? timestampFromMs(m.editedAtMs) : undefined,
    deleted: m.deleted ?? false,
    targetSeq: m.targetSeq ?? 0n,
    replyToSeq: m.replyToSeq ?? 0n,
    reactions: m.reactions?.map((r) => create(ReactionSchema, { userId: r.userId, emoji: r.emoji })) ?? [],
    reaction: m.reaction ?? false,
    note: m.note ? noteToProto(m.note) : undefined,
  });
}

export function messageFromProto(m: Message): StoredMessage {
  return {
    messageId: m.messageId,
    channelId: m.channelId,
    seq: m.seq,
    senderUserId: m.senderUserId,
    senderDeviceId: m.senderDeviceId,
    clientMsgId: m.clientMsgId,
    text: m.text,
    sentAtMs: m.sentAt ? timestampDate(m.sentAt).getTime() : 0,
    ...optionalFields(m),
  };
}

type Optional = "targetSeq" | "deleted" | "editedAtMs" | "replyToSeq" | "reaction" | "reactions" | "note";

/** The optional fields (an edited, deleted or change message, a reply, reactions), present only when set. */
function optionalFields(m: Message): Pick<StoredMessage, Optional> {
  const out: Pick<StoredMessage, Optional> = {};
  if (m.replyToSeq !== 0n) out.replyToSeq = m.replyToSeq;
  if (m.targetSeq !== 0n) out.targetSeq = m.targetSeq;
  if (m.deleted) out.deleted = true;
  if (m.editedAt) out.editedAtMs = timestampDate(m.editedAt).getTime();
  if (m.reaction) out.reaction = true;
  if (m.reactions.length > 0) out.reactions = m.reactions.map((r) => ({ userId: r.userId, emoji: r.emoji }));
  if (m.note) out.note = noteFromProto(m.note);
  return out;
}

const NOTE_KINDS: [ChannelNoteKind, PbNoteKind][] = [
  ["members_added", PbNoteKind.MEMBERS_ADDED],
  ["member_removed", PbNoteKind.MEMBER_REMOVED],
  ["member_left", PbNoteKind.MEMBER_LEFT],
  ["title_changed", PbNoteKind.TITLE_CHANGED],
  ["role_changed", PbNoteKind.ROLE_CHANGED],
  ["joined_by_invite", PbNoteKind.JOINED_BY_INVITE],
  ["unknown", PbNoteKind.UNSPECIFIED],
];
const ROLES: [MemberRole, PbMemberRole][] = [
  ["member", PbMemberRole.MEMBER],
  ["admin", PbMemberRole.ADMIN],
  ["owner", PbMemberRole.OWNER],
];

export function noteToProto(n: ChannelNote): PbChannelNote {
  return create(ChannelNoteSchema, {
    kind: NOTE_KINDS.find(([k]) => k === n.kind)![1],
    userIds: [...n.userIds],
    title: n.title ?? "",
    role: n.role ? ROLES.find(([r]) => r === n.role)![1] : PbMemberRole.UNSPECIFIED,
  });
}

/**
 * A note from the pipeline's records. One of a kind a later build added
 * (an api upgraded before the pipeline) reads as `unknown` rather than
 * throwing: a record that cannot be decoded would stop its whole partition.
 */
export function noteFromProto(n: PbChannelNote): ChannelNote {
  const kind = NOTE_KINDS.find(([, pb]) => pb === n.kind)?.[0] ?? "unknown";
  const note: ChannelNote = { kind, userIds: [...n.userIds] };
  if (n.title) note.title = n.title;
  const role = ROLES.find(([, pb]) => pb === n.role)?.[0];
  if (role) note.role = role;
  return note;
}

export function inboxEntryToProto(e: InboxEntry): PbInboxEntry {
  return create(InboxEntrySchema, { inboxSeq: e.inboxSeq, message: messageToProto(e.message) });
}
