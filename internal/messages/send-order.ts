import type { Id } from "../model/types.js";
import type { Sender } from "./submit.js";

/** A send's place in its device's line: wait for `ready`, then call `done()` once the send has gone out (or given up). */
export interface SendTurn {
  readonly ready: Promise<void>;
  done(): void;
}

/**
 * Keeps one device's sends to a channel in the order it sent them. A session
 * handles frames as they come, so a device's sends are checked concurrently,
 * and the checks finish in any order (a slow read, a reply that reads its
 * target); each send goes out (into the queue, or into the log) only after
 * the device's previous send to that channel went out or failed. Only the
 * going out is in line: the checks still overlap.
 */
export class SendOrder {
  private readonly last = new Map<string, Promise<void>>();

  take(sender: Sender, channelId: Id): SendTurn {
    const key = `${sender.userId}:${sender.deviceId}:${channelId}`;
    const ready = this.last.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    this.last.set(key, mine);
    let released = false;
    return {
      ready,
      // Never before the sends ahead: a send that gives up early (refused, a resend
      // already stored) must not let the one behind it overtake the one ahead of it.
      done: () => {
        if (released) return;
        released = true;
        void ready.then(() => {
          release();
          if (this.last.get(key) === mine) this.last.delete(key);
        });
      },
    };
  }

  /** Devices with a send in line, for tests: entries never outlive their sends. */
  get size(): number {
    return this.last.size;
  }
}
