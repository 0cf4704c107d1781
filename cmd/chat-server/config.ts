import { randomBytes } from "node:crypto";
import { isIPv6 } from "node:net";
import { hostname } from "node:os";
import type { SessionLimits } from "../../internal/chatserver/server.js";
import { readClusterPresenceConfig } from "../../internal/presence/config.js";
import { readCassandraEndpoints, readClusterEndpoints, readKafkaEndpoints, readRedisEndpoint } from "../../internal/config/engines.js";
import { refuseTls } from "../../internal/config/tls.js";
import { checkDistinctPorts, EnvReader } from "../../internal/config/env.js";
import { readChangeWindows } from "../../internal/messages/changes.js";
import { SERVER_ID } from "../../internal/registry/port.js";
import { readSendRate } from "../../internal/throttle/send-rate.js";
import { readTextBudget } from "../../internal/throttle/text-budget.js";
import { readLogLevel } from "../shared.js";

/** The chat server's configuration; throws a ConfigError naming every variable that is wrong. */
export function readChatServerConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    engines: { ...readClusterEndpoints(r), ...readRedisEndpoint(r), ...readKafkaEndpoints(r), ...readCassandraEndpoints(r) },
    // Random too: containers that share a hostname often run node as pid 1.
    serverId: r.string("CHAT_SERVER_ID", `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`),
    host: r.string("CHAT_HOST", "127.0.0.1"),
    grpcPort: r.int("CHAT_GRPC_PORT", 9100, 0, 65535),
    advertiseHost: r.string("CHAT_ADVERTISE_HOST", ""),
    opsPort: r.int("CHAT_OPS_PORT", 0, 0, 65535),
    leaseTtlSeconds: r.int("CHAT_LEASE_TTL_S", 5, 2, 60),
    logLevel: readLogLevel(r),
    framesPerSecond: r.int("CHAT_RATE_FRAMES_PER_SEC", 50, 1, 100_000),
    frameBurst: r.int("CHAT_RATE_FRAME_BURST", 100, 1, 100_000),
    // The gateways refuse frames past it; the Welcome tells devices the same figure.
    maxFrameBytes: r.int("CHAT_MAX_FRAME_BYTES", 512 * 1024, 1024, 16 * 1024 * 1024),
    heartbeatIntervalMs: r.int("CHAT_HEARTBEAT_INTERVAL_MS", 25_000, 100, 600_000),
    sendClaimTtlSeconds: r.int("CHAT_SEND_CLAIM_TTL_S", 300, 1, 86_400),
    blockCacheTtlSeconds: r.int("CHAT_BLOCK_CACHE_TTL_S", 5, 0, 300),
    changeWindows: readChangeWindows(r),
  };
  if (!SERVER_ID.test(c.serverId)) {
    r.problems.push(`CHAT_SERVER_ID: must be 1 to 128 of A-Z, a-z, 0-9 and . _ : -, got ${JSON.stringify(c.serverId)}`);
  }
  const advertised = c.advertiseHost || c.host;
  if (c.advertiseHost === "" && WILDCARDS.has(c.host)) {
    // Gateways elsewhere would dial their own host: CHAT_HOST says where to listen, not how to be reached.
    r.problems.push(`CHAT_ADVERTISE_HOST: required when CHAT_HOST is ${JSON.stringify(c.host)} (every address): the host or IP gateways dial to reach this server`);
  } else if (WILDCARDS.has(advertised) || (!isIPv6(advertised) && /[:/\s]/.test(advertised))) {
    r.problems.push(`CHAT_ADVERTISE_HOST: must be a host name or an IP address that gateways can dial, without a port (the port is CHAT_GRPC_PORT's), got ${JSON.stringify(advertised)}`);
  }
  checkDistinctPorts(r, [["CHAT_GRPC_PORT", c.grpcPort], ["CHAT_OPS_PORT", c.opsPort]]);
  const presence = readClusterPresenceConfig(r, c.heartbeatIntervalMs);
  const textBudget = readTextBudget(r, c.maxFrameBytes);
  const sendRate = readSendRate(r);
  refuseTls(r, "chat server");
  r.done();
  return { ...c, presence, textBudget, sendRate };
}

export type ChatServerConfig = ReturnType<typeof readChatServerConfig>;

/** Listening on every address: not one a gateway can dial. */
const WILDCARDS = new Set(["", "0.0.0.0", "::", "[::]"]);

/** host:port as gRPC addresses are written, an IPv6 literal in brackets. */
export const hostPort = (host: string, port: number): string => (isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);

/** The address registered in etcd for gateways to dial. */
export function advertisedAddress(config: Pick<ChatServerConfig, "host" | "advertiseHost">, port: number): string {
  return hostPort(config.advertiseHost || config.host, port);
}

/** The session limits the chat server runs with. */
export function sessionLimitsOf(config: ChatServerConfig): Partial<SessionLimits> {
  const { framesPerSecond, frameBurst, maxFrameBytes, heartbeatIntervalMs, textBudget, sendRate } = config;
  return { framesPerSecond, frameBurst, maxFrameBytes, heartbeatIntervalMs, ...textBudget, ...sendRate };
}
