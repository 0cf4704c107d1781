import type { Logger } from "pino";
import { monotonicNow } from "../model/clock.js";
import type { Id, StoredMessage } from "../model/types.js";
import { Slots } from "../model/slots.js";
import { OutageLog } from "../observability/outage-log.js";
import { StageHealth } from "../observability/stage-health.js";
import { ConsumerGroups, Topics } from "../pipeline/topics.js";
import type { BatchContext, MessageQueue, QueueRecord, Subscription } from "../queue/port.js";
import type { PushEndpoint, PushEndpointStore, PushKind, PushNotification, PushProvider, SendOutcome } from "./port.js";
import { decodeNotificationRecord, type NotificationRequest } from "./records.js";

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

/** What the notifier did about a push service's answer (SendResult.action). */
export const SEND_ACTIONS = ["delivered", "retry", "removed", "dropped"] as const;
export type SendAction = (typeof SEND_ACTIONS)[number];

export interface SendResult {
  endpoint: PushEndpoint;
  notification: PushNotification;
  attempt: number;
  outcome: SendOutcome;
  /** What the notifier did about it. */
  action: SendAction;
}

/**
 * The batches a notification's records came in (BatchContext.lost of each).
 * Once one is lost, the partition's next owner reads the records again and
 * notifies the chat itself: sent from here too, the push would come twice.
 */
class Origin {
  /** A push of it was delivered (to some device): its records are notified, also when read here again. */
  sent = false;
  /** The partitions its records came from (none where the queue never moves one, or accept() was called alone). */
  readonly partitions = new Set<number>();
  constructor(readonly batches: AbortSignal[]) {}
  get reassigned(): boolean {
    return this.batches.some((b) => b.aborted);
  }
}

interface Collapsing {
  held: Held;
  timer: NodeJS.Timeout;
}

/**
 * What one (user, chat) window collapsed, shared by its fan-out and the jobs
 * it makes: a withdrawal (a delete, a reaction taken back) takes a message
 * out, and they send what is left, its count and newest message, or nothing.
 */
class Held {
  /** By message id, so a record the queue delivers again is not counted twice; a long text kept as its preview. */
  readonly requests = new Map<Id, NotificationRequest>();
  /** The newest request, mentioned when any is (a mention reaches through a mute). */
  latest: NotificationRequest;
  /** By message id, the id of the last edit given to it. */
  private readonly edits = new Map<Id, Id>();
  /** Changed by each request taken in, out or edited: a job made before rebuilds its notification. */
  version = 0;
  /** The open window or its fan-out (one), and each job not done with: at 0 it is out of heldByChat. */
  refs = 1;
  private built?: { version: number; versions: Job["versions"] };
  /** What took out its last request, as a skip counts it when it finds nothing left. */
  emptiedBy: "deleted" | "read" = "deleted";

  constructor(
    readonly key: string,
    first: NotificationRequest,
    readonly origin: Origin,
  ) {
    this.latest = first;
    this.add(first);
  }

  add(req: NotificationRequest): void {
    const m = req.message;
    // Only the preview is shown: a window of long texts held whole was up to 99,999 characters each.
    if (!m.reaction && m.text.length > 4 * PREVIEW_CODE_POINTS) req = { ...req, message: { ...m, text: preview(m.text) } };
    this.requests.set(m.messageId, req);
    const mentioned = this.latest.mentioned || req.mentioned;
    if (isNewer(req, this.latest)) this.latest = req;
    if (mentioned) this.latest = { ...this.latest, mentioned: true };
    this.version++;
  }

  /** Takes out the requests `out` names (what a change withdraws, what a read mark covers); the message ids taken out. */
  takeOut(out: (req: NotificationRequest) => boolean, by: "deleted" | "read"): Id[] {
    const gone: Id[] = [];
    for (const [id, req] of this.requests) if (out(req)) gone.push(id);
    if (gone.length === 0) return gone;
    this.emptiedBy = by;
    for (const id of gone) this.requests.delete(id);
    const left = [...this.requests.values()];
    if (left.length > 0) {
      this.latest = left.reduce((a, b) => (isNewer(b, a) ? b : a));
      if (left.some((r) => r.mentioned)) this.latest = { ...this.latest, mentioned: true };
    }
    this.version++;
    return gone;
  }

  /**
   * Gives the message `change` edits its new text, and whether it now names
   * the user (`mentioned`, unless the record did not say), if held; a record
   * that comes again changes nothing.
   */
  edit(change: StoredMessage, mentioned?: boolean): void {
    for (const [id, req] of this.requests) {
      const m = req.message;
      if (m.reaction || m.channelId !== change.channelId || m.seq !== change.targetSeq) continue;
      // An older edit that comes again (a batch published again) after a newer one: edits of one
      // message are ordered by their ids (snowflakes), as the MessageLog applies them.
      const last = this.edits.get(id);
      if (last !== undefined && last >= change.messageId) return;
      this.edits.set(id, change.messageId);
      const edited: NotificationRequest = { ...req, message: { ...m, text: change.text, editedAtMs: change.sentAtMs } };
      if (edited.message.text.length > 4 * PREVIEW_CODE_POINTS) edited.message.text = preview(edited.message.text);
      if (mentioned === true) edited.mentioned = true;
      else if (mentioned === false) delete edited.mentioned;
      // A mention past the preview's end changes the flag alone.
      if (edited.message.text === m.text && edited.mentioned === req.mentioned) return;
      this.requests.set(id, edited);
      // The newest as it now reads, mentioned while any message still names the user.
      const newest = this.latest.message.messageId === id ? edited : this.latest;
      this.latest = { ...newest, mentioned: [...this.requests.values()].some((r) => r.mentioned === true) };
      if (!this.latest.mentioned) delete this.latest.mentioned;
      this.version++;
      return;
    }
  }

  versions(ttlSeconds: number): Job["versions"] {
    if (this.built?.version !== this.version) {
      const count = this.requests.size;
      this.built = { version: this.version, versions: { preview: buildNotification(this.latest, count, false, ttlSeconds), noPreview: buildNotification(this.latest, count, true, ttlSeconds) } };
    }
    return this.built.versions;
  }
}

interface Job {
  endpoint: PushEndpoint;
  origin: Origin;
  /** What it tells of; `heldVersion` the version its notification was built from. */
  held: Held;
  heldVersion: number;
  notification: PushNotification;
  channelId: Id;
  /** When its newest message was sent: the push service holds it for what is left of ttlSeconds since. */
  sentAtMs: number;
  /** Both versions, small: a retry picks the one the device's setting asks for by then. */
  versions: { preview: PushNotification; noPreview: PushNotification };
  attempt: number;
  host: string;
  /** When it last joined the queue of jobs ready to go. */
  readyAtMs?: number;
  /** A newer notification of the same chat was made for the device: this one is not sent again. */
  superseded?: boolean;
  /** While waiting for its retry. */
  retryTimer?: NodeJS.Timeout;
}

const PREVIEW_CODE_POINTS = 120;
/** The longest Retry-After honoured: a retry held longer is more likely lost to a restart than worth the wait. */
const RETRY_AFTER_MAX_MS = 10 * 60_000;
/**
 * 429s from this many distinct endpoints of one host within HOST_LIMITED_WINDOW_MS,
 * with no delivery to the host between, hold the whole host: the service limits
 * us, not a device. One device's quota (FCM's QUOTA_EXCEEDED, a Web Push service's
 * per-subscription limit) is one endpoint's; a busy group can put two members'
 * devices over theirs at once, rarely three with nothing delivered between.
 */
const HOST_LIMITED_ENDPOINTS = 3;
/**
 * Short: per-device 429s spread over minutes (devices that each ran through their
 * own quota) are no sign of a service-wide limit, and a service limiting us
 * refuses every send at once, perHostConcurrency of them within a round trip.
 */
const HOST_LIMITED_WINDOW_MS = 10_000;
/** A job that waited longer than this for a free slot (a slow or backlogged push service) is asked again whether it is still due, as a retry is. */
const STALE_READY_MS = 5_000;
/** Fan-outs, and asks whether a push that waited is still due, reading the stores (online, mutes, endpoints, devices) at once. */
const FANOUTS_AT_ONCE = 64;
/**
 * A failed send counts against its endpoint only while its push service
 * (host) delivered to another within this, by the monotonic clock: a service
 * down, or settings of ours it refuses (expired credentials, a wrong project),
 * fail every endpoint alike, and must not remove them all.
 */
const SERVICE_PROVEN_MS = 3_600_000;
/**
 * Failed sends in a failing streak, the removing one included, before it removes the endpoint:
 * two failures 7 days apart, with nothing sent between (its user online on another device), are
 * no proof that it is dead; one may have been a transient error.
 */
const FAILING_REMOVE_MIN_SENDS = 3;
/** Push service hosts remembered as having delivered, at most. */
const PROVEN_HOSTS_MAX = 1_024;
/** Messages remembered as notified at most (about 100 bytes each): a burst past it forgets the oldest early. */
const NOTIFIED_MAX = 100_000;
/** Read marks remembered at most (about 100 bytes each): a burst of reads past it forgets the oldest early. */
const READ_MARKS_MAX = 100_000;

/**
 * The notifier consumes NotificationRequested (topic chat.notifications.v1,
 * group chat-notifier) and sends push notifications: in chatd on the
 * embedded queue, as `cmd/notifier` on Kafka.
 *
 * - Collapse: the first message of a (user, channel) opens a window; what
 *   arrives within it becomes one notification (the newest message, with a
 *   count), and the collapse key (Web Push Topic, apns-collapse-id, FCM
 *   collapse_key) makes the push service replace an undelivered older one.
 * - Delivery never blocks consuming: sends run with a timeout, bounded
 *   concurrency overall and per push-service host, and retries with
 *   exponential backoff and jitter (honouring Retry-After). Endpoints that
 *   answer 404/410 (or otherwise say they are gone) are removed.
 * - Withdraw: a delete, or a reaction taken back (a withdrawal record, after
 *   the requests it withdraws on the user's key), takes its message out of
 *   what the chat holds unsent (collapsing, fanning out, queued, retrying);
 *   what is left goes with its count and newest preview, nothing if nothing
 *   is. A push sent, or being sent, is not recalled.
 * - Edit: an edit record (after the request it edits, on the user's key)
 *   gives what the chat holds unsent of that message its new text, and
 *   whether it names the user as the new text does.
 * - Read: a read mark that moved (a read record, on the user's key, from
 *   whoever moved it) takes the chat's messages up to it out of what is held
 *   unsent, as a withdrawal does, and for a while drops their requests that
 *   come after it.
 * - Consuming pauses only while maxPending notifications are in memory.
 * - A record is committed once held, so a stop must not drop what it holds:
 *   every deploy would swallow the pushes of the last collapse window. stop()
 *   closes the windows early and sends (for up to drainMs), only retries
 *   waiting for their backoff are given up (counted as "stopped"). A batch
 *   is taken whole once there is room, never in part: one a stop leaves
 *   uncommitted comes again to the next notifier, which alone sends it; so
 *   does one waiting for room when a rebalance may move its partition. What
 *   it holds from a batch whose commit the queue then drops (BatchContext.lost)
 *   is not sent: the next owner reads it again and sends it. A crash still
 *   loses what is in memory: push is best effort, the message itself is in
 *   the inbox.
 */
export class Notifier {
  private readonly o: NotifierOptions;
  private sub?: Subscription;
  private readonly collapsing = new Map<string, Collapsing>();
  /**
   * What each (user, chat) holds that a withdrawal can still take out: its
   * open window, and earlier windows still fanning out, queued or retrying.
   * A withdrawal for a chat with none is dropped on this one lookup.
   */
  private readonly heldByChat = new Map<string, Set<Held>>();
  /**
   * The messages of closed windows, by "user:message", with when they are
   * forgotten (oldest first, as inserted). A record that comes again after
   * its window closed would otherwise open a window of its own and push the
   * same message a second time.
   */
  private readonly notified = new Map<string, { until: number; origin: Origin }>();
  /**
   * Each (user, chat)'s read mark, by "user:channel", for repeatWindowMs
   * after it last moved (the time a late request of a message already read
   * can still come, as a repeat can), least recently moved first, at most
   * READ_MARKS_MAX. Only consulted when a request comes: what is held is
   * taken out when the read comes.
   */
  private readonly readMarks = new Map<string, { seq: bigint; until: number }>();
  private readonly ready: Job[] = [];
  /**
   * Jobs waiting by host: in `ready`, or for a retry. A push service that
   * hangs takes its jobs one timeout at a time, one that rate-limits holds
   * them for its Retry-After, so under load they pile up; capped at half of
   * maxPending, its surplus is dropped (push is best effort) instead of
   * filling the memory bound and pausing consuming for every other service.
   */
  private readonly waitingByHost = new Map<string, number>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** Fan-outs waiting to read the endpoint store again (see pause). */
  private readonly pauses = new Set<() => void>();
  /**
   * The newest notification of each (device, chat) still being sent or
   * retried. An older one retried after it would replace it on the device
   * (same collapse key, and the service worker's tag): it is dropped instead,
   * as the push service would drop it, undelivered, for the newer.
   */
  private readonly newest = new Map<string, Job>();
  private readonly inflightByHost = new Map<string, number>();
  /**
   * Endpoints (host and address) that answered 429 or 503 with a Retry-After,
   * until it passes (by the monotonic clock; its timer ends the hold). Only the
   * retries of the notification told so waited for it, and a new notification's
   * first try to the same endpoint went on into the same refusal: held too, it
   * waits in `ready` and goes when the hold ends. FCM (QUOTA_EXCEEDED for one
   * device) and Web Push services limit single devices and subscriptions, so
   * one endpoint's 429 holds that endpoint alone.
   */
  private readonly heldEndpoints = new Map<string, { untilMs: number; timer: NodeJS.Timeout }>();
  /**
   * Hosts held as a whole: the service said it limits every send, by a 503
   * with a Retry-After, or by 429s from HOST_LIMITED_ENDPOINTS distinct
   * endpoints within HOST_LIMITED_WINDOW_MS with no delivery between (see
   * limitedBy). Their first tries would go on into the same refusal,
   * perHostConcurrency at a time: they wait in `ready` (waitingByHost caps them).
   */
  private readonly heldHosts = new Map<string, { untilMs: number; timer: NodeJS.Timeout }>();
  /** By host, the endpoints that answered 429 lately and when (by the monotonic clock), oldest first. */
  private readonly limitedByHost = new Map<string, Map<string, number>>();
  /** When each push service (host; for APNs, and app: serviceOf) last took a send, by the monotonic clock (SERVICE_PROVEN_MS). */
  private readonly deliveredByHost = new Map<string, number>();
  /**
   * The (device, chat)s a send is under way to. A newer notification waits
   * for it: sent beside it, the older one could reach the push service last
   * (a slow send, a connection still being set up) and replace the newer.
   */
  private readonly sending = new Set<string>();
  private readonly inflightJobs = new Set<Promise<void>>();
  private readonly flushing = new Set<Promise<void>>();
  /**
   * The last fan-out of each (user, chat) under way: the next window's waits
   * for it. Run side by side, an older window whose reads were slow (a store
   * retried with backoff) made its push after the newer one's, and it took
   * the newer's place on the device (same collapse key).
   */
  private readonly fanningOut = new Map<string, Promise<void>>();
  /** Retries due, asking again whether the user came online or the device signed out meanwhile. */
  private readonly rechecking = new Set<Promise<void>>();
  private inflight = 0;
  /**
   * Fan-outs reading the stores at most. Windows close together (a backlog
   * read at start, each batch opening hundreds): all reading at once went past
   * the Cassandra driver's 2,048 requests per connection, and a device whose
   * login check failed so got no push.
   */
  private readonly storeSlots = new Slots(FANOUTS_AT_ONCE);
  private roomWaiters: (() => void)[] = [];
  /** stop() was called: consume no more, start no retry, send what is held. */
  private draining = false;
  /** The drain is over: send nothing more. */
  private stopped = false;

  /**
   * Fails while every batch of requests fails, or every due notification's
   * fan-out (the endpoint store down): the requests are committed once held,
   * so a fan-out failing after it would otherwise go unseen.
   */
  readonly health: StageHealth;
  /** A store away fails the mutes read of every due notification: one warning for the outage, not one each. */
  private readonly mutesOutage: OutageLog;

  constructor(private readonly deps: NotifierDeps) {
    this.o = { ...defaultNotifierOptions, ...deps.options };
    this.health = new StageHealth("notifier", undefined, () => this.monotonicNow());
    this.mutesOutage = new OutageLog({
      logger: deps.logger,
      failed: "channel mutes unreadable: notifying anyway",
      failedAgain: "channel mutes still unreadable: notifying anyway",
      recovered: "channel mutes readable again",
    });
  }

  /** Joins the consumer group; after stop() (a SIGTERM at start-up) it joins none, and stop() waits for a join under way. */
  async start(): Promise<void> {
    if (this.draining) return;
    this.subscribing = this.deps.queue.subscribe(
      ConsumerGroups.notifier,
      Topics.notifications,
      (records, batch) => this.handle(records, batch),
      {
        onGiveUp: this.health.consumerStopped,
        onConsumerTrouble: this.health.consumerTrouble,
        // After the GROUP_JOIN's own commit has dropped (BatchContext.lost) what this member can no longer commit.
        onAssigned: (partitions) => void setImmediate(() => this.partitionsMoved(partitions)),
      },
    );
    this.sub = await this.subscribing;
  }

  private subscribing?: Promise<Subscription>;

  /**
   * Stops consuming, sends what it holds for up to drainMs (collapse windows
   * closed now, no retries), drops the rest, and waits for requests in flight
   * (bounded by the timeout).
   */
  async stop(): Promise<void> {
    if (this.draining) return this.stopping;
    this.draining = true;
    this.stopping = this.drainAndStop();
    return this.stopping;
  }

  private stopping: Promise<void> = Promise.resolve();

  private async drainAndStop(): Promise<void> {
    // sub.stop() waits for the batch in hand, whose handler may be waiting
    // for room that only a finished send would make: it must leave now (its
    // batch uncommitted, so it comes again).
    this.wakeWaiters();
    for (const wake of this.pauses) wake();
    // Stopped while joining: the subscription is stopped once it exists, not left to consume.
    const sub = this.sub ?? (await this.subscribing?.catch(() => undefined));
    await sub?.stop();
    const givenUp = this.retryTimers.size;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    this.waitingByHost.clear();
    for (const job of this.ready) this.waiting(job.host, 1);
    if (givenUp > 0) this.deps.logger?.info({ retries: givenUp }, "stopping: push retries waiting for their backoff given up");
    for (let i = 0; i < givenUp; i++) this.deps.onSkipped?.("stopped");
    for (const [key, c] of this.collapsing) {
      clearTimeout(c.timer);
      this.flush(key);
    }
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((r) => (timer = setTimeout(() => r("expired"), this.o.drainMs)));
    while (this.pending > 0) {
      if ((await Promise.race([new Promise<void>((r) => this.roomWaiters.push(r)), expired])) === "expired") break;
    }
    clearTimeout(timer);
    this.stopped = true;
    for (const holds of [this.heldHosts, this.heldEndpoints]) {
      for (const { timer: held } of holds.values()) clearTimeout(held);
      holds.clear();
    }
    this.limitedByHost.clear();
    if (this.ready.length > 0) this.deps.logger?.warn({ notifications: this.ready.length }, "stopping: pushes not sent within the drain time dropped");
    for (const job of this.ready) if (!job.superseded) this.deps.onSkipped?.("stopped");
    this.ready.length = 0;
    this.waitingByHost.clear();
    this.newest.clear();
    this.wakeWaiters();
    await Promise.all([...this.flushing, ...this.rechecking, ...this.inflightJobs]);
  }

  /** Notifications in memory: collapsing, queued, waiting to retry or in flight. */
  get pending(): number {
    return this.collapsing.size + this.flushing.size + this.rechecking.size + this.ready.length + this.retryTimers.size + this.inflight;
  }

  /** Resolves once nothing is pending (tests). */
  async idle(): Promise<void> {
    while (this.pending > 0) await new Promise((r) => setTimeout(r, 5));
  }

  private async handle(records: QueueRecord[], batch?: BatchContext): Promise<void> {
    const revoked = batch?.revoked;
    // Room first, then the whole batch at once: a batch left uncommitted by a stop comes again to
    // the next notifier, so none of it may have been held here, and sent by the drain, meanwhile.
    // So with one whose partition goes to another notifier while it waits (a rebalance): taken
    // now, its commit could come too late, and both would send it; and the group waits for it.
    while (this.pending >= this.o.maxPending && !this.draining && !revoked?.aborted) await this.room(revoked);
    // Both leave the batch uncommitted, and are no failure of the stage.
    if (this.draining) throw new Error("notifier stopping");
    if (revoked?.aborted) throw new Error("partition rebalancing: batch left to its next owner");
    return this.health.run(async () => this.take(records, batch?.lost));
  }

  /** Resolves when room may have been made, or `revoked` aborts. */
  private room(revoked?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        revoked?.removeEventListener("abort", wake);
        resolve();
      };
      this.roomWaiters.push(wake);
      revoked?.addEventListener("abort", wake, { once: true });
    });
  }

  private take(records: QueueRecord[], lost?: AbortSignal): void {
    for (const record of records) {
      let req: ReturnType<typeof decodeNotificationRecord>;
      try {
        req = decodeNotificationRecord(record.value);
      } catch (err) {
        // Retried, it would fail the same way for ever. Worded and counted as the pipeline stages'
        // skips (skippedRecords), so one log search and one alert find them all.
        this.deps.onRecordSkipped?.(record, err);
        this.deps.logger?.error(
          { err, stage: "notifier", topic: record.topic, partition: record.partition, offset: record.offset.toString(), bytes: record.value.length },
          "skipping an undecodable record",
        );
        continue;
      }
      if ("withdrawal" in req) {
        this.withdraw(req.userId, req.withdrawal);
        continue;
      }
      if ("edit" in req) {
        this.edit(req.userId, req.edit, req.mentioned);
        continue;
      }
      if ("read" in req) {
        this.read(req.userId, req.read.channelId, req.read.seq);
        continue;
      }
      // Past the time a push service would hold it, a notification is noise: a backlog after a long
      // outage, or the topic read from its beginning by a notifier group's first start, stays quiet.
      if (this.now() - req.message.sentAtMs > this.o.ttlSeconds * 1000) {
        this.deps.onSkipped?.("expired");
        continue;
      }
      this.accept(req, lost, record.partition);
    }
  }

  /**
   * A rebalance left this notifier with `assigned`: the collapse windows it
   * holds of a partition that moved close now. Their records are committed,
   * so only this notifier can send them, and the changes that come after
   * (a delete, an edit, a read) go to the partition's new owner, which holds
   * nothing to take them out of: held on until the window closed, a push went
   * out for a message deleted or read meanwhile. One of a batch whose commit
   * was in flight at the rebalance may go before its `lost` aborts, and so
   * twice: the new owner reads it again (documented; the queue tells no
   * commit's end to wait for).
   */
  private partitionsMoved(assigned: readonly number[]): void {
    if (this.draining) return;
    const kept = new Set(assigned);
    for (const [key, c] of this.collapsing) {
      if (![...c.held.origin.partitions].some((p) => !kept.has(p))) continue;
      clearTimeout(c.timer);
      this.flush(key);
    }
  }

  /** Takes one request into its (user, channel) collapse window; `lost`: its batch's (BatchContext); `partition`: its record's. */
  accept(req: NotificationRequest, lost?: AbortSignal, partition?: number): void {
    // A reaction taken back handed on as a request (by a pipeline built before withdrawals) is one.
    if (req.message.reaction && req.message.text === "") return this.withdraw(req.userId, req.message);
    if (req.message.senderUserId === req.userId) return;
    // No message is sent empty: this is an inbox copy emptied by a delete for everyone, which a
    // batch the inbox writer handles again hands on. Deletes are never pushed, nor is nothing.
    if (!req.message.reaction && (req.message.deleted === true || req.message.text.trim() === "")) {
      this.deps.onSkipped?.("deleted");
      return;
    }
    // Read (on another device, or just before the user went offline) before its request came: the
    // read mark's producer is not ordered with the pipeline's requests.
    if (readCovers(this.readMark(`${req.userId}:${req.message.channelId}`), req)) {
      this.deps.onSkipped?.("read");
      return;
    }
    this.forgetNotified();
    const notified = this.notified.get(`${req.userId}:${req.message.messageId}`);
    // Unless its batch went back to the queue unsent: this is that batch again (the partition came back here).
    if (notified && (notified.origin.sent || !notified.origin.reassigned)) return;
    const key = `${req.userId}:${req.message.channelId}`;
    let c = this.collapsing.get(key);
    if (c?.held.origin.reassigned) {
      clearTimeout(c.timer);
      this.collapsing.delete(key);
      this.release(c.held);
      this.deps.onSkipped?.("reassigned");
      this.wakeWaiters();
      c = undefined;
    }
    if (c) {
      if (lost && !c.held.origin.batches.includes(lost)) c.held.origin.batches.push(lost);
      if (partition !== undefined) c.held.origin.partitions.add(partition);
      // A mention among the collapsed messages still reaches through a mute.
      if (!c.held.requests.has(req.message.messageId)) c.held.add(req);
      return;
    }
    const timer = setTimeout(() => this.flush(key), this.o.collapseWindowMs);
    const held = new Held(key, req, new Origin(lost ? [lost] : []));
    if (partition !== undefined) held.origin.partitions.add(partition);
    this.collapsing.set(key, { held, timer });
    const ofChat = this.heldByChat.get(key);
    if (ofChat) ofChat.add(held);
    else this.heldByChat.set(key, new Set([held]));
  }

  /**
   * A delete, or a reaction taken back: the chat's pushes not sent yet leave
   * out what it withdraws and send the rest; one left with nothing is
   * dropped (counted as "deleted"). A push already sent stays.
   */
  private withdraw(userId: Id, change: StoredMessage): void {
    this.takeOut(userId, change.channelId, (req) => withdraws(change, req), "deleted");
  }

  /**
   * The user read the chat up to `seq` (a read receipt, MarkRead, on any
   * device): the pushes not sent yet of messages up to it are taken out as a
   * delete takes them, and a request for one that comes later (the read's
   * producer is not ordered with the pipeline) is dropped while the mark is
   * kept. The mark only moves forward: an older read that comes after a
   * newer one changes nothing.
   */
  private read(userId: Id, channelId: Id, seq: bigint): void {
    const key = `${userId}:${channelId}`;
    const mark = this.readMark(key);
    if (mark !== undefined && mark >= seq) return;
    // Re-inserted, so the map stays oldest first and the bound forgets the least recently read.
    this.readMarks.delete(key);
    this.readMarks.set(key, { seq, until: this.monotonicNow() + this.o.repeatWindowMs });
    this.forgetReadMarks();
    this.takeOut(userId, channelId, (req) => readCovers(seq, req), "read");
  }

  /** The user's read mark of the chat ("user:channel") while kept. */
  private readMark(key: string): bigint | undefined {
    const mark = this.readMarks.get(key);
    if (mark === undefined) return undefined;
    if (mark.until > this.monotonicNow()) return mark.seq;
    this.readMarks.delete(key);
    return undefined;
  }

  private forgetReadMarks(): void {
    const now = this.monotonicNow();
    for (const [key, { until }] of this.readMarks) {
      if (until > now && this.readMarks.size <= READ_MARKS_MAX) break;
      this.readMarks.delete(key);
    }
  }

  /** Takes what `out` names out of what the chat holds unsent; a push left with nothing is dropped (counted as `by`). */
  private takeOut(userId: Id, channelId: Id, out: (req: NotificationRequest) => boolean, by: "deleted" | "read"): void {
    const key = `${userId}:${channelId}`;
    const ofChat = this.heldByChat.get(key);
    if (!ofChat) return;
    for (const held of ofChat) {
      const gone = held.takeOut(out, by);
      if (gone.length === 0) continue;
      // A record of it that comes again (a batch published again) is not pushed either.
      this.forgetNotified();
      const until = this.monotonicNow() + this.o.repeatWindowMs;
      for (const messageId of gone) this.notified.set(`${userId}:${messageId}`, { until, origin: held.origin });
      if (held.requests.size > 0) continue;
      const c = this.collapsing.get(key);
      if (c?.held === held) {
        clearTimeout(c.timer);
        this.collapsing.delete(key);
        this.release(held);
        this.deps.onSkipped?.(by);
      }
      // A fan-out under way, a job queued or asking again see it themselves; a retry waiting is
      // given up now rather than hold its place for its backoff. Each such job is the newest of its
      // device's chat (a newer one superseded it, and stopped its timer).
      if (held.refs === 0) continue;
      for (const job of this.newest.values()) {
        if (job.held !== held || !job.retryTimer || !this.retryTimers.delete(job.retryTimer)) continue;
        clearTimeout(job.retryTimer);
        job.retryTimer = undefined;
        this.waiting(job.host, -1);
        this.finished(job);
        this.deps.onSkipped?.(by);
      }
    }
    this.pump();
    this.wakeWaiters();
  }

  /**
   * An edit: the chat's pushes not sent yet that tell of the message go with
   * its new text (a job rebuilds its notification when it is next taken from
   * the queue: a retry's after its backoff). A push already sent stays; an
   * edit of a message nothing holds (the usual case) is dropped on one lookup.
   * Whether it names the user follows the edited text, as the record tells
   * (one by a pipeline built before it does not: as the message first said).
   */
  private edit(userId: Id, change: StoredMessage, mentioned?: boolean): void {
    const ofChat = this.heldByChat.get(`${userId}:${change.channelId}`);
    if (!ofChat) return;
    for (const held of ofChat) held.edit(change, mentioned);
  }

  /** One less use of `held` (its window, or a job); unused, a withdrawal no longer looks at it. */
  private release(held: Held): void {
    if (--held.refs > 0) return;
    const ofChat = this.heldByChat.get(held.key);
    ofChat?.delete(held);
    if (ofChat?.size === 0) this.heldByChat.delete(held.key);
  }

  private flush(key: string): void {
    const c = this.collapsing.get(key);
    if (!c) return;
    const { held } = c;
    if (held.origin.reassigned) {
      this.collapsing.delete(key);
      this.release(held);
      this.deps.onSkipped?.("reassigned");
      this.wakeWaiters();
      return;
    }
    // Monotonic: a wall clock stepped forward past the window forgot every message notified, and a record that came again was pushed twice.
    const until = this.monotonicNow() + this.o.repeatWindowMs;
    for (const messageId of held.requests.keys()) this.notified.set(`${held.latest.userId}:${messageId}`, { until, origin: held.origin });
    this.forgetNotified();
    const fanOut = () => this.health.run(() => this.fanOut(held));
    const before = this.fanningOut.get(key);
    const p = (before ? before.then(fanOut) : fanOut())
      .catch((err) => this.deps.logger?.warn({ err, userId: String(held.latest.userId) }, "push notification failed"))
      .finally(() => {
        this.flushing.delete(p);
        if (this.fanningOut.get(key) === p) this.fanningOut.delete(key);
        this.release(held);
        this.wakeWaiters();
      });
    this.flushing.add(p);
    this.fanningOut.set(key, p);
    this.collapsing.delete(key);
  }

  /** Fans out in a store slot; a wait to read the endpoints again holds none. */
  private async fanOut(held: Held): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.storeSlots.run(() => this.fanOutOnce(held, attempt));
      if (outcome !== "again") return;
      if (!(await this.pause(this.backoff(attempt)))) return this.deps.onSkipped?.("stopped");
    }
  }

  /** "again" when the endpoints could not be read and may be asked for again after a backoff. */
  private async fanOutOnce(held: Held, attempt: number): Promise<"again" | void> {
    if (this.stopped) return;
    const skipped = (reason: SkipReason) => this.deps.onSkipped?.(reason);
    // Every message of it deleted (or reaction taken back) while it waited for a store slot.
    if (held.requests.size === 0) return skipped(held.emptiedBy);
    const req = held.latest;
    const { origin } = held;
    if (this.deps.isOnline && (await this.deps.isOnline(req.userId))) return skipped("online");
    if (!req.mentioned && (await this.channelMuted(req.userId, req.message.channelId))) return skipped("channel_muted");
    let endpoints: PushEndpoint[];
    try {
      endpoints = await this.deps.endpoints.listForUser(req.userId);
    } catch (err) {
      // Nothing is under way yet, so all of it can go again, asked anew (online, muted): its record
      // is committed, and a store away for seconds (a node restarting) cost every push due meanwhile.
      if (attempt >= this.o.maxAttempts || this.draining) throw err;
      // A failure all the same, for the stall clock of /healthz.
      await this.health.run(() => Promise.reject(err)).catch(() => {});
      this.deps.logger?.debug({ err, attempt }, "push endpoints unreadable: trying again");
      return "again";
    }
    if (endpoints.length === 0) skipped("no_endpoint");
    // A device whose login cannot be checked gets nothing (it may be logged
    // out), the others theirs; the failure is thrown once they are under way.
    let failure: unknown;
    let withdrawn = false;
    for (const endpoint of endpoints) {
      if (endpoint.muted) {
        skipped("muted");
        continue;
      }
      if (!this.deps.providers[endpoint.kind]) {
        skipped("no_provider");
        continue;
      }
      try {
        if (this.deps.isDeviceActive && !(await this.deps.isDeviceActive(endpoint.userId, endpoint.deviceId))) {
          await this.deps.endpoints
            .removeIfAddress(endpoint.userId, endpoint.deviceId, endpoint.address)
            .catch((err) => this.deps.logger?.warn({ err }, "could not remove a logged-out device's endpoint"));
          skipped("revoked_device");
          continue;
        }
      } catch (err) {
        failure ??= err;
        continue;
      }
      // Withdrawn while the stores were read: what is left, as it is now.
      if (held.requests.size === 0) {
        withdrawn = true;
        break;
      }
      const { latest } = held;
      const versions = held.versions(this.o.ttlSeconds);
      const notification = endpoint.hidePreview ? versions.noPreview : versions.preview;
      const job: Job = {
        endpoint,
        origin,
        held,
        heldVersion: held.version,
        notification,
        channelId: latest.message.channelId,
        sentAtMs: latest.message.sentAtMs,
        versions,
        attempt: 1,
        host: hostOf(endpoint),
      };
      if (!this.hasRoomFor(job.host)) {
        skipped("backlog");
        continue;
      }
      held.refs++;
      this.supersede(job);
      this.enqueue(job);
    }
    if (withdrawn) skipped(held.emptiedBy);
    this.pump();
    if (failure !== undefined) throw failure;
  }

  /** Fails open: a mute that cannot be read costs a push too many, not a message nobody hears about. */
  private async channelMuted(userId: Id, channelId: Id): Promise<boolean> {
    if (!this.deps.channelMutedUntil) return false;
    try {
      const until = await this.deps.channelMutedUntil(userId, channelId);
      this.mutesOutage.succeeded();
      return until !== undefined && until > this.now();
    } catch (err) {
      this.mutesOutage.failed(err);
      return false;
    }
  }

  /** Resolves true after `ms`, or false at once when stop() begins (or began). */
  private pause(ms: number): Promise<boolean> {
    if (this.draining) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.pauses.delete(wake);
        resolve(false);
      };
      const t = setTimeout(() => {
        this.pauses.delete(wake);
        resolve(true);
      }, ms);
      this.pauses.add(wake);
    });
  }

  /** Makes `job` the newest of its (device, chat); an older one not yet sent for good is given up. */
  private supersede(job: Job): void {
    const key = newestKey(job);
    const older = this.newest.get(key);
    this.newest.set(key, job);
    if (!older) return;
    older.superseded = true;
    if (older.retryTimer && this.retryTimers.delete(older.retryTimer)) {
      clearTimeout(older.retryTimer);
      this.finished(older);
      this.waiting(older.host, -1);
      this.deps.onSkipped?.("superseded");
      this.wakeWaiters();
    }
  }

  /** The job is done with (sent, given up, skipped): it no longer supersedes anything, nor holds its messages for a withdrawal. */
  private finished(job: Job): void {
    const key = newestKey(job);
    if (this.newest.get(key) === job) this.newest.delete(key);
    this.release(job.held);
  }

  /** The job's notification made again from what a withdrawal left; false when it left nothing. */
  private rebuilt(job: Job): boolean {
    const { held } = job;
    if (held.requests.size === 0) return false;
    job.versions = held.versions(this.o.ttlSeconds);
    job.notification = job.endpoint.hidePreview ? job.versions.noPreview : job.versions.preview;
    job.sentAtMs = held.latest.message.sentAtMs;
    job.heldVersion = held.version;
    return true;
  }

  private hasRoomFor(host: string): boolean {
    return (this.waitingByHost.get(host) ?? 0) < Math.max(1, Math.floor(this.o.maxPending / 2));
  }

  private waiting(host: string, by: 1 | -1): void {
    const n = (this.waitingByHost.get(host) ?? 0) + by;
    if (n > 0) this.waitingByHost.set(host, n);
    else this.waitingByHost.delete(host);
  }

  /** `first`: back to the head of the queue, the place it had (a job asked again after waiting). */
  private enqueue(job: Job, first = false): void {
    job.readyAtMs = this.monotonicNow();
    if (first) this.ready.unshift(job);
    else this.ready.push(job);
    this.waiting(job.host, 1);
  }

  private dequeue(i: number): void {
    const [job] = this.ready.splice(i, 1);
    this.waiting(job!.host, -1);
  }

  /** Starts ready jobs while there are free slots, overall and for their host. */
  private pump(): void {
    for (let i = 0; i < this.ready.length && this.inflight < this.o.concurrency && !this.stopped; ) {
      const job = this.ready[i]!;
      if (job.superseded) {
        this.dequeue(i);
        this.finished(job);
        this.deps.onSkipped?.("superseded");
        continue;
      }
      // Checked at each send, a retry's too: the consumer may have learnt only since.
      if (job.origin.reassigned) {
        this.dequeue(i);
        this.finished(job);
        this.deps.onSkipped?.("reassigned");
        continue;
      }
      // A message of it deleted (or a reaction taken back) since it was made: the rest goes.
      if (job.heldVersion !== job.held.version && !this.rebuilt(job)) {
        this.dequeue(i);
        this.finished(job);
        this.deps.onSkipped?.(job.held.emptiedBy);
        continue;
      }
      const hostLoad = this.inflightByHost.get(job.host) ?? 0;
      const key = newestKey(job);
      if (hostLoad >= this.o.perHostConcurrency || this.sending.has(key) || this.heldHosts.has(job.host) || this.heldEndpoints.has(endpointKeyOf(job))) {
        i++;
        continue;
      }
      this.dequeue(i);
      if (this.monotonicNow() - (job.readyAtMs ?? 0) > STALE_READY_MS) {
        this.askAgain(job, job, true);
        continue;
      }
      this.inflight++;
      this.inflightByHost.set(job.host, hostLoad + 1);
      this.sending.add(key);
      const p = this.run(job).finally(() => {
        this.sending.delete(key);
        this.inflight--;
        const n = (this.inflightByHost.get(job.host) ?? 1) - 1;
        if (n > 0) this.inflightByHost.set(job.host, n);
        else this.inflightByHost.delete(job.host);
        this.inflightJobs.delete(p);
        // Pumped first: the jobs it gives up (superseded, reassigned) make room too, and a batch
        // waiting for room hears of it only here when no send is left to end.
        this.pump();
        this.wakeWaiters();
      });
      this.inflightJobs.add(p);
    }
  }

  private async run(job: Job): Promise<void> {
    const provider = this.deps.providers[job.endpoint.kind]!;
    // A whole TTL from each send (a backlog's, a retry's) kept a message on a device's way for up
    // to twice the TTL after it was sent, past the age at which take() calls it noise.
    // Past it (a retry near the end), 0: delivered only to a device reachable at once, not held.
    const ttlLeft = Math.max(0, Math.min(this.o.ttlSeconds, Math.floor((job.sentAtMs + this.o.ttlSeconds * 1000 - this.now()) / 1000)));
    const notification = ttlLeft === job.notification.ttlSeconds ? job.notification : { ...job.notification, ttlSeconds: ttlLeft };
    let outcome: SendOutcome;
    try {
      outcome = await provider.send(job.endpoint, notification, this.o.timeoutMs);
    } catch (err) {
      outcome = { ok: false, gone: false, retryable: true, reason: String(err) };
    }
    if (!outcome.ok && outcome.retryAfterMs !== undefined && (outcome.status === 429 || outcome.status === 503)) this.rateLimited(job, outcome.status, outcome.retryAfterMs);
    let action: SendResult["action"];
    /** Gone by the service's word, but registered again after the time it says it went (APNs's timestamp). */
    let registeredSince = false;
    if (outcome.ok) {
      action = "delivered";
      job.origin.sent = true;
    } else if (outcome.gone) {
      const { userId, deviceId, address, updatedAtMs } = job.endpoint;
      // A registration after it is the app's again (a token given back after APNs called it inactive):
      // kept, and the failure counted, so a token that stays dead still goes after failingRemoveAfterMs.
      registeredSince = outcome.goneSinceMs !== undefined && updatedAtMs > outcome.goneSinceMs;
      // Only the registration this send used: the same address registered again meanwhile (an APNs
      // token the app got back after APNs called it inactive, a subscription renewed) is a live one.
      const removed =
        !registeredSince &&
        (await this.deps.endpoints
          .removeIfAddress(userId, deviceId, address, { updatedAtMs })
          .catch((err) => void this.deps.logger?.warn({ err }, "could not remove a dead endpoint")));
      action = removed ? "removed" : "dropped";
    } else if (outcome.retryable && job.attempt < this.o.maxAttempts && !this.draining && !job.superseded && this.hasRoomFor(job.host)) {
      action = "retry";
      const delay = this.backoff(job.attempt, outcome.retryAfterMs);
      const t = setTimeout(() => {
        this.retryTimers.delete(t);
        this.waiting(job.host, -1);
        job.retryTimer = undefined;
        this.askAgain(job, { ...job, attempt: job.attempt + 1 }, false);
      }, delay);
      this.retryTimers.add(t);
      this.waiting(job.host, 1);
      job.retryTimer = t;
    } else action = "dropped";
    if (outcome.ok) {
      // The host takes sends: the 429s counted so far were of single endpoints.
      this.limitedByHost.delete(job.host);
      // Newest last, the oldest forgotten past PROVEN_HOSTS_MAX (Web Push hosts are any public one).
      this.deliveredByHost.delete(serviceOf(job));
      this.deliveredByHost.set(serviceOf(job), this.monotonicNow());
      if (this.deliveredByHost.size > PROVEN_HOSTS_MAX) this.deliveredByHost.delete(this.deliveredByHost.keys().next().value!);
      if (job.endpoint.failingSinceMs !== undefined) await this.failing(job, "clear");
    } else if (action === "dropped" && (!outcome.gone || registeredSince) && !outcome.goneUnconfirmed && !outcome.ours && (!outcome.retryable || job.attempt >= this.o.maxAttempts) && this.serviceProven(serviceOf(job))) {
      // Only the push service's last word counts: a retry we gave up (stopping, a newer push of the chat, no room) might have gone through;
      // and a failure of ours (our credentials, our network) says nothing of the endpoint.
      action = await this.failing(job, "failed");
    }
    if (action !== "retry") this.finished(job);
    if (!outcome.ok && outcome.goneUnconfirmed) {
      this.deps.logger?.warn(
        { userId: String(job.endpoint.userId), deviceId: String(job.endpoint.deviceId), kind: job.endpoint.kind, reason: outcome.reason },
        "push service calls the endpoint dead before any push went through since start: endpoint kept (check the push service's environment and topic)",
      );
    } else if (!outcome.ok) {
      this.deps.logger?.[action === "retry" ? "debug" : "info"](
        { userId: String(job.endpoint.userId), deviceId: String(job.endpoint.deviceId), kind: job.endpoint.kind, attempt: job.attempt, reason: outcome.reason, action },
        "push not delivered",
      );
    }
    this.deps.onResult?.({ endpoint: job.endpoint, notification: job.notification, attempt: job.attempt, outcome, action });
  }

  /**
   * Keeps the endpoint's failing streak: cleared by a delivery; started by a
   * failure (one that no retry follows), each counted; and past
   * failingRemoveAfterMs of nothing but failures, FAILING_REMOVE_MIN_SENDS of
   * them at least, the endpoint is removed, "removed". A 403 or 400
   * that never changes, or a host that always times out, was otherwise tried
   * at every notification for good.
   */
  private async failing(job: Job, what: "clear" | "failed"): Promise<SendResult["action"]> {
    const { userId, deviceId, address, updatedAtMs, failingSinceMs, failedSends } = job.endpoint;
    const at = this.now();
    try {
      if (what === "clear") await this.deps.endpoints.clearFailing(userId, deviceId, address);
      else if (failingSinceMs === undefined) await this.deps.endpoints.markFailing(userId, deviceId, address, at);
      // This failure is one more than the streak's read at fan-out (none, or one, by a build before the count).
      else if (at - failingSinceMs >= this.o.failingRemoveAfterMs && (failedSends ?? 1) + 1 >= FAILING_REMOVE_MIN_SENDS) {
        // Only while still failing since then: read at fan-out, the streak may have been ended since
        // (a delivery beside this send, a registration again), and this failure then starts a new one.
        if (await this.deps.endpoints.removeIfAddress(userId, deviceId, address, { updatedAtMs, failingSinceMs })) {
          this.deps.logger?.info(
            { userId: String(userId), deviceId: String(deviceId), kind: job.endpoint.kind, failingSinceMs },
            "push endpoint removed: every send to it failed for too long",
          );
          return "removed";
        }
        await this.deps.endpoints.markFailing(userId, deviceId, address, at);
      } else await this.deps.endpoints.markFailing(userId, deviceId, address, at);
    } catch (err) {
      this.deps.logger?.warn({ err }, "could not keep a push endpoint's failing streak");
    }
    return "dropped";
  }

  /**
   * A 429 or 503 with a Retry-After: the endpoint's sends wait for it; the
   * whole host's only when the service limits itself (see heldHosts).
   */
  private rateLimited(job: Job, status: 429 | 503, retryAfterMs: number): void {
    this.hold(this.heldEndpoints, endpointKeyOf(job), retryAfterMs);
    if (status === 503) return this.hold(this.heldHosts, job.host, retryAfterMs);
    const now = this.monotonicNow();
    let limited = this.limitedByHost.get(job.host);
    if (!limited) {
      limited = new Map();
      this.limitedByHost.set(job.host, limited);
      // Web Push hosts are any public one: the oldest forgotten past PROVEN_HOSTS_MAX.
      if (this.limitedByHost.size > PROVEN_HOSTS_MAX) this.limitedByHost.delete(this.limitedByHost.keys().next().value!);
    }
    limited.delete(endpointKeyOf(job));
    limited.set(endpointKeyOf(job), now);
    for (const [key, at] of limited) {
      if (now - at <= HOST_LIMITED_WINDOW_MS) break;
      limited.delete(key);
    }
    if (limited.size < HOST_LIMITED_ENDPOINTS) return;
    this.limitedByHost.delete(job.host);
    this.hold(this.heldHosts, job.host, retryAfterMs);
  }

  /** Holds every send to `key` of `holds` for its Retry-After (RETRY_AFTER_MAX_MS at most), or for the longer hold it has already. */
  private hold(holds: Map<string, { untilMs: number; timer: NodeJS.Timeout }>, key: string, retryAfterMs: number): void {
    const ms = Math.min(RETRY_AFTER_MAX_MS, retryAfterMs);
    if (ms <= 0 || this.stopped) return;
    const untilMs = this.monotonicNow() + ms;
    const held = holds.get(key);
    if (held && held.untilMs >= untilMs) return;
    if (held) clearTimeout(held.timer);
    const timer = setTimeout(() => {
      holds.delete(key);
      this.pump();
    }, ms);
    holds.set(key, { untilMs, timer });
  }

  /** Whether the push service took a send to some endpoint lately (SERVICE_PROVEN_MS). */
  private serviceProven(host: string): boolean {
    const at = this.deliveredByHost.get(host);
    return at !== undefined && this.monotonicNow() - at <= SERVICE_PROVEN_MS;
  }

  /** Asks whether `job` is still due and queues `next` (back at the head when `first`) if it is. */
  private askAgain(job: Job, next: Job, first: boolean): void {
    // In turn with the fan-outs: the first tries that waited behind a slow host go stale together.
    // However it ends (queued again, or skipped: its user came online, its device signed out), it
    // leaves room that a batch may be waiting for.
    const p = this.storeSlots
      .run(() => this.stillDue(job, next, first))
      .finally(() => {
        this.rechecking.delete(p);
        this.wakeWaiters();
      });
    this.rechecking.add(p);
  }

  /**
   * A retry comes up to minutes after the first try, and a first try can
   * wait that long behind a slow push service: the user may have come
   * online (the live session has it), muted the chat (a mention still
   * goes), the device signed out, or changed its push settings since (no
   * preview: a retry must not show the text it asked to hide; muted;
   * unsubscribed or subscribed anew). When that cannot be read, the push goes
   * as it was.
   */
  private async stillDue(job: Job, next: Job, first: boolean): Promise<void> {
    const { userId, deviceId } = job.endpoint;
    const skipped = (reason: SkipReason) => {
      this.finished(job);
      this.deps.onSkipped?.(reason);
    };
    // Everything it told of deleted meanwhile: nothing to ask about.
    if (job.held.requests.size === 0) return skipped(job.held.emptiedBy);
    try {
      if (this.deps.isOnline && (await this.deps.isOnline(userId))) return skipped("online");
      // As its messages read now: an edit or a delete since it was made may have taken the mention out.
      if (job.held.latest.mentioned !== true && (await this.channelMuted(userId, job.channelId))) return skipped("channel_muted");
      if (this.deps.isDeviceActive && !(await this.deps.isDeviceActive(userId, deviceId))) {
        // As a first try does: kept, it would be read and asked about at every later notification.
        await this.deps.endpoints
          .removeIfAddress(userId, deviceId, job.endpoint.address)
          .catch((err) => this.deps.logger?.warn({ err }, "could not remove a logged-out device's endpoint"));
        return skipped("revoked_device");
      }
      const endpoint = await this.deps.endpoints.get(userId, deviceId);
      if (!endpoint) return skipped("no_endpoint");
      if (endpoint.muted) return skipped("muted");
      if (!this.deps.providers[endpoint.kind]) return skipped("no_provider");
      const notification = endpoint.hidePreview ? job.versions.noPreview : job.versions.preview;
      next = { ...next, endpoint, notification, host: hostOf(endpoint) };
    } catch (err) {
      this.deps.logger?.warn({ err }, "cannot tell whether a push that waited is still due: sending it");
    }
    if (this.stopped) return;
    // A newer notification of the chat came while this one asked.
    if (job.superseded) return skipped("superseded");
    if (!this.hasRoomFor(next.host)) return skipped("backlog");
    if (this.newest.get(newestKey(job)) === job) this.newest.set(newestKey(job), next);
    this.enqueue(next, first);
    this.pump();
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  private monotonicNow(): number {
    return (this.deps.monotonicNow ?? this.deps.now ?? monotonicNow)();
  }

  /** Forgets the notified messages past their repeat window, and the oldest beyond NOTIFIED_MAX. */
  private forgetNotified(): void {
    const now = this.monotonicNow();
    for (const [key, { until }] of this.notified) {
      if (until > now && this.notified.size <= NOTIFIED_MAX) break;
      this.notified.delete(key);
    }
  }

  private backoff(attempt: number, retryAfterMs?: number): number {
    const exp = Math.min(this.o.backoffMaxMs, this.o.backoffBaseMs * 2 ** (attempt - 1));
    const jittered = exp / 2 + Math.random() * (exp / 2);
    return Math.max(jittered, Math.min(RETRY_AFTER_MAX_MS, retryAfterMs ?? 0));
  }

  private wakeWaiters(): void {
    if (this.pending >= this.o.maxPending && !this.draining) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Whether `a` is the later of two events of a channel: by seq, which a record
 * that came again or out of order cannot undo; a change (a reaction) has none
 * (seq 0), so against one the times the events were made say it.
 */
function isNewer(a: NotificationRequest, b: NotificationRequest): boolean {
  if (a.message.seq === 0n || b.message.seq === 0n) return a.message.sentAtMs >= b.message.sentAtMs;
  return a.message.seq >= b.message.seq;
}

/**
 * Whether `change` withdraws `req`'s push: a delete, of its message or of the
 * message it reacts to; a reaction taken back, of that reactor's reaction to
 * the same message (one they replaced too).
 */
/**
 * Whether a read mark covers `req`'s push: a message (not a change, a
 * reaction having no seq of its own) at or below the seq read.
 */
function readCovers(readSeq: bigint | undefined, req: NotificationRequest): boolean {
  const m = req.message;
  return readSeq !== undefined && m.seq > 0n && (m.targetSeq === undefined || m.targetSeq === 0n) && m.seq <= readSeq;
}

function withdraws(change: StoredMessage, req: NotificationRequest): boolean {
  const m = req.message;
  if (m.channelId !== change.channelId) return false;
  if (m.reaction) return m.targetSeq === change.targetSeq && (change.deleted === true || m.senderUserId === change.senderUserId);
  return change.deleted === true && m.seq === change.targetSeq;
}

/** One device, one chat: what a newer notification replaces. */
function newestKey(job: Job): string {
  return `${job.endpoint.userId}:${job.endpoint.deviceId}:${job.notification.collapseKey}`;
}

/**
 * What a failed send's answer is weighed against (SERVICE_PROVEN_MS): its host, and for APNs
 * the app (topic) too, since our settings can be wrong for one app alone (a key not entitled
 * to its topic: TopicDisallowed for every one of its devices while the other app's deliver).
 */
function serviceOf(job: Job): string {
  return job.endpoint.kind === "apns" ? `${job.host}:${job.endpoint.apnsTopic}` : job.host;
}

/** One endpoint as its push service knows it: a device registered again at another address is another. */
function endpointKeyOf(job: Job): string {
  return `${job.host} ${job.endpoint.address}`;
}

function hostOf(e: PushEndpoint): string {
  if (e.kind !== "web_push") return e.kind;
  try {
    return `web_push:${new URL(e.address).host}`;
  } catch {
    return "web_push:?";
  }
}

/**
 * What the user sees: sender (and group), the newest text unless previews
 * are hidden; for a reaction to the user's message, the emoji (`type`
 * "reaction", `targetSeq` the message reacted to).
 */
export function buildNotification(req: NotificationRequest, count: number, hidePreview: boolean, ttlSeconds: number): PushNotification {
  const m = req.message;
  const reaction = m.reaction === true;
  const title = req.channelTitle ? `${req.senderName} in ${req.channelTitle}` : req.senderName;
  const latest = reaction ? `Reacted ${m.text} to your message` : preview(m.text);
  let body: string;
  if (hidePreview) body = count > 1 ? `${count} new messages` : reaction ? "New reaction" : "New message";
  else body = count > 1 ? `${count} new messages, the latest: ${latest}` : latest;
  return {
    collapseKey: `c${m.channelId}`,
    title,
    body,
    ttlSeconds,
    data: {
      type: reaction ? "reaction" : "message",
      channelId: String(m.channelId),
      messageId: String(m.messageId),
      seq: String(m.seq),
      senderUserId: String(m.senderUserId),
      senderName: req.senderName,
      channelTitle: req.channelTitle,
      count: String(count),
      ...(req.mentioned ? { mentioned: "true" } : {}),
      ...(reaction ? { targetSeq: String(m.targetSeq ?? 0n) } : {}),
    },
  };
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

function preview(text: string): string {
  const t = text.replace(/\s+/g, " ").trim();
  const cps = [...t];
  if (cps.length <= PREVIEW_CODE_POINTS) return t;
  // Cut where a character the reader sees ends: by code points, a flag showed as a lone letter,
  // a family as one person and a joiner, an accented letter bare. Only a first character longer
  // than the whole budget (a pile of combining marks) is cut inside.
  let kept = 0;
  let end = 0;
  for (const { segment, index } of graphemes.segment(cps.slice(0, PREVIEW_CODE_POINTS).join(""))) {
    const n = [...segment].length;
    if (kept + n > PREVIEW_CODE_POINTS - 1) break;
    kept += n;
    end = index + segment.length;
  }
  return `${end > 0 ? t.slice(0, end) : cps.slice(0, PREVIEW_CODE_POINTS - 1).join("")}…`;
}
