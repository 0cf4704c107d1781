import { mkdirSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { Registry, collectDefaultMetrics } from "prom-client";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { sessionService } from "../../gateway/grpc-session.js";
import { WebSocketGateway } from "../../gateway/websocket.js";
import { registerPublicApi } from "../../internal/api/router.js";
import { HealthStatus, registerReflectionAndHealth } from "../../internal/grpc/index.js";
import { TokenSigner, TokenVerifier, loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { chatServerMetrics } from "../../internal/chatserver/metrics.js";
import { ChatServer } from "../../internal/chatserver/server.js";
import { QueueSubmitter } from "../../internal/chatserver/submitter.js";
import { Snowflake } from "../../internal/ids/snowflake.js";
import { serveOps } from "../../internal/observability/http.js";
import { InboxWriter } from "../../internal/pipeline/inbox-writer.js";
import { pipelineMetrics } from "../../internal/pipeline/metrics.js";
import { Sequencer } from "../../internal/pipeline/sequencer.js";
import { topicSpecs } from "../../internal/pipeline/topics.js";
import { SqliteQueue } from "../../internal/queue/sqlite.js";
import { openSqliteStorage } from "../../internal/storage/sqlite/index.js";
import { isWebClientRequest, serveWebClient } from "../../web/serve.js";
import type { ChatdConfig } from "./config.js";
import { corsHeaders } from "./cors.js";

export interface RunningChatd {
  httpUrl: string;
  grpcUrl: string;
  wsUrl: string;
  close(): Promise<void>;
}

/**
 * The whole product in one process on embedded engines: SQLite for storage,
 * the SQLite-backed in-process queue for the pipeline, this process's chat
 * server as the session directory.
 */
export async function startChatd(config: ChatdConfig, logger: Logger): Promise<RunningChatd> {
  mkdirSync(config.dataDir, { recursive: true });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const storage = openSqliteStorage(join(config.dataDir, "chat.db"), { synchronous: config.sqliteSync });
  const queue = new SqliteQueue({ path: join(config.dataDir, "queue.db"), synchronous: config.sqliteSync, logger });
  await queue.ensureTopics(topicSpecs(config.queuePartitions));
  const ids = new Snowflake(config.workerId);
  const keys = await loadOrCreateKeys(join(config.dataDir, "keys"));
  const signer = new TokenSigner(keys, { ttlMs: config.accessTokenTtlMs });
  const verifier = new TokenVerifier(keys.publicKey);

  const submitter = new QueueSubmitter({ queue, channels: storage.channels, log: storage.messages, ids });
  const chat = new ChatServer({
    serverId: `chatd-${config.workerId}`,
    inbox: storage.inbox,
    channels: storage.channels,
    submitter,
    limits: {
      framesPerSecond: config.framesPerSecond,
      frameBurst: config.frameBurst,
      maxFrameBytes: config.maxFrameBytes,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
    },
    logger: logger.child({ component: "chat-server" }),
    metrics: chatServerMetrics(registry),
  });
  const metrics = pipelineMetrics(registry);
  const sequencer = new Sequencer({ queue, log: storage.messages, channels: storage.channels, logger, metrics });
  const inboxWriter = new InboxWriter({ queue, inbox: storage.inbox, sessions: chat, logger, metrics });
  await sequencer.start();
  await inboxWriter.start();

  const routes = (router: ConnectRouter) => {
    registerPublicApi(router, {
      accounts: storage.accounts,
      channels: storage.channels,
      log: storage.messages,
      inbox: storage.inbox,
      submitter,
      sessions: chat,
      ids,
      signer,
      verifier,
      logger: logger.child({ component: "api" }),
    });
    router.service(SessionService, sessionService(chat, verifier));
  };
  const connect = connectNodeAdapter({ routes });
  // gRPC listener: the same routes plus server reflection (grpcurl with no
  // proto files) and grpc.health.v1.Health, marked NOT_SERVING on close.
  const health = new HealthStatus();
  const grpcConnect = connectNodeAdapter({
    routes: (router) => {
      routes(router);
      registerReflectionAndHealth(router, { health });
    },
  });
  // TLS on every listener when CHAT_TLS_CERT and CHAT_TLS_KEY are set.
  const tls = config.tls && { cert: config.tls.cert, key: config.tls.key };
  const checks = [{ name: "storage", check: async () => void storage.db.prepare("SELECT 1").get() }];

  // Browsers: HTTP/1.1 for Connect and gRPC-Web, and the WebSocket upgrade.
  const handleHttp = (req: IncomingMessage, res: ServerResponse) => {
    if (serveOps(registry, checks, req, res)) return;
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
  const httpServer: http.Server = tls ? https.createServer(tls, handleHttp) : http.createServer(handleHttp);
  const gateway = new WebSocketGateway({
    path: "/ws",
    verifier,
    host: chat,
    maxFrameBytes: config.maxFrameBytes,
    allowedOrigins: config.corsOrigins,
    logger: logger.child({ component: "gateway" }),
    registry,
  });
  gateway.attach(httpServer);
  // Native apps and grpcurl: h2c, which browsers never speak and which
  // cannot share a plaintext listener with HTTP/1.1 (with TLS: HTTP/2 over TLS, ALPN h2).
  const grpcServer = tls ? http2.createSecureServer(tls, grpcConnect) : http2.createServer(grpcConnect);

  await listen(httpServer, config.host, config.httpPort);
  await listen(grpcServer, config.host, config.grpcPort);
  const httpPort = (httpServer.address() as AddressInfo).port;
  const grpcPort = (grpcServer.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    httpUrl: `${tls ? "https" : "http"}://${config.host}:${httpPort}`,
    grpcUrl: `${tls ? "https" : "http"}://${config.host}:${grpcPort}`,
    wsUrl: `${tls ? "wss" : "ws"}://${config.host}:${httpPort}/ws`,
    close: () =>
      (closing ??= (async () => {
        health.shutdown();
        chat.drain();
        await gateway.close();
        httpServer.closeAllConnections();
        await Promise.all([closeServer(httpServer), closeHttp2(grpcServer)]);
        await sequencer.stop();
        await inboxWriter.stop();
        await queue.close();
        storage.close();
      })()),
  };
}

function listen(server: http.Server | http2.Http2Server | http2.Http2SecureServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function closeHttp2(server: http2.Http2Server | http2.Http2SecureServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Open HTTP/2 sessions keep close() waiting; there is no closeAllConnections.
    setTimeout(resolve, 1000).unref();
  });
}
