import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InboxEntrySchema, MessageSchema, type InboxEntry as PbInboxEntry, type Message } from "../../gen/es/chat/v1/types_pb.js";
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

/** The optional fields (an edited, deleted or change message, a reply), present only when set. */
function optionalFields(m: Message): Pick<StoredMessage, "targetSeq" | "deleted" | "editedAtMs" | "replyToSeq"> {
  const out: Pick<StoredMessage, "targetSeq" | "deleted" | "editedAtMs" | "replyToSeq"> = {};
  if (m.replyToSeq !== 0n) out.replyToSeq = m.replyToSeq;
  if (m.targetSeq !== 0n) out.targetSeq = m.targetSeq;
  if (m.deleted) out.deleted = true;
  if (m.editedAt) out.editedAtMs = timestampDate(m.editedAt).getTime();
  return out;
}

export function inboxEntryToProto(e: InboxEntry): PbInboxEntry {
  return create(InboxEntrySchema, { inboxSeq: e.inboxSeq, message: messageToProto(e.message) });
}
