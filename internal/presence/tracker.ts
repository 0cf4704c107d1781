import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { PushFailedError, type SessionDirectory } from "../delivery/port.js";
import { monotonicNow } from "../model/clock.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { ChatError, isChatError } from "../model/errors.js";
import { Slots } from "../model/slots.js";
import type { Id } from "../model/types.js";
import type { PresenceAudience } from "./audience.js";
import type { PresenceFlip, PresenceStore, UserPresence } from "./port.js";

/** A user's aggregate presence changed. */
export interface PresenceChange {
  userId: Id;
  online: boolean;
  /** Set when offline. */
  lastSeenAtMs?: number;
}

export interface PresenceTrackerDeps {
  store: PresenceStore;
  /** Who hears about a user's changes. */
  audience: PresenceAudience;
  /** Pushes the PresenceEvent frames (the chat server in chatd, the routing directory when distributed). */
  directory: Pick<SessionDirectory, "pushToUsers">;
  /**
   * How long a device counts as online after its last heartbeat (or after
   * its session ended): a flaky network that reconnects within it never
   * shows the user offline. At least two heartbeat intervals (checkPresenceConfig).
   */
  graceMs: number;
  /**
   * The sessions' heartbeat interval: after the store failed, sweeps wait two
   * of them (a grace period at most) once it answers, by when every live
   * device has heartbeated again. Unset: a grace period.
   */
  heartbeatIntervalMs?: number;
  /** How often expired users are looked for; 0 = never by itself (tests call sweep()). */
  sweepIntervalMs: number;
  /** Backoff of an announcement that failed (audience read, push, store): first delay, cap, attempts. */
  retry?: { firstDelayMs: number; maxDelayMs: number; attempts: number };
  now?: () => number;
  /**
   * The clock of the sweeps' hold-off and of the failure log's spacing
   * (durations, not times the store keeps): the monotonic clock, or `now`
   * where a test fakes that alone.
   */
  monotonicNow?: () => number;
  logger?: Logger;
  /** Also told about every flip this process made (a PresenceChanged topic, metrics, tests). */
  onChange?: (change: PresenceChange) => void;
  /** Called after each sweep that looked at the whole store has announced its flips (metrics, tests). */
  onSwept?: () => void;
  /** Called for each failed call to an engine (the store, or for `tell` also the audience or push), by what it was for (metrics, tests). */
  onEngineError?: (op: PresenceEngineOp) => void;
}

/**
 * What a failed engine call was for: a device's liveness (`update`:
 * connect, heartbeat, disconnect, logout), a `get` (GetPresence), a `sweep`,
 * an announcement attempt (`announce`), a `tell` (tellLatest).
 */
export const PRESENCE_ENGINE_OPS = ["update", "get", "sweep", "announce", "tell"] as const;
export type PresenceEngineOp = (typeof PRESENCE_ENGINE_OPS)[number];

/** Failures of one op are logged at most this often: an outage fails every heartbeat of every session. */
const ENGINE_ERROR_LOG_MS = 10_000;

export function presenceFrame(change: PresenceChange): ServerFrame {
  return create(ServerFrameSchema, {
    kind: {
      case: "presence",
      value: {
        presence: create(PresenceSchema, {
          userId: change.userId,
          status: change.online ? PresenceStatus.ONLINE : PresenceStatus.OFFLINE,
          lastSeenAt: !change.online && change.lastSeenAtMs !== undefined ? timestampFromMs(change.lastSeenAtMs) : undefined,
        }),
      },
    },
  });
}

const SWEEP_BATCH = 500;
/**
 * The least time a flip goes untold before a sweep tells it in its maker's
 * stead: the longest a live maker's first telling may take (a Cassandra
 * read of the audience, 12 s at worst, then a delivery, 2 s). With a short
 * grace period alone (2.5 s in the system tests) a sweeper told watchers
 * again what they had just heard: a flip a freshly started, still cold
 * process was telling, or one whose maker died after its push landed and
 * before it said so. A later flip told within the wait ends the claim.
 */
const UNTOLD_AFTER_MIN_MS = 15_000;
/** Announcement attempts under way at once, each a few reads (its audience) and a push. */
const ANNOUNCING_AT_ONCE = 64;
/** About six minutes of retries: 0.2, 0.4, ... 25.6 s, then every 30 s. */
const DEFAULT_RETRY = { firstDelayMs: 200, maxDelayMs: 30_000, attempts: 20 };

/**
 * Turns device liveness (session opened, heartbeat, session ended, logout)
 * into per-user presence and fans changes out. It is the chat server's
 * PresenceHooks and the api's PresenceSource.
 *
 * Store operations of one user run one after another (a disconnect's touch
 * never overtakes the connect's); a failed one is logged and dropped: the
 * next heartbeat writes the state again. Announcements run beside them and
 * are ordered by the store's versions instead (see announce), since flips of
 * one user are announced by whichever processes made them.
 */
export class PresenceTracker {
  private readonly now: () => number;
  private readonly monotonicNow: () => number;
  private readonly retry: { firstDelayMs: number; maxDelayMs: number; attempts: number };
  private readonly untoldAfterMs: number;
  /** How long sweeps expire nobody once the store answers again after failing (see mayExpire). */
  private readonly holdOffMs: number;
  private readonly chains = new Map<Id, Promise<void>>();
  /**
   * Per user, a touch waiting last in their chain, not yet begun: a newer
   * touch of the same device joins it instead of queueing behind it. Each
   * frame a session sends may be a heartbeat (50 a second), and while the
   * store is slow or away (each call up to its 2 s timeout) a chain grew by
   * all of them, without bound; one touch, the latest, says what they said.
   * By device: two sessions of the user's heartbeating in turn never found
   * their own device's touch last, and grew the chain as before.
   */
  private readonly queuedTouch = new Map<Id, Map<Id, { deviceId: Id; atMs?: number }>>();
  private readonly announcing = new Set<Promise<void>>();
  /**
   * Announcement attempts under way at most: a sweep's flips (thousands, when
   * a chat server died) or a chat server's reconnects all at once read their
   * audiences together, five reads each, and half failed as "unreachable" (and
   * were retried together, to fail again), with the process's other queries.
   * A retry's wait holds no slot.
   */
  private readonly attemptSlots = new Slots(ANNOUNCING_AT_ONCE);
  private timer?: NodeJS.Timeout;
  private sweeping?: Promise<void>;
  private stopped = false;
  /** Ends the backoff waits of failed announcements at stop(). */
  private readonly stopping = new AbortController();
  /**
   * Since when (monotonic) the store answers (first, or again after failing); undefined
   * before its first answer and while it fails. A sweeper that starts just as
   * Redis comes back from a snapshot finds devices whose stored touches expired
   * while it was away, and their chat servers have not touched them again yet:
   * it holds off from the first answer as after a failure. A store that holds
   * nothing from before that answer loses nothing by it: no device of its can
   * expire within a grace period of it.
   */
  private answeringSinceMs: number | undefined;
  /** Whether a store call failed since the start: its next answer is a recovery (storeAnswers), not a first one. */
  private failedOnce = false;
  private readonly recoveredListeners: (() => void)[] = [];
  /** Per op, when a failure was last logged and how many went unlogged since. */
  private readonly errorLog = new Map<PresenceEngineOp, { atMs: number; unlogged: number }>();
  /** Sessions that ended while the store failed, by "user/device": ended again when it answers. */
  private readonly endedWhileAway = new Map<string, EndedSession>();
  /** Devices logged out while the store failed, by "user/device", with when: dropped again when it answers. */
  private readonly droppedWhileAway = new Map<string, { userId: Id; deviceId: Id; atMs: number }>();
  /**
   * Sessions that ended here within a grace period, oldest first, by
   * "user/device": a store that comes back empty lost their devices, whose
   * grace period no sweep would then end (no session is left to touch them
   * again), leaving them online on their watchers' screens for good. Ended
   * again when the store answers or resets, as endedWhileAway.
   */
  private readonly endedLately = new Map<string, EndedSession & { graceEndsMs: number }>();

  constructor(private readonly deps: PresenceTrackerDeps) {
    if (!(deps.graceMs > 0)) throw new Error("presence grace period must be positive");
    this.now = deps.now ?? Date.now;
    this.monotonicNow = deps.monotonicNow ?? deps.now ?? monotonicNow;
    this.retry = deps.retry ?? DEFAULT_RETRY;
    this.untoldAfterMs = Math.max(deps.graceMs, UNTOLD_AFTER_MIN_MS);
    this.holdOffMs = Math.min(deps.graceMs, 2 * (deps.heartbeatIntervalMs ?? Infinity));
    // A reconnect may follow a restart that lost every device: as after failures.
    deps.store.onReset?.(() => this.storeAnswers());
  }

  start(): void {
    if (this.deps.sweepIntervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => void this.sweep(), this.deps.sweepIntervalMs);
      this.timer.unref();
    }
  }

  /** Stops sweeping, gives up retries and waits for what is in flight (a sweep under way included). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    clearInterval(this.timer);
    this.timer = undefined;
    // Its flips are made in the store: told now, before the caller closes the directory.
    await this.sweeping;
    await this.idle();
  }

  // PresenceHooks (called synchronously by the chat server).

  deviceConnected(userId: Id, deviceId: Id): void {
    this.alive(userId, deviceId);
  }

  /**
   * A heartbeat; or, with `atMs`, the re-touch of a live session after the
   * store failed or was reset, as of its last frame (a silent session is not
   * made alive by it).
   */
  deviceAlive(userId: Id, deviceId: Id, atMs?: number): void {
    this.alive(userId, deviceId, atMs);
  }

  /**
   * The session ended: the device stays online for the grace period unless
   * it comes back. `lastAliveMs` (the session's last frame) tells a device
   * the store lost with its data from one that expired. The grace period
   * runs from the end, which the device made; from `lastAliveMs` for a
   * `silent` session, whose end the server made when it stopped hearing it.
   */
  deviceDisconnected(userId: Id, deviceId: Id, lastAliveMs?: number, silent = false): void {
    this.sessionEnded(userId, deviceId, lastAliveMs, silent);
  }

  /**
   * `endedAtMs`: a session ended again (the store failed, or came back empty,
   * after its end), as of its end. As of the replay, a restart mid-grace put
   * the device's last seen at the restart and ran its grace period on from there.
   */
  private sessionEnded(userId: Id, deviceId: Id, lastAliveMs: number | undefined, silent: boolean, endedAtMs?: number): void {
    const key = `${userId}/${deviceId}`;
    if (this.droppedWhileAway.has(key)) return; // logged out: its drop is replayed, and no grace period may outlive it
    this.run(userId, async () => {
      const now = this.now();
      const aliveAt = endedAtMs ?? (silent && lastAliveMs !== undefined ? Math.min(lastAliveMs, now) : now);
      const recent = endedAtMs !== undefined ? endedAtMs + this.deps.graceMs > now : lastAliveMs !== undefined && lastAliveMs + this.deps.graceMs > now;
      let flip: PresenceFlip | undefined;
      try {
        flip = await this.call((s) =>
          s.touch(userId, deviceId, aliveAt, aliveAt + this.deps.graceMs, { ifAlive: true, orUnknownUser: recent }),
        );
      } catch (err) {
        // No grace period was started, and no session is left to touch the
        // device again: ended again once the store answers (it may come back empty).
        this.endedWhileAway.set(key, { userId, deviceId, lastAliveMs: lastAliveMs ?? now, silent, endedAtMs: aliveAt });
        throw err;
      }
      this.endedWhileAway.delete(key);
      this.endedLately.delete(key); // re-inserted last: the map stays in order of graceEndsMs, nearly
      this.endedLately.set(key, { userId, deviceId, lastAliveMs: lastAliveMs ?? now, silent, endedAtMs: aliveAt, graceEndsMs: aliveAt + this.deps.graceMs });
      this.forgetEndedLately(now);
      if (flip) return void this.announce(flip);
      if (recent) return;
      // Past its grace period, and unknown to the store: its data was lost (a
      // Redis restart) with the device still online on its watchers' screens,
      // and no sweep will ever find it. Told offline here, unless a flip comes
      // first (version 0 loses to any).
      if ((await this.call((s) => s.latest(userId))).version === 0) {
        void this.announce({ userId, online: false, lastSeenAtMs: endedAtMs ?? lastAliveMs ?? now, version: 0 }, false);
      }
    });
  }

  /** Logout or revocation: the device is offline at once. */
  deviceLoggedOut(userId: Id, deviceId: Id): void {
    const key = `${userId}/${deviceId}`;
    // A logged-out device's end is the drop: never a grace period started again later.
    this.endedLately.delete(key);
    this.endedWhileAway.delete(key);
    this.dropDevice(userId, deviceId, this.now(), false);
  }

  /**
   * Drops the device as of `atMs`. One that fails is dropped again once the
   * store answers (`again`): the store may come back with the device, online
   * until its grace period ends past the logout, or empty, with nobody left
   * to tell the watchers the user went (no session is left to end): told
   * OFFLINE then, unless a flip comes first (version 0 loses to any).
   */
  private dropDevice(userId: Id, deviceId: Id, atMs: number, again: boolean): void {
    const key = `${userId}/${deviceId}`;
    this.run(userId, async () => {
      let flip: PresenceFlip | undefined;
      try {
        flip = await this.call((s) => s.drop(userId, deviceId, atMs));
      } catch (err) {
        this.droppedWhileAway.set(key, { userId, deviceId, atMs });
        throw err;
      }
      this.droppedWhileAway.delete(key);
      if (flip) return void this.announce(flip);
      if (again && (await this.call((s) => s.latest(userId))).version === 0) {
        void this.announce({ userId, online: false, lastSeenAtMs: atMs, version: 0 }, false);
      }
    });
  }

  /**
   * `listener` is called when the store answers again after failing, or may
   * have lost its state (a Redis reconnect): the chat server then touches
   * every live session's device at once (deviceAlive with its last frame),
   * rather than wait up to a heartbeat interval for each.
   */
  onStoreRecovered(listener: () => void): void {
    this.recoveredListeners.push(listener);
  }

  // PresenceSource (the api's GetPresence).

  /** Rejects with UNAVAILABLE when the store fails (a retry, not a bug, to the client). */
  async getPresence(userIds: Id[]): Promise<UserPresence[]> {
    try {
      return await this.call((s) => s.get(userIds, this.now()));
    } catch (err) {
      throw this.unavailable("get", err);
    }
  }

  /**
   * Tells `to`, who just came into the user's audience (a friendship, a
   * shared chat, a wider setting), the user's latest state. As an
   * announcement does, and for the same reason: a flip whose announcement
   * read its audience before `to` was in it must not be overtaken by the
   * older state read here, so the state is told again until it stands still
   * across a push. Rejects on a failure; no retries (the caller's change is
   * made, and the next flip tells `to` anyway).
   */
  async tellLatest(userId: Id, to: readonly Id[]): Promise<void> {
    if (to.length === 0) return;
    try {
      await this.tellUntilSteady(userId, to, { reached: new Set() });
    } catch (err) {
      throw this.unavailable("tell", err);
    }
  }

  /**
   * Flips users whose devices all went quiet past the grace period and
   * announces them, and tells flips that no process confirmed told a grace
   * period (at least UNTOLD_AFTER_MIN_MS) after they were made; returns how
   * many. Held off while the store fails and for two heartbeat intervals (a
   * grace period at most) after it answers, first or again.
   */
  async sweep(): Promise<number> {
    if (this.sweeping) {
      await this.sweeping;
      return 0;
    }
    // Only this sweep's announcements are awaited (their first attempts):
    // other users' updates never end, on a busy server, and would keep
    // onSwept from ever firing.
    const announced: Promise<void>[] = [];
    let looked = false;
    const run = (async () => {
      try {
        if (!(await this.mayExpire())) return;
        for (;;) {
          const flips = await this.call((s) => s.expire(this.now(), SWEEP_BATCH));
          for (const f of flips) announced.push(this.announce(f));
          if (flips.length < SWEEP_BATCH || this.stopped) break;
        }
        // Flips whose makers never said they told them: died in between, or gave up during an outage.
        const untold = await this.call((s) => s.claimUntold(this.now(), this.untoldAfterMs, SWEEP_BATCH));
        if (untold.length > 0) this.deps.logger?.warn({ users: untold.length }, "telling presence flips their makers did not");
        for (const f of untold) announced.push(this.announce(f, false));
        looked = true;
      } catch (err) {
        this.engineError("sweep", err, "presence sweep failed; will retry");
      }
    })();
    this.sweeping = run;
    await run;
    this.sweeping = undefined;
    await Promise.all(announced);
    if (looked) this.deps.onSwept?.();
    return announced.length;
  }

  /** Resolves once every queued operation and announcement has finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.chains.size > 0 || this.announcing.size > 0) await Promise.all([...this.chains.values(), ...this.announcing]);
  }

  private alive(userId: Id, deviceId: Id, atMs?: number): void {
    if (atMs === undefined) {
      this.endedWhileAway.delete(`${userId}/${deviceId}`);
      this.endedLately.delete(`${userId}/${deviceId}`);
    }
    // Touches queued last in the chain, one per device: nothing but touches follows them, and
    // touches of different devices do not depend on each other's order.
    const queuedTouches = this.queuedTouch.get(userId) ?? new Map<Id, { deviceId: Id; atMs?: number }>();
    const queued = queuedTouches.get(deviceId);
    if (queued) {
      // A heartbeat is as of when it runs (undefined), later than any re-touch's time.
      queued.atMs = queued.atMs === undefined || atMs === undefined ? undefined : Math.max(queued.atMs, atMs);
      return;
    }
    const touch = { deviceId, atMs };
    this.run(userId, async () => {
      if (queuedTouches.get(deviceId) === touch) queuedTouches.delete(deviceId);
      if (queuedTouches.size === 0 && this.queuedTouch.get(userId) === queuedTouches) this.queuedTouch.delete(userId);
      const at = touch.atMs ?? this.now();
      if (at + this.deps.graceMs <= this.now()) return;
      const flip = await this.call((s) => s.touch(userId, deviceId, at, at + this.deps.graceMs));
      if (flip) void this.announce(flip);
    });
    queuedTouches.set(deviceId, touch);
    this.queuedTouch.set(userId, queuedTouches);
  }

  private run(userId: Id, op: () => Promise<void>): void {
    // Whatever was last in the chain is no longer: a touch after this one must not join one before it.
    this.queuedTouch.delete(userId);
    const prev = this.chains.get(userId) ?? Promise.resolve();
    const next = prev
      .then(op)
      .catch((err) => this.engineError("update", err, "presence update failed; the next heartbeat writes it again", { userId: String(userId) }))
      .finally(() => {
        if (this.chains.get(userId) === next) this.chains.delete(userId);
      });
    this.chains.set(userId, next);
  }

  /**
   * Counts a failed engine call and logs it, at most once per
   * ENGINE_ERROR_LOG_MS per op with how many went unlogged meanwhile: while
   * Redis is away every heartbeat of every session fails.
   */
  private engineError(op: PresenceEngineOp, err: unknown, msg: string, fields: Record<string, unknown> = {}): void {
    this.deps.onEngineError?.(op);
    // Monotonic: a wall clock stepped back kept every failure unlogged for the step.
    const now = this.monotonicNow();
    const last = this.errorLog.get(op);
    if (last && now - last.atMs < ENGINE_ERROR_LOG_MS) {
      last.unlogged++;
      return;
    }
    this.errorLog.set(op, { atMs: now, unlogged: 0 });
    this.deps.logger?.warn({ err, op, ...fields, ...(last?.unlogged ? { unlogged: last.unlogged } : {}) }, msg);
  }

  /** A failed call of a caller's (the api's): counted and logged, and UNAVAILABLE to the caller, whatever the engine threw. */
  private unavailable(op: "get" | "tell", err: unknown): ChatError {
    if (isChatError(err)) return err;
    this.engineError(op, err, op === "get" ? "presence store unavailable" : "presence not told: an engine failed");
    return new ChatError("unavailable", "presence is not available right now; retry", ENGINE_RETRY_AFTER_MS);
  }

  /** A store call, noting whether the store answers. */
  private async call<T>(op: (store: PresenceStore) => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await op(this.deps.store);
    } catch (err) {
      this.answeringSinceMs = undefined;
      this.failedOnce = true;
      throw err;
    }
    if (this.answeringSinceMs === undefined) {
      if (this.failedOnce) this.storeAnswers();
      else this.firstAnswer();
    }
    return result;
  }

  /** Nothing failed, so nothing to end or touch again: only sweeps are held off (see answeringSinceMs). */
  private firstAnswer(): void {
    this.answeringSinceMs = this.monotonicNow();
    this.deps.logger?.info({ holdOffMs: this.holdOffMs }, "presence store answers: holding sweeps off until live sessions touched their devices again");
  }

  private storeAnswers(): void {
    this.answeringSinceMs = this.monotonicNow();
    this.deps.logger?.info({ holdOffMs: this.holdOffMs }, "presence store answers again: touching live sessions, holding sweeps off");
    this.forgetEndedLately(this.now());
    const ended = new Map([...this.endedLately, ...this.endedWhileAway]);
    for (const { userId, deviceId, lastAliveMs, silent, endedAtMs } of ended.values()) {
      this.sessionEnded(userId, deviceId, lastAliveMs, silent, endedAtMs);
    }
    // After the ended sessions, in each user's chain: a store that came back
    // empty writes an ended device only while it holds nothing of its user,
    // and a live device of theirs touched first lost it its grace period.
    for (const l of this.recoveredListeners) l();
    for (const { userId, deviceId, atMs } of [...this.droppedWhileAway.values()]) this.dropDevice(userId, deviceId, atMs, true);
  }

  /** Forgets the sessions whose grace period is over: a sweep ended them, if the store still had them. */
  private forgetEndedLately(nowMs: number): void {
    for (const [key, e] of this.endedLately) {
      if (e.graceEndsMs > nowMs) break;
      this.endedLately.delete(key);
    }
  }

  /**
   * Whether a sweep may expire users now. Not while the store fails, nor
   * until it has answered (first, or again) for two heartbeat intervals: the devices'
   * heartbeats failed meanwhile, and expiring them before they come again
   * (within one interval; the second covers a chat server whose client saw
   * the store back later than this one, and late heartbeats) would announce
   * everyone offline, then online again. A full grace period (a minute or
   * more) only kept the devices that died in the outage online that much
   * longer. Throws while the store still fails.
   */
  private async mayExpire(): Promise<boolean> {
    if (this.answeringSinceMs === undefined) await this.call((s) => s.ping());
    // Monotonic: a wall clock stepped back (NTP at boot) held every sweep off, and dead devices online, for the step.
    return this.monotonicNow() - this.answeringSinceMs! >= this.holdOffMs;
  }

  /**
   * Tells the user's audience about a flip this process made, so that the
   * last presence event each of them gets says the user's latest state.
   * Flips of one user are announced by whichever processes made them, each
   * after reading its audience and waiting for its batch, so a later flip's
   * event can land first. Hence: just before pushing, the latest flip is
   * read, and if a later one exists this announcement is dropped (its maker
   * announces it). Just after pushing it is read again, and if a later one
   * exists now its event may have landed before ours: the same audience is
   * told the latest state again, until it stands still across a push. A
   * failure (audience read, push, store) is retried with backoff; once a
   * push was tried it goes on telling the latest state, since part of it may
   * have landed. Resolves when the first attempt ended: a sweep waits for
   * that, not for retries that may last minutes while Cassandra is away.
   * Once told, the store hears so; a flip it never hears of (the process
   * died first, or gave up) is claimed by a sweep a grace period (or UNTOLD_AFTER_MIN_MS) on and
   * told from there (`made` false: not this process's flip to count).
   */
  private announce(flip: PresenceFlip, made = true): Promise<void> {
    if (made) this.deps.onChange?.(flip);
    /** Kept across attempts: once a push was tried, the latest state is told whatever it is. */
    const told: Telling = { reached: new Set() };
    return this.retried("presence announcement", flip.userId, async () => {
      // Read at each attempt: retries last minutes, and a block or a narrower
      // setting made meanwhile must keep this from those it now leaves out
      // (the chat servers' guard of a block's pair lasts only a minute).
      const audience = await this.deps.audience(flip.userId);
      if (audience.length > 0) await this.tellUntilSteady(flip.userId, audience, told, flip);
      // Not told, a later flip came first: its maker tells (and confirms) that one.
      if (audience.length > 0 && told.reached.size === 0) return;
      if (told.reached.size > 0) await this.tellLeftOut(flip.userId, told);
      await this.call((s) => s.told(flip.userId, told.version ?? flip.version));
    });
  }

  /**
   * Tells `to`, just out of the user's audience (an unfriending, a block, a
   * group left, a narrower setting, a deleted account), that the user is
   * offline, with no last seen: a stale "online" stays on their screens for
   * good otherwise. Retried with backoff, as an announcement is, to those
   * whose chat server did not take it (frozen: its sessions move to another
   * within seconds); each retry reads the audience again and leaves out
   * whoever came back into it (told the latest state then). Resolves when
   * the first attempt ended; never rejects.
   */
  tellGone(userId: Id, to: readonly Id[]): Promise<void> {
    let left = [...to];
    let attempt = 0;
    return this.retried("presence of a user gone from the audience", userId, async () => {
      // The first is told as its caller found it, who just read who is apart.
      if (attempt++ > 0) {
        const audience = new Set(await this.deps.audience(userId));
        left = left.filter((id) => !audience.has(id));
      }
      if (left.length === 0) return;
      const missed = await this.pushTo(left, presenceFrame({ userId, online: false }));
      left = left.filter((id) => missed.has(id));
      if (left.length > 0) throw new Error(`presence push not taken for ${left.length} gone from the audience`);
    });
  }

  /**
   * Runs `attempt` until it succeeds, with the retry backoff, for at most the
   * retry's attempts or until stop(); resolves when the first attempt ended
   * (a sweep or an api call waits for that, not for retries that may last
   * minutes while Cassandra is away), and never rejects.
   */
  private retried(what: string, userId: Id, attempt: () => Promise<void>): Promise<void> {
    let firstTried!: () => void;
    const tried = new Promise<void>((resolve) => (firstTried = resolve));
    const p = this.retrying(what, userId, attempt, firstTried).finally(() => {
      firstTried();
      this.announcing.delete(p);
    });
    this.announcing.add(p);
    return tried;
  }

  private async retrying(what: string, userId: Id, run: () => Promise<void>, firstTried: () => void): Promise<void> {
    const { firstDelayMs, maxDelayMs, attempts } = this.retry;
    for (let attempt = 1, delay = firstDelayMs; ; attempt++, delay = Math.min(2 * delay, maxDelayMs)) {
      try {
        return await this.attemptSlots.run(run);
      } catch (err) {
        this.deps.onEngineError?.("announce");
        const log = { err, userId: String(userId), attempt };
        if (attempt >= attempts || this.stopped) return this.deps.logger?.error(log, `${what} failed; giving up`);
        this.deps.logger?.warn(log, `${what} failed; will retry`);
        firstTried();
        try {
          await sleep(delay, undefined, { signal: this.stopping.signal, ref: false });
        } catch {
          return; // stopping
        }
      }
    }
  }


  /**
   * Pushes the user's latest state to `audience`, again while a later flip
   * came in meanwhile. With `flip`, nothing is pushed when the latest flip is
   * already another (its maker announces it); and a store that holds an
   * older version than the flip lost the user's record since (a Redis
   * restart): the flip is then still the last word on them (as it is, with
   * its last seen, when the store holds its very version).
   */
  private async tellUntilSteady(userId: Id, audience: readonly Id[], told: Telling, flip?: PresenceFlip): Promise<void> {
    for (;;) {
      const stored = await this.call((s) => s.latest(userId));
      const latest = flip && stored.version <= flip.version ? flip : stored;
      if (told.reached.size === 0 && flip && latest.version !== flip.version) return;
      // The version told already goes again only to whom a chat server did not take it from; a later one, to all.
      const to = latest.version === told.version ? audience.filter((id) => told.missed?.has(id)) : audience;
      if (to.length === 0) return;
      for (const id of to) told.reached.add(id);
      const missed = await this.pushTo(to, presenceFrame(latest));
      told.version = latest.version;
      told.missed = missed;
      // Thrown to retry with backoff: a frozen chat server's sessions take seconds to move to another.
      if (missed.size > 0) throw new Error(`presence push not taken for ${missed.size} of the audience`);
    }
  }

  /**
   * Pushes, resolving with those of `to` whose chat server did not take the
   * push (the directory's PushFailedError, which may name users of other
   * pushes batched with it). Any other failure rejects.
   */
  private async pushTo(to: readonly Id[], frame: ServerFrame): Promise<Set<Id>> {
    try {
      await this.deps.directory.pushToUsers(to, frame);
      return new Set();
    } catch (err) {
      if (!(err instanceof PushFailedError)) throw err;
      return new Set(to.filter((id) => err.userIds.has(id)));
    }
  }

  /**
   * Tells OFFLINE, without last seen, whoever a push of this announcement
   * went to and is out of the user's audience now. A narrower setting, an
   * unfriending, a group left or a block tells those it leaves out OFFLINE
   * itself, once its change is written; made while this announcement's
   * audience read was already done, that OFFLINE can land before this push
   * and leave a stale ONLINE (or a last seen they may no longer see) on
   * their screens for good. The audience is read after the push: a change
   * written later still tells its OFFLINE after it, one written earlier is
   * seen here.
   */
  private async tellLeftOut(userId: Id, told: Telling): Promise<void> {
    const audience = new Set(await this.deps.audience(userId));
    const leftOut = [...told.reached].filter((id) => !audience.has(id));
    const missed = leftOut.length > 0 ? await this.pushTo(leftOut, presenceFrame({ userId, online: false })) : new Set();
    // Retried whole: the steady state is told no one again, and the OFFLINE goes again to whoever is still left out.
    if (missed.size > 0) throw new Error(`presence push not taken for ${missed.size} left out of the audience`);
  }
}

interface EndedSession {
  userId: Id;
  deviceId: Id;
  lastAliveMs: number;
  silent: boolean;
  /** When its grace period began: the device was alive until then. */
  endedAtMs: number;
}

/** What an audience heard from one telling: whom a push was tried to (none: nothing pushed yet), and the version it last took. */
interface Telling {
  reached: Set<Id>;
  version?: number;
  /** Of the last push (of `version`), those whose chat server did not take it. */
  missed?: ReadonlySet<Id>;
}
