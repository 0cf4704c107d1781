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
 * fans the change out, and says so (`told`); a flip nobody told is handed to
 * a sweeper later (`claimUntold`). Each flip carries the user's new version, so an
 * announcement that went slowly can tell whether a later flip overtook it
 * (`latest`).
 */
/** How `PresenceStore.touch` treats a device that is not alive (see there). */
export interface TouchOptions {
  ifAlive?: boolean;
  orUnknownUser?: boolean;
}

export interface PresenceStore {
  /**
   * The device was alive at `nowMs` and counts as online until `expiresAtMs`.
   * A device last alive after `nowMs` is left as it is: a touch as of an
   * earlier time (a silent session's end, or its re-touch after a store
   * failure, as of its last frame) never takes back a later one (the device
   * came back on another session meanwhile).
   * With `ifAlive`, only a device that is still unexpired is updated (a
   * disconnect starts the grace period of a live device, but never brings an
   * expired one back); with `orUnknownUser` as well, a user the store holds
   * nothing of is written as without `ifAlive`: its data was lost (Redis
   * restarted empty), and a device whose session ends before its next
   * heartbeat must still get a grace period that a sweep ends, or it stays
   * online to its watchers for good. Returns the flip when this made the
   * user online.
   */
  touch(
    userId: Id,
    deviceId: Id,
    nowMs: number,
    expiresAtMs: number,
    options?: TouchOptions,
  ): Promise<PresenceFlip | undefined>;
  /**
   * The device is gone at once (logout, revocation). Returns the flip (with
   * the user's last-seen time) when this made the user offline.
   */
  drop(userId: Id, deviceId: Id, nowMs: number): Promise<PresenceFlip | undefined>;
  /**
   * Flips users whose every device expired at or before `nowMs` to offline,
   * with last seen = the last time one of their devices was alive. Returns at
   * most `limit` flips; call again while it returns `limit`.
   */
  expire(nowMs: number, limit: number): Promise<PresenceFlip[]>;
  /**
   * The user's latest flip: what their watchers must have heard last. Never
   * seen (or forgotten): offline, version 0.
   */
  latest(userId: Id): Promise<PresenceFlip>;
  /**
   * The user's flip of `version` (or a later one) was told to their
   * audience: `claimUntold` no longer hands it out.
   */
  told(userId: Id, version: number): Promise<void>;
  /**
   * Flips that nobody confirmed told (`told`) within `afterMs` of being made
   * (their maker died between the flip and its announcement, or gave up
   * during a long outage): at most `limit` users, each with their latest
   * flip. Each is claimed as of `nowMs`: handed out again only if still
   * untold `afterMs` later, so concurrent sweepers do not all tell it.
   */
  claimUntold(nowMs: number, afterMs: number, limit: number): Promise<PresenceFlip[]>;
  /** Presence of each given user, in input order. Unknown users are offline without last seen. */
  get(userIds: readonly Id[], nowMs: number): Promise<UserPresence[]>;
  /** Resolves when the store answers (a sweeper that saw it fail asks before expiring anyone). */
  ping(): Promise<void>;
  /**
   * Called when the store may have lost its state (Redis reconnected, perhaps
   * after a restart): the chat servers touch their sessions' devices again.
   */
  onReset?(listener: () => void): void;
  close(): Promise<void>;
}

export interface UserPresence {
  userId: Id;
  online: boolean;
  /** Set only while offline, once the user has ever been seen (and within the store's retention). */
  lastSeenAtMs?: number;
}

/** A change of a user's aggregate, as the store decided it. */
export interface PresenceFlip extends UserPresence {
  /**
   * Goes up with every flip of the user: to one past the previous version,
   * or to the flip's time if that is more, so versions never repeat even
   * after the store lost the user's record.
   */
  version: number;
}
