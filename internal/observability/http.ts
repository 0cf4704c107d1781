import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { MAX_LOOP_DELAY_MS, processLoopDelay, type LoopDelay } from "./event-loop.js";

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

/** A check that has not answered in this long fails: an engine that stops answering must not hang /readyz. */
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

/** What a process tells of itself beyond its checks. */
export interface ProcessState {
  /** A stop has begun: it drains what it holds and takes nothing new, so it is not ready; it is still alive. */
  readonly stopping: boolean;
  /** Why it cannot serve any more and is stopping to be restarted (ProcessStopper.fail): not alive either. */
  readonly failure?: Error;
}

/** What /readyz and /livez answer from. */
export interface Probes {
  /** Readiness: what must hold for the process to serve (its engines, its leases, its stages). */
  readonly checks: readonly HealthCheck[];
  /** Unset: a process that only ever runs. */
  readonly state?: ProcessState;
  /** Unset: the process's own event loop. */
  readonly loop?: LoopDelay;
}

/**
 * The probes with the process's event loop measured from now on, for a
 * listener starting: measured only from the first /livez, a block before it
 * would go unseen by the probe that comes right after.
 */
export function measuringLoop(probes: Probes): Probes {
  return probes.loop ? probes : { ...probes, loop: processLoopDelay() };
}

/** /readyz: 200 when every check passes and no stop has begun, else 503 naming why. */
export async function readiness(probes: Probes): Promise<{ ok: boolean; body: object }> {
  const results = await runChecks(probes.checks);
  // Read after the checks: a stop that began while they ran is told now, not at the next probe.
  if (probes.state?.stopping) results.unshift(["stopping", "the process is stopping: draining, taking nothing new"]);
  const ok = results.every(([, r]) => r === "ok");
  return { ok, body: { status: ok ? "ok" : "unavailable", checks: Object.fromEntries(results) } };
}

/**
 * /livez: whether the process still turns, for a supervisor that restarts it
 * when not. No engine is asked: an engine away fails readiness, and restarting
 * every process for it would only add their start-ups to the outage. Nor does
 * a drain fail it, or the supervisor would cut the drain short; a process that
 * gave up (`failure`) does, and one whose event loop is blocked past
 * MAX_LOOP_DELAY_MS.
 */
export function liveness(probes: Probes, maxDelayMs = MAX_LOOP_DELAY_MS): { ok: boolean; body: object } {
  const eventLoopDelayMs = Math.round((probes.loop ?? processLoopDelay()).delayMs());
  const failure = probes.state?.failure;
  const reason = failure
    ? `cannot go on: ${failure.message}`
    : eventLoopDelayMs > maxDelayMs
      ? `event loop ${eventLoopDelayMs} ms behind (more than ${maxDelayMs} ms)`
      : undefined;
  return { ok: !reason, body: reason ? { status: "unavailable", reason, eventLoopDelayMs } : { status: "ok", eventLoopDelayMs } };
}

/**
 * A public listener's answer: which checks fail, not why. The reasons name
 * engines' addresses and their errors, kept off the internet for the reason
 * /metrics is (the ops port answers them whole).
 */
function withoutReasons(body: object): object {
  const b = body as { status: string; checks?: Record<string, string>; reason?: string; eventLoopDelayMs?: number };
  const checks = b.checks && Object.fromEntries(Object.entries(b.checks).map(([name, r]) => [name, r === "ok" ? "ok" : "unavailable"]));
  return { ...b, ...(checks ? { checks } : {}), ...(b.reason ? { reason: "unavailable (the reason is on the ops port)" } : {}) };
}

/**
 * /metrics (Prometheus text); /readyz, and /healthz as its alias (what load
 * balancers and older configs probe); /livez. Returns false when the path is
 * not ours (/metrics too, with `metrics: false`: a public listener whose
 * metrics are served on a port of their own, which also answers the probes
 * without their reasons).
 */
export function serveOps(
  registry: Registry,
  probes: Probes,
  req: IncomingMessage,
  res: ServerResponse,
  options: { metrics?: boolean } = {},
): boolean {
  const path = (req.url ?? "").split("?")[0];
  const answer = ({ ok, body }: { ok: boolean; body: object }) => {
    res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(options.metrics === false ? withoutReasons(body) : body));
  };
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
  if (path === "/readyz" || path === "/healthz") {
    void readiness(probes).then(answer);
    return true;
  }
  if (path === "/livez") {
    answer(liveness(probes));
    return true;
  }
  return false;
}
