import { REFRESH_REUSE_GRACE_MS } from "../../internal/auth/refresh.js";
import { readCorsOrigins } from "../../internal/config/cors.js";
import { readCassandraEndpoints, readClusterEndpoints, readKafkaEndpoints, readRedisEndpoint } from "../../internal/config/engines.js";
import { readTls } from "../../internal/config/tls.js";
import { readDrainGraceMs } from "../../internal/observability/lifecycle.js";
import { checkDistinctPorts, EnvReader, readLogLevel } from "../../internal/config/env.js";
import { readChangeWindows } from "../../internal/messages/changes.js";
import { readPushConfig } from "../../internal/push/config.js";
import { readApiLimits } from "../../internal/throttle/config.js";
import { readSendRate } from "../../internal/throttle/send-rate.js";
import { readTextBudget } from "../../internal/throttle/text-budget.js";

/** The api's configuration; throws a ConfigError naming every variable that is wrong. */
export function readApiConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    engines: { ...readClusterEndpoints(r), ...readRedisEndpoint(r), ...readKafkaEndpoints(r), ...readCassandraEndpoints(r) },
    host: r.string("CHAT_HOST", "127.0.0.1"),
    httpPort: r.int("CHAT_HTTP_PORT", 8080, 0, 65535),
    grpcPort: r.int("CHAT_GRPC_PORT", 8081, 0, 65535),
    /** /metrics on a listener of its own, /healthz on it too; unset: both on CHAT_HTTP_PORT. */
    opsPort: r.optionalInt("CHAT_OPS_PORT", 0, 65535),
    keysDir: r.string("CHAT_KEYS_DIR", ".data/keys"),
    accessTokenTtlMs: r.int("CHAT_ACCESS_TOKEN_TTL_S", 900, 10, 86_400) * 1000,
    refreshReuseGraceMs: r.int("CHAT_REFRESH_REUSE_GRACE_S", REFRESH_REUSE_GRACE_MS / 1000, 0, 3600) * 1000,
    corsOrigins: readCorsOrigins(r),
    maxFrameBytes: r.int("CHAT_MAX_FRAME_BYTES", 512 * 1024, 1024, 16 * 1024 * 1024),
    apiLimits: readApiLimits(r),
    logLevel: readLogLevel(r),
    /** TLS on the public listeners (https/wss and gRPC over TLS) when CHAT_TLS_CERT and CHAT_TLS_KEY are set. */
    tls: readTls(r),
    push: readPushConfig(r),
    presenceBatchMs: r.int("CHAT_PRESENCE_BATCH_MS", 10, 0, 1_000),
    blockCacheTtlSeconds: r.int("CHAT_BLOCK_CACHE_TTL_S", 5, 0, 300),
    changeWindows: readChangeWindows(r),
    sendClaimTtlSeconds: r.int("CHAT_SEND_CLAIM_TTL_S", 300, 1, 86_400),
    drainGraceMs: readDrainGraceMs(r),
  };
  checkDistinctPorts(r, [["CHAT_HTTP_PORT", c.httpPort], ["CHAT_GRPC_PORT", c.grpcPort], ["CHAT_OPS_PORT", c.opsPort]]);
  const textBudget = readTextBudget(r, c.maxFrameBytes);
  const sendRate = readSendRate(r);
  r.done();
  return { ...c, textBudget, sendRate };
}
