import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";

export interface HealthCheck {
  name: string;
  check(): Promise<void>;
}

/**
 * A check on something the process already knows (a lease it holds, servers it
 * sees). It throws rather than returning a rejected promise by hand: one
 * discarded with `void` passes the check and crashes the process as an
 * unhandled rejection.
 */
export function conditionCheck(name: string, holds: () => boolean, failure: string): HealthCheck {
  return {
    name,
    async check() {
      if (!holds()) throw new Error(failure);
    },
  };
}

/** A check that has not answered in this long fails: an engine that stops answering must not hang /healthz. */
export const CHECK_TIMEOUT_MS = 5_000;

/** Runs every check at once; each result is "ok" or why it failed. */
export async function runChecks(checks: readonly HealthCheck[], timeoutMs = CHECK_TIMEOUT_MS): Promise<[name: string, result: string][]> {
  return Promise.all(
    checks.map(async (c): Promise<[string, string]> => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          c.check(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            timer.unref();
          }),
        ]);
        return [c.name, "ok"];
      } catch (err) {
        return [c.name, (err as Error).message];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/**
 * /metrics (Prometheus text) and /healthz (200 when every check passes, else
 * 503 naming the failing ones). Returns false when the path is not ours
 * (/metrics too, with `metrics: false`: a public listener whose metrics are
 * served on a port of their own).
 */
export function serveOps(
  registry: Registry,
  checks: readonly HealthCheck[],
  req: IncomingMessage,
  res: ServerResponse,
  options: { metrics?: boolean } = {},
): boolean {
  const path = (req.url ?? "").split("?")[0];
  if (path === "/metrics" && options.metrics !== false) {
    registry
      .metrics()
      .then((body) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(body);
      })
      .catch(() => {
        res.writeHead(500).end();
      });
    return true;
  }
  if (path === "/healthz") {
    runChecks(checks).then((results) => {
      const ok = results.every(([, r]) => r === "ok");
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: ok ? "ok" : "unavailable", checks: Object.fromEntries(results) }));
    });
    return true;
  }
  return false;
}
