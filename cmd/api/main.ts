import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BlockCache } from "../../internal/accounts/blocks.js";
import type { PushApiDeps } from "../../internal/api/push-service.js";
import { DeletionSweeper } from "../../internal/api/deletion-sweeper.js";
import { ApiLimiter, apiMetrics, clientAddressValues, PUBLIC_API_JSON_OPTIONS, registerPublicApi, type ApiDeps } from "../../internal/api/router.js";
import { NEW_DIRECT_WINDOW_MS } from "../../internal/api/limits.js";
import { TokenSigner, TokenVerifier, loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { QueueSubmitter } from "../../internal/chatserver/submitter.js";
import { ChatServerClients } from "../../internal/cluster/client-pool.js";
import { leaseWorkerId, openLoginAttempts, openNewDirectCounts, openQueue, openRegistry, openRoutes, openSendClaims, openStorage, watchServers } from "../../internal/cluster/engines.js";
import { openClusterPresence, presenceKeyPrefix, withLogoutPresence } from "../../internal/cluster/presence.js";
import { RoutedSessionDirectory } from "../../internal/cluster/routed-directory.js";
import { followChecks } from "../../internal/grpc/follow-checks.js";
import { watchTlsFiles } from "../../internal/config/tls-reload.js";
import { createGrpcListener } from "../../internal/grpc/listener.js";
import { withSpecGrpcMessages } from "../../internal/grpc/status-message.js";
import { HealthStatus, registerReflectionAndHealth } from "../../internal/grpc/index.js";
import { conditionCheck } from "../../internal/observability/http.js";
import { closableHttp2, createPublicHttpServer, drainHttpServer, startPublicOps } from "../../internal/observability/lifecycle.js";
import { createLogger } from "../../internal/observability/logger.js";
import type { PushKind } from "../../internal/push/port.js";
import { createPushProviders } from "../../internal/push/providers.js";
import { publishReadMarks } from "../../internal/push/records.js";
import { CassandraPushEndpointStore } from "../../internal/storage/cassandra/push-endpoint-store.js";
import { corsHeaders } from "../../internal/api/cors.js";
import { exitOnConfigError, exitOnFileError, exitOnListenError, exitOnStartTimeout, pushFiles, stopOnSignalsFromStart } from "../shared.js";
import { readApiConfig } from "./config.js";
import { listen } from "../../internal/observability/listen.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

exitOnStartTimeout("api");
const config = exitOnConfigError("api", () => readApiConfig(), unknownVariablesHint);
const logger = createLogger("api", config.logLevel);
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();

// Files first: a key directory or credential that cannot serve is told before any wait on an engine.
const keys = await exitOnFileError("api", { CHAT_KEYS_DIR: config.keysDir }, () => loadOrCreateKeys(config.keysDir));
// Push registration on the Cassandra store that cmd/notifier reads. The VAPID
// key pair comes from CHAT_VAPID_* or is shared through CHAT_KEYS_DIR/vapid.json.
const push = await exitOnFileError("api", pushFiles(config), () =>
  createPushProviders({ ...config.push, vapidKeyFile: join(config.keysDir, "vapid.json") }, logger),
);

const e = config.engines;
const storage = await openStorage(e, logger);
const queue = await openQueue(e, `api-${process.pid}`, logger);
const routes = openRoutes(e, logger);
// The api's SendMessage claims its sends as the chat servers do, so a resend racing the
// first copy (through the api or a session) is acked with the id that copy is stored under.
const claims = openSendClaims(e, config.sendClaimTtlSeconds * 1000);
await claims.connect().catch((err) => logger.warn({ err }, "send claims unavailable"));
const servers = openRegistry(e, logger);
const watch = await watchServers(servers, e, logger);
const clients = new ChatServerClients(watch, logger);
const workerId = await leaseWorkerId(e, logger);
const ids = workerId.ids;
const signer = new TokenSigner(keys, { ttlMs: config.accessTokenTtlMs });
const verifier = new TokenVerifier(keys.publicKey);
const routed = new RoutedSessionDirectory(routes, clients, logger);
// Presence: GetPresence reads the Redis store the chat servers write; logout
// and revocation take the device offline at once (this process does not sweep).
const presence = openClusterPresence({
  redisUrl: e.redisUrl,
  keyPrefix: presenceKeyPrefix(e.etcdPrefix),
  storage,
  directory: routed,
  config: { graceMs: 1, sweepIntervalMs: 0, batchWindowMs: config.presenceBatchMs },
  logger,
  registry,
});
const sessions = withLogoutPresence(routed, presence.tracker);
const pushApi: PushApiDeps = {
  push: {
    endpoints: new CassandraPushEndpointStore(storage.db),
    enabled: new Set(Object.keys(push.providers) as PushKind[]),
    vapidPublicKey: push.vapid.publicKey,
    allowHttpEndpoints: config.push.allowHttpEndpoints,
    defaultApnsTopic: config.push.apns?.topic,
  },
};

// Request rates per process; failed logins and new direct chats counted in Redis, across processes.
const loginAttempts = openLoginAttempts(e, config.apiLimits.loginWindowMs);
const newDirects = openNewDirectCounts(e, NEW_DIRECT_WINDOW_MS);
const limits = new ApiLimiter(config.apiLimits, loginAttempts, { logger, newDirects, textBudget: config.textBudget, sendRate: config.sendRate });

const apiCalls = apiMetrics(registry);
// Shared by the api's own sends and its BlockUser, which forgets the pair here at once.
const blocks = new BlockCache(storage.accounts, { ttlMs: config.blockCacheTtlSeconds * 1000 });

// grpc.health.v1 says what /readyz says, and NOT_SERVING from the first moment of a stop.
const health = new HealthStatus();
const apiDeps: ApiDeps & PushApiDeps = {
  accounts: storage.accounts,
  channels: storage.channels,
  log: storage.messages,
  inbox: storage.inbox,
  submitter: new QueueSubmitter({ queue, channels: storage.channels, log: storage.messages, ids, claims, blocks, changeWindows: config.changeWindows }),
  blocks: {
    // A block made here holds at once, here and on the chat servers holding either user's sessions.
    async forget(a: bigint, b: bigint) {
      blocks.forget(a, b);
      await routed.forgetBlocks([{ userId: a, otherUserId: b }]);
    },
  },
  sessions,
  // A read mark that moved withdraws the pushes the notifier still holds of what was read.
  readMoved: publishReadMarks(queue),
  presence: presence.tracker,
  ...pushApi,
  ids,
  signer,
  verifier,
  limits,
  maxDevicesPerAccount: config.apiLimits.maxDevicesPerAccount,
  maxGroupsPerUser: config.apiLimits.maxGroupsPerUser,
  refreshReuseGraceMs: config.refreshReuseGraceMs,
  metrics: apiCalls,
  logger,
};
// Finishes account deletions whose api process died after marking the account (every api process
// sweeps; the steps may run twice, side by side).
const deletions = new DeletionSweeper(apiDeps);
const routesFn = (router: ConnectRouter) => {
  registerPublicApi(router, apiDeps);
  registerReflectionAndHealth(router, { health });
};
// A request body past the limit is refused before it is read whole.
const connect = connectNodeAdapter({
  routes: routesFn,
  readMaxBytes: config.maxFrameBytes,
  contextValues: clientAddressValues(config.apiLimits.clientIpHeader),
  jsonOptions: PUBLIC_API_JSON_OPTIONS,
});
// /readyz fails while an engine every request needs is away, or the worker id may be another's.
const checks = [
  { name: "cassandra", check: async () => void (await storage.client.execute("SELECT release_version FROM system.local")) },
  { name: "redis", check: () => routes.ping() },
  conditionCheck("worker-id", () => workerId.live, "worker id lease lost, leasing another"),
];
const healthFollower = followChecks(health, checks, { logger });
await healthFollower.ready;
// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going. (No CHAT_OPS_PORT is no listener of its own.)
const ops = await exitOnListenError("api", () => startPublicOps(registry, { checks, state: start }, config.host, start.stopping ? undefined : config.opsPort));
const tls = config.tls && { cert: config.tls.cert, key: config.tls.key };
const handleHttp = (req: http.IncomingMessage, res: http.ServerResponse) => {
  if (ops.serve(req, res)) return;
  for (const [k, v] of Object.entries(corsHeaders(req, config.corsOrigins))) res.setHeader(k, v);
  if (req.method === "OPTIONS") return void res.writeHead(204).end();
  connect(req, res);
};
const httpServer: http.Server = createPublicHttpServer(tls, handleHttp);
const grpcHandler = withSpecGrpcMessages(connect);
const grpcServer = createGrpcListener(grpcHandler, tls);
const grpcListener = closableHttp2(grpcServer);
// A renewed certificate is served without a restart; its expiry is logged and exported.
const certificates = config.tls && watchTlsFiles(config.tls, { servers: [httpServer, grpcServer], logger, registry });
await exitOnListenError("api", async () => {
  if (start.stopping) return;
  await listen(httpServer, config.host, config.httpPort, "CHAT_HTTP_PORT");
  if (start.stopping) return;
  await listen(grpcServer, config.host, config.grpcPort, "CHAT_GRPC_PORT");
});
if (!start.stopping) deletions.start();
start.started(async () => {
  health.shutdown();
  healthFollower.stop();
  certificates?.close();
  // Requests in flight are answered (a client retrying one cut off might find it done: a sign-up, a new chat).
  // A sweep under way stops after the deletion it is finishing (the next sweep, anywhere, takes the rest).
  // The gRPC listener's calls as long as the HTTP one's (CHAT_DRAIN_GRACE_MS): at its default 2 s a native app's sign-ups still hashing were cut.
  await Promise.all([drainHttpServer(httpServer, config.drainGraceMs), grpcListener.close(config.drainGraceMs), ops.close(), deletions.close()]);
  routed.close();
  clients.close();
  // workerId.release() retires the generator first: nothing is minted once the number may be someone else's.
  await Promise.allSettled([presence.close(), push.close(), loginAttempts.close(), newDirects.close(), queue.close(), routes.close(), claims.close(), watch.close(), workerId.release()]);
  await servers.close();
  await storage.close();
});
if (!start.stopping) {
  logger.info(
    {
      http: `${tls ? "https" : "http"}://${config.host}:${(httpServer.address() as AddressInfo).port}`,
      grpc: `${tls ? "https" : "http"}://${config.host}:${(grpcServer.address() as AddressInfo).port}`,
      workerId: workerId.workerId,
      ops: ops.port,
    },
    "api listening",
  );
}
