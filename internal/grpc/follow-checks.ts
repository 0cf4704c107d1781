import type { Logger } from "pino";
import { CHECK_TIMEOUT_MS, runChecks, type HealthCheck } from "../observability/http.js";
import { ServingStatus, type HealthStatus } from "./health.js";

/** How often the checks run: a balancer notices a lost engine within this, and the engines see one cheap query per interval. */
export const HEALTH_POLL_MS = 2_000;

export interface CheckFollower {
  /** Settles after the first round, so a server can listen with its health already known. */
  readonly ready: Promise<void>;
  /**
   * Runs a round now (after the one under way), for a condition a check reads
   * that just came back: SERVING then follows at once, not up to an interval later.
   */
  recheck(): Promise<void>;
  stop(): void;
}

/**
 * Keeps grpc.health.v1 saying what /healthz says: the server and all its
 * services are NOT_SERVING while any check fails (an engine every request
 * needs is away), SERVING once they all pass again. A load balancer probing
 * gRPC health then stops sending calls that could only fail. Rounds never
 * overlap, and a check that does not answer in time fails its round.
 */
export function followChecks(
  health: HealthStatus,
  checks: readonly HealthCheck[],
  options: { intervalMs?: number; checkTimeoutMs?: number; logger?: Logger } = {},
): CheckFollower {
  const intervalMs = options.intervalMs ?? HEALTH_POLL_MS;
  const checkTimeoutMs = options.checkTimeoutMs ?? CHECK_TIMEOUT_MS;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let failingBefore = "";
  const round = async () => {
    const failed = (await runChecks(checks, checkTimeoutMs)).filter(([, r]) => r !== "ok");
    if (stopped) return;
    const failing = failed.map(([name, r]) => `${name}: ${r}`);
    // Logged when the set of failing checks changes, not at every round of the same outage.
    const now = failed.map(([name]) => name).join(",");
    if (now !== failingBefore) {
      if (now) options.logger?.warn({ failing }, "gRPC health NOT_SERVING");
      else options.logger?.info("gRPC health SERVING again");
      failingBefore = now;
    }
    health.setAll(failing.length === 0 ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  };
  // A recheck waits for the round under way: two at once could land out of order.
  let last: Promise<void> = Promise.resolve();
  const queued = () => (last = last.then(round));
  const next = () => {
    if (stopped) return;
    timer = setTimeout(() => void queued().finally(next), intervalMs);
    timer.unref();
  };
  const ready = queued().finally(next);
  return {
    ready,
    recheck: () => (stopped ? Promise.resolve() : queued()),
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
