import { endpointKeyOf, serviceOf, type Job } from "./job.js";
import { RETRY_AFTER_MAX_MS } from "./retry.js";

/** Sends to one endpoint, or to a whole host, held until a Retry-After passes (by the monotonic clock; its timer ends the hold). */
type Holds = Map<string, { untilMs: number; timer: NodeJS.Timeout }>;

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
/**
 * A failed send counts against its endpoint only while its push service
 * (host) delivered to another within this, by the monotonic clock: a service
 * down, or settings of ours it refuses (expired credentials, a wrong project),
 * fail every endpoint alike, and must not remove them all.
 */
const SERVICE_PROVEN_MS = 3_600_000;
/** Push service hosts remembered as having delivered, at most. */
const PROVEN_HOSTS_MAX = 1_024;

/**
 * What the notifier knows of each push service host: which endpoints and
 * hosts asked it to wait (a Retry-After), and which services took a send
 * lately (so a failure there is the endpoint's, not ours or the service's).
 */
export class PushHosts {
  /**
   * Endpoints (host and address) that answered 429 or 503 with a Retry-After,
   * until it passes (by the monotonic clock; its timer ends the hold). Only the
   * retries of the notification told so waited for it, and a new notification's
   * first try to the same endpoint went on into the same refusal: held too, it
   * waits in `ready` and goes when the hold ends. FCM (QUOTA_EXCEEDED for one
   * device) and Web Push services limit single devices and subscriptions, so
   * one endpoint's 429 holds that endpoint alone.
   */
  private readonly heldEndpoints: Holds = new Map();
  /**
   * Hosts held as a whole: the service said it limits every send, by a 503
   * with a Retry-After, or by 429s from HOST_LIMITED_ENDPOINTS distinct
   * endpoints within HOST_LIMITED_WINDOW_MS with no delivery between (see
   * limitedByHost). Their first tries would go on into the same refusal,
   * perHostConcurrency at a time: they wait in `ready` (waitingByHost caps them).
   */
  private readonly heldHosts: Holds = new Map();
  /** By host, the endpoints that answered 429 lately and when (by the monotonic clock), oldest first. */
  private readonly limitedByHost = new Map<string, Map<string, number>>();
  /** When each push service (host; for APNs, and app: serviceOf) last took a send, by the monotonic clock (SERVICE_PROVEN_MS). */
  private readonly deliveredByHost = new Map<string, number>();

  constructor(
    private readonly monotonicNow: () => number,
    /** The notifier's drain is over: no hold is started. */
    private readonly stopped: () => boolean,
    /** A hold ended: what waited for it may go. */
    private readonly holdEnded: () => void,
  ) {}

  /** Whether `job`'s sends wait: its host, or its endpoint, is held. */
  holds(job: Job): boolean {
    return this.heldHosts.has(job.host) || this.heldEndpoints.has(endpointKeyOf(job));
  }

  /**
   * A 429 or 503 with a Retry-After: the endpoint's sends wait for it; the
   * whole host's only when the service limits itself (see heldHosts).
   */
  rateLimited(job: Job, status: 429 | 503, retryAfterMs: number): void {
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

  /** `job` was delivered: its service is proven. */
  delivered(job: Job): void {
    // The host takes sends: the 429s counted so far were of single endpoints.
    this.limitedByHost.delete(job.host);
    // Newest last, the oldest forgotten past PROVEN_HOSTS_MAX (Web Push hosts are any public one).
    this.deliveredByHost.delete(serviceOf(job));
    this.deliveredByHost.set(serviceOf(job), this.monotonicNow());
    if (this.deliveredByHost.size > PROVEN_HOSTS_MAX) this.deliveredByHost.delete(this.deliveredByHost.keys().next().value!);
  }

  /** Whether the push service took a send to some endpoint lately (SERVICE_PROVEN_MS). */
  serviceProven(host: string): boolean {
    const at = this.deliveredByHost.get(host);
    return at !== undefined && this.monotonicNow() - at <= SERVICE_PROVEN_MS;
  }

  /** Ends every hold, and forgets the 429s counted (the drain is over). */
  clear(): void {
    for (const holds of [this.heldHosts, this.heldEndpoints]) {
      for (const { timer: held } of holds.values()) clearTimeout(held);
      holds.clear();
    }
    this.limitedByHost.clear();
  }

  /** Holds every send to `key` of `holds` for its Retry-After (RETRY_AFTER_MAX_MS at most), or for the longer hold it has already. */
  private hold(holds: Holds, key: string, retryAfterMs: number): void {
    const ms = Math.min(RETRY_AFTER_MAX_MS, retryAfterMs);
    if (ms <= 0 || this.stopped()) return;
    const untilMs = this.monotonicNow() + ms;
    const held = holds.get(key);
    if (held && held.untilMs >= untilMs) return;
    if (held) clearTimeout(held.timer);
    const timer = setTimeout(() => {
      holds.delete(key);
      this.holdEnded();
    }, ms);
    holds.set(key, { untilMs, timer });
  }
}
