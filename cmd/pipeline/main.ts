import { ChatServerClients } from "../../internal/cluster/client-pool.js";
import { openQueue, openRegistry, openRoutes, openStorage, watchServers } from "../../internal/cluster/engines.js";
import { RoutedSessionDirectory } from "../../internal/cluster/routed-directory.js";
import { conditionCheck, type HealthCheck } from "../../internal/observability/http.js";
import { startOpsServer } from "../../internal/observability/lifecycle.js";
import { createLogger } from "../../internal/observability/logger.js";
import type { PartitionedStageHealth } from "../../internal/pipeline/partition-health.js";
import { InboxWriter } from "../../internal/pipeline/inbox-writer.js";
import { pipelineGroupsOf, pipelineMetrics } from "../../internal/pipeline/metrics.js";
import { appendMetrics } from "../../internal/storage/cassandra/metrics.js";
import { Sequencer } from "../../internal/pipeline/sequencer.js";
import { publishOfflineNotifications } from "../../internal/push/records.js";
import { exitOnConfigError, exitOnListenError, exitOnStartTimeout, stopOnSignalsFromStart } from "../shared.js";
import { readPipelineConfig } from "./config.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

exitOnStartTimeout("pipeline");
const config = exitOnConfigError("pipeline", () => readPipelineConfig(), unknownVariablesHint);
const logger = createLogger("pipeline", config.logLevel);
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();
const e = config.engines;
const storage = await openStorage(e, logger);
const queue = await openQueue(e, `pipeline-${process.pid}`, logger);
const metrics = pipelineMetrics(registry, queue, pipelineGroupsOf(config.stages));
appendMetrics(registry, { messages: storage.messages, inbox: storage.inbox });
const routes = openRoutes(e, logger);
const servers = openRegistry(e, logger);
const watch = await watchServers(servers, e, logger);
const clients = new ChatServerClients(watch, logger);
const sessions = new RoutedSessionDirectory(routes, clients, logger);

type Stage = { stop(): Promise<void>; health: PartitionedStageHealth };
const workers: Stage[] = [];
// Listening before the stages join their consumer groups: a CHAT_OPS_PORT it cannot have ends the
// process before it holds partitions, which Kafka would leave to it for the session timeout, their
// messages stalled. /readyz fails while a stage's every batch keeps failing (an engine down).
let started = false;
const checks: HealthCheck[] = [conditionCheck("stages", () => started, "stages not started yet")];
// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going.
const ops = start.stopping
  ? { port: undefined, close: async () => {} }
  : await exitOnListenError("pipeline", () => startOpsServer(registry, { checks, state: start }, config.host, config.opsPort));
const startStage: Record<string, () => Promise<Stage>> = {
  sequencer: async () => {
    const s = new Sequencer({ queue, log: storage.messages, channels: storage.channels, logger, metrics, stallMs: config.stallMs });
    await s.start();
    return s;
  },
  "inbox-writer": async () => {
    // Users with no session on any chat server get a NotificationRequested on
    // chat.notifications.v1 (keyed by user), which cmd/notifier consumes.
    const onOffline = publishOfflineNotifications({ queue, accounts: storage.accounts, channels: storage.channels });
    const w = new InboxWriter({ queue, inbox: storage.inbox, sessions, logger, metrics, onOffline, stallMs: config.stallMs });
    await w.start();
    return w;
  },
};

/** The stage joining its consumer group. */
let joining: Promise<unknown> | undefined;
const stopper = start.started(async () => {
  // A stage still joining its group is stopped once it has joined (the queue's stop waits for it):
  // stopped while it joined, its consumer stayed in the group until the session timeout.
  await joining;
  // Finish and commit the batches in hand, so the next owner starts after them.
  await Promise.all(workers.map((w) => w.stop()));
  sessions.close();
  clients.close();
  await Promise.allSettled([queue.close(), routes.close(), watch.close(), ops.close()]);
  await servers.close();
  await storage.close();
});
let failedStage: { stage: string; err: Error } | undefined;
for (const stage of config.stages) {
  // A signal came: start no further stage.
  if (start.stopping) break;
  joining = startStage[stage]!().then(
    (w) => void workers.push(w),
    (err: Error) => void (failedStage = { stage, err }),
  );
  await joining;
  if (failedStage) break;
}
if (start.stopping) {
  // Stopped by a signal while starting: stopOnSignals ends the process.
} else if (failedStage) {
  // Stopped as on SIGTERM: the stages already started leave their groups now, instead of holding
  // their partitions, messages stalled, until Kafka's session timeout.
  const { stage, err } = failedStage;
  process.stderr.write(`pipeline: cannot start the ${stage} stage: ${err.message}\n`);
  stopper.fail(new Error(`cannot start the ${stage} stage`, { cause: err }));
} else {
  checks.push(...workers.map((w) => ({ name: w.health.stage, check: w.health.check })));
  started = true;
  logger.info({ stages: config.stages, ops: ops.port }, "pipeline listening");
  // A consumer Kafka stopped for good consumes nothing until the process starts afresh.
  void Promise.race(workers.map((w) => w.health.stopped)).then(stopper.fail);
}
