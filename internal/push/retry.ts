import type { Job } from "./job.js";
import type { NotifierOptions } from "./notifier-options.js";

/** The longest Retry-After honoured: a retry held longer is more likely lost to a restart than worth the wait. */
export const RETRY_AFTER_MAX_MS = 10 * 60_000;

/** The wait before try `attempt + 1`: exponential with jitter, or the Retry-After (RETRY_AFTER_MAX_MS at most) if longer. */
export function backoff(o: Pick<NotifierOptions, "backoffBaseMs" | "backoffMaxMs">, attempt: number, retryAfterMs?: number): number {
  const exp = Math.min(o.backoffMaxMs, o.backoffBaseMs * 2 ** (attempt - 1));
  const jittered = exp / 2 + Math.random() * (exp / 2);
  return Math.max(jittered, Math.min(RETRY_AFTER_MAX_MS, retryAfterMs ?? 0));
}

/** The jobs waiting for their retry's backoff, each by its timer (Job.retryTimer). */
export class RetryTimers {
  private readonly timers = new Set<NodeJS.Timeout>();

  /** Retries waiting. */
  get size(): number {
    return this.timers.size;
  }

  /** Calls `due` after `delayMs`, unless cancelled first. */
  schedule(job: Job, delayMs: number, due: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      due();
    }, delayMs);
    this.timers.add(t);
    job.retryTimer = t;
  }

  /** Stops `job`'s retry if one is waiting; false if none was (not scheduled, already due, or given up). */
  cancel(job: Job): boolean {
    if (!job.retryTimer || !this.timers.delete(job.retryTimer)) return false;
    clearTimeout(job.retryTimer);
    return true;
  }

  /** Stops every retry waiting; how many there were. */
  cancelAll(): number {
    const n = this.timers.size;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    return n;
  }
}
