import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
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
  /** Why nothing is minted (retire()), told to whatever asks for an id; undefined while minting. */
  private retired: string | undefined;
  private ceilingMs = Number.POSITIVE_INFINITY;
  private worker: bigint;

  constructor(
    workerId: number,
    private readonly now: () => number = Date.now,
  ) {
    this.worker = BigInt(checkWorkerId(workerId));
  }

  /**
   * No id is minted after this: the worker id's lease was lost or is being
   * given back, and another process may take the number at any moment. What
   * still asks for one (a send on a session, a request on a connection that
   * outlives the drain) is refused as unavailable, and retried elsewhere.
   */
  retire(why = "this server is shutting down"): void {
    this.retired = why;
  }

  /**
   * Mints again, under a number newly leased after the old one was lost (it
   * may differ). The last millisecond stays: this process never goes back
   * on its own ids, whatever the number.
   */
  resume(workerId: number): void {
    this.worker = BigInt(checkWorkerId(workerId));
    this.retired = undefined;
  }

  /**
   * Mints nothing at or below `ms` from here: the number's previous holder
   * minted up to it, or chatd's last run did (a restart with the clock behind
   * that run must not mint its ids again).
   */
  notBefore(ms: number): void {
    if (ms > this.lastMs) {
      this.lastMs = ms;
      // As if the millisecond were full: the next id is at ms + 1 or the clock, whichever is later.
      this.seq = 0xfff;
    }
  }

  /**
   * Mints nothing at or past `ms`: the number's holder has told its
   * successors it mints below that (WorkerIdLease.mark), and must mark again
   * before it goes further.
   */
  limitTo(ms: number): void {
    this.ceilingMs = ms;
  }

  /** The millisecond nothing is minted at or past (limitTo). */
  get limitMs(): number {
    return this.ceilingMs;
  }

  /** The millisecond of the last id minted (-1 before the first). */
  get lastMintedMs(): number {
    return this.lastMs;
  }

  /**
   * Both refusals carry an engine outage's retry time, as etcd ends them: a
   * number leased again (tried every 250 ms to 5 s) or a mark that lands
   * (tried every 2 s), not the clock moving on (the next mark reaches past
   * the last id minted, however far ahead of the clock that is).
   */
  next(): bigint {
    if (this.retired !== undefined) throw new ChatError("unavailable", `${this.retired}; try again`, ENGINE_RETRY_AFTER_MS);
    // A clock before the epoch (a host up before its clock was set) would mint negative ids;
    // and the epoch's own first id, on worker 0, would be 0, an id that means none.
    let ms = Math.max(this.now(), EPOCH_MS + 1);
    // A clock that steps back must not reuse ids: keep counting on the last
    // millisecond we handed out.
    if (ms < this.lastMs) ms = this.lastMs;
    let seq = 0;
    if (ms === this.lastMs) {
      seq = (this.seq + 1) & 0xfff;
      // 4096 ids in one millisecond: borrow the next millisecond.
      if (seq === 0) ms = this.lastMs + 1;
    }
    // Refused before any state moves: the next call mints exactly what this one would have.
    if (ms >= this.ceilingMs) throw new ChatError("unavailable", "ids are paused until the worker id's mark is renewed; try again", ENGINE_RETRY_AFTER_MS);
    this.lastMs = ms;
    this.seq = seq;
    return (BigInt(ms - EPOCH_MS) << 22n) | (this.worker << 12n) | BigInt(this.seq);
  }
}

function checkWorkerId(workerId: number): number {
  if (!Number.isInteger(workerId) || workerId < 0 || workerId > MAX_WORKER) {
    throw new RangeError(`worker id must be an integer in 0..${MAX_WORKER}, got ${workerId}`);
  }
  return workerId;
}

export function snowflakeTimeMs(id: bigint): number {
  return Number(id >> 22n) + EPOCH_MS;
}
