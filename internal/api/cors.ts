import type { IncomingMessage } from "node:http";
import { ERROR_CODE_HEADER, RETRY_AFTER_HEADER } from "./errors.js";

const ALLOWED_HEADERS = [
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "authorization",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
].join(", ");
// The api's own headers by their constants, so that a browser can read every one it sends.
const EXPOSED_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin", ERROR_CODE_HEADER, RETRY_AFTER_HEADER].join(", ");

/**
 * CORS for Connect and gRPC-Web from browsers. No allowed origins configured
 * means any origin. Every answer varies by Origin, the refused and the
 * Origin-less too: a cache that kept one of those without `Vary` would hand
 * it, with no allow-origin, to an allowed browser.
 */
export function corsHeaders(req: IncomingMessage, allowedOrigins: readonly string[]): Record<string, string> {
  const origin = req.headers.origin;
  if (!origin) return { vary: "origin" };
  if (allowedOrigins.length > 0 && !allowedOrigins.includes(origin)) return { vary: "origin" };
  return {
    "access-control-allow-origin": origin,
    vary: "origin",
    "access-control-allow-methods": "POST, GET, OPTIONS",
    "access-control-allow-headers": ALLOWED_HEADERS,
    "access-control-expose-headers": EXPOSED_HEADERS,
    "access-control-max-age": "7200",
  };
}
