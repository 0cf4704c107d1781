export interface CooldownOptions {
  /** The longest wait after a first failure. */
  firstMs: number;
  /** The longest wait whatever the failures in a row. */
  maxMs: number;
  now: () => number;
  /** In [0, 1): where in its range each wait falls. */
  random: () => number;
}

/**
 * How long each chat server is left alone after it failed a gateway (its
 * stream broke, or it refused a session). The wait doubles with each failure
 * in a row up to a cap, and one placement it answered starts it afresh: a
 * flat wait made a server that stayed unreachable (dead, its lease not yet
 * expired) take a round of failing sessions every cooldown for as long. Each
 * wait is drawn between half and all of its step, so the gateways that
 * watched one server fail at the same moment come back to it spread out,
 * not all in the same millisecond.
 */
export class ServerCooldowns {
  private readonly byServer = new Map<string, { failures: number; untilMs: number }>();

  constructor(private readonly o: CooldownOptions) {}

  /** The server failed: it is left alone for the returned number of milliseconds. */
  failed(serverId: string): number {
    const now = this.o.now();
    const c = this.byServer.get(serverId);
    // One outage fails its sessions one by one (each refused, each moved): it is one failure.
    if (c && now < c.untilMs) return c.untilMs - now;
    const failures = (c?.failures ?? 0) + 1;
    // Past 2^30 the step is the cap anyway; the exponent stays small.
    const step = Math.min(this.o.maxMs, this.o.firstMs * 2 ** Math.min(failures - 1, 30));
    const waitMs = step / 2 + this.o.random() * (step / 2);
    this.byServer.set(serverId, { failures, untilMs: now + waitMs });
    return waitMs;
  }

  /** The server answered a placement: its next failure waits the first step again. */
  answered(serverId: string): void {
    const c = this.byServer.get(serverId);
    if (!c) return;
    // An answer to a session placed before a failure ends no cooldown under way.
    if (this.o.now() < c.untilMs) c.failures = 0;
    else this.byServer.delete(serverId);
  }

  cooling(serverId: string, nowMs: number): boolean {
    const c = this.byServer.get(serverId);
    return c !== undefined && nowMs < c.untilMs;
  }

  /** Failures in a row so far (0: none since the last answer). */
  failures(serverId: string): number {
    return this.byServer.get(serverId)?.failures ?? 0;
  }

  forget(serverId: string): void {
    this.byServer.delete(serverId);
  }

  servers(): IterableIterator<string> {
    return this.byServer.keys();
  }
}
