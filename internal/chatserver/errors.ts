import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import type { ErrorCodeName } from "../model/errors.js";

/** Domain error names to the wire's ErrorCode. */
export const errorCodeOf: Record<ErrorCodeName, ErrorCode> = {
  invalid_frame: ErrorCode.INVALID_FRAME,
  frame_too_large: ErrorCode.FRAME_TOO_LARGE,
  text_too_long: ErrorCode.TEXT_TOO_LONG,
  text_empty: ErrorCode.TEXT_EMPTY,
  not_a_member: ErrorCode.NOT_A_MEMBER,
  group_full: ErrorCode.GROUP_FULL,
  rate_limited: ErrorCode.RATE_LIMITED,
  unauthenticated: ErrorCode.UNAUTHENTICATED,
  token_expired: ErrorCode.TOKEN_EXPIRED,
  permission_denied: ErrorCode.PERMISSION_DENIED,
  not_found: ErrorCode.NOT_FOUND,
  already_exists: ErrorCode.ALREADY_EXISTS,
  invalid_argument: ErrorCode.INVALID_ARGUMENT,
  unavailable: ErrorCode.UNAVAILABLE,
  internal: ErrorCode.INTERNAL,
  session_closed: ErrorCode.SESSION_CLOSED,
  blocked: ErrorCode.BLOCKED,
  limit_reached: ErrorCode.LIMIT_REACHED,
};

/** The wire's ErrorCode back to the domain's name, for an error that crossed a process boundary. */
export const errorNameOf: ReadonlyMap<number, ErrorCodeName> = new Map(
  (Object.entries(errorCodeOf) as [ErrorCodeName, ErrorCode][]).map(([name, code]) => [code, name]),
);
