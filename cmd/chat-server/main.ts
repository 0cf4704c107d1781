import { Server } from "@grpc/grpc-js";
import { BlockCache } from "../../internal/accounts/blocks.js";
import { signedOutReason } from "../../internal/accounts/store.js";
import { chatServerMetrics } from "../../internal/chatserver/metrics.js";
import { ChatServer } from "../../internal/chatserver/server.js";
import { QueueSubmitter } from "../../internal/chatserver/submitter.js";
import { ChatServerServiceService, chatServerGrpcOptions, chatServerService } from "../../internal/cluster/chat-server-grpc.js";
import { ChatServerClients } from "../../internal/cluster/client-pool.js";
import { openClusterPresence, presenceKeyPrefix } from "../../internal/cluster/presence.js";
import { leaseWorkerId, openQueue, openRegistry, openRoutes, openSendClaims, openStorage, startSteps, watchServers } from "../../internal/cluster/engines.js";
import { RoutedSessionDirectory } from "../../internal/cluster/routed-directory.js";
import { addReflectionAndHealth } from "../../internal/grpc/index.js";
import { followChecks } from "../../internal/grpc/follow-checks.js";
import { ServingStatus } from "../../internal/grpc/health.js";
import { conditionCheck, type HealthCheck } from "../../internal/observability/http.js";
import type { Registration } from "../../internal/registry/port.js";
import { startOpsServer, stopGrpcServer } from "../../internal/observability/lifecycle.js";
import { createLogger } from "../../internal/observability/logger.js";
import { bindGrpc } from "../../internal/observability/listen.js";
import { exitOnConfigError, exitOnListenError, exitOnStartTimeout, stopOnSignalsFromStart } from "../shared.js";
import { advertisedAddress, readChatServerConfig, sessionLimitsOf } from "./config.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { publishReadMarks } from "../../internal/push/records.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

exitOnStartTimeout("chat-server");
const config = exitOnConfigError("chat-server", () => readChatServerConfig(), unknownVariablesHint);
const logger = createLogger("chat-server", config.logLevel).child({ serverId: config.serverId });
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();

const e = config.engines;
const storage = await openStorage(e, logger);
const queue = await openQueue(e, `chat-server-${config.serverId}`, logger);
const routes = openRoutes(e, logger);
const servers = openRegistry(e, logger);
const workerId = await leaseWorkerId(e, logger);
const ids = workerId.ids;
const watch = await watchServers(servers, e, logger);
const clients = new ChatServerClients(watch, logger);
const directory = new RoutedSessionDirectory(routes, clients, logger);

const claims = openSendClaims(e, config.sendClaimTtlSeconds * 1000);
// Without Redis now, claims fail (each send keeps its own id) until it answers.
await claims.connect().catch((err) => logger.warn({ err }, "send claims unavailable"));
const metrics = chatServerMetrics(registry);
// A block made through the api reaches this server's sends within the cache's TTL.
const blocks = new BlockCache(storage.accounts, { ttlMs: config.blockCacheTtlSeconds * 1000 });
const submitter = new QueueSubmitter({
  queue, channels: storage.channels, log: storage.messages, ids, claims, claimOutcomes: metrics.sendClaims, blocks, changeWindows: config.changeWindows,
});
// Presence: this server's devices (connects, heartbeats, disconnects, logouts)
// go straight to the Redis store; flips fan out through the routing table.
const presence = openClusterPresence({ redisUrl: e.redisUrl, keyPrefix: presenceKeyPrefix(e.etcdPrefix), storage, directory, config: config.presence, logger, registry });
const chat = new ChatServer({
  serverId: config.serverId,
  inbox: storage.inbox,
  channels: storage.channels,
  submitter,
  routes,
  directory,
  presence: presence.tracker,
  revoked: (userId, deviceId) => signedOutReason(storage.accounts, userId, deviceId),
  blocks,
  log: storage.messages,
  // A read mark that moved withdraws the pushes the notifier still holds of what was read.
  readMoved: publishReadMarks(queue),
  limits: sessionLimitsOf(config),
  logger,
  metrics,
});
const service = chatServerService(chat, logger);
const grpcServer = new Server(chatServerGrpcOptions());
grpcServer.addService(ChatServerServiceService, service);
const { health } = addReflectionAndHealth(grpcServer, [ChatServerServiceService]);

let registration: Registration | undefined;
let loadTimer: NodeJS.Timeout | undefined;
const registered: HealthCheck = {
  name: "registration",
  async check() {
    if (!registration) throw new Error("not registered in etcd yet");
    if (!registration.live) throw new Error("lease lost");
  },
};
// Sends need ids: with its worker id lost (leasing another) the server refuses every one, registered or not.
const minting = conditionCheck("worker-id", () => workerId.live, "worker id lease lost, leasing another");
const checks = [registered, minting];
// gRPC health says what /readyz says: a balancer (or grpcurl) told SERVING before the
// registration, or while its lease is lost, would send calls to a server no gateway can find.
const healthFollower = followChecks(health, checks, { logger });
await healthFollower.ready;
// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going.
const port = start.stopping ? undefined : await exitOnListenError("chat-server", () => bindGrpc(grpcServer, config.host, config.grpcPort, "CHAT_GRPC_PORT"));
const address = port === undefined ? undefined : advertisedAddress(config, port);

// Listening before registering: a CHAT_OPS_PORT it cannot have stops it before any gateway
// is told of it (and sends it sessions for the lease's TTL after it exited).
const ops = start.stopping
  ? { port: undefined, close: async () => {} }
  : await exitOnListenError("chat-server", () => startOpsServer(registry, { checks, state: start }, config.host, config.opsPort));

// A stop asked meanwhile: no gateway is told of a server that is going (they would send
// it sessions, then move them away again as its entry vanished).
if (!start.stopping && address !== undefined) {
  registration = await startSteps(e, logger)("registering in etcd", () =>
    servers.register({ serverId: config.serverId, address, load: 0 }, { ttlSeconds: config.leaseTtlSeconds }),
  );
  // Without a live lease no new session is taken. The ones held stay: a gateway
  // moves a session only once our key vanishes from etcd, and cancels our stream
  // as it does, so a session never lives on in two places. Ending them here moved
  // every session of every server whenever etcd restarted (it keeps the leases,
  // and the keys, through a restart longer than the TTL).
  registration.onLost(() => {
    logger.warn("registration lost: taking no new session");
    chat.accepting = false;
    // At once, not at the next round: gateways may already be moving its sessions.
    health.setAll(ServingStatus.NOT_SERVING);
  });
  registration.onRegained(() => {
    logger.info("registration regained: serving again");
    chat.accepting = true;
    void healthFollower.recheck();
    void chat.refreshRoutes();
  });
  // After the listeners: a loss while this recheck ran would otherwise leave us accepting until regained.
  await healthFollower.recheck();
  loadTimer = setInterval(() => void registration?.setLoad(chat.sessionCount).catch(() => {}), 1000);
  loadTimer.unref();
}

start.started(async () => {
  // Drain: leave the registry first so no gateway picks us, then end the
  // streams so the gateways move every session elsewhere, socket untouched.
  clearInterval(loadTimer);
  chat.accepting = false;
  health.shutdown();
  healthFollower.stop();
  await registration?.close().catch(() => {});
  await service.endAll();
  await stopGrpcServer(grpcServer);
  // Before the routing store closes: a route it did not remove names a server that is gone. And before
  // the stores and the queue: the work the ended streams' last frames started (a receipt, a cursor) runs on.
  await chat.drain();
  await presence.close().catch(() => {});
  await Promise.allSettled([queue.close(), routes.close(), claims.close(), watch.close(), workerId.release(), ops.close()]);
  directory.close();
  clients.close();
  await servers.close();
  await storage.close();
});
if (!start.stopping) logger.info({ grpc: address, ops: ops.port, workerId: workerId.workerId }, "chat-server listening");
