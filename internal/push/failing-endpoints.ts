import type { Job } from "./job.js";
import type { NotifierContext } from "./notifier-context.js";
import type { SendAction } from "./notifier-reports.js";

/**
 * Failed sends in a failing streak, the removing one included, before it removes the endpoint:
 * two failures 7 days apart, with nothing sent between (its user online on another device), are
 * no proof that it is dead; one may have been a transient error.
 */
const FAILING_REMOVE_MIN_SENDS = 3;

/**
 * Keeps the endpoint's failing streak: cleared by a delivery; started by a
 * failure (one that no retry follows), each counted; and past
 * failingRemoveAfterMs of nothing but failures, FAILING_REMOVE_MIN_SENDS of
 * them at least, the endpoint is removed, "removed". A 403 or 400
 * that never changes, or a host that always times out, was otherwise tried
 * at every notification for good.
 */
export async function keepFailingStreak(c: NotifierContext, job: Job, what: "clear" | "failed"): Promise<SendAction> {
  const { deps } = c;
  const { userId, deviceId, address, updatedAtMs, failingSinceMs, failedSends } = job.endpoint;
  const at = c.now();
  try {
    if (what === "clear") await deps.endpoints.clearFailing(userId, deviceId, address);
    else if (failingSinceMs === undefined) await deps.endpoints.markFailing(userId, deviceId, address, at);
    // This failure is one more than the streak's read at fan-out (none, or one, by a build before the count).
    else if (at - failingSinceMs >= c.o.failingRemoveAfterMs && (failedSends ?? 1) + 1 >= FAILING_REMOVE_MIN_SENDS) {
      // Only while still failing since then: read at fan-out, the streak may have been ended since
      // (a delivery beside this send, a registration again), and this failure then starts a new one.
      if (await deps.endpoints.removeIfAddress(userId, deviceId, address, { updatedAtMs, failingSinceMs })) {
        deps.logger?.info(
          { userId: String(userId), deviceId: String(deviceId), kind: job.endpoint.kind, failingSinceMs },
          "push endpoint removed: every send to it failed for too long",
        );
        return "removed";
      }
      await deps.endpoints.markFailing(userId, deviceId, address, at);
    } else await deps.endpoints.markFailing(userId, deviceId, address, at);
  } catch (err) {
    deps.logger?.warn({ err }, "could not keep a push endpoint's failing streak");
  }
  return "dropped";
}
