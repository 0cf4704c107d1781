/**
 * WorkerIdLease hands each process a snowflake worker number no other live
 * process holds: etcd, a key per number under a lease (chatd, one process,
 * takes its number from its configuration).
 */
export interface WorkerIdLease {
  readonly workerId: number;
  /** Whether the number is surely still this process's (health checks). */
  readonly live: boolean;
  /**
   * The epoch millisecond the number's previous holders said they mint below
   * (their last mark), 0 if none: a holder whose clock is behind theirs must
   * not mint from there, or it would mint their ids again.
   */
  readonly mintedBeforeMs: number;
  /** Called if the lease is lost: the process must stop minting ids until it has one again. */
  onLost(listener: () => void): void;
  /** Records, for the number's next holders, that this holder mints below `ms` (until a later mark). */
  mark(ms: number): Promise<void>;
  release(): Promise<void>;
}

export interface WorkerIdAllocator {
  acquire(): Promise<WorkerIdLease>;
}

