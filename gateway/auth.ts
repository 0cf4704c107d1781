/** What the gateway needs from the token module: a local check, no round trip. */
export interface AccessTokenVerifier {
  /** Throws ChatError("unauthenticated" | "token_expired") when the token is no good. */
  verify(token: string): { userId: bigint; deviceId: bigint; expiresAtMs: number };
}
