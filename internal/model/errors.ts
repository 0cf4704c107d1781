/**
 * Domain errors. Every layer below the edges throws ChatError; the edges map
 * the code to a Connect/gRPC status, a realtime Error frame or a WebSocket
 * close code (see internal/model/codes.ts and gateway/close-codes.ts).
 */
export type ErrorCodeName =
  | "invalid_frame"
  | "frame_too_large"
  | "text_too_long"
  | "text_empty"
  | "not_a_member"
  | "group_full"
  | "rate_limited"
  | "unauthenticated"
  | "token_expired"
  | "permission_denied"
  | "not_found"
  | "already_exists"
  | "invalid_argument"
  | "unavailable"
  | "internal"
  | "session_closed"
  | "blocked"
  | "limit_reached";

export class ChatError extends Error {
  constructor(
    readonly code: ErrorCodeName,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "ChatError";
  }
}

export function isChatError(e: unknown, code?: ErrorCodeName): e is ChatError {
  return e instanceof ChatError && (code === undefined || e.code === code);
}
