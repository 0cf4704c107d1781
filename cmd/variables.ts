import type { Logger } from "pino";
import { ConfigError } from "../internal/config/env.js";
import { namedWithHints, unknownVariables, warnUnknownVariables, type UnknownVariable } from "../internal/config/unknown.js";
import { readApiConfig } from "./api/config.js";
import { readChatServerConfig } from "./chat-server/config.js";
import { loadChatdConfig } from "./chatd/config.js";
import { readGatewayConfig } from "./gateway/config.js";
import { readNotifierConfig } from "./notifier/config.js";
import { readPipelineConfig } from "./pipeline/config.js";
import { readPresenceConfig } from "./presence/config.js";

/** The cluster's roles and their configuration readers: the README's roles column is held to these. */
export const CLUSTER_ROLES = {
  api: readApiConfig,
  "chat-server": readChatServerConfig,
  pipeline: readPipelineConfig,
  presence: readPresenceConfig,
  notifier: readNotifierConfig,
  gateway: readGatewayConfig,
} as const;

/** Every process's configuration reader (chatd-backup reads only chatd's CHAT_DATA_DIR). */
const READERS: ReadonlyArray<(env: NodeJS.ProcessEnv) => unknown> = [...Object.values(CLUSTER_ROLES), loadChatdConfig];

/**
 * Read by the chat CLI straight from process.env, not through a reader.
 * test/cmd/variables.test.ts fails on a CHAT_* name in the code that is in
 * neither the readers nor here.
 */
const CLI_VARIABLES = ["CHAT_SERVER", "CHAT_WS_URL", "CHAT_PASSWORD", "CHAT_CLI_HOME", "CHAT_CLI_CALL_TIMEOUT_MS"];

/**
 * Read by the development tools (scripts/engines.sh, scripts/test.sh,
 * scripts/grpcurl.sh, the test reporter and bench/), which share the CHAT_
 * prefix and often the developer's shell with the processes. The same test
 * fails on one of theirs that is not here.
 */
const TOOLING_VARIABLES = [
  "CHAT_ENGINES_DIR",
  "CHAT_ENGINES_TIMEOUT",
  "CHAT_ENGINES_TIMER_SLACK_US",
  "CHAT_ETCD_PORT",
  "CHAT_ETCD_PEER_PORT",
  "CHAT_REDIS_PORT",
  "CHAT_KAFKA_PORT",
  "CHAT_KAFKA_CONTROLLER_PORT",
  "CHAT_KAFKA_HEAP",
  "CHAT_CASSANDRA_PORT",
  "CHAT_CASSANDRA_STORAGE_PORT",
  "CHAT_CASSANDRA_JMX_PORT",
  "CHAT_CASSANDRA_HEAP",
  "CHAT_KEEP_ENGINES",
  "CHAT_GRPCURL_VERSION",
  "CHAT_TEST_JOBS",
  "CHAT_TEST_LINGER_MS",
  "CHAT_TEST_TSX",
  "CHAT_BENCH_ALLOC_DIR",
  "CHAT_BENCH_SNAPSHOT_DIR",
];

/**
 * The CHAT_* names a configuration reader asks its environment for, found by
 * running it on a recording environment, once with every variable unset and
 * once with every one set (a reader may ask for one only when another is set).
 */
export function variablesReadBy(read: (env: NodeJS.ProcessEnv) => unknown): Set<string> {
  const names = new Set<string>();
  for (const value of [undefined, "1"]) {
    const env = new Proxy({} as NodeJS.ProcessEnv, {
      get: (_, name) => {
        if (typeof name === "string" && name.startsWith("CHAT_")) names.add(name);
        return value;
      },
    });
    try {
      read(env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }
  return names;
}

let known: ReadonlySet<string> | undefined;

/** Every CHAT_* name some process of this system, the CLI or the development tools read. */
export function knownVariables(): ReadonlySet<string> {
  known ??= new Set([...READERS.flatMap((read) => [...variablesReadBy(read)]), ...CLI_VARIABLES, ...TOOLING_VARIABLES]);
  return known;
}

/** The config names of the readers alone, without the CLI's and the tools'. */
export const configVariables = (): Set<string> => new Set(READERS.flatMap((read) => [...variablesReadBy(read)]));
export const nonConfigVariables = { cli: CLI_VARIABLES, tooling: TOOLING_VARIABLES } as const;

/**
 * At start-up, after the logger: a CHAT_* variable that no role reads (not
 * only this one: the roles share one environment) is most likely a misspelt
 * setting, whose default is in force.
 */
export function warnUnknownChatVariables(logger: Logger, env: NodeJS.ProcessEnv = process.env): UnknownVariable[] {
  return warnUnknownVariables(logger, env, knownVariables());
}

/**
 * The unknown CHAT_* variables as one line for a configuration error, or
 * undefined: a process that cannot start has no logger to warn with.
 */
export function unknownVariablesHint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const unknown = unknownVariables(env, knownVariables());
  if (unknown.length === 0) return undefined;
  return `no process reads ${namedWithHints(unknown)}`;
}
