import type { Id } from "../model/types.js";
import { noLastSeenLog, type LastSeen, type LastSeenLog } from "./last-seen.js";
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
  /** While online: when their last seen is next written through to the log (see `lastSeenWriteMs`). */
  logDueMs?: number;
}

export interface MemoryPresenceOptions {
  /**
   * How long an offline user whose flip was told keeps their full state
   * (devices, version) before only their last seen is kept. Longer than
   * anything that may still announce the flip: its retries (about six
   * minutes), a sweep's claim of an untold one. Default 10 minutes.
   */
  settleMs?: number;
  /** How long an offline user's last-seen time is kept, as on Redis. Default 90 days. */
  lastSeenTtlMs?: number;
  /** Last-seen times kept at most (about 80 bytes each, a whole entry about 350); past it the oldest are forgotten. Default 1,000,000. */
  maxLastSeen?: number;
  /**
   * Keeps last-seen times beyond the process (chatd: chat.db), for users
   * held nothing of after a restart. Its writes and reads are soft, as
   * presence is: a failed one is handed to `onLastSeenLogError` and costs
   * only that last seen. Default: kept in memory alone.
   */
  lastSeenLog?: LastSeenLog;
  onLastSeenLogError?: (err: unknown) => void;
  /**
   * How often the last seen of a user still online is written through to
   * the log (at a sweep: once soon after they come online, then at most once
   * per this per user): a process killed while they are online loses no more
   * of it than this, where it once left them at their previous last seen,
   * days old. Default 60 s.
   */
  lastSeenWriteMs?: number;
}

/** Settled users looked at per expire() at most, so a sweep never holds the event loop long. */
const SETTLE_BATCH = 10_000;
/**
 * Last seens of online users written through per expire() at most: users who
 * came online together (everyone, after a restart) would otherwise all be
 * due at the same sweep, every interval; past it they are spread over the
 * next sweeps, and stay spread. 1,000 rows cost chat.db's writer about 10 ms
 * (20 ms and more when a checkpoint runs), on the event loop.
 */
const WRITE_THROUGH_BATCH = 1_000;

/**
 * The embedded PresenceStore of chatd: process memory (presence is soft
 * state). Every user who was ever online once kept an entry for the life of
 * the process; now an offline user's state is kept whole only while their
 * flip may still be announced (`settleMs`), then as a last-seen time alone
 * (which also stands in for their version: see `settle`), and that for
 * `lastSeenTtlMs`, at most `maxLastSeen` of them.
 */
export class MemoryPresenceStore implements PresenceStore {
  private readonly users = new Map<Id, UserState>();
  /** Offline users in `users`, by when they went offline (oldest first, as inserted). */
  private readonly offlineSince = new Map<Id, number>();
  /** Settled users: last seen alone, oldest settled first (as inserted). */
  private readonly lastSeen = new Map<Id, number>();
  private readonly settleMs: number;
  private readonly lastSeenTtlMs: number;
  private readonly maxLastSeen: number;
  private readonly log: LastSeenLog;
  private readonly onLogError: (err: unknown) => void;
  /** Undefined without a log: nothing to write through. */
  private readonly writeEveryMs: number | undefined;
  /** Writes to the log under way: close() waits for them. */
  private readonly logging = new Set<Promise<void>>();
  /** The latest time a caller passed: the retention of the log's times is counted from it (latest() is passed none). */
  private nowMs = 0;
  /**
   * Users whose aggregate is online, the only ones expire() has to look at,
   * with their state: the sweep walks this once a second, and a lookup in
   * `users` by 64-bit id costs more than the rest of its visit (15 ms a sweep
   * at 50,000 users online, the event loop held for it).
   */
  private readonly online = new Map<Id, UserState>();
  /** Users whose latest flip is not confirmed told: when it was made, or last claimed. */
  private readonly untold = new Map<Id, number>();

  constructor(options: MemoryPresenceOptions = {}) {
    this.settleMs = options.settleMs ?? 10 * 60_000;
    this.lastSeenTtlMs = options.lastSeenTtlMs ?? 90 * 24 * 3600 * 1000;
    this.maxLastSeen = options.maxLastSeen ?? 1_000_000;
    this.log = options.lastSeenLog ?? noLastSeenLog;
    this.onLogError = options.onLastSeenLogError ?? (() => {});
    this.writeEveryMs = options.lastSeenLog ? (options.lastSeenWriteMs ?? 60_000) : undefined;
  }

  /** The user's full state, unsettled from a last seen if need be; undefined for a user the store holds nothing of. */
  private state(userId: Id): UserState | undefined {
    const u = this.users.get(userId);
    if (u) return u;
    const seen = this.lastSeen.get(userId);
    if (seen === undefined) return undefined;
    this.lastSeen.delete(userId);
    const back = userState(seen, seen);
    this.users.set(userId, back);
    return back;
  }

  async touch(
    userId: Id,
    deviceId: Id,
    nowMs: number,
    expiresAtMs: number,
    options: TouchOptions = {},
  ): Promise<PresenceFlip | undefined> {
    // A settled user is known (as a Redis hash that kept its last seen): never written by an ifAlive touch.
    if (options.ifAlive && !this.users.has(userId) && this.lastSeen.has(userId)) return undefined;
    let u = this.state(userId);
    const d = u?.devices.find((x) => x.deviceId === deviceId);
    if (options.ifAlive && !(options.orUnknownUser && !u) && (!d || d.expiresAtMs <= nowMs)) return undefined;
    // As of an earlier time than the device's last touch (a session's last frame, the device back on another session since): nothing to change.
    if (d && d.lastAliveMs > nowMs) return undefined;
    if (!u) this.users.set(userId, (u = userState(undefined, 0)));
    if (d) {
      d.lastAliveMs = nowMs;
      d.expiresAtMs = expiresAtMs;
    } else {
      // Not push() nor a spread, which grow an array from empty and reserve room for 16 more (152 B where one device takes 24).
      u.devices = u.devices.concat({ deviceId, lastAliveMs: nowMs, expiresAtMs });
    }
    prune(u, nowMs);
    if (u.online) return undefined;
    u.online = true;
    u.logDueMs = nowMs; // at the next sweep: a crash right after must not leave the previous last seen
    this.online.set(userId, u);
    this.offlineSince.delete(userId);
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
    // A drop told late (replayed once the store answered) may come after a later one of another device.
    u.lastSeenMs = Math.max(u.lastSeenMs ?? 0, nowMs);
    this.wentOffline(userId, nowMs);
    this.keep([{ userId, atMs: u.lastSeenMs }], nowMs);
    return { userId, online: false, lastSeenAtMs: u.lastSeenMs, version: this.flipped(userId, u, nowMs) };
  }

  async expire(nowMs: number, limit: number): Promise<PresenceFlip[]> {
    // forEach: a for-of over the entries makes a [key, value] pair per user.
    const due: { userId: Id; u: UserState }[] = [];
    const stillOnline: LastSeen[] = [];
    const every = this.writeEveryMs;
    this.online.forEach((u, userId) => {
      if (!aliveAt(u, nowMs)) {
        if (due.length < limit) due.push({ userId, u });
      } else if (every !== undefined && u.logDueMs! <= nowMs && stillOnline.length < WRITE_THROUGH_BATCH) {
        stillOnline.push({ userId, atMs: lastAlive(u) });
        u.logDueMs = nowMs + every;
      }
    });
    this.keep(stillOnline, nowMs);
    this.settle(nowMs);
    const flips: PresenceFlip[] = [];
    for (const { userId, u } of due) {
      const lastAlive = prune(u, nowMs);
      u.online = false;
      u.lastSeenMs = Math.max(u.lastSeenMs ?? 0, lastAlive || nowMs);
      this.wentOffline(userId, nowMs);
      flips.push({ userId, online: false, lastSeenAtMs: u.lastSeenMs, version: this.flipped(userId, u, nowMs) });
    }
    this.keep(flips.map((f) => ({ userId: f.userId, atMs: f.lastSeenAtMs! })), nowMs);
    return flips;
  }

  async latest(userId: Id): Promise<PresenceFlip> {
    const u = this.users.get(userId);
    if (!u) {
      // Kept before a restart: as a settled user, its last seen stands in for its version.
      const seen = this.lastSeen.get(userId) ?? (await this.logged([userId], this.nowMs)).get(userId);
      return seen === undefined ? { userId, online: false, version: 0 } : { userId, online: false, lastSeenAtMs: seen, version: seen };
    }
    if (u.online || u.lastSeenMs === undefined) return { userId, online: u.online, version: u.version };
    return { userId, online: false, lastSeenAtMs: u.lastSeenMs, version: u.version };
  }

  async told(userId: Id, version: number): Promise<void> {
    if ((this.users.get(userId)?.version ?? this.lastSeen.get(userId) ?? 0) <= version) this.untold.delete(userId);
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
    const unknown = userIds.filter((userId) => !this.users.has(userId) && !this.lastSeen.has(userId));
    const logged = unknown.length > 0 ? await this.logged(unknown, nowMs) : new Map<Id, number>();
    return userIds.map((userId) => {
      const u = this.users.get(userId);
      if (!u) {
        const seen = this.lastSeen.get(userId) ?? logged.get(userId);
        return seen === undefined ? { userId, online: false } : { userId, online: false, lastSeenAtMs: seen };
      }
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

  /** Users held whole, and users held as a last seen alone (tests, metrics). */
  get retained(): { whole: number; lastSeen: number } {
    return { whole: this.users.size, lastSeen: this.lastSeen.size };
  }

  /**
   * Last seens the log kept of users held nothing of here (from before a
   * restart), within the retention. A failed read answers none (handed to
   * `onLastSeenLogError`), as the Redis store's does: presence lives in this
   * process and lost nothing, and a rejection here failed GetPresence and,
   * taken by the tracker for a store gone away, held sweeps off for a grace period.
   */
  private async logged(userIds: readonly Id[], nowMs: number): Promise<Map<Id, number>> {
    this.nowMs = Math.max(this.nowMs, nowMs);
    try {
      return await this.log.read(userIds, this.nowMs - this.lastSeenTtlMs);
    } catch (err) {
      this.onLogError(err);
      return new Map();
    }
  }

  /** Writes last seens to the log, in the background: a flip never waits for (nor fails by) the disk. */
  private keep(entries: LastSeen[], nowMs: number): void {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (entries.length === 0) return;
    const p = this.log.record(entries, nowMs - this.lastSeenTtlMs).catch(this.onLogError);
    this.logging.add(p);
    void p.finally(() => this.logging.delete(p));
  }

  private wentOffline(userId: Id, nowMs: number): void {
    this.online.delete(userId);
    this.offlineSince.delete(userId); // re-inserted last: the map stays in order of going offline
    this.offlineSince.set(userId, nowMs);
  }

  /**
   * Keeps only the last seen of users offline for `settleMs` whose flip was
   * told, and forgets last seens past their retention. The last seen also
   * serves as the version: it is no later than the flip that set it, so the
   * next flip's version (the flip's time at least) is still above every
   * version this user had, and nothing still announces the older flips to
   * compare with it. A user whose flip is still untold (a sweep will tell
   * it) goes to the back, to be looked at again a settleMs later.
   */
  private settle(nowMs: number): void {
    let looked = 0;
    for (const [userId, since] of this.offlineSince) {
      if (since > nowMs - this.settleMs || ++looked > SETTLE_BATCH) break;
      this.offlineSince.delete(userId);
      if (this.untold.has(userId)) {
        this.offlineSince.set(userId, nowMs);
        continue;
      }
      const u = this.users.get(userId);
      this.users.delete(userId);
      // An offline user holds no live device; a never-seen one (no last seen) keeps nothing.
      if (u?.lastSeenMs !== undefined) this.lastSeen.set(userId, u.lastSeenMs);
    }
    for (const [userId, seen] of this.lastSeen) {
      if (seen > nowMs - this.lastSeenTtlMs && this.lastSeen.size <= this.maxLastSeen) break;
      this.lastSeen.delete(userId);
    }
  }

  /** Counts a flip of the user, untold until its maker says otherwise; returns its version (see PresenceFlip). */
  private flipped(userId: Id, u: UserState, nowMs: number): number {
    u.version = Math.max(u.version + 1, Math.floor(nowMs));
    this.untold.set(userId, nowMs);
    return u.version;
  }

  /**
   * Users still online now go offline with the process: their last seen is
   * their devices' last alive (a drained session's end), kept so that after
   * the restart they are not shown with an older one, or with none.
   */
  async close(): Promise<void> {
    const stillOnline: LastSeen[] = [];
    this.online.forEach((u, userId) => {
      const atMs = lastAlive(u);
      if (atMs > 0) stillOnline.push({ userId, atMs });
    });
    this.keep(stillOnline, this.nowMs);
    await Promise.all(this.logging);
  }
}


/**
 * Every field in the literal, in one order: one added later (logDueMs, when
 * the user comes online) goes to a property array of its own, ~40 B more a
 * user online, and two shapes make every access site polymorphic.
 */
function userState(lastSeenMs: number | undefined, version: number): UserState {
  return { devices: [], online: false, lastSeenMs, version, logDueMs: undefined };
}

/** When the user was last heard from: their devices' latest last alive (or their last seen, if later). */
function lastAlive(u: UserState): number {
  return u.devices.reduce((at, d) => Math.max(at, d.lastAliveMs), u.lastSeenMs ?? 0);
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
