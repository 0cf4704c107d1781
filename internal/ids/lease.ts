/**
 * WorkerIdLease hands each process a snowflake worker number no other live
 * process holds. Adapters: etcd (a key per number under a lease), fixed (one
 * configured number, for chatd).
 */
export interface WorkerIdLease {
  readonly workerId: number;
  /** Whether the number is surely still this process's (health checks). */
  readonly live: boolean;
  /** Called if the lease is lost: the process must stop minting ids until it has one again. */
  onLost(listener: () => void): void;
  release(): Promise<void>;
}

export interface WorkerIdAllocator {
  acquire(): Promise<WorkerIdLease>;
}

export class FixedWorkerId implements WorkerIdAllocator {
  constructor(private readonly workerId: number) {}

  async acquire(): Promise<WorkerIdLease> {
    return { workerId: this.workerId, live: true, onLost: () => {}, release: async () => {} };
  }
}
