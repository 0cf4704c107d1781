import type { Id } from "../model/types.js";
import type { Origin } from "./held.js";

/** Messages remembered as notified at most (about 100 bytes each): a burst past it forgets the oldest early. */
const NOTIFIED_MAX = 100_000;

/**
 * The messages of closed windows, by "user:message", with when they are
 * forgotten (oldest first, as inserted). A record that comes again after
 * its window closed would otherwise open a window of its own and push the
 * same message a second time.
 */
export class NotifiedMessages {
  private readonly byKey = new Map<string, { until: number; origin: Origin }>();

  constructor(
    private readonly monotonicNow: () => number,
    private readonly keepMs: number,
  ) {}

  get(userId: Id, messageId: Id): { until: number; origin: Origin } | undefined {
    return this.byKey.get(`${userId}:${messageId}`);
  }

  /** Keeps `messageIds` notified for `keepMs` (the notifier's repeatWindowMs) from now. */
  add(userId: Id, messageIds: Iterable<Id>, origin: Origin): void {
    // Monotonic: a wall clock stepped forward past the window forgot every message notified, and a record that came again was pushed twice.
    const until = this.monotonicNow() + this.keepMs;
    for (const messageId of messageIds) this.byKey.set(`${userId}:${messageId}`, { until, origin });
  }

  /** Forgets the notified messages past their repeat window, and the oldest beyond NOTIFIED_MAX. */
  forget(): void {
    const now = this.monotonicNow();
    for (const [key, { until }] of this.byKey) {
      if (until > now && this.byKey.size <= NOTIFIED_MAX) break;
      this.byKey.delete(key);
    }
  }
}
