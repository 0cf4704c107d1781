import http from "node:http";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Gauge } from "prom-client";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { SESSION_JSON_OPTIONS, readMaxBytesFor, sessionService, withCallStream } from "../../gateway/grpc-session.js";
import { watchTlsFiles } from "../../internal/config/tls-reload.js";
import { createGrpcListener } from "../../internal/grpc/listener.js";
import { withSpecGrpcMessages } from "../../internal/grpc/status-message.js";
import { WebSocketGateway } from "../../gateway/websocket.js";
import { SessionSlots } from "../../gateway/session-slots.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PUBLIC_KEY_FILE, TokenVerifier, loadPublicKeys } from "../../internal/auth/tokens.js";
import { StartStoppedError, startRetriesStopped } from "../../internal/cluster/start-retry.js";
import { RemoteSessionHost } from "../../internal/cluster/remote-host.js";
import { openRegistry, watchServers } from "../../internal/cluster/engines.js";
import { followChecks } from "../../internal/grpc/follow-checks.js";
import { HealthStatus, registerReflectionAndHealth } from "../../internal/grpc/index.js";
import { conditionCheck } from "../../internal/observability/http.js";
import { closableHttp2, createPublicHttpServer, drainHttpServer, startPublicOps } from "../../internal/observability/lifecycle.js";
import { createLogger } from "../../internal/observability/logger.js";
import { exitOnConfigError, exitOnFileError, exitOnListenError, exitOnStartTimeout, stopOnSignalsFromStart } from "../shared.js";
import { readGatewayConfig } from "./config.js";
import { listen } from "../../internal/observability/listen.js";
import { processMetricsRegistry } from "../../internal/observability/process-metrics.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

exitOnStartTimeout("gateway");
const config = exitOnConfigError("gateway", () => readGatewayConfig(), unknownVariablesHint);
const logger = createLogger("gateway", config.logLevel).child({ gatewayId: config.gatewayId });
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
const registry = processMetricsRegistry();

const keyFile = join(config.keysDir, PUBLIC_KEY_FILE);
// Started before any api: said once, or the wait looks like a hang.
if (!existsSync(keyFile)) logger.info({ keyFile }, "waiting for the api to write its token key");
const verifier = new TokenVerifier(
  await exitOnFileError("gateway", { CHAT_KEYS_DIR: config.keysDir }, () =>
    loadPublicKeys(config.keysDir, config.engines.startTimeoutSeconds * 1000, startRetriesStopped).catch((err) => {
      throw startRetriesStopped.aborted ? new StartStoppedError(`waiting for the token key at ${keyFile}`, "not written yet") : err;
    }),
  ),
);
const servers = openRegistry(config.engines, logger);
const watch = await watchServers(servers, config.engines, logger);
const host = new RemoteSessionHost({ gatewayId: config.gatewayId, watch, logger, maxOpensInFlight: config.maxOpensInFlight });
// gateway_connections counts WebSockets only: native apps' gRPC streams carry sessions too.
new Gauge({
  name: "gateway_sessions",
  help: "Device sessions this gateway holds, over WebSocket and native gRPC",
  registers: [registry],
  collect() {
    this.set(host.sessionCount);
  },
});
// One count for both transports: a device's WebSockets and native streams share its cap.
const slots = new SessionSlots(config.sessionCaps, registry);
const checks = [conditionCheck("chat-servers", () => watch.servers().length > 0, "no chat server registered")];
// grpc.health.v1 says what /readyz says, and NOT_SERVING from the first moment of a stop.
const health = new HealthStatus();
/** Aborted as the stop begins: native gRPC sessions end, and none opens. */
const stopping = new AbortController();

// Once a stop is asked, no port opens, not even for the moment before the stop runs: a balancer
// probing it would count in a process that is going. (No CHAT_OPS_PORT is no listener of its own.)
const ops = await exitOnListenError("gateway", () => startPublicOps(registry, { checks, state: start }, config.host, start.stopping ? undefined : config.opsPort));
const tls = config.tls && { cert: config.tls.cert, key: config.tls.key };
const handleHttp = (req: http.IncomingMessage, res: http.ServerResponse) => {
  if (!ops.serve(req, res)) res.writeHead(404).end();
};
const httpServer: http.Server = createPublicHttpServer(tls, handleHttp);
const gateway = new WebSocketGateway({
  path: "/ws",
  verifier,
  host,
  maxFrameBytes: config.maxFrameBytes,
  allowedOrigins: config.corsOrigins,
  logger,
  registry,
  slots,
});
gateway.attach(httpServer);
// Native apps: the same session as a gRPC bidi stream (h2c, or HTTP/2 over TLS).
const grpcHandler = withSpecGrpcMessages(
  connectNodeAdapter({
    readMaxBytes: readMaxBytesFor(config.maxFrameBytes),
    jsonOptions: SESSION_JSON_OPTIONS,
    contextValues: withCallStream(),
    routes: (router) => {
      router.service(SessionService, sessionService(host, verifier, { stopping: stopping.signal, slots, maxFrameBytes: config.maxFrameBytes, closeGraceMs: config.drainGraceMs }));
      registerReflectionAndHealth(router, { health });
    },
  }),
);
const grpcServer = createGrpcListener(grpcHandler, tls);
const grpcListener = closableHttp2(grpcServer);
// A renewed certificate is served without a restart; its expiry is logged and exported.
const certificates = config.tls && watchTlsFiles(config.tls, { servers: [httpServer, grpcServer], logger, registry });
const healthFollower = followChecks(health, checks, { logger });
await healthFollower.ready;
await exitOnListenError("gateway", async () => {
  if (start.stopping) return;
  await listen(httpServer, config.host, config.httpPort, "CHAT_HTTP_PORT");
  if (start.stopping) return;
  await listen(grpcServer, config.host, config.grpcPort, "CHAT_GRPC_PORT");
});
start.started(async () => {
  health.shutdown();
  healthFollower.stop();
  certificates?.close();
  // Every device hears 1001 and reconnects elsewhere: WebSocket sessions from
  // the gateway, native gRPC streams (UNAVAILABLE "close 1001") from the session
  // service at once, not once every socket answered its close (up to 2 s): meanwhile
  // their sessions stayed on the chat servers, and a stream opened then was welcomed, then cut.
  stopping.abort();
  await gateway.close();
  await host.close();
  // No grace (the probes are all it serves now), and done with a TLS connection still in its
  // handshake, which close() alone waited for past the stop's bound.
  await drainHttpServer(httpServer, 0);
  // The native streams' last frames and status as long as a stream is let wait for its device (CHAT_DRAIN_GRACE_MS).
  await grpcListener.close(config.drainGraceMs);
  await ops.close();
  await watch.close();
  await servers.close();
});
if (!start.stopping) {
  const ws = `${tls ? "wss" : "ws"}://${config.host}:${(httpServer.address() as AddressInfo).port}/ws`;
  const grpc = `${tls ? "https" : "http"}://${config.host}:${(grpcServer.address() as AddressInfo).port}`;
  logger.info({ ws, grpc, http: `${tls ? "https" : "http"}://${config.host}:${(httpServer.address() as AddressInfo).port}`, ops: ops.port }, "gateway listening");
}
