import type { Id } from "../model/types.js";
import type { Sender } from "./submit.js";

/** A send's place in its device's line: wait for `ready`, then call `done()` once the send has gone out (or given up). */
export interface SendTurn {
  readonly ready: Promise<void>;
  /** A send ahead has not gone out yet: false means `ready` is resolved, and a caller may go on without awaiting it. */
  readonly waiting: boolean;
  done(): void;
}

const RESOLVED = Promise.resolve();

const lineKey = (sender: Sender, channelId: Id): string => `${sender.userId}:${sender.deviceId}:${channelId}`;

/**
 * Keeps one device's sends to a channel in the order it sent them. A session
 * handles frames as they come, so a device's sends are checked concurrently,
 * and the checks finish in any order (a slow read, a reply that reads its
 * target); each send goes out (into the queue, or into the log) only after
 * the device's previous send to that channel went out or failed. Only the
 * going out is in line: the checks still overlap.
 *
 * A line is a chain of turns, each knowing the one behind it. Nearly every
 * send has nobody ahead: it then makes no promise at all (this ran once per
 * message, and two promises and three closures a send were a tenth of the
 * send's allocations).
 */
export class SendOrder {
  /** The last turn of each line (user:device:channel) not through yet. */
  private readonly last = new Map<string, Turn>();

  take(sender: Sender, channelId: Id): SendTurn {
    const key = lineKey(sender, channelId);
    const turn = new Turn(this, key, this.last.get(key));
    this.last.set(key, turn);
    return turn;
  }

  /**
   * Whether none of the device's sends to the channel is in line: one that goes out before
   * its caller yields then needs no turn. Builds no key while no line is open at all.
   */
  clear(sender: Sender, channelId: Id): boolean {
    return this.last.size === 0 || !this.last.has(lineKey(sender, channelId));
  }

  /** A turn done with nobody ahead: it is through, and so is each done turn behind it. */
  through(turn: Turn): void {
    for (let t: Turn | undefined = turn; t !== undefined; ) {
      if (this.last.get(t.key) === t) this.last.delete(t.key);
      const next: Turn | undefined = t.behind;
      if (next === undefined) return;
      next.wake();
      t = next.isDone ? next : undefined;
    }
  }

  /** Devices with a send in line, for tests: entries never outlive their sends. */
  get size(): number {
    return this.last.size;
  }
}

class Turn implements SendTurn {
  behind: Turn | undefined;
  waiting: boolean;
  isDone = false;
  private promise: Promise<void> | undefined;
  private resolve: (() => void) | undefined;

  constructor(
    private readonly order: SendOrder,
    readonly key: string,
    ahead: Turn | undefined,
  ) {
    this.waiting = ahead !== undefined;
    if (ahead !== undefined) ahead.behind = this;
  }

  get ready(): Promise<void> {
    if (!this.waiting) return RESOLVED;
    return (this.promise ??= new Promise<void>((r) => (this.resolve = r)));
  }

  /** The turn ahead is through. */
  wake(): void {
    this.waiting = false;
    this.resolve?.();
  }

  // Never before the sends ahead: a send that gives up early (refused, a resend
  // already stored) must not let the one behind it overtake the one ahead of it.
  done(): void {
    if (this.isDone) return;
    this.isDone = true;
    if (!this.waiting) this.order.through(this);
  }
}
