/**
 * Errors after which no fresh consumer can join the group either (a setting
 * or a permission the broker refuses): retrying only repeats them, so the
 * subscriber is told (onGiveUp) instead. Everything else is tried again with
 * a fresh consumer, a group taken by members of another protocol included
 * (a console consumer run with the group's name leaves again).
 */
const PERMANENT_CONSUMER_ERRORS = new Set([
  "GROUP_AUTHORIZATION_FAILED",
  "TOPIC_AUTHORIZATION_FAILED",
  "INVALID_SESSION_TIMEOUT",
  "UNSUPPORTED_VERSION",
  "KafkaJSSASLAuthenticationError",
  "KafkaJSServerDoesNotSupportApiKey",
  "KafkaJSNotImplemented",
]);

/** Whether `err` or one of its causes is a permanent consumer error (by kafkajs' protocol `type` or class name). */
export function isPermanentConsumerError(err: unknown): boolean {
  for (let e = err as { name?: string; type?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (PERMANENT_CONSUMER_ERRORS.has(e.type ?? "") || PERMANENT_CONSUMER_ERRORS.has(e.name ?? "")) return true;
  }
  return false;
}

/**
 * Heartbeat answers after which this member's partitions may go to another:
 * a rebalance began (kafkajs rejoins only once the batches in hand are done),
 * the coordinator moved, or the group no longer knows this member.
 */
export const REVOKING_ERRORS = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "NOT_COORDINATOR_FOR_GROUP", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"]);
