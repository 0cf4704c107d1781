import type { StageHealth } from "../observability/stage-health.js";
import { ConsumerGroups, Topics } from "../pipeline/topics.js";
import type { BatchContext, QueueRecord, Subscription } from "../queue/port.js";
import { CollapseWindows } from "./collapse-windows.js";
import { FanOuts } from "./fan-out.js";
import { HeldByChat } from "./held.js";
import { NotifierContext } from "./notifier-context.js";
import type { NotifierDeps } from "./notifier-options.js";
import { decodeNotificationRecord, type NotificationRequest } from "./records.js";
import { Sender } from "./sender.js";

export { buildNotification } from "./notification-content.js";
export { defaultNotifierOptions, type NotifierDeps, type NotifierOptions } from "./notifier-options.js";
export { SEND_ACTIONS, SKIP_REASONS, type SendAction, type SendResult, type SkipReason } from "./notifier-reports.js";

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
 *
 * It coordinates its parts: the collapse windows (CollapseWindows), which
 * close into fan-outs (FanOuts), which make jobs for the Sender.
 */
export class Notifier {
  private readonly c: NotifierContext;
  private readonly windows: CollapseWindows;
  private readonly fanOuts: FanOuts;
  private readonly sender: Sender;
  private sub?: Subscription;
  private subscribing?: Promise<Subscription>;
  private stopping: Promise<void> = Promise.resolve();
  private roomWaiters: (() => void)[] = [];

  /**
   * Fails while every batch of requests fails, or every due notification's
   * fan-out (the endpoint store down): the requests are committed once held,
   * so a fan-out failing after it would otherwise go unseen.
   */
  readonly health: StageHealth;

  constructor(deps: NotifierDeps) {
    this.c = new NotifierContext(deps, () => this.wakeWaiters());
    this.health = this.c.health;
    const heldByChat = new HeldByChat();
    this.sender = new Sender(this.c, heldByChat);
    this.fanOuts = new FanOuts(this.c, heldByChat, this.sender);
    this.windows = new CollapseWindows(this.c, heldByChat, this.fanOuts, this.sender);
  }

  /** Joins the consumer group; after stop() (a SIGTERM at start-up) it joins none, and stop() waits for a join under way. */
  async start(): Promise<void> {
    if (this.c.draining) return;
    this.subscribing = this.c.deps.queue.subscribe(
      ConsumerGroups.notifier,
      Topics.notifications,
      (records, batch) => this.handle(records, batch),
      {
        onGiveUp: this.health.consumerStopped,
        onConsumerTrouble: this.health.consumerTrouble,
        // After the GROUP_JOIN's own commit has dropped (BatchContext.lost) what this member can no longer commit.
        onAssigned: (partitions) => void setImmediate(() => this.windows.partitionsMoved(partitions)),
      },
    );
    this.sub = await this.subscribing;
  }

  /**
   * Stops consuming, sends what it holds for up to drainMs (collapse windows
   * closed now, no retries), drops the rest, and waits for requests in flight
   * (bounded by the timeout).
   */
  async stop(): Promise<void> {
    if (this.c.draining) return this.stopping;
    this.c.draining = true;
    this.stopping = this.drainAndStop();
    return this.stopping;
  }

  private async drainAndStop(): Promise<void> {
    // sub.stop() waits for the batch in hand, whose handler may be waiting
    // for room that only a finished send would make: it must leave now (its
    // batch uncommitted, so it comes again).
    this.wakeWaiters();
    this.fanOuts.wakePauses();
    // Stopped while joining: the subscription is stopped once it exists, not left to consume.
    const sub = this.sub ?? (await this.subscribing?.catch(() => undefined));
    await sub?.stop();
    this.sender.giveUpRetries();
    this.windows.closeAll();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((r) => (timer = setTimeout(() => r("expired"), this.c.o.drainMs)));
    while (this.pending > 0) {
      if ((await Promise.race([new Promise<void>((r) => this.roomWaiters.push(r)), expired])) === "expired") break;
    }
    clearTimeout(timer);
    this.c.stopped = true;
    this.sender.dropQueued();
    this.wakeWaiters();
    await Promise.all([...this.fanOuts.flushing, ...this.sender.rechecking, ...this.sender.inflightJobs]);
  }

  /** Notifications in memory: collapsing, queued, waiting to retry or in flight. */
  get pending(): number {
    return this.windows.size + this.fanOuts.size + this.sender.pending;
  }

  /** Resolves once nothing is pending (tests). */
  async idle(): Promise<void> {
    while (this.pending > 0) await new Promise((r) => setTimeout(r, 5));
  }

  /** Takes one request into its (user, channel) collapse window; `lost`: its batch's (BatchContext); `partition`: its record's. */
  accept(req: NotificationRequest, lost?: AbortSignal, partition?: number): void {
    this.windows.accept(req, lost, partition);
  }

  private async handle(records: QueueRecord[], batch?: BatchContext): Promise<void> {
    const revoked = batch?.revoked;
    // Room first, then the whole batch at once: a batch left uncommitted by a stop comes again to
    // the next notifier, so none of it may have been held here, and sent by the drain, meanwhile.
    // So with one whose partition goes to another notifier while it waits (a rebalance): taken
    // now, its commit could come too late, and both would send it; and the group waits for it.
    while (this.pending >= this.c.o.maxPending && !this.c.draining && !revoked?.aborted) await this.room(revoked);
    // Both leave the batch uncommitted, and are no failure of the stage.
    if (this.c.draining) throw new Error("notifier stopping");
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
    const { deps } = this.c;
    for (const record of records) {
      let req: ReturnType<typeof decodeNotificationRecord>;
      try {
        req = decodeNotificationRecord(record.value);
      } catch (err) {
        // Retried, it would fail the same way for ever. Worded and counted as the pipeline stages'
        // skips (skippedRecords), so one log search and one alert find them all.
        deps.onRecordSkipped?.(record, err);
        deps.logger?.error(
          { err, stage: "notifier", topic: record.topic, partition: record.partition, offset: record.offset.toString(), bytes: record.value.length },
          "skipping an undecodable record",
        );
        continue;
      }
      if ("withdrawal" in req) {
        this.windows.withdraw(req.userId, req.withdrawal);
        continue;
      }
      if ("edit" in req) {
        this.windows.edit(req.userId, req.edit, req.mentioned);
        continue;
      }
      if ("read" in req) {
        this.windows.read(req.userId, req.read.channelId, req.read.seq);
        continue;
      }
      // Past the time a push service would hold it, a notification is noise: a backlog after a long
      // outage, or the topic read from its beginning by a notifier group's first start, stays quiet.
      if (this.c.now() - req.message.sentAtMs > this.c.o.ttlSeconds * 1000) {
        deps.onSkipped?.("expired");
        continue;
      }
      this.accept(req, lost, record.partition);
    }
  }

  private wakeWaiters(): void {
    if (this.pending >= this.c.o.maxPending && !this.c.draining) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}
