import { monotonicNow } from "../model/clock.js";
import type { Id } from "../model/types.js";
import { Slots } from "../model/slots.js";
import { OutageLog } from "../observability/outage-log.js";
import { StageHealth } from "../observability/stage-health.js";
import { defaultNotifierOptions, type NotifierDeps, type NotifierOptions } from "./notifier-options.js";

/** Fan-outs, and asks whether a push that waited is still due, reading the stores (online, mutes, endpoints, devices) at once. */
const FANOUTS_AT_ONCE = 64;

/**
 * What the notifier's parts (its collapse windows, fan-outs and sender)
 * share: its deps and options, its clocks, its health, the store slots, and
 * how far a stop has come.
 */
export class NotifierContext {
  readonly o: NotifierOptions;
  /** stop() was called: consume no more, start no retry, send what is held. */
  draining = false;
  /** The drain is over: send nothing more. */
  stopped = false;
  /** Notifier.health. */
  readonly health: StageHealth;
  /**
   * Fan-outs reading the stores at most. Windows close together (a backlog
   * read at start, each batch opening hundreds): all reading at once went past
   * the Cassandra driver's 2,048 requests per connection, and a device whose
   * login check failed so got no push.
   */
  readonly storeSlots = new Slots(FANOUTS_AT_ONCE);
  /** A store away fails the mutes read of every due notification: one warning for the outage, not one each. */
  private readonly mutesOutage: OutageLog;

  constructor(
    readonly deps: NotifierDeps,
    /** Lets the batches waiting for room go on, if there is room now (or the notifier is stopping). */
    readonly wakeWaiters: () => void,
  ) {
    this.o = { ...defaultNotifierOptions, ...deps.options };
    this.health = new StageHealth("notifier", undefined, () => this.monotonicNow());
    this.mutesOutage = new OutageLog({
      logger: deps.logger,
      failed: "channel mutes unreadable: notifying anyway",
      failedAgain: "channel mutes still unreadable: notifying anyway",
      recovered: "channel mutes readable again",
    });
  }

  now(): number {
    return (this.deps.now ?? Date.now)();
  }

  monotonicNow(): number {
    return (this.deps.monotonicNow ?? this.deps.now ?? monotonicNow)();
  }

  /** Fails open: a mute that cannot be read costs a push too many, not a message nobody hears about. */
  async channelMuted(userId: Id, channelId: Id): Promise<boolean> {
    if (!this.deps.channelMutedUntil) return false;
    try {
      const until = await this.deps.channelMutedUntil(userId, channelId);
      this.mutesOutage.succeeded();
      return until !== undefined && until > this.now();
    } catch (err) {
      this.mutesOutage.failed(err);
      return false;
    }
  }
}
