import { fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ChatError } from "../model/errors.js";
import type { FrameEncoding } from "./port.js";

export function decodeClientFrame(data: Uint8Array | string, encoding: FrameEncoding): ClientFrame {
  try {
    if (encoding === "json") {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      return fromJsonString(ClientFrameSchema, text);
    }
    if (typeof data === "string") throw new Error("text frame on a binary (chat.v1.proto) session");
    return fromBinary(ClientFrameSchema, data);
  } catch (err) {
    throw new ChatError("invalid_frame", `malformed ClientFrame: ${(err as Error).message}`);
  }
}

export function encodeServerFrame(frame: ServerFrame, encoding: FrameEncoding): Uint8Array | string {
  return encoding === "json" ? toJsonString(ServerFrameSchema, frame) : toBinary(ServerFrameSchema, frame);
}
