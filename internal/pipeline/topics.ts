/**
 * The pipeline's topics. Keys decide the single writer: a channel's messages
 * are sequenced by whoever owns its partition of `submitted`, a user's inbox
 * is written by whoever owns its partition of `inbox`. On Kafka a record waits
 * for its group 7 days (TOPIC_RETENTION_MS in internal/queue/kafka.ts): a stage
 * down or behind for longer loses acked records (chat_queue_records_lost_total).
 */
export const Topics = {
  /** MessageSubmitted, key = channel id. */
  submitted: "chat.messages.submitted.v1",
  /** InboxAppend, key = user id. */
  inbox: "chat.inbox.append.v1",
  /** NotificationRequested, key = user id. */
  notifications: "chat.notifications.v1",
} as const;

export const ConsumerGroups = {
  sequencer: "chat-sequencer",
  inboxWriter: "chat-inbox-writer",
  notifier: "chat-notifier",
} as const;

export function topicSpecs(partitions: number) {
  return Object.values(Topics).map((topic) => ({ topic, partitions }));
}
