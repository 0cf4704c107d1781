import { hostname } from "node:os";
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import { createEtcdClient, deadline, normalizePrefix } from "../etcd/client.js";
import { KeptLease } from "../etcd/lease-keeper.js";
import type { WorkerIdAllocator, WorkerIdLease } from "./lease.js";
import { MAX_WORKER } from "./snowflake.js";

export interface EtcdWorkerIdsOptions {
  /** A client to use (not closed by close()); or give `endpoints`. */
  client?: Etcd3;
  endpoints?: readonly string[];
  /** Numbers are claimed as /<prefix>/worker-ids/<n> (default "chat"). */
  prefix?: string;
  /** Lease TTL in seconds (default 10). */
  ttlSeconds?: number;
  /** Highest number handed out (default MAX_WORKER, 1023). */
  maxWorkerId?: number;
  /** Stored as the key's value, for operators (default "<hostname>:<pid>"). */
  holder?: string;
  /** Timeout of one etcd request (default 3000 ms). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

/**
 * Snowflake worker numbers leased from etcd: acquire() claims the lowest free
 * number in 0..maxWorkerId with a put-if-absent transaction under a lease it
 * keeps alive. While the process lives, no other process can claim that
 * number; when it dies, the number is free again once the lease expires
 * (within the TTL); release() frees it at once.
 *
 * If the lease is lost (etcd unreachable for about the TTL, or the lease
 * revoked), onLost fires no later than the moment etcd could free the number
 * for someone else: the process must stop minting ids then, and acquire a new
 * lease (possibly another number) to go on. A lease object never comes back.
 */
export class EtcdWorkerIds implements WorkerIdAllocator {
  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  /** "/<prefix>/worker-ids/" */
  readonly dir: string;
  /** "/<prefix>/worker-id-marks/": per number, the millisecond its holders mint below; kept without a lease. */
  readonly marksDir: string;
  private readonly leases = new Set<EtcdWorkerIdLease>();

  constructor(private readonly options: EtcdWorkerIdsOptions) {
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      if (!options.endpoints?.length) throw new Error("EtcdWorkerIds needs a client or endpoints");
      this.client = createEtcdClient({ endpoints: options.endpoints });
      this.ownsClient = true;
    }
    this.dir = `${normalizePrefix(options.prefix ?? "chat")}worker-ids/`;
    this.marksDir = `${normalizePrefix(options.prefix ?? "chat")}worker-id-marks/`;
  }

  keyOf(workerId: number): string {
    return `${this.dir}${workerId}`;
  }

  async acquire(): Promise<WorkerIdLease> {
    const max = this.options.maxWorkerId ?? MAX_WORKER;
    const timeout = this.options.requestTimeoutMs ?? 3_000;
    const lease = await KeptLease.grant({
      client: this.client,
      ttlSeconds: this.options.ttlSeconds ?? 10,
      name: `${this.dir}*`,
      logger: this.options.logger,
    });
    const holder = this.options.holder ?? `${hostname()}:${process.pid}`;
    try {
      const taken = new Set(
        (await deadline(this.client.getAll().prefix(this.dir).keys(), timeout, "listing worker ids")).map((k) =>
          Number(k.slice(this.dir.length)),
        ),
      );
      for (let n = 0; n <= max; n++) {
        if (taken.has(n)) continue;
        if (!lease.live) throw new Error("lease expired while looking for a free worker id");
        const key = this.keyOf(n);
        const res = await deadline(
          this.client
            .if(key, "Create", "==", 0)
            .then(this.client.put(key).value(JSON.stringify({ holder, since: new Date().toISOString() })).lease(lease.id))
            .commit(),
          timeout,
          `claiming worker id ${n}`,
        );
        if (res.succeeded) {
          const mark = await deadline(this.client.get(this.marksDir + n).string(), timeout, `reading worker id ${n}'s mark`);
          const mintedBeforeMs = Number(mark ?? 0) || 0;
          const l = new EtcdWorkerIdLease(n, lease, mintedBeforeMs, this.client, this.marksDir + n, key, timeout, this.options.logger, () =>
            this.leases.delete(l),
          );
          this.leases.add(l);
          this.options.logger?.info({ workerId: n, lease: lease.id }, "worker id acquired");
          return l;
        }
        // Someone claimed it since we listed: try the next one.
      }
      throw new Error(`no free worker id in 0..${max} under ${this.dir}`);
    } catch (err) {
      await lease.revoke();
      throw err;
    }
  }

  /** Releases every lease this allocator handed out and closes its own client. */
  async close(): Promise<void> {
    await Promise.all([...this.leases].map((l) => l.release()));
    if (this.ownsClient) this.client.close();
  }
}

class EtcdWorkerIdLease implements WorkerIdLease {
  private readonly listeners: Array<() => void> = [];
  private released = false;

  constructor(
    readonly workerId: number,
    private readonly lease: KeptLease,
    readonly mintedBeforeMs: number,
    private readonly client: Etcd3,
    private readonly markKey: string,
    /** The number's key, held under `lease` while the number is ours. */
    private readonly numberKey: string,
    private readonly timeoutMs: number,
    private readonly logger: Logger | undefined,
    private readonly onReleased: () => void,
  ) {
    lease.onLost(() => {
      this.logger?.error({ workerId, lease: lease.id }, "worker id lease lost: stop minting ids");
      for (const l of this.listeners) {
        try {
          l();
        } catch (err) {
          this.logger?.error({ err }, "worker id onLost listener threw");
        }
      }
    });
  }

  /** True while the lease is surely alive: the number is ours. */
  get live(): boolean {
    return this.lease.live;
  }

  onLost(listener: () => void): void {
    this.listeners.push(listener);
    if (this.lease.status === "lost") queueMicrotask(listener);
  }

  /**
   * Only while the number is surely ours, so a holder that lost it never
   * writes over its successor's mark.
   */
  async mark(ms: number): Promise<void> {
    if (!this.lease.live || this.released) return;
    // Checked by etcd too, in the same transaction: a put sent while the number was ours
    // may land after the lease is gone and a successor has marked higher.
    const res = await deadline(
      this.client
        .if(this.numberKey, "Lease", "==", this.lease.id)
        .then(this.client.put(this.markKey).value(String(Math.ceil(ms))))
        .commit(),
      this.timeoutMs,
      `marking worker id ${this.workerId}`,
    );
    if (!res.succeeded) {
      // The number's key is gone or another's (deleted by hand, say) while the lease lives on: keepalives
      // would never tell, and ids would pause at the last mark for good with the lease still "live".
      this.lease.markLost(`worker id ${this.workerId}'s key is no longer held under this lease`);
      throw new Error(`worker id ${this.workerId} is no longer held under this lease: its mark was not written`);
    }
  }

  /** Revokes the lease: the number is free for others at once. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.lease.revoke();
    this.onReleased();
  }
}
