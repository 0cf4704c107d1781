import { keepFailingStreak } from "./failing-endpoints.js";
import type { Held, HeldByChat } from "./held.js";
import { hostOf, newestKey, serviceOf, type Job } from "./job.js";
import type { NotifierContext } from "./notifier-context.js";
import type { SendResult, SkipReason } from "./notifier-reports.js";
import type { SendOutcome } from "./port.js";
import { PushHosts } from "./push-hosts.js";
import { backoff, RetryTimers } from "./retry.js";

/** A job that waited longer than this for a free slot (a slow or backlogged push service) is asked again whether it is still due, as a retry is. */
const STALE_READY_MS = 5_000;

/**
 * Sends the jobs the fan-outs make: with a timeout, bounded concurrency
 * overall and per push-service host, the newest of a (device, chat) alone,
 * and retries with exponential backoff and jitter (honouring Retry-After);
 * removes the endpoints that answer they are gone, or that only fail.
 */
export class Sender {
  private readonly ready: Job[] = [];
  /**
   * Jobs waiting by host: in `ready`, or for a retry. A push service that
   * hangs takes its jobs one timeout at a time, one that rate-limits holds
   * them for its Retry-After, so under load they pile up; capped at half of
   * maxPending, its surplus is dropped (push is best effort) instead of
   * filling the memory bound and pausing consuming for every other service.
   */
  private readonly waitingByHost = new Map<string, number>();
  private readonly retries = new RetryTimers();
  /**
   * The newest notification of each (device, chat) still being sent or
   * retried. An older one retried after it would replace it on the device
   * (same collapse key, and the service worker's tag): it is dropped instead,
   * as the push service would drop it, undelivered, for the newer.
   */
  private readonly newest = new Map<string, Job>();
  private readonly inflightByHost = new Map<string, number>();
  private readonly hosts: PushHosts;
  /**
   * The (device, chat)s a send is under way to. A newer notification waits
   * for it: sent beside it, the older one could reach the push service last
   * (a slow send, a connection still being set up) and replace the newer.
   */
  private readonly sending = new Set<string>();
  readonly inflightJobs = new Set<Promise<void>>();
  /** Retries due, asking again whether the user came online or the device signed out meanwhile. */
  readonly rechecking = new Set<Promise<void>>();
  private inflight = 0;

  constructor(
    private readonly c: NotifierContext,
    private readonly heldByChat: HeldByChat,
  ) {
    this.hosts = new PushHosts(
      () => c.monotonicNow(),
      () => c.stopped,
      () => this.pump(),
    );
  }

  /** Notifications it holds: queued, asking again, waiting to retry or in flight. */
  get pending(): number {
    return this.rechecking.size + this.ready.length + this.retries.size + this.inflight;
  }

  /** Makes `job` the newest of its (device, chat); an older one not yet sent for good is given up. */
  supersede(job: Job): void {
    const key = newestKey(job);
    const older = this.newest.get(key);
    this.newest.set(key, job);
    if (!older) return;
    older.superseded = true;
    if (this.retries.cancel(older)) {
      this.finished(older);
      this.waiting(older.host, -1);
      this.c.deps.onSkipped?.("superseded");
      this.c.wakeWaiters();
    }
  }

  /** Gives up the retries waiting of `held`'s jobs now, rather than hold their place for their backoff (counted as `by`). */
  giveUpRetriesOf(held: Held, by: "deleted" | "read"): void {
    // Each such job is the newest of its device's chat (a newer one superseded it, and stopped its timer).
    for (const job of this.newest.values()) {
      if (job.held !== held || !this.retries.cancel(job)) continue;
      job.retryTimer = undefined;
      this.waiting(job.host, -1);
      this.finished(job);
      this.c.deps.onSkipped?.(by);
    }
  }

  /** stop() begins: the retries waiting for their backoff are given up ("stopped"); queued jobs go on. */
  giveUpRetries(): void {
    const givenUp = this.retries.cancelAll();
    this.waitingByHost.clear();
    for (const job of this.ready) this.waiting(job.host, 1);
    if (givenUp > 0) this.c.deps.logger?.info({ retries: givenUp }, "stopping: push retries waiting for their backoff given up");
    for (let i = 0; i < givenUp; i++) this.c.deps.onSkipped?.("stopped");
  }

  /** The drain is over: what is still queued is dropped ("stopped"). */
  dropQueued(): void {
    this.hosts.clear();
    if (this.ready.length > 0) this.c.deps.logger?.warn({ notifications: this.ready.length }, "stopping: pushes not sent within the drain time dropped");
    for (const job of this.ready) if (!job.superseded) this.c.deps.onSkipped?.("stopped");
    this.ready.length = 0;
    this.waitingByHost.clear();
    this.newest.clear();
  }

  hasRoomFor(host: string): boolean {
    return (this.waitingByHost.get(host) ?? 0) < Math.max(1, Math.floor(this.c.o.maxPending / 2));
  }

  /** `first`: back to the head of the queue, the place it had (a job asked again after waiting). */
  enqueue(job: Job, first = false): void {
    job.readyAtMs = this.c.monotonicNow();
    if (first) this.ready.unshift(job);
    else this.ready.push(job);
    this.waiting(job.host, 1);
  }

  /** Starts ready jobs while there are free slots, overall and for their host. */
  pump(): void {
    for (let i = 0; i < this.ready.length && this.inflight < this.c.o.concurrency && !this.c.stopped; ) {
      const job = this.ready[i]!;
      if (job.superseded) {
        this.dequeue(i);
        this.finished(job);
        this.c.deps.onSkipped?.("superseded");
        continue;
      }
      // Checked at each send, a retry's too: the consumer may have learnt only since.
      if (job.origin.reassigned) {
        this.dequeue(i);
        this.finished(job);
        this.c.deps.onSkipped?.("reassigned");
        continue;
      }
      // A message of it deleted (or a reaction taken back) since it was made: the rest goes.
      if (job.heldVersion !== job.held.version && !this.rebuilt(job)) {
        this.dequeue(i);
        this.finished(job);
        this.c.deps.onSkipped?.(job.held.emptiedBy);
        continue;
      }
      const hostLoad = this.inflightByHost.get(job.host) ?? 0;
      const key = newestKey(job);
      if (hostLoad >= this.c.o.perHostConcurrency || this.sending.has(key) || this.hosts.holds(job)) {
        i++;
        continue;
      }
      this.dequeue(i);
      if (this.c.monotonicNow() - (job.readyAtMs ?? 0) > STALE_READY_MS) {
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
        this.c.wakeWaiters();
      });
      this.inflightJobs.add(p);
    }
  }

  /** The job is done with (sent, given up, skipped): it no longer supersedes anything, nor holds its messages for a withdrawal. */
  private finished(job: Job): void {
    const key = newestKey(job);
    if (this.newest.get(key) === job) this.newest.delete(key);
    this.heldByChat.release(job.held);
  }

  /** The job's notification made again from what a withdrawal left; false when it left nothing. */
  private rebuilt(job: Job): boolean {
    const { held } = job;
    if (held.requests.size === 0) return false;
    job.versions = held.versions(this.c.o.ttlSeconds);
    job.notification = job.endpoint.hidePreview ? job.versions.noPreview : job.versions.preview;
    job.sentAtMs = held.latest.message.sentAtMs;
    job.heldVersion = held.version;
    return true;
  }

  private waiting(host: string, by: 1 | -1): void {
    const n = (this.waitingByHost.get(host) ?? 0) + by;
    if (n > 0) this.waitingByHost.set(host, n);
    else this.waitingByHost.delete(host);
  }

  private dequeue(i: number): void {
    const [job] = this.ready.splice(i, 1);
    this.waiting(job!.host, -1);
  }

  private async run(job: Job): Promise<void> {
    const { deps, o } = this.c;
    const provider = deps.providers[job.endpoint.kind]!;
    // A whole TTL from each send (a backlog's, a retry's) kept a message on a device's way for up
    // to twice the TTL after it was sent, past the age at which take() calls it noise.
    // Past it (a retry near the end), 0: delivered only to a device reachable at once, not held.
    const ttlLeft = Math.max(0, Math.min(o.ttlSeconds, Math.floor((job.sentAtMs + o.ttlSeconds * 1000 - this.c.now()) / 1000)));
    const notification = ttlLeft === job.notification.ttlSeconds ? job.notification : { ...job.notification, ttlSeconds: ttlLeft };
    let outcome: SendOutcome;
    try {
      outcome = await provider.send(job.endpoint, notification, o.timeoutMs);
    } catch (err) {
      outcome = { ok: false, gone: false, retryable: true, reason: String(err) };
    }
    if (!outcome.ok && outcome.retryAfterMs !== undefined && (outcome.status === 429 || outcome.status === 503)) this.hosts.rateLimited(job, outcome.status, outcome.retryAfterMs);
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
        (await deps.endpoints
          .removeIfAddress(userId, deviceId, address, { updatedAtMs })
          .catch((err) => void deps.logger?.warn({ err }, "could not remove a dead endpoint")));
      action = removed ? "removed" : "dropped";
    } else if (outcome.retryable && job.attempt < o.maxAttempts && !this.c.draining && !job.superseded && this.hasRoomFor(job.host)) {
      action = "retry";
      this.retries.schedule(job, backoff(o, job.attempt, outcome.retryAfterMs), () => {
        this.waiting(job.host, -1);
        job.retryTimer = undefined;
        this.askAgain(job, { ...job, attempt: job.attempt + 1 }, false);
      });
      this.waiting(job.host, 1);
    } else action = "dropped";
    if (outcome.ok) {
      this.hosts.delivered(job);
      if (job.endpoint.failingSinceMs !== undefined) await keepFailingStreak(this.c, job, "clear");
    } else if (action === "dropped" && (!outcome.gone || registeredSince) && !outcome.goneUnconfirmed && !outcome.ours && (!outcome.retryable || job.attempt >= o.maxAttempts) && this.hosts.serviceProven(serviceOf(job))) {
      // Only the push service's last word counts: a retry we gave up (stopping, a newer push of the chat, no room) might have gone through;
      // and a failure of ours (our credentials, our network) says nothing of the endpoint.
      action = await keepFailingStreak(this.c, job, "failed");
    }
    if (action !== "retry") this.finished(job);
    if (!outcome.ok && outcome.goneUnconfirmed) {
      deps.logger?.warn(
        { userId: String(job.endpoint.userId), deviceId: String(job.endpoint.deviceId), kind: job.endpoint.kind, reason: outcome.reason },
        "push service calls the endpoint dead before any push went through since start: endpoint kept (check the push service's environment and topic)",
      );
    } else if (!outcome.ok) {
      deps.logger?.[action === "retry" ? "debug" : "info"](
        { userId: String(job.endpoint.userId), deviceId: String(job.endpoint.deviceId), kind: job.endpoint.kind, attempt: job.attempt, reason: outcome.reason, action },
        "push not delivered",
      );
    }
    deps.onResult?.({ endpoint: job.endpoint, notification: job.notification, attempt: job.attempt, outcome, action });
  }

  /** Asks whether `job` is still due and queues `next` (back at the head when `first`) if it is. */
  private askAgain(job: Job, next: Job, first: boolean): void {
    // In turn with the fan-outs: the first tries that waited behind a slow host go stale together.
    // However it ends (queued again, or skipped: its user came online, its device signed out), it
    // leaves room that a batch may be waiting for.
    const p = this.c.storeSlots
      .run(() => this.stillDue(job, next, first))
      .finally(() => {
        this.rechecking.delete(p);
        this.c.wakeWaiters();
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
    const { deps } = this.c;
    const { userId, deviceId } = job.endpoint;
    const skipped = (reason: SkipReason) => {
      this.finished(job);
      deps.onSkipped?.(reason);
    };
    // Everything it told of deleted meanwhile: nothing to ask about.
    if (job.held.requests.size === 0) return skipped(job.held.emptiedBy);
    try {
      if (deps.isOnline && (await deps.isOnline(userId))) return skipped("online");
      // As its messages read now: an edit or a delete since it was made may have taken the mention out.
      if (job.held.latest.mentioned !== true && (await this.c.channelMuted(userId, job.channelId))) return skipped("channel_muted");
      if (deps.isDeviceActive && !(await deps.isDeviceActive(userId, deviceId))) {
        // As a first try does: kept, it would be read and asked about at every later notification.
        await deps.endpoints
          .removeIfAddress(userId, deviceId, job.endpoint.address)
          .catch((err) => deps.logger?.warn({ err }, "could not remove a logged-out device's endpoint"));
        return skipped("revoked_device");
      }
      const endpoint = await deps.endpoints.get(userId, deviceId);
      if (!endpoint) return skipped("no_endpoint");
      if (endpoint.muted) return skipped("muted");
      if (!deps.providers[endpoint.kind]) return skipped("no_provider");
      const notification = endpoint.hidePreview ? job.versions.noPreview : job.versions.preview;
      next = { ...next, endpoint, notification, host: hostOf(endpoint) };
    } catch (err) {
      deps.logger?.warn({ err }, "cannot tell whether a push that waited is still due: sending it");
    }
    if (this.c.stopped) return;
    // A newer notification of the chat came while this one asked.
    if (job.superseded) return skipped("superseded");
    if (!this.hasRoomFor(next.host)) return skipped("backlog");
    if (this.newest.get(newestKey(job)) === job) this.newest.set(newestKey(job), next);
    this.enqueue(next, first);
    this.pump();
  }
}
