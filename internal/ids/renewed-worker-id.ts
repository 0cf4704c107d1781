import type { Logger } from "pino";
import { OutageLog } from "../observability/outage-log.js";
import type { WorkerIdAllocator, WorkerIdLease } from "./lease.js";
import { Snowflake } from "./snowflake.js";

export interface RenewedWorkerIdOptions {
  logger?: Logger;
  /** First wait between failed attempts to lease a number again (default 250 ms), doubling. */
  retryFirstMs?: number;
  /** Longest wait between attempts (default 5,000 ms). */
  retryMaxMs?: number;
  /** How often the number's mark is renewed (default 2,000 ms); each mark reaches three of these ahead. */
  markIntervalMs?: number;
  /** The clock marks are reckoned on (tests). */
  now?: () => number;
}

/**
 * A snowflake generator on a leased worker number that outlives the lease.
 *
 * When the lease is lost (etcd away for about its TTL, or the lease revoked)
 * the generator is retired at once, so nothing is minted under a number
 * someone else may now hold, and a new number is leased, retried with
 * backoff for as long as it takes; ids flow again under it. In between,
 * whatever asks for an id is refused as unavailable and retried by its
 * client. An outage of etcd thus costs sends for its length, where ending
 * the process would have cost every session and a restart that cannot lease
 * a number before etcd is back anyway.
 *
 * A number passes from holder to holder, and their clocks need not agree: a
 * holder whose clock is behind its predecessor's would mint the same ids
 * again. So each holder marks the number (WorkerIdLease.mark) with a
 * millisecond it mints below, renewed every markIntervalMs three intervals
 * ahead, and mints nothing past its last mark that etcd took (nor past a
 * lower one still on its way); the next
 * holder starts above it, whatever its own clock says.
 */
export class RenewedWorkerId {
  readonly ids: Snowflake;
  private lease: WorkerIdLease;
  private renewing = false;
  private closed = false;
  private wakeSleeper: (() => void) | undefined;
  private readonly renewedListeners: Array<(workerId: number) => void> = [];
  private readonly markIntervalMs: number;
  private readonly now: () => number;
  private markTimer: NodeJS.Timeout | undefined;
  /** Marks go out one at a time: etcd must never end up holding an older, lower mark than the one minted under. */
  private marking: Promise<void> = Promise.resolve();
  /** Marks failing through an etcd outage: one warning as they start failing and one line as one lands again, not one per interval. */
  private readonly markOutage: OutageLog;

  constructor(
    private readonly allocator: WorkerIdAllocator,
    first: WorkerIdLease,
    private readonly options: RenewedWorkerIdOptions = {},
  ) {
    this.markIntervalMs = options.markIntervalMs ?? 2_000;
    this.now = options.now ?? Date.now;
    this.lease = first;
    this.markOutage = new OutageLog({
      logger: options.logger,
      fields: () => ({ workerId: this.lease.workerId }),
      failed: "marking the worker id failed; ids pause at the last mark, retrying until etcd takes one",
      failedAgain: "marking the worker id failed again",
      recovered: "marking the worker id works again",
    });
    this.ids = new Snowflake(first.workerId);
    this.ids.notBefore(first.mintedBeforeMs);
    // Nothing is minted before the first mark lands (start()).
    this.ids.limitTo(Number.NEGATIVE_INFINITY);
    this.watch(first);
  }

  /** Marks the number for the first time and keeps marking it: ids flow from here. */
  async start(): Promise<void> {
    await this.markNow();
    this.markTimer ??= setInterval(() => void this.markNow().catch((err) => this.markOutage.failed(err)), this.markIntervalMs);
    this.markTimer.unref();
  }

  get workerId(): number {
    return this.lease.workerId;
  }

  /** Whether ids are being minted under a number surely ours (health checks). */
  get live(): boolean {
    return !this.closed && !this.renewing && this.lease.live;
  }

  /** Called with the new number once ids flow again after a loss. */
  onRenewed(listener: (workerId: number) => void): void {
    this.renewedListeners.push(listener);
  }

  /** Stops minting and renewing, marks the number exactly, and gives it back. */
  async release(): Promise<void> {
    this.closed = true;
    this.ids.retire();
    clearInterval(this.markTimer);
    this.wakeSleeper?.();
    // Exact now that nothing more is minted: the next holder starts right after.
    await this.marking;
    await this.lease.mark(Math.max(this.now(), this.ids.lastMintedMs) + 1).catch((err) => this.markOutage.failed(err));
    await this.lease.release();
  }

  private markNow(): Promise<void> {
    const next = this.marking.then(async () => {
      const lease = this.lease;
      const ceiling = Math.max(this.now(), this.ids.lastMintedMs) + 3 * this.markIntervalMs;
      // Lower than the last (the clock stepped back), it binds as it is sent: etcd may take it,
      // and the lease lapse and the number pass on above it, before its answer reaches us.
      if (ceiling < this.ids.limitMs) this.ids.limitTo(ceiling);
      await lease.mark(ceiling);
      // Raised only once etcd has it, and only for the lease it was written for.
      if (lease === this.lease && lease.live && !this.closed) {
        this.ids.limitTo(ceiling);
        this.markOutage.succeeded();
      }
    });
    this.marking = next.catch(() => {});
    return next;
  }

  private watch(lease: WorkerIdLease): void {
    lease.onLost(() => {
      if (lease !== this.lease || this.closed) return;
      this.ids.retire("this server lost its worker id and is leasing another");
      this.options.logger?.error({ workerId: lease.workerId }, "worker id lease lost: minting no ids until a new one is leased");
      void this.renew(lease);
    });
  }

  private async renew(lost: WorkerIdLease): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    // Never throws: a lease etcd no longer answers for expires by itself.
    void lost.release();
    let waitMs = this.options.retryFirstMs ?? 250;
    const maxMs = this.options.retryMaxMs ?? 5_000;
    const lostAt = performance.now();
    // Tried every few seconds for as long as etcd is away: the first failure is warned of, the rest are debug.
    let failures = 0;
    while (!this.closed) {
      try {
        const lease = await this.allocator.acquire();
        if (this.closed) {
          await lease.release();
          break;
        }
        this.lease = lease;
        // The outage's marks are told of by the line below.
        this.markOutage.forget();
        this.ids.limitTo(Number.NEGATIVE_INFINITY);
        this.ids.notBefore(lease.mintedBeforeMs);
        this.ids.resume(lease.workerId);
        await this.markNow().catch((err) => this.markOutage.failed(err));
        this.renewing = false;
        this.options.logger?.info(
          { workerId: lease.workerId, failures, lostMs: Math.round(performance.now() - lostAt) },
          "worker id leased again: minting ids",
        );
        this.watch(lease);
        for (const l of this.renewedListeners) l(lease.workerId);
        return;
      } catch (err) {
        if (failures++ === 0) this.options.logger?.warn({ err, retryInMs: waitMs }, "leasing a worker id again failed; retrying until etcd answers");
        else this.options.logger?.debug({ err, retryInMs: waitMs, failures }, "leasing a worker id again failed again");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          timer.unref();
          this.wakeSleeper = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeSleeper = undefined;
        waitMs = Math.min(waitMs * 2, maxMs);
      }
    }
    this.renewing = false;
  }
}
