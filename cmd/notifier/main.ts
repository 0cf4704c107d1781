import { join } from "node:path";
import { isActiveDevice } from "../../internal/accounts/store.js";
import { channelMutes } from "../../internal/push/records.js";
import { ChatServerClients } from "../../internal/cluster/client-pool.js";
import { openQueue, openRegistry, openRoutes, openStorage, watchServers } from "../../internal/cluster/engines.js";
import { RoutedSessionDirectory } from "../../internal/cluster/routed-directory.js";
import { startOpsServer } from "../../internal/observability/lifecycle.js";
import { consumerLagGauge } from "../../internal/queue/metrics.js";
import { createLogger } from "../../internal/observability/logger.js";
import { ThrottledWarning } from "../../internal/observability/outage-log.js";
import { ConsumerGroups, Topics } from "../../internal/pipeline/topics.js";
import { notifierEngineErrors, pushMetrics } from "../../internal/push/metrics.js";
import { Notifier } from "../../internal/push/notifier.js";
import { createPushProviders } from "../../internal/push/providers.js";
import { CassandraPushEndpointStore } from "../../internal/storage/cassandra/push-endpoint-store.js";
import { exitOnConfigError, exitOnFileError, exitOnListenError, exitOnStartTimeout, pushFiles, stopOnSignalsFromStart } from "../shared.js";
import { readNotifierConfig } from "./config.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

/**
 * The notifier: consumes NotificationRequested from chat.notifications.v1
 * (Kafka, group chat-notifier, keyed by user so one process collapses a
 * user's burst) and sends Web Push / APNs / FCM to the user's endpoints in
 * Cassandra. Scale it out by running more: Kafka splits the partitions.
 */
exitOnStartTimeout("notifier");
const config = exitOnConfigError("notifier", () => readNotifierConfig(), unknownVariablesHint);
const logger = createLogger("notifier", config.logLevel);
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();
// Read at each scrape, once the notifier below exists.
const metrics = pushMetrics(registry, () => notifier.pending);
const engineErrors = notifierEngineErrors(registry);

// The same VAPID key pair as the api hands to browsers: CHAT_VAPID_* or CHAT_KEYS_DIR/vapid.json.
// Before any engine: a credential that cannot serve is told at once.
const push = await exitOnFileError("notifier", pushFiles(config), () =>
  createPushProviders({ ...config.push, vapidKeyFile: join(config.keysDir, "vapid.json") }, logger),
);

const e = config.engines;
const storage = await openStorage(e, logger);
const queue = await openQueue(e, `notifier-${process.pid}`, logger);
consumerLagGauge(registry, queue, [[ConsumerGroups.notifier, Topics.notifications]]);
// The routing table the chat servers keep: a user with a session on a chat
// server live in etcd is online. Routes of a server that died outlive it by up
// to a minute, and the pipeline took its users for offline: so must we.
const routes = openRoutes(e, logger);
const servers = openRegistry(e, logger);
const watch = await watchServers(servers, e, logger);
const clients = new ChatServerClients(watch, logger);
const sessions = new RoutedSessionDirectory(routes, clients, logger);
// Warned once a minute at most: with Redis away every notification's lookup fails, thousands a second.
const routesAway = new ThrottledWarning({ logger, message: "routing table unreachable: treating the user as offline" });
const notifier: Notifier = new Notifier({
  queue,
  endpoints: engineErrors.counted("endpoints", new CassandraPushEndpointStore(storage.db)),
  providers: push.providers,
  // Redis away: notify anyway (a push too many beats a message nobody hears about).
  isOnline: (userId) =>
    sessions.onlineUsers([userId]).then(
      (online) => online.has(userId),
      (err) => {
        engineErrors.count("online");
        routesAway.warn({ err });
        return false;
      },
    ),
  isDeviceActive: engineErrors.counted("device", (userId: bigint, deviceId: bigint) => isActiveDevice(storage.accounts, userId, deviceId)),
  channelMutedUntil: engineErrors.counted("mutes", channelMutes(storage.channels)),
  options: config.push.notifier,
  logger: logger.child({ component: "notifier" }),
  ...metrics,
});
// Listening before joining the consumer group: a CHAT_OPS_PORT it cannot have ends the process before
// it holds partitions, which Kafka would leave to it for the session timeout.
// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going.
const ops = start.stopping
  ? { port: undefined, close: async () => {} }
  : await exitOnListenError("notifier", () => startOpsServer(registry, { checks: [{ name: notifier.health.stage, check: notifier.health.check }], state: start }, config.host, config.opsPort));
const stopper = start.started(async () => {
  // Stop consuming first (a consumer still joining its group leaves it once joined), then send
  // what it holds (Notifier.stop) while the stores are still open.
  await notifier.stop();
  sessions.close();
  clients.close();
  await Promise.allSettled([push.close(), queue.close(), routes.close(), watch.close(), ops.close()]);
  await servers.close();
  await storage.close();
});
// Not once a signal came: joining the group only to leave it rebalances every member twice.
const failedStart = start.stopping
  ? undefined
  : await notifier.start().then(
      () => undefined,
      (err: Error) => err,
    );
// A signal came: the start under way is not reported as done.
if (start.stopping) {
  // Stopped by a signal while starting: stopOnSignals ends the process.
} else if (failedStart) {
  // One line naming the cause (a stack trace buries it), then closed as on SIGTERM.
  process.stderr.write(`notifier: cannot start consuming: ${failedStart.message}\n`);
  stopper.fail(new Error("cannot start consuming", { cause: failedStart }));
} else {
  logger.info({ ops: ops.port, providers: Object.keys(push.providers), vapidPublicKey: push.vapid.publicKey }, "notifier listening");
  // A consumer Kafka stopped for good consumes nothing until the process starts afresh.
  void notifier.health.stopped.then(stopper.fail);
}
