import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InboxEntrySchema, MessageSchema, ReactionSchema, type InboxEntry as PbInboxEntry, type Message } from "../../gen/es/chat/v1/types_pb.js";
import type { InboxEntry, StoredMessage } from "../model/types.js";

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

type Optional = "targetSeq" | "deleted" | "editedAtMs" | "replyToSeq" | "reaction" | "reactions";

/** The optional fields (an edited, deleted or change message, a reply, reactions), present only when set. */
function optionalFields(m: Message): Pick<StoredMessage, Optional> {
  const out: Pick<StoredMessage, Optional> = {};
  if (m.replyToSeq !== 0n) out.replyToSeq = m.replyToSeq;
  if (m.targetSeq !== 0n) out.targetSeq = m.targetSeq;
  if (m.deleted) out.deleted = true;
  if (m.editedAt) out.editedAtMs = timestampDate(m.editedAt).getTime();
  if (m.reaction) out.reaction = true;
  if (m.reactions.length > 0) out.reactions = m.reactions.map((r) => ({ userId: r.userId, emoji: r.emoji }));
  return out;
}

export function inboxEntryToProto(e: InboxEntry): PbInboxEntry {
  return create(InboxEntrySchema, { inboxSeq: e.inboxSeq, message: messageToProto(e.message) });
}
