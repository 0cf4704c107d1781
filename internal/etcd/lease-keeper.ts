import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import { deadline } from "./client.js";

/**
 * An etcd lease kept alive by our own loop, used as a fence.
 *
 * etcd3's built-in keepalive reports `lost` only after about twice the TTL
 * (see the known pitfalls in DESIGN.md), so a process could go on believing
 * it holds a lease that etcd already expired and whose keys another process
 * may already have taken. Here every keepalive answer says until when the
 * lease is surely alive (the time the request was *sent* plus the TTL etcd
 * granted: the server counts from a later moment, so this errs on the safe
 * side), `live` turns false a safety margin before that moment, and `lost`
 * fires then — or at once when etcd answers that the lease is gone.
 */
export interface KeptLeaseOptions {
  client: Etcd3;
  /** Asked-for TTL; etcd may grant more (its minimum is about 2 s with default election settings). */
  ttlSeconds: number;
  /** What the lease is for, in logs. */
  name: string;
  logger?: Logger;
  /** `live` turns false this long before the lease could expire (default: a tenth of the TTL, at least 100 ms). */
  safetyMarginMs?: number;
}

export type LeaseState = "alive" | "lost" | "revoked";

/**
 * A clock that never steps: etcd expires the lease by its own elapsed time, so
 * an NTP step of the wall clock backwards must not keep a lost lease "live".
 */
const monotonicMs = () => performance.now();

export class KeptLease {
  private state: LeaseState = "alive";
  private revokeSent = false;
  private validUntil: number;
  private keepTimer: NodeJS.Timeout | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private readonly lostListeners: Array<(reason: string) => void> = [];
  private readonly intervalMs: number;
  private readonly retryMs: number;
  private readonly requestTimeoutMs: number;
  private readonly marginMs: number;

  private constructor(
    private readonly options: KeptLeaseOptions,
    /** The lease id (decimal string) as etcd3 wants it in put/txn. */
    readonly id: string,
    /** The TTL etcd granted, in milliseconds. */
    readonly ttlMs: number,
    sentAt: number,
  ) {
    this.validUntil = sentAt + ttlMs;
    // Like the Go client: keep alive every third of the TTL, retry failures faster.
    this.intervalMs = Math.max(100, Math.floor(ttlMs / 3));
    this.retryMs = Math.min(250, this.intervalMs);
    this.requestTimeoutMs = Math.max(500, this.intervalMs);
    this.marginMs = options.safetyMarginMs ?? Math.max(100, Math.floor(ttlMs / 10));
    this.armFence();
    this.schedule(this.intervalMs);
  }

  /** Grants a lease and starts keeping it alive. Rejects if etcd does not answer in time. */
  static async grant(options: KeptLeaseOptions): Promise<KeptLease> {
    if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds < 1) {
      throw new RangeError(`lease TTL must be a whole number of seconds >= 1, got ${options.ttlSeconds}`);
    }
    const sentAt = monotonicMs();
    const res = await deadline(
      options.client.leaseClient.leaseGrant({ TTL: options.ttlSeconds }),
      Math.max(3_000, options.ttlSeconds * 1000),
      `granting a lease for ${options.name}`,
    );
    const lease = new KeptLease(options, res.ID, Number(res.TTL) * 1000, sentAt);
    options.logger?.debug({ lease: res.ID, ttlMs: lease.ttlMs, for: options.name }, "etcd lease granted");
    return lease;
  }

  /** True while the lease is surely alive on the server (minus the safety margin). */
  get live(): boolean {
    return this.state === "alive" && monotonicMs() < this.validUntil - this.marginMs;
  }

  get status(): LeaseState {
    return this.state;
  }

  /** The moment (epoch ms, as the wall clock reads now) up to which the lease is surely alive. */
  get expiresAt(): number {
    return Date.now() + (this.validUntil - monotonicMs());
  }

  /** Called once, when the lease is lost; never after revoke(). */
  onLost(listener: (reason: string) => void): void {
    this.lostListeners.push(listener);
  }

  /** Stops keeping the lease alive without revoking it (it then expires on its own). */
  stop(): void {
    if (this.state === "alive") this.state = "revoked";
    this.clearTimers();
  }

  /** Stops keeping it alive and revokes it, which deletes every key bound to it. Best effort. */
  async revoke(): Promise<void> {
    if (this.revokeSent) return;
    this.revokeSent = true;
    this.stop();
    try {
      await deadline(this.options.client.leaseClient.leaseRevoke({ ID: this.id }), 3_000, "revoking a lease");
    } catch (err) {
      // Gone already ("requested lease not found") or etcd unreachable: it expires on its own.
      this.options.logger?.debug({ err, lease: this.id, for: this.options.name }, "lease revoke failed");
    }
  }

  private schedule(ms: number): void {
    clearTimeout(this.keepTimer);
    this.keepTimer = setTimeout(() => void this.keepalive(), ms);
    this.keepTimer.unref();
  }

  private armFence(): void {
    clearTimeout(this.fenceTimer);
    const fenceAt = this.validUntil - this.marginMs;
    this.fenceTimer = setTimeout(() => {
      if (this.state !== "alive") return;
      if (monotonicMs() >= fenceAt) this.lose("no keepalive was answered within the TTL");
      else this.armFence();
    }, Math.max(0, fenceAt - monotonicMs()));
    this.fenceTimer.unref();
  }

  private async keepalive(): Promise<void> {
    if (this.state !== "alive") return;
    const sentAt = monotonicMs();
    try {
      const res = await this.keepaliveOnce();
      if (this.state !== "alive") return;
      const ttl = Number(res.TTL);
      if (!(ttl > 0)) {
        this.lose("etcd answered that the lease has expired or was revoked");
        return;
      }
      if (sentAt + ttl * 1000 > this.validUntil) {
        this.validUntil = sentAt + ttl * 1000;
        this.armFence();
      }
      this.schedule(this.intervalMs);
    } catch (err) {
      if (this.state !== "alive") return;
      this.options.logger?.debug({ err, lease: this.id, for: this.options.name }, "lease keepalive failed; retrying");
      this.schedule(this.retryMs);
    }
  }

  /** One keepalive on a stream of its own, ended however it goes (an answer, an error, or none within the request timeout). */
  private async keepaliveOnce(): Promise<{ TTL: string }> {
    const stream = await deadline(this.options.client.leaseClient.leaseKeepAlive(), this.requestTimeoutMs, "lease keepalive");
    try {
      const answer = new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on("data", resolve);
        stream.on("error", reject);
        stream.on("end", () => reject(new Error("keepalive stream ended")));
        stream.write({ ID: this.id });
      });
      // Inside the try: a keepalive etcd never answers still ends its stream.
      return await deadline(answer, this.requestTimeoutMs, "lease keepalive");
    } finally {
      try {
        stream.end();
      } catch {
        // already closed
      }
    }
  }

  /** Declares the lease lost now (for example after etcd refused a put: "requested lease not found"). */
  markLost(reason: string): void {
    this.lose(reason);
  }

  private lose(reason: string): void {
    if (this.state !== "alive") return;
    this.state = "lost";
    this.clearTimers();
    this.options.logger?.warn({ lease: this.id, for: this.options.name, reason }, "etcd lease lost");
    for (const l of this.lostListeners) {
      try {
        l(reason);
      } catch (err) {
        this.options.logger?.error({ err }, "lease lost listener threw");
      }
    }
  }

  private clearTimers(): void {
    clearTimeout(this.keepTimer);
    clearTimeout(this.fenceTimer);
  }
}
