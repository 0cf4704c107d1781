import { readClusterPresenceConfig } from "../../internal/presence/config.js";
import { readCassandraEndpoints, readClusterEndpoints, readRedisEndpoint } from "../../internal/config/engines.js";
import { EnvReader, readLogLevel } from "../../internal/config/env.js";
import { refuseTls } from "../../internal/config/tls.js";

/** The presence sweeper's configuration; throws a ConfigError naming every variable that is wrong. */
export function readPresenceConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    // No Kafka: the sweeper tells sessions through the chat servers and writes last seen to Cassandra.
    engines: { ...readClusterEndpoints(r), ...readRedisEndpoint(r), ...readCassandraEndpoints(r) },
    host: r.string("CHAT_HOST", "127.0.0.1"),
    opsPort: r.int("CHAT_OPS_PORT", 0, 0, 65535),
    logLevel: readLogLevel(r),
    heartbeatIntervalMs: r.int("CHAT_HEARTBEAT_INTERVAL_MS", 25_000, 100, 600_000),
  };
  const presence = readClusterPresenceConfig(r, c.heartbeatIntervalMs);
  if (presence.sweepIntervalMs === 0) r.problems.push("CHAT_PRESENCE_SWEEP_MS=0: the presence process does nothing but sweep");
  refuseTls(r, "presence tracker");
  r.done();
  return { ...c, presence };
}
