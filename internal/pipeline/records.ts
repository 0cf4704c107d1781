import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InboxAppendSchema, MessageSubmittedSchema } from "../../gen/es/chat/internal/v1/pipeline_pb.js";
import type { Id, NewMessage, StoredMessage } from "../model/types.js";
import type { QueueRecord } from "../queue/port.js";
import { encodeMessage } from "../wire/message-bytes.js";
import { messageFromProto, messageToProto, noteFromProto, noteToProto } from "../wire/messages.js";

/** Domain <-> wire mapping for the pipeline's queue records. */

export function encodeSubmitted(m: NewMessage): Uint8Array {
  return toBinary(
    MessageSubmittedSchema,
    create(MessageSubmittedSchema, {
      messageId: m.messageId,
      clientMsgId: m.clientMsgId,
      channelId: m.channelId,
      senderUserId: m.senderUserId,
      senderDeviceId: m.senderDeviceId,
      text: m.text,
      submittedAt: timestampFromMs(m.sentAtMs),
      targetSeq: m.targetSeq ?? 0n,
      deleted: m.deleted ?? false,
      replyToSeq: m.replyToSeq ?? 0n,
      reaction: m.reaction ?? false,
      note: m.note ? noteToProto(m.note) : undefined,
    }),
  );
}

export function decodeSubmitted(bytes: Uint8Array): NewMessage {
  const r = fromBinary(MessageSubmittedSchema, bytes);
  return {
    messageId: r.messageId,
    clientMsgId: r.clientMsgId,
    channelId: r.channelId,
    senderUserId: r.senderUserId,
    senderDeviceId: r.senderDeviceId,
    text: r.text,
    sentAtMs: r.submittedAt ? timestampDate(r.submittedAt).getTime() : 0,
    ...(r.targetSeq !== 0n
      ? { targetSeq: r.targetSeq, ...(r.deleted ? { deleted: true } : r.reaction ? { reaction: true } : {}) }
      : {}),
    ...(r.replyToSeq !== 0n ? { replyToSeq: r.replyToSeq } : {}),
    ...(r.note ? { note: noteFromProto(r.note) } : {}),
  };
}

export function encodeInboxAppend(
  userId: Id,
  m: StoredMessage,
  emptyMessageIds: readonly Id[] = [],
  notify = false,
  deletedMessageId: Id = 0n,
): Uint8Array {
  return toBinary(
    InboxAppendSchema,
    create(InboxAppendSchema, { userId, message: messageToProto(m), emptyMessageIds: [...emptyMessageIds], notify, deletedMessageId }),
  );
}

/**
 * The InboxAppend of every member of a channel, with the message encoded
 * once: `user_id` (field 1) then `message` (field 2) as a length-delimited
 * copy of the same bytes, exactly what `encodeInboxAppend` writes for each.
 * A group message has up to 100 members; encoding the message 100 times was
 * a visible share of the fan-out's CPU in the benchmark's profile.
 */
export function encodeInboxAppends(
  userIds: readonly Id[],
  m: StoredMessage,
  emptyMessageIds: readonly Id[] = [],
  /** The one member whose copy says `notify` (a reaction's author), if any. */
  notifyUserId?: Id,
  /** On a delete's part that names it: the deleted message, whose copies are marked deleted (`deleted_message_id`). */
  deletedMessageId: Id = 0n,
): Uint8Array[] {
  const message = encodeMessage(messageToProto(m));
  return userIds.map((userId) => {
    const w = new BinaryWriter();
    if (userId !== 0n) w.tag(1, WireType.Varint).uint64(userId);
    w.tag(2, WireType.LengthDelimited).bytes(message);
    if (emptyMessageIds.length > 0) {
      // Packed, as proto3 writes a repeated scalar.
      w.tag(3, WireType.LengthDelimited).fork();
      for (const id of emptyMessageIds) w.uint64(id);
      w.join();
    }
    if (userId === notifyUserId) w.tag(4, WireType.Varint).bool(true);
    if (deletedMessageId !== 0n) w.tag(5, WireType.Varint).uint64(deletedMessageId);
    return w.finish();
  });
}

/**
 * The most message ids one InboxAppend names to empty (`empty_message_ids`),
 * about 10 kB of varints: a record's size must not grow with what the user
 * did. A delete names the message and its edits, and edits are bounded only
 * where they are sent (MAX_EDITS_PER_MESSAGE); a message edited more often
 * before there was a limit (or by edits racing past it) once made a record
 * larger than the topic's max.message.bytes, which Kafka refuses for good:
 * the Sequencer retried its batch forever and every later message of the
 * partition's channels waited behind it. Past this many, the delete's entry
 * goes to each member again with the next ids (emptiedParts); the inbox takes
 * the repeat as a duplicate and empties what it names.
 */
export const MAX_EMPTIED_PER_APPEND = 1_000;

/** The ids a delete empties, in parts of at most `max` (one InboxAppend per member each); one empty part when none. */
export function emptiedParts(ids: readonly Id[], max = MAX_EMPTIED_PER_APPEND): Id[][] {
  if (ids.length <= max) return [[...ids]];
  const parts: Id[][] = [];
  for (let i = 0; i < ids.length; i += max) parts.push(ids.slice(i, i + max));
  return parts;
}

export interface DecodedInboxAppend {
  userId: Id;
  message: StoredMessage;
  /** Present on a delete's entry: the messages whose copies in this inbox lose their text. */
  emptyMessageIds?: Id[];
  /** Present (true) on a change to push to this user when none of their devices is online. */
  notify?: true;
  /**
   * Present on the delete's part that names the deleted message: that copy is
   * marked deleted as well as emptied. Absent from a record of a pipeline built
   * before the field, whose copies are then only emptied, as that build did.
   */
  deletedMessageId?: Id;
}

export function decodeInboxAppend(bytes: Uint8Array): DecodedInboxAppend {
  const r = fromBinary(InboxAppendSchema, bytes);
  if (!r.message) throw new Error("InboxAppend without a message");
  const out: DecodedInboxAppend = { userId: r.userId, message: messageFromProto(r.message) };
  if (r.emptyMessageIds.length > 0) out.emptyMessageIds = r.emptyMessageIds;
  if (r.notify) out.notify = true;
  if (r.deletedMessageId !== 0n) out.deletedMessageId = r.deletedMessageId;
  return out;
}

/** The records' values decoded, in order, leaving out each that cannot be (handed to `skip`, then gone past). */
export function decodeEach<T>(records: readonly QueueRecord[], decode: (bytes: Uint8Array) => T, skip: (record: QueueRecord, err: unknown) => void): T[] {
  const out: T[] = [];
  for (const r of records) {
    try {
      out.push(decode(r.value));
    } catch (err) {
      skip(r, err);
    }
  }
  return out;
}
