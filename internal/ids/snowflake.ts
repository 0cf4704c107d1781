import { ChatError } from "../model/errors.js";

/**
 * Snowflake ids: 41 bits of milliseconds since EPOCH_MS, 10 bits of worker
 * number, 12 bits of sequence within the millisecond. Time-sortable and unique
 * as long as no two live processes share a worker number (leased from etcd in
 * the distributed mode, see internal/ids/lease.ts).
 */
export const EPOCH_MS = 1_767_225_600_000; // 2026-01-01T00:00:00Z
export const MAX_WORKER = 1023;

export interface IdGenerator {
  next(): bigint;
}

export class Snowflake implements IdGenerator {
  private lastMs = -1;
  private seq = 0;
  private retired = false;
  private readonly worker: bigint;

  constructor(
    workerId: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isInteger(workerId) || workerId < 0 || workerId > MAX_WORKER) {
      throw new RangeError(`worker id must be an integer in 0..${MAX_WORKER}, got ${workerId}`);
    }
    this.worker = BigInt(workerId);
  }

  /**
   * No id is minted after this: the worker id's lease was lost or is being
   * given back, and another process may take the number at any moment. What
   * still asks for one (a send on a session, a request on a connection that
   * outlives the drain) is refused as unavailable, and retried elsewhere.
   */
  retire(): void {
    this.retired = true;
  }

  next(): bigint {
    if (this.retired) throw new ChatError("unavailable", "this server is shutting down; try again");
    let ms = this.now();
    // A clock that steps back must not reuse ids: keep counting on the last
    // millisecond we handed out.
    if (ms < this.lastMs) ms = this.lastMs;
    if (ms === this.lastMs) {
      this.seq = (this.seq + 1) & 0xfff;
      if (this.seq === 0) {
        // 4096 ids in one millisecond: borrow the next millisecond.
        ms = this.lastMs + 1;
      }
    } else {
      this.seq = 0;
    }
    this.lastMs = ms;
    return (BigInt(ms - EPOCH_MS) << 22n) | (this.worker << 12n) | BigInt(this.seq);
  }
}

export function snowflakeTimeMs(id: bigint): number {
  return Number(id >> 22n) + EPOCH_MS;
}
