import { createRequire } from "node:module";

/** The fields of kafkajs's per-connection RequestQueue that its pending check reads. */
interface RequestQueueState {
  pending: unknown[];
  /** Epoch ms until which the broker asked this client to hold back (-1: never). */
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
}

/** How long a queue held back only by its in-flight limit waits before it looks again (kafkajs's own interval). */
const RECHECK_MS = 10;

/**
 * kafkajs 2.2.4 re-arms its pending-request check after every check, with a
 * negative delay (Node runs it after 1 ms) when nothing is pending, so every
 * broker connection of every process spins a timer a thousand times a second
 * for as long as it lives (tulios/kafkajs#1556, #1704, unfixed in a release):
 * about 4 % of a core per idle process here, and timer churn on the event
 * loop under load. A check is only needed while requests wait: push() arms
 * one when it queues a request, and an answered request checks the queue
 * itself.
 */
function scheduleCheckPendingRequests(this: RequestQueueState): void {
  if (this.throttleCheckTimeoutId !== null || this.pending.length === 0) return;
  const throttledForMs = this.throttledUntil - Date.now();
  this.throttleCheckTimeoutId = setTimeout(
    () => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    },
    throttledForMs > 0 ? throttledForMs : RECHECK_MS,
  );
}

/** kafkajs's RequestQueue class (CommonJS, the same module instance kafkajs itself uses). */
export function kafkajsRequestQueue(): { prototype: { scheduleCheckPendingRequests: () => void } } {
  return createRequire(import.meta.url)("kafkajs/src/network/requestQueue/index.js");
}

/** Puts the check above in place of kafkajs's own, before any client connects (again: a no-op). */
export function mendKafkajsRequestQueue(): void {
  const { prototype } = kafkajsRequestQueue();
  if (typeof prototype.scheduleCheckPendingRequests !== "function") {
    throw new Error("kafkajs RequestQueue has no scheduleCheckPendingRequests: the idle-spin mend no longer fits this kafkajs version");
  }
  prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
}
