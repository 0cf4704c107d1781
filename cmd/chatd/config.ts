import { resolve } from "node:path";
import { REFRESH_REUSE_GRACE_MS } from "../../internal/auth/refresh.js";
import { readCorsOrigins } from "../../internal/config/cors.js";
import { checkRedisUrl } from "../../internal/config/engines.js";
import { checkDistinctPorts, EnvReader } from "../../internal/config/env.js";
import { readTls, type TlsFiles } from "../../internal/config/tls.js";
import { readChangeWindows, type ChangeWindows } from "../../internal/messages/changes.js";
import { checkPresenceConfig, readPresenceConfig, type PresenceConfig } from "../../internal/presence/config.js";
import { readDrainGraceMs } from "../../internal/observability/lifecycle.js";
import { readNotifierPushConfig, type NotifierPushConfig } from "../../internal/push/config.js";
import { readApiLimits, type ApiLimitsConfig } from "../../internal/throttle/config.js";
import { readSendRate, type SendRate } from "../../internal/throttle/send-rate.js";
import { readTextBudget, type TextBudget } from "../../internal/throttle/text-budget.js";
import { readSessionCaps, type SessionCaps } from "../../gateway/session-slots.js";
import { readLogLevel } from "../shared.js";

export interface ChatdConfig {
  dataDir: string;
  host: string;
  /** Browsers: Connect, gRPC-Web and the WebSocket over HTTP/1.1. 0 picks a free port. */
  httpPort: number;
  /** Native apps and grpcurl: gRPC over plaintext HTTP/2 (h2c). 0 picks a free port. */
  grpcPort: number;
  /** /metrics on a listener of its own (and /healthz there too); undefined: both on httpPort. */
  opsPort?: number;
  logLevel: string;
  queuePartitions: number;
  workerId: number;
  accessTokenTtlMs: number;
  /** How long after a refresh token's first use a retry (its reply lost) is answered instead of signing the device out. */
  refreshReuseGraceMs: number;
  sqliteSync: "normal" | "full";
  /** How long an inbox entry (the sync queue, not the history) is kept; 0 keeps them forever. */
  inboxRetentionMs: number;
  framesPerSecond: number;
  frameBurst: number;
  maxFrameBytes: number;
  /** CHAT_MAX_SESSIONS_PER_DEVICE and CHAT_MAX_SESSIONS_PER_ACCOUNT (gateway/session-slots.ts). */
  sessionCaps: SessionCaps;
  heartbeatIntervalMs: number;
  corsOrigins: string[];
  /** CHAT_API_*, CHAT_LOGIN_*, CHAT_MAX_*, CHAT_CLIENT_IP_HEADER (internal/throttle/config.ts). */
  apiLimits: ApiLimitsConfig;
  /** CHAT_TEXT_* (internal/throttle/text-budget.ts): of sessions and of SendMessage alike. */
  textBudget: TextBudget;
  /** CHAT_SENDS_PER_SEC and CHAT_SEND_BURST (internal/throttle/send-rate.ts): of sessions and of SendMessage alike. */
  sendRate: SendRate;
  changeWindows: ChangeWindows;
  /** CHAT_PRESENCE_* (internal/presence/config.ts). */
  presence: PresenceConfig;
  /** CHAT_VAPID_*, CHAT_PUSH_*, CHAT_APNS_*, CHAT_FCM_* (internal/push/config.ts). */
  push: NotifierPushConfig;
  /** TLS on every listener (https/wss and gRPC over TLS) when CHAT_TLS_CERT and CHAT_TLS_KEY are set. */
  tls?: TlsFiles;
  /** How long a stop lets calls in flight finish on every listener (CHAT_DRAIN_GRACE_MS); unset: DRAIN_GRACE_MS. */
  drainGraceMs?: number;
}

/** Reads CHAT_* variables (documented in README.md) and fails naming every bad one. */
export function loadChatdConfig(env: NodeJS.ProcessEnv = process.env): ChatdConfig {
  const r = new EnvReader(env);
  // The text budget's burst is checked against it.
  const maxFrameBytes = r.int("CHAT_MAX_FRAME_BYTES", 512 * 1024, 1024, 16 * 1024 * 1024);
  const config: ChatdConfig = {
    dataDir: resolve(r.string("CHAT_DATA_DIR", ".data")),
    host: r.string("CHAT_HOST", "127.0.0.1"),
    httpPort: r.int("CHAT_HTTP_PORT", 8080, 0, 65535),
    grpcPort: r.int("CHAT_GRPC_PORT", 8081, 0, 65535),
    opsPort: r.optionalInt("CHAT_OPS_PORT", 0, 65535),
    logLevel: readLogLevel(r),
    queuePartitions: r.int("CHAT_QUEUE_PARTITIONS", 8, 1, 1024),
    workerId: r.int("CHAT_WORKER_ID", 0, 0, 1023),
    accessTokenTtlMs: r.int("CHAT_ACCESS_TOKEN_TTL_S", 900, 10, 86_400) * 1000,
    refreshReuseGraceMs: r.int("CHAT_REFRESH_REUSE_GRACE_S", REFRESH_REUSE_GRACE_MS / 1000, 0, 3600) * 1000,
    sqliteSync: r.oneOf("CHAT_SQLITE_SYNC", "normal", ["normal", "full"] as const),
    // As the cluster's inbox writer reads it (internal/config/engines.ts): the same default and bounds.
    inboxRetentionMs: r.int("CHAT_INBOX_RETENTION_S", 30 * 86_400, 0, 630_720_000) * 1000,
    framesPerSecond: r.int("CHAT_RATE_FRAMES_PER_SEC", 50, 1, 100_000),
    frameBurst: r.int("CHAT_RATE_FRAME_BURST", 100, 1, 100_000),
    maxFrameBytes,
    sessionCaps: readSessionCaps(r),
    heartbeatIntervalMs: r.int("CHAT_HEARTBEAT_INTERVAL_MS", 25_000, 100, 600_000),
    corsOrigins: readCorsOrigins(r),
    apiLimits: readApiLimits(r),
    textBudget: readTextBudget(r, maxFrameBytes),
    sendRate: readSendRate(r),
    changeWindows: readChangeWindows(r),
    presence: readPresenceConfig(r),
    push: readNotifierPushConfig(r),
    tls: readTls(r),
    drainGraceMs: readDrainGraceMs(r),
  };
  checkDistinctPorts(r, [["CHAT_HTTP_PORT", config.httpPort], ["CHAT_GRPC_PORT", config.grpcPort], ["CHAT_OPS_PORT", config.opsPort]]);
  checkPresenceConfig(r, config.presence, config.heartbeatIntervalMs);
  // Read only for a presence store in Redis.
  if (config.presence.store === "redis") checkRedisUrl(r, config.presence.redisUrl);
  r.done();
  return config;
}
