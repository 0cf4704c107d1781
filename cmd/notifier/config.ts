import { readCassandraEndpoints, readClusterEndpoints, readKafkaEndpoints, readRedisEndpoint } from "../../internal/config/engines.js";
import { EnvReader, readLogLevel } from "../../internal/config/env.js";
import { refuseTls } from "../../internal/config/tls.js";
import { readNotifierPushConfig } from "../../internal/push/config.js";

/** The notifier's configuration; throws a ConfigError naming every variable that is wrong. */
export function readNotifierConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const c = {
    engines: { ...readClusterEndpoints(r), ...readRedisEndpoint(r), ...readKafkaEndpoints(r), ...readCassandraEndpoints(r) },
    host: r.string("CHAT_HOST", "127.0.0.1"),
    opsPort: r.int("CHAT_OPS_PORT", 0, 0, 65535),
    keysDir: r.string("CHAT_KEYS_DIR", ".data/keys"),
    logLevel: readLogLevel(r),
    push: readNotifierPushConfig(r),
  };
  refuseTls(r, "notifier");
  r.done();
  return c;
}
