import http from "node:http";
import https from "node:https";
import type http2 from "node:http2";
import type { Server as GrpcServer } from "@grpc/grpc-js";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { EnvReader } from "../config/env.js";
import { measuringLoop, serveOps, type Probes } from "./http.js";
import { listen } from "./listen.js";
import { ThrottledWarning } from "./outage-log.js";

/**
 * Under Kubernetes' default 30 s grace before SIGKILL, so a stop that hangs
 * (an engine that stopped answering mid-close) ends with our own log line.
 */
export const DEFAULT_STOP_TIMEOUT_MS = 25_000;

/** How a process ends on its own, besides signals. */
export interface ProcessStopper {
  /** Something the process cannot recover from in place: stop as on SIGTERM, then exit 1 so a supervisor restarts it. */
  fail(err: Error): void;
  /** What fail() was given: the process cannot serve any more, and /livez says so. */
  readonly failure?: Error;
}

/**
 * Runs `stop` once on SIGINT or SIGTERM, then exits (1 if stopping failed).
 * Stopping is bounded: past `timeoutMs`, or on a second signal, the process
 * exits 1 at once. Whatever it did not finish is what a crash leaves, which
 * every role recovers from (unacked sends are resent, uncommitted records
 * redone).
 */
export function stopOnSignals(logger: Logger, stop: () => Promise<void>, options: { timeoutMs?: number } = {}): ProcessStopper {
  const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  let stopping = false;
  let failure: Error | undefined;
  // The counts ThrottledWarnings hold back for up to a minute would go with the process:
  // the last burst of an outage, the stop's own failures (a stop cut short by its bound most of all).
  const exit = (code: 0 | 1): never => {
    ThrottledWarning.closeAll();
    return process.exit(code);
  };
  const begin = (exitCode: 0 | 1) => {
    stopping = true;
    setTimeout(() => {
      logger.error({ timeoutMs }, `did not stop within ${timeoutMs} ms: exiting`);
      exit(1);
    }, timeoutMs).unref();
    stop().then(
      () => exit(exitCode),
      (err) => {
        logger.error({ err }, "did not stop cleanly");
        exit(1);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ signal }, "second signal while stopping: exiting now");
        exit(1);
      }
      logger.info({ signal }, "stopping");
      begin(0);
    });
  }
  return {
    get failure() {
      return failure;
    },
    fail(err) {
      if (stopping) return;
      failure = err;
      logger.fatal({ err }, "cannot go on: stopping, to be restarted");
      begin(1);
    },
  };
}

/**
 * How long a public listener keeps an idle keep-alive connection: past the
 * 60 s idle timeout of the usual load balancers and the 5 s after which
 * Node's own agent drops one. The side that idles longer must be the one to
 * close, or a request sent as the server closes the connection fails
 * ("socket hang up", a 502 at the balancer); Node's default is 5 s, a tie
 * with its own clients.
 */
export const PUBLIC_KEEP_ALIVE_MS = 65_000;

/** The HTTP(S) listener of a public role (Connect, gRPC-Web, WebSocket upgrades). */
export function createPublicHttpServer(tls: https.ServerOptions | undefined, handler: http.RequestListener): http.Server {
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.keepAliveTimeout = PUBLIC_KEEP_ALIVE_MS;
  return server;
}

/** A small HTTP listener for /metrics, /readyz (/healthz) and /livez, for processes with no HTTP listener of their own. */
export async function startOpsServer(
  registry: Registry,
  probes: Probes,
  host: string,
  port: number,
): Promise<{ port: number; close(graceMs?: number): Promise<void> }> {
  probes = measuringLoop(probes);
  const server = http.createServer((req, res) => {
    if (!serveOps(registry, probes, req, res)) res.writeHead(404).end();
  });
  await listen(server, host, port, "CHAT_OPS_PORT");
  return {
    port: (server.address() as AddressInfo).port,
    // server.close() alone waited for ever on a connection that never finished a request (a
    // balancer's TCP check, a scrape just connected): the stop ran into its bound and exited 1.
    close: (graceMs?: number) => drainHttpServer(server, graceMs),
  };
}

/** What a process with a public HTTP listener (api, gateway, chatd) answers there of /metrics and the probes. */
export interface PublicOps {
  /** For the public listener's handler: true when it answered the request. */
  serve(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** The port of the ops listener, when there is one. */
  port?: number;
  close(): Promise<void>;
}

/**
 * With no CHAT_OPS_PORT (`opsPort` undefined) the public listener answers
 * every path: one port to try everything on, on a laptop. With one, /metrics
 * moves to its own listener, which a deployment keeps off the internet (the
 * series name every route, error and stage of the process), and the public
 * port keeps /readyz, /healthz and /livez, which load balancers and kubelets
 * probe (the ops listener answers them too).
 */
export async function startPublicOps(
  registry: Registry,
  probes: Probes,
  host: string,
  opsPort: number | undefined,
): Promise<PublicOps> {
  probes = measuringLoop(probes);
  if (opsPort === undefined) return { serve: (req, res) => serveOps(registry, probes, req, res), close: async () => {} };
  const ops = await startOpsServer(registry, probes, host, opsPort);
  return { serve: (req, res) => serveOps(registry, probes, req, res, { metrics: false }), port: ops.port, close: ops.close };
}

/**
 * How long a stopping process's listeners, HTTP/1.1 and HTTP/2 (gRPC) alike,
 * answer the requests in flight before cutting what is left: a sign-up still
 * hashing its password comes seconds after a SIGTERM (a few hundred queued on
 * the thread pool took 2.3 s and more), and one cut was stored with its reply
 * lost. The same for both, since chatd's and the api's gRPC listeners serve the
 * same unary calls as HTTP; a native session stream, ended at once by its
 * process's stop, gets as long to hand over its queued frames and status
 * (SessionServiceOptions.closeGraceMs).
 */
export const DRAIN_GRACE_MS = 5_000;

/**
 * CHAT_DRAIN_GRACE_MS, for the roles that answer unary calls (chatd, api)
 * and those that hold native session streams (chatd, gateway): raised where
 * sign-ups come in hundreds at once or devices read slowly, lowered where the
 * orchestrator allows less. At most 5 s under the stop's own bound, which the
 * rest of a stop (queues, consumers, engines) needs after the listeners.
 */
export function readDrainGraceMs(r: EnvReader): number {
  return r.int("CHAT_DRAIN_GRACE_MS", DRAIN_GRACE_MS, 0, DEFAULT_STOP_TIMEOUT_MS - 5_000);
}

/**
 * Stops an HTTP/1.1 listener without cutting the requests in flight: no new
 * connections, each open one closed as soon as it has no request in flight
 * (a keep-alive connection between requests at once), and after `graceMs`
 * whatever is left is cut. `closeAllConnections` alone reset every request
 * being answered, a sign-up among them: stored, its reply lost, and the
 * client's retry told the username was taken.
 */
export function drainHttpServer(server: http.Server, graceMs = DRAIN_GRACE_MS): Promise<void> {
  return new Promise<void>((resolve) => {
    // Node has no event for a connection turning idle: looked for often, for the few the stop waits on.
    const idle = setInterval(() => server.closeIdleConnections(), 20);
    const cut = setTimeout(() => {
      server.closeAllConnections();
      // A TLS connection still in its handshake is no HTTP connection yet: nothing here cuts it, and
      // close() waits for it until the handshake timeout (120 s), past the stop's bound. The process exits after.
      resolve();
    }, graceMs);
    idle.unref();
    cut.unref();
    server.close(() => {
      clearInterval(idle);
      clearTimeout(cut);
      resolve();
    });
    // A request that comes in on a connection kept alive from before is answered, and its connection then closed.
    server.on("request", (_req: http.IncomingMessage, res: http.ServerResponse) => {
      if (!res.headersSent) res.setHeader("connection", "close");
    });
  });
}

/**
 * Stopping an HTTP/2 listener: http2 servers have no closeAllConnections and
 * close() waits for every client to hang up, so the sessions are tracked from
 * the start. `close` refuses new connections, sends every open one a GOAWAY
 * (streams in flight finish, their statuses reach the client), and after
 * `graceMs` (DRAIN_GRACE_MS, as an HTTP/1.1 listener's: at 2 s, chatd's cut
 * native sign-ups still hashing that HTTP would have answered) cuts what is left.
 */
export function closableHttp2(server: http2.Http2Server | http2.Http2SecureServer): { close(graceMs?: number): Promise<void> } {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  return {
    close: (graceMs = DRAIN_GRACE_MS) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
          resolve();
        }, graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const session of sessions) session.close();
      }),
  };
}

/**
 * Stops a grpc-js server: no new calls, and `graceMs` for the calls in flight
 * to finish before every connection is cut. `tryShutdown` alone waits until
 * every peer has closed its connection, which a frozen peer (a stopped VM, a
 * process in SIGSTOP) never does.
 */
export function stopGrpcServer(server: GrpcServer, graceMs = 2_000): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
