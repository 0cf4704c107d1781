import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { serveOps, type HealthCheck } from "./http.js";

/** Runs `stop` once on SIGINT or SIGTERM, then exits (1 if stopping failed). */
export function stopOnSignals(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "stopping");
      stop().then(
        () => process.exit(0),
        (err) => {
          logger.error({ err }, "did not stop cleanly");
          process.exit(1);
        },
      );
    });
  }
}

/** A small HTTP listener for /metrics and /healthz, for processes with no HTTP listener of their own. */
export async function startOpsServer(
  registry: Registry,
  checks: readonly HealthCheck[],
  host: string,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (!serveOps(registry, checks, req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
