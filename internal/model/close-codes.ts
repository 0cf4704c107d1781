/**
 * WebSocket close codes (and SessionClosed codes on the internal stream).
 * 1000-1015 are the protocol's own; 4000-4999 are ours. Clients branch on
 * them: 4001/4002 mean "get a new token first", 4003 means "do not reconnect
 * this device", everything else may reconnect with backoff and resume from
 * the device cursor.
 */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001, // server shutting down or draining: reconnect elsewhere
  invalidPayload: 1007,
  tooBig: 1009, // ws sends it itself when a frame exceeds maxPayload
  internal: 1011,
  tryAgain: 1013, // no server can take the session now: a gateway opens it on another, a device reconnects with backoff
  unauthenticated: 4001,
  tokenExpired: 4002,
  loggedOut: 4003, // logout or device revoked: this device must sign in again
  rateLimited: 4008, // a flood well past the per-connection rate
  tooSlow: 4009, // the client does not read its socket; its buffer hit the cap
  tooManySessions: 4029, // as HTTP 429: the device or account holds its most open sessions on this gateway (or the user on a chat server); back off
  badFrames: 4400, // too many malformed frames in a row
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
