/** How long a sample of the server's clock is trusted: a clock set since (this machine's or the server's) is forgotten in this. */
export const SERVER_CLOCK_WINDOW_MS = 5 * 60_000;

/**
 * The server's clock as near as this machine can tell, from the server times
 * its frames carry (the Welcome, every HeartbeatAck). A frame is stamped
 * before it is read, so each sample's server time less this machine's at
 * reading is at most the real difference, short by however long the frame
 * took to arrive and be read: the largest of the recent samples is the
 * nearest, and still errs early (towards printing a reaction twice rather
 * than never). Only the last Welcome counted before, and a reconnect's
 * Welcome read late on a loaded machine put the clock back by that lag.
 */
export class ServerClock {
  /** Samples as [this machine's time at reading, server less this machine]; a later one with a larger difference makes the earlier ones moot. */
  private samples: Array<[atMs: number, offsetMs: number]> = [];

  constructor(private readonly localNow: () => number = Date.now) {}

  /** Takes the server's time a frame just read was stamped with. */
  sample(serverTimeMs: number): void {
    const at = this.localNow();
    const offset = serverTimeMs - at;
    this.forgetOld(at);
    // Kept in order of falling difference: one not above a later sample's is never the largest again.
    while (this.samples.length > 0 && this.samples[this.samples.length - 1]![1] <= offset) this.samples.pop();
    this.samples.push([at, offset]);
  }

  /** The server's clock less this machine's (0 before any sample). */
  offsetMs(): number {
    this.forgetOld(this.localNow());
    return this.samples[0]?.[1] ?? 0;
  }

  /** The server's clock now. */
  now(): number {
    return this.localNow() + this.offsetMs();
  }

  /** `localMs`, a time on this machine's clock, on the server's. */
  toServer(localMs: number): number {
    return localMs + this.offsetMs();
  }

  private forgetOld(nowMs: number): void {
    // The newest sample stays whatever its age: it is still the best there is.
    while (this.samples.length > 1 && nowMs - this.samples[0]![0] > SERVER_CLOCK_WINDOW_MS) this.samples.shift();
  }
}
