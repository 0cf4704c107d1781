import { ChatServerClients } from "../../internal/cluster/client-pool.js";
import { openRegistry, openRoutes, openStorage, watchServers } from "../../internal/cluster/engines.js";
import { openClusterPresence, presenceKeyPrefix } from "../../internal/cluster/presence.js";
import { RoutedSessionDirectory } from "../../internal/cluster/routed-directory.js";
import { startOpsServer } from "../../internal/observability/lifecycle.js";
import { createLogger } from "../../internal/observability/logger.js";
import { exitOnConfigError, exitOnListenError, exitOnStartTimeout, stopOnSignalsFromStart } from "../shared.js";
import { readPresenceConfig } from "./config.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

/**
 * The presence sweeper (optional; see "Presence and push" in
 * docs/architecture.md). Chat servers write device liveness to the Redis
 * store themselves and sweep it by default; this process sweeps it too, or
 * alone when the chat servers run with CHAT_PRESENCE_SWEEP_MS=0: it finds
 * users whose every device went quiet past the grace period (including the
 * devices of a chat server that died without a word) and tells their
 * friends and co-members through the routing table, writing their last seen
 * to Cassandra as well. Any number may run: the store's scripts report each
 * flip to exactly one sweeper. It holds nothing of its own: killed with -9,
 * its flips are in Redis, and one it had not told yet is told by another.
 */
exitOnStartTimeout("presence");
const config = exitOnConfigError("presence", () => readPresenceConfig(), unknownVariablesHint);
const logger = createLogger("presence", config.logLevel);
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();

const e = config.engines;
const storage = await openStorage(e, logger);
const routes = openRoutes(e, logger);
const servers = openRegistry(e, logger);
const watch = await watchServers(servers, e, logger);
const clients = new ChatServerClients(watch, logger);
const directory = new RoutedSessionDirectory(routes, clients, logger);
const presence = openClusterPresence({ redisUrl: e.redisUrl, keyPrefix: presenceKeyPrefix(e.etcdPrefix), storage, directory, config: config.presence, logger, registry });

// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going.
const ops = start.stopping
  ? { port: undefined, close: async () => {} }
  : await exitOnListenError("presence", () => startOpsServer(registry, { checks: [{ name: "redis", check: () => presence.store.ping() }], state: start }, config.host, config.opsPort));
start.started(async () => {
  await presence.close();
  directory.close();
  clients.close();
  await Promise.allSettled([routes.close(), watch.close(), ops.close()]);
  await servers.close();
  await storage.close();
});
if (!start.stopping) logger.info({ ops: ops.port, sweepIntervalMs: config.presence.sweepIntervalMs }, "presence listening");
