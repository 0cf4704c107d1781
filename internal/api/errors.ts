import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { isChatError, type ChatError, type ErrorCodeName } from "../model/errors.js";

/**
 * Every RPC error carries the chat.v1.ErrorCode as the "chat-error-code"
 * header (a trailer on gRPC), valued with the proto enum name, for example
 * "ERROR_CODE_GROUP_FULL", so clients branch on it rather than on messages.
 * Rate-limited errors also carry "chat-retry-after-ms". An error no chat
 * code fits (Unimplemented; FailedPrecondition for a push kind this server
 * has not configured; a cancelled call) is "ERROR_CODE_UNSPECIFIED"; the
 * proto has no code for them, and the status says enough.
 */
export const ERROR_CODE_HEADER = "chat-error-code";
export const RETRY_AFTER_HEADER = "chat-retry-after-ms";

const STATUS: Record<ErrorCodeName, Code> = {
  invalid_frame: Code.InvalidArgument,
  frame_too_large: Code.InvalidArgument,
  text_too_long: Code.InvalidArgument,
  text_empty: Code.InvalidArgument,
  invalid_argument: Code.InvalidArgument,
  not_a_member: Code.PermissionDenied,
  permission_denied: Code.PermissionDenied,
  group_full: Code.FailedPrecondition,
  rate_limited: Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
  token_expired: Code.Unauthenticated,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
  session_closed: Code.Internal,
  blocked: Code.PermissionDenied,
  limit_reached: Code.FailedPrecondition,
};

export function errorCodeName(code: ErrorCodeName): string {
  const name = code.toUpperCase();
  return name in ErrorCode ? `ERROR_CODE_${name}` : "ERROR_CODE_INTERNAL";
}

export function chatToConnectError(e: ChatError): ConnectError {
  const metadata: Record<string, string> = { [ERROR_CODE_HEADER]: errorCodeName(e.code) };
  if (e.retryAfterMs !== undefined) metadata[RETRY_AFTER_HEADER] = String(Math.ceil(e.retryAfterMs));
  // One message for "no such channel" and "not in it", so channel ids cannot be probed.
  const message = e.code === "not_a_member" ? "not a member of this channel" : e.message;
  return new ConnectError(message, STATUS[e.code] ?? Code.Internal, metadata);
}

/**
 * The one place where errors leave the api: ChatErrors become their status,
 * ConnectErrors pass through, anything else is a bug and is logged, not shown.
 */
export function toConnectError(e: unknown, logger?: Logger): ConnectError {
  if (isChatError(e)) {
    if (e.code === "internal") logger?.error({ err: e }, "internal error in rpc");
    return chatToConnectError(e);
  }
  if (e instanceof ConnectError) {
    if (!e.metadata.has(ERROR_CODE_HEADER)) e.metadata.set(ERROR_CODE_HEADER, connectCodeName(e.code));
    return e;
  }
  logger?.error({ err: e }, "unexpected error in rpc");
  return new ConnectError("internal error", Code.Internal, { [ERROR_CODE_HEADER]: "ERROR_CODE_INTERNAL" });
}

function connectCodeName(code: Code): string {
  switch (code) {
    case Code.InvalidArgument: return "ERROR_CODE_INVALID_ARGUMENT";
    case Code.Unauthenticated: return "ERROR_CODE_UNAUTHENTICATED";
    case Code.PermissionDenied: return "ERROR_CODE_PERMISSION_DENIED";
    case Code.NotFound: return "ERROR_CODE_NOT_FOUND";
    case Code.AlreadyExists: return "ERROR_CODE_ALREADY_EXISTS";
    case Code.ResourceExhausted: return "ERROR_CODE_RATE_LIMITED";
    case Code.Unavailable: return "ERROR_CODE_UNAVAILABLE";
    case Code.Internal: return "ERROR_CODE_INTERNAL";
    default: return "ERROR_CODE_UNSPECIFIED"; // e.g. Unimplemented: no chat code fits

  }
}

/**
 * Errors that connect-node raises before the api's interceptor runs carry no
 * chat code: a request body it cannot decode (invalid_argument), and one past
 * readMaxBytes (resource_exhausted, but not a rate limit: FRAME_TOO_LARGE, as
 * the limit is the frame limit). This gives them one, as a header on the
 * Connect protocol and a trailer on gRPC and gRPC-web (whose trailer is the
 * body's last frame; gRPC-web-text, base64, is left as it is).
 */
export function withErrorCodeHeader(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    if (res.header?.has(ERROR_CODE_HEADER)) return res;
    if (res.trailer) {
      // gRPC: the status is known once the body is through.
      const { body, trailer } = res;
      const stamp = () => {
        const status = Number(trailer.get("grpc-status") ?? 0);
        if (status !== 0 && !trailer.has(ERROR_CODE_HEADER)) trailer.set(ERROR_CODE_HEADER, undecodedCodeName(status));
      };
      return { ...res, body: body && (async function* () { yield* body; stamp(); })() };
    }
    const contentType = res.header?.get("content-type") ?? "";
    if (/^application\/grpc-web(\+|;|$)/.test(contentType)) {
      // gRPC-web: trailers-only in the headers, or a trailer frame at the end of the body.
      const status = Number(res.header?.get("grpc-status") ?? 0);
      if (status !== 0) res.header!.set(ERROR_CODE_HEADER, undecodedCodeName(status));
      return res.body ? { ...res, body: stampGrpcWebTrailer(res.body) } : res;
    }
    // Connect unary: an error is a non-200 answer with the error as JSON (left alone if compressed, which a short one never is).
    if (res.status === 200 || !res.body || !res.header?.get("content-type")?.startsWith("application/json") || res.header.has("content-encoding")) return res;
    const chunks: Uint8Array[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    try {
      const code = codeFromString(String(JSON.parse(bytes.toString("utf8")).code));
      if (code !== undefined) res.header.set(ERROR_CODE_HEADER, undecodedCodeName(code));
    } catch {
      // Not an error body after all: passed on as it is.
    }
    return { ...res, body: (async function* () { yield new Uint8Array(bytes); })() };
  };
  return Object.assign(wrapped, handler);
}

const GRPC_WEB_TRAILER_FLAG = 0x80;

/**
 * Passes a gRPC-web body through, frame by frame, adding the chat code to its
 * trailer frame when the status is an error and the trailer has none. Data
 * frames go on as they are; only a frame split across chunks is held until
 * it is whole.
 */
async function* stampGrpcWebTrailer(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let held: Uint8Array = new Uint8Array(0);
  for await (const chunk of body) {
    let buf = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
    let done = 0;
    for (;;) {
      if (buf.length - done < 5) break;
      const length = new DataView(buf.buffer, buf.byteOffset + done + 1, 4).getUint32(0);
      if (buf.length - done - 5 < length) break;
      if (buf[done]! & GRPC_WEB_TRAILER_FLAG) {
        if (done > 0) yield buf.subarray(0, done);
        yield stampTrailerFrame(buf.subarray(done, done + 5 + length));
        buf = buf.subarray(done + 5 + length);
        done = 0;
        continue;
      }
      done += 5 + length;
    }
    if (done > 0) yield buf.subarray(0, done);
    held = buf.subarray(done);
  }
  if (held.length > 0) yield held;
}

/** A trailer frame (5-byte prefix and "name: value" lines) with the chat code added if it needs one. */
function stampTrailerFrame(frame: Uint8Array): Uint8Array {
  const flags = frame[0]!;
  if (flags & 0x01) return frame; // compressed: never the case for a trailer, left alone if it is
  let text = Buffer.from(frame.subarray(5)).toString("latin1");
  const status = Number(/^grpc-status:\s*(\d+)\s*$/im.exec(text)?.[1] ?? 0);
  if (status === 0 || text.toLowerCase().includes(`${ERROR_CODE_HEADER}:`)) return frame;
  if (text.length > 0 && !text.endsWith("\r\n")) text += "\r\n";
  text += `${ERROR_CODE_HEADER}: ${undecodedCodeName(status)}\r\n`;
  const out = Buffer.from(text, "latin1");
  const stamped = Buffer.alloc(5 + out.length);
  stamped[0] = flags;
  stamped.writeUInt32BE(out.length, 1);
  out.copy(stamped, 5);
  return stamped;
}

/** Rate limits are ChatErrors with their code: a bare resource_exhausted is the size limit. */
function undecodedCodeName(code: Code): string {
  return code === Code.ResourceExhausted ? "ERROR_CODE_FRAME_TOO_LARGE" : connectCodeName(code);
}
