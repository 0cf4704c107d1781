import { mkdirSync } from "node:fs";
import { listen } from "../../internal/observability/listen.js";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { readMaxBytesFor, sessionService, withCallStream } from "../../gateway/grpc-session.js";
import { WebSocketGateway } from "../../gateway/websocket.js";
import { SessionSlots } from "../../gateway/session-slots.js";
import { BlockCache } from "../../internal/accounts/blocks.js";
import { DeletionSweeper } from "../../internal/api/deletion-sweeper.js";
import { ApiLimiter, DeviceGate, apiMetrics, clientAddressValues, PUBLIC_API_JSON_OPTIONS, registerPublicApi, type ApiDeps } from "../../internal/api/router.js";
import { followChecks } from "../../internal/grpc/follow-checks.js";
import { withSpecGrpcMessages } from "../../internal/grpc/status-message.js";
import { watchTlsFiles } from "../../internal/config/tls-reload.js";
import { createGrpcListener } from "../../internal/grpc/listener.js";
import { HealthStatus, registerReflectionAndHealth } from "../../internal/grpc/index.js";
import { TokenSigner, TokenVerifier, loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { isActiveDevice, signedOutReason } from "../../internal/accounts/store.js";
import { chatServerMetrics } from "../../internal/chatserver/metrics.js";
import { ChatServer } from "../../internal/chatserver/server.js";
import { Snowflake, snowflakeTimeMs } from "../../internal/ids/snowflake.js";
import { closableHttp2, createPublicHttpServer, drainHttpServer, startPublicOps } from "../../internal/observability/lifecycle.js";
import { DirectSubmitter } from "../../internal/pipeline/direct-submitter.js";
import { pipelineMetrics } from "../../internal/pipeline/metrics.js";
import { ConsumerGroups, Topics } from "../../internal/pipeline/topics.js";
import { SqliteQueue } from "../../internal/queue/sqlite.js";
import { openSqliteStorage } from "../../internal/storage/sqlite/index.js";
import { walCheckpointMetrics } from "../../internal/storage/sqlite/wal-checkpointer.js";
import type { PushApiDeps } from "../../internal/api/push-service.js";
import { storeAudience } from "../../internal/presence/audience.js";
import { MemoryPresenceStore } from "../../internal/presence/memory.js";
import { SqliteLastSeenLog } from "../../internal/presence/sqlite.js";
import { RedisPresenceStore } from "../../internal/presence/redis.js";
import { tellIfRedisAway } from "../../internal/config/engines.js";
import { presenceMetrics } from "../../internal/presence/metrics.js";
import { ThrottledWarning } from "../../internal/observability/outage-log.js";
import { PresenceTracker } from "../../internal/presence/tracker.js";
import { Notifier } from "../../internal/push/notifier.js";
import type { PushKind } from "../../internal/push/port.js";
import { createPushProviders } from "../../internal/push/providers.js";
import { notifierEngineErrors, pushMetrics } from "../../internal/push/metrics.js";
import { channelMutes, publishOfflineNotifications, publishReadMarks } from "../../internal/push/records.js";
import { SqlitePushEndpointStore } from "../../internal/push/sqlite.js";
import { MemoryLoginAttempts } from "../../internal/throttle/memory.js";
import { isWebClientRequest, serveWebClient } from "../../web/serve.js";
import type { ChatdConfig } from "./config.js";
import { corsHeaders } from "../../internal/api/cors.js";
import { finishOldPipeline } from "./old-pipeline.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";

export interface RunningChatd {
  httpUrl: string;
  grpcUrl: string;
  wsUrl: string;
  /** The port of /metrics' own listener, when CHAT_OPS_PORT asked for one. */
  opsPort?: number;
  close(): Promise<void>;
}

/**
 * The whole product in one process on embedded engines: SQLite for storage
 * (a send is written to the log and the inboxes in one transaction), the
 * SQLite-backed in-process queue for push notifications, this process's chat
 * server as the session directory. `stopped` aborts once a stop is asked:
 * start-up steps that may wait long give up waiting.
 */
export async function startChatd(config: ChatdConfig, logger: Logger, stopped?: AbortSignal): Promise<RunningChatd> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const registry = processMetricsRegistry();
  // One count for both transports: a device's WebSockets and native streams share its cap.
  const slots = new SessionSlots(config.sessionCaps, registry);

  const expired = new Counter({ name: "chat_inbox_entries_expired_total", help: "Inbox entries past CHAT_INBOX_RETENTION_S taken away", registers: [registry] });
  const storage = openSqliteStorage(join(config.dataDir, "chat.db"), {
    synchronous: config.sqliteSync,
    checkpoints: { logger, ...walCheckpointMetrics(registry) },
    inboxRetention: {
      retentionMs: config.inboxRetentionMs,
      onSwept: (o) => {
        if ("err" in o) return logger.warn({ err: o.err }, "inbox retention sweep failed; tried again at the next one");
        expired.inc(o.removed);
        if (o.removed > 0) logger.info({ removed: o.removed }, "expired inbox entries taken away");
      },
    },
  });
  const queue = new SqliteQueue({ path: join(config.dataDir, "queue.db"), synchronous: config.sqliteSync, logger });
  // Only the notifier's topic: messages go through DirectSubmitter, not the queue.
  await queue.ensureTopics([{ topic: Topics.notifications, partitions: config.queuePartitions }]);
  const ids = new Snowflake(config.workerId);
  const keys = await loadOrCreateKeys(join(config.dataDir, "keys"));
  const signer = new TokenSigner(keys, { ttlMs: config.accessTokenTtlMs });
  const verifier = new TokenVerifier(keys.publicKey);

  // Presence: soft state in memory (or Redis), changes pushed to friends and small-channel co-members.
  // Last-seen times are kept in chat.db too: in memory, those of users still online written through
  // every CHAT_PRESENCE_LAST_SEEN_WRITE_MS, so neither a restart nor a crash forgets them; in Redis
  // (which keeps its users' last heartbeats), each flip to offline, so a Redis restarted empty does not.
  const lastSeenLog = new SqliteLastSeenLog(storage.db);
  // Warned once a minute at most: a chat.db refusing writes (a full disk) fails every flip and every GetPresence.
  const lastSeenLogErrors = new ThrottledWarning({ logger, message: "last seen not written to or read from chat.db; only a restart forgets it" });
  const onLastSeenLogError = (err: unknown) => lastSeenLogErrors.warn({ err });
  const presenceStore =
    config.presence.store === "redis"
      ? new RedisPresenceStore({ redis: config.presence.redisUrl, lastSeenLog, onLastSeenLogError })
      : new MemoryPresenceStore({ lastSeenLog, lastSeenWriteMs: config.presence.lastSeenWriteMs, onLastSeenLogError });
  if (presenceStore instanceof RedisPresenceStore) void tellIfRedisAway(config.presence.redisUrl, "presence", () => presenceStore.ping(), logger);
  const presence: PresenceTracker = new PresenceTracker({
    store: presenceStore,
    audience: storeAudience({ accounts: storage.accounts, channels: storage.channels }),
    directory: { pushToUsers: (userIds, frame): Promise<void> => chat.pushToUsers(userIds, frame) },
    graceMs: config.presence.graceMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    sweepIntervalMs: config.presence.sweepIntervalMs,
    logger: logger.child({ component: "presence" }),
    ...presenceMetrics(registry),
  });
  // One process owns every channel and inbox: a send is stored in the log and
  // in its members' inboxes by one transaction (internal/pipeline/direct-submitter.ts).
  // One process: a block made through the api holds for the next send at once.
  const blocks = new BlockCache(storage.accounts);
  const pipeline = pipelineMetrics(registry, queue, [[ConsumerGroups.notifier, Topics.notifications]]);
  const onOffline = publishOfflineNotifications({ queue, accounts: storage.accounts, channels: storage.channels });
  // A read mark that moved withdraws the pushes the notifier still holds of what was read.
  const readMarks = publishReadMarks(queue);
  const submitter = new DirectSubmitter({
    channels: storage.channels,
    blocks,
    changeWindows: config.changeWindows,
    writer: storage.writer,
    log: storage.messages,
    ids,
    sessions: {
      pushToUsers: (userIds, frame) => chat.pushToUsers(userIds, frame),
      pushMany: (items) => chat.pushMany(items),
      pushEntries: (items) => chat.pushEntries(items),
      closeDevice: (userId, deviceId, code, reason) => chat.closeDevice(userId, deviceId, code, reason),
      onlineUsers: (userIds) => chat.onlineUsers(userIds),
    },
    onOffline,
    logger: logger.child({ component: "pipeline" }),
    metrics: pipeline,
  });
  const chat: ChatServer = new ChatServer({
    serverId: `chatd-${config.workerId}`,
    inbox: storage.inbox,
    channels: storage.channels,
    submitter,
    presence,
    revoked: (userId, deviceId) => signedOutReason(storage.accounts, userId, deviceId),
    blocks,
    log: storage.messages,
    readMoved: readMarks,
    limits: {
      framesPerSecond: config.framesPerSecond,
      frameBurst: config.frameBurst,
      maxFrameBytes: config.maxFrameBytes,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      ...config.textBudget,
      ...config.sendRate,
    },
    logger: logger.child({ component: "chat-server" }),
    metrics: chatServerMetrics(registry),
  });
  // Push: the notifier consumes chat.notifications.v1, as cmd/notifier does on Kafka.
  const pushEndpoints = new SqlitePushEndpointStore(storage.db);
  const push = createPushProviders({ vapidKeyFile: join(config.dataDir, "vapid.json"), ...config.push }, logger);
  // As cmd/notifier counts its Cassandra reads: the notifier retries or gets by without them, so a
  // chat.db that fails them shows here first. (Who is online is this process's memory: no engine.)
  const engineErrors = notifierEngineErrors(registry);
  const notifier: Notifier = new Notifier({
    queue,
    endpoints: engineErrors.counted("endpoints", pushEndpoints),
    providers: push.providers,
    isOnline: async (userId) => (await chat.onlineUsers([userId])).has(userId),
    isDeviceActive: engineErrors.counted("device", (userId: bigint, deviceId: bigint) => isActiveDevice(storage.accounts, userId, deviceId)),
    channelMutedUntil: engineErrors.counted("mutes", channelMutes(storage.channels)),
    options: config.push.notifier,
    logger: logger.child({ component: "notifier" }),
    ...pushMetrics(registry, () => notifier.pending),
  });
  const pushApi: PushApiDeps = {
    push: {
      endpoints: pushEndpoints,
      enabled: new Set(Object.keys(push.providers) as PushKind[]),
      vapidPublicKey: push.vapid.publicKey,
      allowHttpEndpoints: config.push.allowHttpEndpoints,
      defaultApnsTopic: config.push.apns?.topic,
    },
  };
  // Before anything is served or minted: sends an older chatd acked may wait in queue.db alone.
  const oldPipeline = await finishOldPipeline({
    queue,
    log: storage.messages,
    inbox: storage.inbox,
    channels: storage.channels,
    sessions: chat,
    onOffline,
    logger: logger.child({ component: "pipeline" }),
    metrics: pipeline,
    stopped,
  });
  // After them: their ids were minted by the older chatd.
  ids.notBefore(snowflakeTimeMs(storage.highestIssuedId()));
  presence.start();
  await notifier.start();

  const apiLogger = logger.child({ component: "api" });
  const loginAttempts = new MemoryLoginAttempts(config.apiLimits.loginWindowMs);
  const limits = new ApiLimiter(config.apiLimits, loginAttempts, { logger: apiLogger, textBudget: config.textBudget, sendRate: config.sendRate });
  // Made once: both listeners register the routes; a metric registers once,
  // and a sign-out through one listener must shut its token out of both.
  const apiCalls = apiMetrics(registry);
  const devices = new DeviceGate(storage.accounts);
  const apiDeps: ApiDeps & PushApiDeps = {
    accounts: storage.accounts,
    channels: storage.channels,
    log: storage.messages,
    inbox: storage.inbox,
    submitter,
    // The chat server forgets the pair in the shared cache, and checks presence between the pair for a while.
    blocks: { forget: (a: bigint, b: bigint) => chat.forgetBlock(a, b) },
    sessions: chat,
    readMoved: readMarks,
    presence,
    ...pushApi,
    ids,
    signer,
    verifier,
    limits,
    maxDevicesPerAccount: config.apiLimits.maxDevicesPerAccount,
    maxGroupsPerUser: config.apiLimits.maxGroupsPerUser,
    refreshReuseGraceMs: config.refreshReuseGraceMs,
    metrics: apiCalls,
    devices,
    logger: apiLogger,
  };
  // Finishes account deletions cut short (the process killed) after marking the account.
  const deletions = new DeletionSweeper(apiDeps, {}, devices);
  const routes = (router: ConnectRouter) => {
    registerPublicApi(router, apiDeps);
    router.service(SessionService, sessionService(chat, verifier, { slots, maxFrameBytes: config.maxFrameBytes, closeGraceMs: config.drainGraceMs }));
  };
  // A request body past the frame limit is refused before it is read whole.
  // The limit is the frame's (what the Welcome tells) plus the ConnectRequest
  // around it, so a native session's frame of exactly that size still fits.
  const readMaxBytes = readMaxBytesFor(config.maxFrameBytes);
  const contextValues = clientAddressValues(config.apiLimits.clientIpHeader);
  const jsonOptions = PUBLIC_API_JSON_OPTIONS;
  const connect = connectNodeAdapter({ routes, readMaxBytes, contextValues, jsonOptions });
  // gRPC listener: the same routes plus server reflection (grpcurl with no
  // proto files) and grpc.health.v1.Health, marked NOT_SERVING on close.
  const health = new HealthStatus();
  const grpcConnect = connectNodeAdapter({
    readMaxBytes,
    contextValues: withCallStream(contextValues),
    jsonOptions,
    routes: (router) => {
      routes(router);
      registerReflectionAndHealth(router, { health });
    },
  });
  // TLS on every listener when CHAT_TLS_CERT and CHAT_TLS_KEY are set.
  const tls = config.tls && { cert: config.tls.cert, key: config.tls.key };
  const checks = [
    // A full disk still answers reads: failed writes (chat.db's messages, queue.db's records) say what SELECT 1 cannot.
    {
      name: "storage",
      check: async () => {
        storage.db.prepare("SELECT 1").get();
        storage.writeCheck();
        await queue.writeCheck();
      },
    },
    { name: notifier.health.stage, check: notifier.health.check },
  ];

  // From the first moment of close(): /readyz fails while the drain goes on, /livez stays.
  const state = { stopping: false };
  // Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
  // probing it would count in a process that is going. (No ops port is no listener of its own.)
  const ops = await startPublicOps(registry, { checks, state }, config.host, stopped?.aborted ? undefined : config.opsPort);
  // Browsers: HTTP/1.1 for Connect and gRPC-Web, and the WebSocket upgrade.
  const handleHttp = (req: IncomingMessage, res: ServerResponse) => {
    if (ops.serve(req, res)) return;
    // The web client (web/dist) at "/"; the API paths never match.
    if (isWebClientRequest(req)) return void serveWebClient(req, res);
    const cors = corsHeaders(req, config.corsOrigins);
    for (const [k, v] of Object.entries(cors)) res.setHeader(k, v);
    if (req.method === "OPTIONS") {
      res.writeHead(204).end();
      return;
    }
    connect(req, res);
  };
  // grpc.health.v1 says what /readyz says: NOT_SERVING while chat.db cannot be written.
  const healthFollower = followChecks(health, checks, { logger });
  await healthFollower.ready;
  const httpServer: http.Server = createPublicHttpServer(tls, handleHttp);
  const gateway = new WebSocketGateway({
    path: "/ws",
    verifier,
    host: chat,
    maxFrameBytes: config.maxFrameBytes,
    allowedOrigins: config.corsOrigins,
    logger: logger.child({ component: "gateway" }),
    registry,
    slots,
  });
  gateway.attach(httpServer);
  // Native apps and grpcurl: h2c, which browsers never speak and which
  // cannot share a plaintext listener with HTTP/1.1 (with TLS: HTTP/2 over TLS, ALPN h2).
  const grpcHandler = withSpecGrpcMessages(grpcConnect);
  const grpcServer = createGrpcListener(grpcHandler, tls);
  const grpcListener = closableHttp2(grpcServer);
  // A renewed certificate is served without a restart; its expiry is logged and exported.
  const certificates = config.tls && watchTlsFiles(config.tls, { servers: [httpServer, grpcServer], logger, registry });

  if (!stopped?.aborted) await listen(httpServer, config.host, config.httpPort, "CHAT_HTTP_PORT");
  if (!stopped?.aborted) await listen(grpcServer, config.host, config.grpcPort, "CHAT_GRPC_PORT");
  if (!stopped?.aborted) deletions.start();
  // Not listening (a stop came first): the ports asked for, in URLs nobody is told.
  const httpPort = (httpServer.address() as AddressInfo | null)?.port ?? config.httpPort;
  const grpcPort = (grpcServer.address() as AddressInfo | null)?.port ?? config.grpcPort;

  let closing: Promise<void> | undefined;
  return {
    httpUrl: `${tls ? "https" : "http"}://${config.host}:${httpPort}`,
    grpcUrl: `${tls ? "https" : "http"}://${config.host}:${grpcPort}`,
    wsUrl: `${tls ? "wss" : "ws"}://${config.host}:${httpPort}/ws`,
    opsPort: ops.port,
    close: () =>
      (closing ??= (async () => {
        state.stopping = true;
        health.shutdown();
        healthFollower.stop();
        certificates?.close();
        // The sessions close at once; the work their last frames started (a read receipt, a cursor, a send) runs
        // on, and fails if the stores close under it, the receipt or cursor never written again.
        const drained = chat.drain();
        await gateway.close();
        // Requests in flight are answered (a client retrying one cut off might find it done: a sign-up, a new chat).
        await Promise.all([drainHttpServer(httpServer, config.drainGraceMs), grpcListener.close(config.drainGraceMs), ops.close(), drained, deletions.close()]);
        await oldPipeline.stop();
        await notifier.stop();
        await push.close();
        await presence.stop();
        await presenceStore.close();
        await queue.close();
        await storage.close();
      })()),
  };
}

