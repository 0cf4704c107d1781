import { Code, ConnectError } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromString, codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { Logger } from "pino";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { isChatError, type ChatError, type ErrorCodeName } from "../model/errors.js";
import { EngineOutageWarning } from "../observability/outage-log.js";

/**
 * Every RPC error carries the chat.v1.ErrorCode as the "chat-error-code"
 * header (a trailer on gRPC), valued with the proto enum name, for example
 * "ERROR_CODE_GROUP_FULL", so clients branch on it rather than on messages.
 * Rate-limited and unavailable errors also carry "chat-retry-after-ms". An error no chat
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
  // The cause stays on this side of the wire: the api's metrics read it (see ContendedError).
  return new ConnectError(message, STATUS[e.code] ?? Code.Internal, metadata, undefined, e);
}

/**
 * The one place where errors leave the api: ChatErrors become their status,
 * ConnectErrors pass through, an engine that did not answer is UNAVAILABLE
 * (isEngineOutage), anything else is a bug and is logged, not shown.
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
  // An engine's timeout or lost connection is answered as the session answers it: retryable, and
  // warned of once for an outage, whose every RPC fails alike.
  const outage = outageWarningOf(logger).refusal(e);
  if (outage) return chatToConnectError(outage);
  logger?.error({ err: e }, "unexpected error in rpc");
  return new ConnectError("internal error", Code.Internal, { [ERROR_CODE_HEADER]: "ERROR_CODE_INTERNAL" });
}

const OUTAGE_MESSAGE = "rpc refused: a store did not answer";
const outageWarnings = new WeakMap<Logger, EngineOutageWarning>();
/** Without a logger nothing is said, and a WeakMap takes no undefined key. */
const unloggedOutage = new EngineOutageWarning({ logger: undefined, message: OUTAGE_MESSAGE });

function outageWarningOf(logger: Logger | undefined): EngineOutageWarning {
  if (!logger) return unloggedOutage;
  let w = outageWarnings.get(logger);
  if (!w) outageWarnings.set(logger, (w = new EngineOutageWarning({ logger, message: OUTAGE_MESSAGE })));
  return w;
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
 * connect-es answers a binary request body it cannot decode (a string that is
 * not UTF-8, a message cut short) INTERNAL, the code a client gives a reply it
 * cannot read; here it is the client's request that is wrong, and the answer
 * says so. A JSON body it cannot decode is INVALID_ARGUMENT already.
 */
function undecodableRequest(e: ConnectError | undefined, method: DescMethod): ConnectError | undefined {
  if (e?.code !== Code.Internal) return undefined;
  // A gRPC or gRPC-web message flagged compressed in a request that names no grpc-encoding: the client's framing is wrong too.
  if (e.rawMessage === COMPRESSED_WITHOUT_ENCODING) {
    return new ConnectError("a request message is flagged compressed, but the request names no grpc-encoding", Code.InvalidArgument);
  }
  const m = /^parse binary: (.*)$/s.exec(e.rawMessage);
  return m ? new ConnectError(`the request is not a valid ${method.input.typeName} message: ${m[1]}`, Code.InvalidArgument) : undefined;
}

/** connect-es's words for an envelope flagged compressed with no encoding to read it by. */
const COMPRESSED_WITHOUT_ENCODING = "received compressed envelope, but do not know how to decompress";

/**
 * Errors that connect-node raises before the api's interceptor runs carry no
 * chat code: a request body it cannot decode (invalid_argument, also for a
 * binary one: see undecodableRequest), and one past readMaxBytes
 * (resource_exhausted, but not a rate limit: FRAME_TOO_LARGE, as the limit is
 * the frame limit). This gives them one, as a header on the Connect protocol
 * and a trailer on gRPC and gRPC-web (whose trailer is the body's last frame;
 * gRPC-web-text, base64, is left as it is).
 */
export function withErrorCodeHeader(handler: UniversalHandler): UniversalHandler {
  const { method } = handler;
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    if (res.header?.has(ERROR_CODE_HEADER)) return res;
    if (res.trailer) {
      // gRPC: the status is known once the body is through.
      const { body, trailer } = res;
      const stamp = () => {
        const undecodable = undecodableRequest(findTrailerError(trailer), method);
        if (undecodable) setTrailerStatus(trailer, undecodable);
        const status = Number(trailer.get("grpc-status") ?? 0);
        if (status !== 0 && !trailer.has(ERROR_CODE_HEADER)) trailer.set(ERROR_CODE_HEADER, undecodedCodeName(status));
      };
      return { ...res, body: body && (async function* () { yield* body; stamp(); })() };
    }
    const contentType = res.header?.get("content-type") ?? "";
    if (/^application\/grpc-web(\+|;|$)/.test(contentType)) {
      // gRPC-web: trailers-only in the headers, or a trailer frame at the end of the body.
      const undecodable = undecodableRequest(findTrailerError(res.header!), method);
      if (undecodable) setTrailerStatus(res.header!, undecodable);
      const status = Number(res.header?.get("grpc-status") ?? 0);
      if (status !== 0) res.header!.set(ERROR_CODE_HEADER, undecodedCodeName(status));
      return res.body ? { ...res, body: stampGrpcWebTrailer(res.body, method) } : res;
    }
    // Connect unary: an error is a non-200 answer with the error as JSON (left alone if compressed, which a short one never is).
    if (res.status === 200 || !res.body || !res.header?.get("content-type")?.startsWith("application/json") || res.header.has("content-encoding")) return res;
    const chunks: Uint8Array[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    let bytes: Uint8Array = Buffer.concat(chunks);
    let status = res.status;
    try {
      const json = JSON.parse(Buffer.from(bytes).toString("utf8")) as { code?: unknown; message?: unknown };
      let code = codeFromString(String(json.code));
      const undecodable = code === undefined ? undefined : undecodableRequest(new ConnectError(String(json.message ?? ""), code), method);
      if (undecodable) {
        bytes = errorToJsonBytes(undecodable, {});
        status = codeToHttpStatus(undecodable.code);
        code = undecodable.code;
        res.header.set("content-length", String(bytes.byteLength));
      }
      if (code !== undefined) res.header.set(ERROR_CODE_HEADER, undecodedCodeName(code));
    } catch {
      // Not an error body after all: passed on as it is.
    }
    return { ...res, status, body: (async function* () { yield bytes; })() };
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
async function* stampGrpcWebTrailer(body: AsyncIterable<Uint8Array>, method: DescMethod): AsyncIterable<Uint8Array> {
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
        yield stampTrailerFrame(buf.subarray(done, done + 5 + length), method);
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
function stampTrailerFrame(frame: Uint8Array, method: DescMethod): Uint8Array {
  const flags = frame[0]!;
  if (flags & 0x01) return frame; // compressed: never the case for a trailer, left alone if it is
  let text = Buffer.from(frame.subarray(5)).toString("latin1");
  let status = Number(/^grpc-status:\s*(\d+)\s*$/im.exec(text)?.[1] ?? 0);
  const undecodable = status === Code.Internal ? undecodableRequest(findTrailerError(trailerParse(frame.subarray(5))), method) : undefined;
  if (undecodable) {
    text = Buffer.from(trailerSerialize(setTrailerStatus(new Headers(), undecodable))).toString("latin1");
    status = undecodable.code;
  }
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
