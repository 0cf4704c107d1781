import type { Logger } from "pino";
import type { Id } from "../model/types.js";
import type { MessageQueue, QueueRecord } from "../queue/port.js";
import type { SendResult, SkipReason } from "./notifier-reports.js";
import type { PushEndpointStore, PushKind, PushProvider } from "./port.js";

export interface NotifierOptions {
  /** Messages of one channel within this window become one notification. Default 2000 ms. */
  collapseWindowMs: number;
  /** A push service that has not answered by then counts as failed (and is retried). Default 10 s. */
  timeoutMs: number;
  /** Requests in flight at once, over all push services. Default 64. */
  concurrency: number;
  /** Requests in flight to one push service host, so a dead one cannot take every slot. Default 16. */
  perHostConcurrency: number;
  /** Tries per notification and endpoint, the first included. Default 5. */
  maxAttempts: number;
  /** First retry delay, doubled each time (with jitter), capped at backoffMaxMs. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /**
   * Notifications held in memory (collapsing, queued, retrying, in flight) before consuming pauses.
   * A batch is taken whole once there is room, so it may be passed by one batch per partition in hand.
   */
  maxPending: number;
  /** How long a push service may hold a notification for an offline device. Default 1 day. */
  ttlSeconds: number;
  /**
   * How long stop() goes on sending what it holds (collapse windows closed
   * early, first tries only) before it drops the rest. Default 5 s; sends in
   * flight then still get their timeoutMs.
   */
  drainMs: number;
  /**
   * How long a message stays notified after its collapse window closed: a
   * record of it that comes again within this (a batch the pipeline
   * published again, a redelivery) sends nothing. Default 10 minutes.
   */
  repeatWindowMs: number;
  /**
   * An endpoint whose every send failed for this long (PushEndpoint.failingSinceMs), while its
   * push service delivered to others, is removed at its next failure. Default 7 days.
   */
  failingRemoveAfterMs: number;
}

export interface NotifierDeps {
  queue: MessageQueue;
  endpoints: PushEndpointStore;
  /** Configured providers; endpoints of other kinds are skipped. */
  providers: Partial<Record<PushKind, PushProvider>>;
  /** Checked when a notification is due: a user who came back online gets none. */
  isOnline?: (userId: Id) => Promise<boolean>;
  /** False for a revoked (logged-out) device: its endpoint is removed instead of used. */
  isDeviceActive?: (userId: Id, deviceId: Id) => Promise<boolean>;
  /** Until when the user muted the channel's pushes (ChannelService/MuteChannel); checked when a notification is due. */
  channelMutedUntil?: (userId: Id, channelId: Id) => Promise<number | undefined>;
  now?: () => number;
  /** The clock of durations (the repeat window, a push's wait for a slot): the monotonic clock, or `now` where a test fakes that alone. */
  monotonicNow?: () => number;
  options?: Partial<NotifierOptions>;
  logger?: Logger;
  /** Reports what happened to each send (metrics, tests). */
  onResult?: (result: SendResult) => void;
  /** Reports each notification, or each endpoint of one, that is due and not sent, and why (metrics, tests). */
  onSkipped?: (reason: SkipReason) => void;
  /** Reports each record that could not be decoded and was gone past (metrics, tests); it is logged too. */
  onRecordSkipped?: (record: QueueRecord, err: unknown) => void;
}

export const defaultNotifierOptions: NotifierOptions = {
  collapseWindowMs: 2_000,
  timeoutMs: 10_000,
  concurrency: 64,
  perHostConcurrency: 16,
  maxAttempts: 5,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  maxPending: 10_000,
  ttlSeconds: 24 * 3600,
  drainMs: 5_000,
  repeatWindowMs: 10 * 60_000,
  failingRemoveAfterMs: 7 * 24 * 3_600_000,
};
