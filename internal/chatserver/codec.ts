import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { Message } from "../../gen/es/chat/v1/types_pb.js";
import { ChatError } from "../model/errors.js";
import { cutToUtf8Bytes, type InboxEntry, type StoredMessage } from "../model/types.js";
import { encodeDeliveryFrame, encodeMessage, encodeStoredMessage } from "../wire/message-bytes.js";
import { inboxEntryToProto } from "../wire/messages.js";
import { readClientFrame } from "../wire/client-frame-read.js";
import { quoteUnsafeIntegers } from "../wire/json-integers.js";
import type { FrameEncoding } from "./port.js";

/**
 * A JSON frame in a binary WebSocket frame is not checked as UTF-8 by the
 * socket, as a text frame is: read leniently, its bad bytes became U+FFFD
 * and were stored as such (a message), which the API refuses too.
 */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The most of a decoder's complaint an error frame carries: it may quote the
 * frame (a JSON key of 500 KB), and the whole of it went back to the client.
 */
export const MAX_DECODE_ERROR_BYTES = 1000;

export function decodeClientFrame(data: Uint8Array | string, encoding: FrameEncoding): ClientFrame {
  try {
    if (encoding === "json") {
      const text = typeof data === "string" ? data : decodeUtf8(data);
      return fromJsonString(ClientFrameSchema, quoteUnsafeIntegers(text));
    }
    if (typeof data === "string") throw new Error("text frame on a binary (chat.v1.proto) session");
    return readClientFrame(data) ?? fromBinary(ClientFrameSchema, data);
  } catch (err) {
    throw new ChatError("invalid_frame", cutToUtf8Bytes(`malformed ClientFrame: ${(err as Error).message}`, MAX_DECODE_ERROR_BYTES, "..."));
  }
}

function decodeUtf8(data: Uint8Array): string {
  try {
    return UTF8.decode(data);
  } catch {
    throw new Error("a JSON frame must be UTF-8");
  }
}

export function encodeServerFrame(frame: ServerFrame, encoding: FrameEncoding): Uint8Array | string {
  if (encoding === "json") return toJsonString(ServerFrameSchema, frame);
  return encodeDelivery(frame) ?? toBinary(ServerFrameSchema, frame);
}

/** A frame as a session sends it: its bytes in the session's encoding. */
export interface FrameBytes {
  bytes(encoding: FrameEncoding): Uint8Array | string;
}

/** A frame's bytes in each encoding, each encoded at most once: shared by one user's sessions. */
export class EncodedFrame implements FrameBytes {
  private json?: string;

  /** `proto`, when given, must be the frame's wire bytes (as it came from another process). */
  constructor(
    readonly frame: ServerFrame,
    private proto?: Uint8Array,
  ) {}

  bytes(encoding: FrameEncoding): Uint8Array | string {
    if (encoding === "json") return (this.json ??= encodeServerFrame(this.frame, "json") as string);
    return (this.proto ??= encodeServerFrame(this.frame, "proto") as Uint8Array);
  }
}

/** The encoded chat.v1.Message of delivery frames that share one Message object. */
const messageBytes = new WeakMap<Message, Uint8Array>();

/**
 * A MessageDelivery frame, byte for byte what `toBinary` writes, with the
 * Message encoded once for every frame that shares the object: the frames of
 * a group message differ only in the member's inbox_seq, and encoding its
 * Message once per member was most of the protobuf time of a fan-out. Frames
 * are never changed after they are built, so the cached bytes stay true.
 */
function encodeDelivery(frame: ServerFrame): Uint8Array | undefined {
  if (frame.kind.case !== "message" || frame.ref !== 0n) return undefined;
  const delivery = frame.kind.value;
  const entry = delivery.entry;
  const message = entry?.message;
  if (!entry || !message || frame.$unknown || delivery.$unknown || entry.$unknown) return undefined;
  let bytes = messageBytes.get(message);
  if (bytes === undefined) messageBytes.set(message, (bytes = encodeMessage(message)));
  return encodeDeliveryFrame(entry.inboxSeq, bytes);
}

/** A stored message's chat.v1.Message bytes, encoded when first asked for: shared by the message's inbox entries. */
export class StoredMessageBytes {
  private encoded?: Uint8Array;

  constructor(readonly message: StoredMessage) {}

  bytes(): Uint8Array {
    return (this.encoded ??= encodeStoredMessage(this.message));
  }
}

/**
 * The MessageDelivery frame of a stored inbox entry, each encoding made when
 * a session first asks for it, and no protobuf objects on the binary path:
 * `message` is the entry's message, encoded once for all its entries. Byte
 * for byte the frame `encodeServerFrame` writes of the entry made a ServerFrame.
 */
export class EntryFrame implements FrameBytes {
  private proto?: Uint8Array;
  private json?: string;

  constructor(
    readonly entry: InboxEntry,
    private readonly message: StoredMessageBytes,
  ) {}

  bytes(encoding: FrameEncoding): Uint8Array | string {
    if (encoding === "json") return (this.json ??= toJsonString(ServerFrameSchema, entryServerFrame(this.entry)));
    return (this.proto ??= encodeDeliveryFrame(this.entry.inboxSeq, this.message.bytes()) ?? toBinary(ServerFrameSchema, entryServerFrame(this.entry)));
  }
}

/** The ServerFrame that delivers a stored inbox entry. */
export function entryServerFrame(entry: InboxEntry): ServerFrame {
  return create(ServerFrameSchema, { kind: { case: "message", value: { entry: inboxEntryToProto(entry) } } });
}
