import type { PushEndpoint, PushNotification, SendOutcome } from "./port.js";

/**
 * Why a due notification is not sent: its user is online again, muted its
 * channel, has no endpoint, its message was deleted before it came or before it was
 * sent (every message it held deleted, or its reaction taken back), or the endpoint is muted, of a push service not
 * configured here, or of a logged-out device (then also removed); or, not
 * yet sent for good, a newer one of the same chat was made for the device;
 * or its push service is too far behind (see waitingByHost); or the notifier
 * stopped before sending it (a retry waiting for its backoff, or a send not
 * started within drainMs): its record is committed, so it is lost; or its
 * records went back to the queue uncommitted (the partition moved to another
 * notifier, or this one was dropped from the group): whoever reads them again
 * sends it; or its user read the chat up to its message (on another device,
 * or before going offline) before it was sent, or before it came ("read").
 */
export type SkipReason = (typeof SKIP_REASONS)[number];

/** What the notifier did about a push service's answer (SendResult.action). */
export type SendAction = (typeof SEND_ACTIONS)[number];

export interface SendResult {
  endpoint: PushEndpoint;
  notification: PushNotification;
  attempt: number;
  outcome: SendOutcome;
  /** What the notifier did about it. */
  action: SendAction;
}

/** Every SkipReason, which chat_push_skipped_total counts from 0. */
export const SKIP_REASONS = [
  "online",
  "channel_muted",
  "no_endpoint",
  "muted",
  "no_provider",
  "revoked_device",
  "expired",
  "deleted",
  "superseded",
  "backlog",
  "stopped",
  "reassigned",
  "read",
] as const;

/** Every SendAction, which chat_push_sends_total counts from 0. */
export const SEND_ACTIONS = ["delivered", "retry", "removed", "dropped"] as const;
