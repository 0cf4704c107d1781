import type { Id } from "../model/types.js";

/**
 * PresenceStore keeps soft per-device liveness and the per-user aggregate
 * (online while any device is). Adapters: memory (chatd) and redis
 * (distributed mode). Times are passed in by the caller (epoch ms), so the
 * store never reads a clock of its own: tests control time, and several
 * processes sharing a Redis agree on it through their callers.
 *
 * Every method that flips a user's aggregate state reports the flip to
 * exactly one caller, however many processes call concurrently: that caller
 * fans the change out.
 */
export interface PresenceStore {
  /**
   * The device was alive at `nowMs` and counts as online until `expiresAtMs`.
   * With `ifAlive`, only a device that is still unexpired is updated (a
   * disconnect starts the grace period of a live device, but never brings an
   * expired one back). Returns true when this made the user online.
   */
  touch(userId: Id, deviceId: Id, nowMs: number, expiresAtMs: number, options?: { ifAlive?: boolean }): Promise<boolean>;
  /**
   * The device is gone at once (logout, revocation). Returns the user's
   * last-seen time when this made the user offline, otherwise undefined.
   */
  drop(userId: Id, deviceId: Id, nowMs: number): Promise<number | undefined>;
  /**
   * Flips users whose every device expired at or before `nowMs` to offline,
   * with last seen = the last time one of their devices was alive. Returns at
   * most `limit` flips; call again while it returns `limit`.
   */
  expire(nowMs: number, limit: number): Promise<PresenceFlip[]>;
  /** Presence of each given user, in input order. Unknown users are offline without last seen. */
  get(userIds: readonly Id[], nowMs: number): Promise<UserPresence[]>;
  close(): Promise<void>;
}

export interface UserPresence {
  userId: Id;
  online: boolean;
  /** Set only while offline, once the user has ever been seen (and within the store's retention). */
  lastSeenAtMs?: number;
}

export interface PresenceFlip {
  userId: Id;
  lastSeenAtMs: number;
}
