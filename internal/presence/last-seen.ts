import type { Id } from "../model/types.js";

/** A user's last-seen time, as a presence store hands it on. */
export interface LastSeen {
  userId: Id;
  atMs: number;
}

/**
 * Where a presence store keeps last-seen times beyond its own state: without
 * it a restart (of chatd, or of a Redis without persistence) forgot them
 * all, and a peer showed just "offline" instead of "last seen 2 h ago". Read
 * for a user the store holds nothing of. The memory store writes when a user
 * flips offline (once per user per grace period at most), when it closes,
 * and for a user still online soon after they come online, then once a
 * minute (a process killed with them online left their previous last seen,
 * days old). The Redis store writes only flips to offline: it keeps the last
 * heartbeats of users online itself, whatever process dies, and their chat
 * servers touch them again after a Redis restart.
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
