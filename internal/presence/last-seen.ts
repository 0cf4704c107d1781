import type { Id } from "../model/types.js";

/** A user's last-seen time, as a presence store hands it on. */
export interface LastSeen {
  userId: Id;
  atMs: number;
}

/**
 * Where chatd's memory presence store keeps last-seen times beyond the
 * process: without it a restart (an upgrade) forgot them all, and a peer
 * showed just "offline" instead of "last seen 2 h ago". Written when a user
 * flips offline (once per user per grace period at most), when the store
 * closes, and for a user still online soon after they come online, then
 * once a minute (a process killed with them online left their previous last
 * seen, days old); read for a user the store holds nothing of. Redis keeps
 * its own.
 */
export interface LastSeenLog {
  /**
   * Keeps each time as its user's last seen, unless a later one is kept.
   * Times at or before `forgetBeforeMs` (past the retention) may be
   * forgotten meanwhile. Resolves once written.
   */
  record(entries: readonly LastSeen[], forgetBeforeMs: number): Promise<void>;
  /** The kept last seen, later than `sinceMs`, of those of `userIds` that have one. */
  read(userIds: readonly Id[], sinceMs: number): Promise<Map<Id, number>>;
}

/** Keeps nothing: a store without it forgets every last seen when its process ends. */
export const noLastSeenLog: LastSeenLog = {
  record: async () => {},
  read: async () => new Map(),
};
