import type { Logger } from "pino";
import type { WorkerIdAllocator, WorkerIdLease } from "./lease.js";
import { Snowflake } from "./snowflake.js";

export interface RenewedWorkerIdOptions {
  logger?: Logger;
  /** First wait between failed attempts to lease a number again (default 250 ms), doubling. */
  retryFirstMs?: number;
  /** Longest wait between attempts (default 5,000 ms). */
  retryMaxMs?: number;
}

/**
 * A snowflake generator on a leased worker number that outlives the lease.
 * When the lease is lost (etcd away for about its TTL, or the lease revoked)
 * the generator is retired at once, so nothing is minted under a number
 * someone else may now hold, and a new number is leased, retried with
 * backoff for as long as it takes; ids flow again under it. In between,
 * whatever asks for an id is refused as unavailable and retried by its
 * client. An outage of etcd thus costs sends for its length, where ending
 * the process would have cost every session and a restart that cannot lease
 * a number before etcd is back anyway.
 */
export class RenewedWorkerId {
  readonly ids: Snowflake;
  private lease: WorkerIdLease;
  private renewing = false;
  private closed = false;
  private wakeSleeper: (() => void) | undefined;
  private readonly renewedListeners: Array<(workerId: number) => void> = [];

  constructor(
    private readonly allocator: WorkerIdAllocator,
    first: WorkerIdLease,
    private readonly options: RenewedWorkerIdOptions = {},
  ) {
    this.lease = first;
    this.ids = new Snowflake(first.workerId);
    this.watch(first);
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

  /** Stops minting and renewing, and gives the number back. */
  async release(): Promise<void> {
    this.closed = true;
    this.ids.retire();
    this.wakeSleeper?.();
    await this.lease.release();
  }

  private watch(lease: WorkerIdLease): void {
    lease.onLost(() => {
      if (lease !== this.lease || this.closed) return;
      this.ids.retire();
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
    while (!this.closed) {
      try {
        const lease = await this.allocator.acquire();
        if (this.closed) {
          await lease.release();
          break;
        }
        this.lease = lease;
        this.renewing = false;
        this.ids.resume(lease.workerId);
        this.options.logger?.info({ workerId: lease.workerId }, "worker id leased again: minting ids");
        this.watch(lease);
        for (const l of this.renewedListeners) l(lease.workerId);
        return;
      } catch (err) {
        this.options.logger?.warn({ err, retryInMs: waitMs }, "leasing a worker id again failed");
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
