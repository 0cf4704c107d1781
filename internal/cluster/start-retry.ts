import type { Logger } from "pino";

export interface StartRetryOptions {
  /** How long to keep trying (CHAT_START_TIMEOUT_S); 0 tries once. */
  withinMs: number;
  logger?: Logger;
  /** The first pause after a failure, doubling up to maxPauseMs. */
  firstPauseMs?: number;
  maxPauseMs?: number;
}

/** A start-up step that failed after the process was asked to stop: not tried again; the failure is its cause. */
export class StartStoppedError extends Error {
  constructor(what: string, cause: unknown) {
    super(`${what}: not tried again, the process is stopping: ${oneLine(cause)}`, { cause });
    this.name = "StartStoppedError";
  }
}

/**
 * Asked once a stop is (cmd/shared.ts, on SIGTERM or SIGINT during start-up):
 * a step that then fails is not tried again. A role stopped while it waited
 * for an engine that was down went on waiting up to CHAT_START_TIMEOUT_S,
 * past the stop's own bound, and so exited 1 on that bound 25 s later.
 * Steps that succeed go on, so the start-up reaches the role's stop, which
 * releases what the earlier steps took (a worker id, a registration).
 */
const stopAsked = new AbortController();
export function stopStartRetries(): void {
  stopAsked.abort();
}
/** Aborted once a stop is asked, for start-up waits that are no retryStart (a gateway's wait for the token key). */
export const startRetriesStopped: AbortSignal = stopAsked.signal;

/** A start-up step still failing when its time ran out; the last failure is its cause. */
export class StartTimeoutError extends Error {
  constructor(what: string, withinMs: number, cause: unknown) {
    super(`${what}: still failing after ${withinMs / 1000} s (CHAT_START_TIMEOUT_S): ${oneLine(cause)}`, { cause });
    this.name = "StartTimeoutError";
  }
}

/**
 * Why, on one line, for the one line a role prints when it gives up. The
 * Cassandra driver's "no host answered" message carries each host's error
 * with its stack inside it; its innerErrors say the same per host, briefly.
 */
function oneLine(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause).split("\n")[0]!;
  const inner = (cause as { innerErrors?: unknown }).innerErrors;
  if (inner && typeof inner === "object" && Object.keys(inner).length > 0) {
    const hosts = Object.entries(inner as Record<string, unknown>).map(([host, e]) => `${host} (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
    return `no host answered: ${hosts.join(", ")}`;
  }
  return cause.message.split("\n")[0]!;
}

/**
 * Runs a start-up step that needs an engine until it succeeds. An engine
 * still starting, or slow to answer on a busy machine (each etcd request has
 * a 3 s deadline), then delays a role's start instead of ending it, as
 * starting the processes of a cluster in any order should. Each failure is
 * logged; past `withinMs` the step's last error is thrown as a
 * StartTimeoutError. The step must leave nothing open when it fails.
 */
export async function retryStart<T>(what: string, step: () => Promise<T>, options: StartRetryOptions): Promise<T> {
  // On the monotonic clock: a host's wall clock is often set right (stepped by hours) while
  // a process waits for its engines at boot, which ended the wait at once.
  const giveUpAt = performance.now() + options.withinMs;
  const maxPauseMs = options.maxPauseMs ?? 5_000;
  let pauseMs = options.firstPauseMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (stopAsked.signal.aborted) throw new StartStoppedError(what, err);
      const left = giveUpAt - performance.now();
      if (left <= 0) throw new StartTimeoutError(what, options.withinMs, err);
      const waitMs = Math.min(pauseMs, left);
      options.logger?.warn({ err, attempt, retryInMs: waitMs }, `${what} failed; trying again`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          stopAsked.signal.removeEventListener("abort", wake);
          resolve();
        }, waitMs);
        stopAsked.signal.addEventListener("abort", wake, { once: true });
      });
      // Woken by the stop: the step is tried once more, and a failure ends the wait.
      pauseMs = Math.min(pauseMs * 2, maxPauseMs);
    }
  }
}
