import { hostname } from "node:os";
import { readClusterEndpoints } from "../../internal/config/engines.js";
import { readTls } from "../../internal/config/tls.js";
import { readCorsOrigins } from "../../internal/config/cors.js";
import { checkDistinctPorts, EnvReader } from "../../internal/config/env.js";
import { SERVER_ID } from "../../internal/registry/port.js";
import { readSessionCaps } from "../../gateway/session-slots.js";
import { readDrainGraceMs } from "../../internal/observability/lifecycle.js";
import { readLogLevel } from "../shared.js";

/** The gateway's configuration; throws a ConfigError naming every variable that is wrong. */
export function readGatewayConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    // etcd only: the gateway opens no other engine, so CHAT_REDIS_URL, CHAT_KAFKA_* and CHAT_CASSANDRA_* are not its.
    engines: readClusterEndpoints(r),
    gatewayId: r.string("CHAT_GATEWAY_ID", `${hostname()}-${process.pid}`),
    host: r.string("CHAT_HOST", "127.0.0.1"),
    httpPort: r.int("CHAT_HTTP_PORT", 8090, 0, 65535),
    grpcPort: r.int("CHAT_GRPC_PORT", 8091, 0, 65535),
    /** /metrics on a listener of its own, /healthz on it too; unset: both on CHAT_HTTP_PORT. */
    opsPort: r.optionalInt("CHAT_OPS_PORT", 0, 65535),
    keysDir: r.string("CHAT_KEYS_DIR", ".data/keys"),
    maxFrameBytes: r.int("CHAT_MAX_FRAME_BYTES", 512 * 1024, 1024, 16 * 1024 * 1024),
    /** Session opens a chat server has not answered, at most, per server (RemoteSessionHost's maxOpensInFlight). */
    maxOpensInFlight: r.int("CHAT_GATEWAY_MAX_OPENS_IN_FLIGHT", 32, 1, 10_000),
    /** Open sessions per device and per account on this gateway (gateway/session-slots.ts). */
    sessionCaps: readSessionCaps(r),
    /** How long a stop lets a native session stream hand over its last frames and status (CHAT_DRAIN_GRACE_MS). */
    drainGraceMs: readDrainGraceMs(r),
    corsOrigins: readCorsOrigins(r),
    logLevel: readLogLevel(r),
    /** TLS on the public listeners (https/wss and gRPC over TLS) when CHAT_TLS_CERT and CHAT_TLS_KEY are set. */
    tls: readTls(r),
  };
  // No key holds it (gateways do not register); it goes into every log line of the gateway and,
  // in each SessionOpen, to the chat servers: the chat server id's rule keeps both readable.
  if (!SERVER_ID.test(c.gatewayId)) {
    r.problems.push(`CHAT_GATEWAY_ID: must be 1 to 128 of A-Z, a-z, 0-9 and . _ : -, got ${JSON.stringify(c.gatewayId)}`);
  }
  checkDistinctPorts(r, [["CHAT_HTTP_PORT", c.httpPort], ["CHAT_GRPC_PORT", c.grpcPort], ["CHAT_OPS_PORT", c.opsPort]]);
  r.done();
  return c;
}
