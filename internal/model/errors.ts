/**
 * Domain errors. Every layer below the edges throws ChatError; the edges map
 * the code to a Connect/gRPC status, a realtime Error frame or a WebSocket
 * close code (see internal/model/codes.ts and gateway/close-codes.ts). Each
 * code is also a series of chat_frames_refused_total, at 0 from the start.
 */
export const ERROR_CODE_NAMES = [
  "invalid_frame",
  "frame_too_large",
  "text_too_long",
  "text_empty",
  "not_a_member",
  "group_full",
  "rate_limited",
  "unauthenticated",
  "token_expired",
  "permission_denied",
  "not_found",
  "already_exists",
  "invalid_argument",
  "unavailable",
  "internal",
  "session_closed",
  "blocked",
  "limit_reached",
] as const;
export type ErrorCodeName = (typeof ERROR_CODE_NAMES)[number];

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

/**
 * How long a client refused because its change kept losing to other changes
 * of the same thing (a group's membership, a cleared history, a direct
 * chat's claim) waits before it asks again: those are done within a few
 * round trips, so a short wait, spread by the client's own jitter, meets the
 * row free; only the few clients of that one row ask again, so no herd
 * follows.
 */
export const CONTENDED_RETRY_AFTER_MS = 200;

/**
 * A change refused because it kept losing to others of the same thing:
 * UNAVAILABLE with a short retry to the client, like an engine away, but
 * nothing is wrong with the server, so the api counts it apart ("contended")
 * from the failures its alerts are written on.
 */
export class ContendedError extends ChatError {
  constructor(message: string) {
    super("unavailable", message, CONTENDED_RETRY_AFTER_MS);
    this.name = "ContendedError";
  }
}

export function isChatError(e: unknown, code?: ErrorCodeName): e is ChatError {
  return e instanceof ChatError && (code === undefined || e.code === code);
}
