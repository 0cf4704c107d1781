import { hostname } from "node:os";
import { readEngineEndpoints } from "../../internal/config/engines.js";
import { EnvReader } from "../../internal/config/env.js";
import { readLogLevel } from "../shared.js";

/** The gateway's configuration; throws a ConfigError naming every variable that is wrong. */
export function readGatewayConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    engines: readEngineEndpoints(r),
    gatewayId: r.string("CHAT_GATEWAY_ID", `${hostname()}-${process.pid}`),
    host: r.string("CHAT_HOST", "127.0.0.1"),
    httpPort: r.int("CHAT_HTTP_PORT", 8090, 0, 65535),
    grpcPort: r.int("CHAT_GRPC_PORT", 8091, 0, 65535),
    keysDir: r.string("CHAT_KEYS_DIR", ".data/keys"),
    maxFrameBytes: r.int("CHAT_MAX_FRAME_BYTES", 512 * 1024, 1024, 16 * 1024 * 1024),
    corsOrigins: readOrigins(r.list("CHAT_CORS_ORIGINS", []), r.problems),
    logLevel: readLogLevel(r),
  };
  r.done();
  return c;
}

/**
 * CHAT_CORS_ORIGINS: each one as a browser sends its Origin header, which the
 * WebSocket upgrade compares as text: "https://chat.example/" (a trailing
 * slash), an upper-case host, a default port or "*" matched no browser, and
 * every browser's WebSocket was refused 403 with nothing said. As chatd does.
 */
function readOrigins(origins: string[], problems: string[]): string[] {
  for (const value of origins) {
    let origin: string | undefined;
    try {
      origin = new URL(value).origin;
    } catch {
      // Not a URL: "*", a bare host name.
    }
    if (origin === value) continue;
    const hint = origin && origin !== "null" ? `did you mean ${origin}?` : "expected scheme://host[:port]";
    problems.push(`CHAT_CORS_ORIGINS: ${JSON.stringify(value)} is not an origin as a browser sends it (${hint}); leave it unset to allow any origin`);
  }
  return origins;
}
