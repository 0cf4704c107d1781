import type { EnvReader } from "./env.js";

/**
 * CHAT_CORS_ORIGINS (chatd, api, gateway): the origins browsers may call
 * from, none meaning any. Each is compared as text with the Origin header a
 * browser sends, so "https://chat.example/" (a trailing slash), an
 * upper-case host, a default port or "*" matched no browser, and every
 * browser request and WebSocket was refused with nothing said: such an
 * entry is a configuration error, naming the origin meant.
 */
export function readCorsOrigins(r: EnvReader): string[] {
  const origins = r.list("CHAT_CORS_ORIGINS", []);
  for (const value of origins) {
    let origin: string | undefined;
    try {
      origin = new URL(value).origin;
    } catch {
      // Not a URL: "*", a bare host name.
    }
    if (origin === value) continue;
    const hint = origin && origin !== "null" ? `did you mean ${origin}?` : "expected scheme://host[:port]";
    r.problems.push(`CHAT_CORS_ORIGINS: ${JSON.stringify(value)} is not an origin as a browser sends it (${hint}); leave it unset to allow any origin`);
  }
  return origins;
}
