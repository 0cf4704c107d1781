import type { Id } from "../model/types.js";
import type { PresenceFlip, PresenceStore, TouchOptions, UserPresence } from "./port.js";

interface DeviceState {
  deviceId: Id;
  lastAliveMs: number;
  expiresAtMs: number;
}

interface UserState {
  /** A list, not a Map: a user has a few devices, and chatd holds one of these per user online. */
  devices: DeviceState[];
  online: boolean;
  lastSeenMs?: number;
  /** Of the latest flip (see PresenceFlip). */
  version: number;
}

/** The embedded PresenceStore of chatd: process memory (presence is soft state). */
export class MemoryPresenceStore implements PresenceStore {
  private readonly users = new Map<Id, UserState>();
  /**
   * Users whose aggregate is online, the only ones expire() has to look at,
   * with their state: the sweep walks this once a second, and a lookup in
   * `users` by 64-bit id costs more than the rest of its visit (15 ms a sweep
   * at 50,000 users online, the event loop held for it).
   */
  private readonly online = new Map<Id, UserState>();
  /** Users whose latest flip is not confirmed told: when it was made, or last claimed. */
  private readonly untold = new Map<Id, number>();

  async touch(
    userId: Id,
    deviceId: Id,
    nowMs: number,
    expiresAtMs: number,
    options: TouchOptions = {},
  ): Promise<PresenceFlip | undefined> {
    let u = this.users.get(userId);
    const d = u?.devices.find((x) => x.deviceId === deviceId);
    if (options.ifAlive && !(options.orUnknownUser && !u) && (!d || d.expiresAtMs <= nowMs)) return undefined;
    if (!u) this.users.set(userId, (u = { devices: [], online: false, version: 0 }));
    if (d) {
      d.lastAliveMs = nowMs;
      d.expiresAtMs = expiresAtMs;
    } else {
      // Not push(): growing an array from empty reserves room for 16 more.
      u.devices = [...u.devices, { deviceId, lastAliveMs: nowMs, expiresAtMs }];
    }
    prune(u, nowMs);
    if (u.online) return undefined;
    u.online = true;
    this.online.set(userId, u);
    return { userId, online: true, version: this.flipped(userId, u, nowMs) };
  }

  async drop(userId: Id, deviceId: Id, nowMs: number): Promise<PresenceFlip | undefined> {
    const u = this.users.get(userId);
    if (!u) return undefined;
    // Asked before prune(): a device of the user's that expired meanwhile is no device dropped now.
    const dropped = u.devices.some((d) => d.deviceId === deviceId);
    u.devices = u.devices.filter((d) => d.deviceId !== deviceId);
    prune(u, nowMs);
    // The dropped device was alive until now: the last seen of a later expiry is no earlier.
    if (dropped && (u.lastSeenMs ?? 0) < nowMs) u.lastSeenMs = nowMs;
    if (u.devices.length > 0 || !u.online) return undefined;
    u.online = false;
    u.lastSeenMs = nowMs;
    this.online.delete(userId);
    return { userId, online: false, lastSeenAtMs: nowMs, version: this.flipped(userId, u, nowMs) };
  }

  async expire(nowMs: number, limit: number): Promise<PresenceFlip[]> {
    // forEach: a for-of over the entries makes a [key, value] pair per user.
    const due: { userId: Id; u: UserState }[] = [];
    this.online.forEach((u, userId) => {
      if (due.length < limit && !aliveAt(u, nowMs)) due.push({ userId, u });
    });
    const flips: PresenceFlip[] = [];
    for (const { userId, u } of due) {
      const lastAlive = prune(u, nowMs);
      u.online = false;
      u.lastSeenMs = Math.max(u.lastSeenMs ?? 0, lastAlive || nowMs);
      this.online.delete(userId);
      flips.push({ userId, online: false, lastSeenAtMs: u.lastSeenMs, version: this.flipped(userId, u, nowMs) });
    }
    return flips;
  }

  async latest(userId: Id): Promise<PresenceFlip> {
    const u = this.users.get(userId);
    if (!u) return { userId, online: false, version: 0 };
    if (u.online || u.lastSeenMs === undefined) return { userId, online: u.online, version: u.version };
    return { userId, online: false, lastSeenAtMs: u.lastSeenMs, version: u.version };
  }

  async told(userId: Id, version: number): Promise<void> {
    if ((this.users.get(userId)?.version ?? 0) <= version) this.untold.delete(userId);
  }

  async claimUntold(nowMs: number, afterMs: number, limit: number): Promise<PresenceFlip[]> {
    const claimed: Id[] = [];
    for (const [userId, sinceMs] of this.untold) {
      if (claimed.length >= limit) break;
      if (sinceMs <= nowMs - afterMs) claimed.push(userId);
    }
    for (const userId of claimed) this.untold.set(userId, nowMs);
    return Promise.all(claimed.map((userId) => this.latest(userId)));
  }

  async get(userIds: readonly Id[], nowMs: number): Promise<UserPresence[]> {
    return userIds.map((userId) => {
      const u = this.users.get(userId);
      if (!u) return { userId, online: false };
      let lastSeen = u.lastSeenMs ?? 0;
      let online = false;
      for (const d of u.devices) {
        if (d.expiresAtMs > nowMs) online = true;
        else lastSeen = Math.max(lastSeen, d.lastAliveMs);
      }
      if (online) return { userId, online: true };
      return lastSeen > 0 ? { userId, online: false, lastSeenAtMs: lastSeen } : { userId, online: false };
    });
  }

  async ping(): Promise<void> {}

  /** Counts a flip of the user, untold until its maker says otherwise; returns its version (see PresenceFlip). */
  private flipped(userId: Id, u: UserState, nowMs: number): number {
    u.version = Math.max(u.version + 1, Math.floor(nowMs));
    this.untold.set(userId, nowMs);
    return u.version;
  }

  async close(): Promise<void> {}
}


/** Whether any of the user's devices is alive at `nowMs`. */
function aliveAt(u: UserState, nowMs: number): boolean {
  for (const d of u.devices) if (d.expiresAtMs > nowMs) return true;
  return false;
}

/** Drops expired devices; returns the latest lastAlive among the dropped ones (0 if none). */
function prune(u: UserState, nowMs: number): number {
  let lastAlive = 0;
  let expired = false;
  for (const d of u.devices) {
    if (d.expiresAtMs <= nowMs) {
      expired = true;
      lastAlive = Math.max(lastAlive, d.lastAliveMs);
    }
  }
  if (expired) u.devices = u.devices.filter((d) => d.expiresAtMs > nowMs);
  return lastAlive;
}
