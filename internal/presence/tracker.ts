import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id } from "../model/types.js";
import type { PresenceAudience } from "./audience.js";
import type { PresenceStore, UserPresence } from "./port.js";

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
   * shows the user offline. Must exceed the heartbeat interval.
   */
  graceMs: number;
  /** How often expired users are looked for; 0 = never by itself (tests call sweep()). */
  sweepIntervalMs: number;
  now?: () => number;
  logger?: Logger;
  /** Also told about every change (a PresenceChanged topic, metrics, tests). */
  onChange?: (change: PresenceChange) => void;
  /** Called after each sweep has announced its flips (metrics, tests). */
  onSwept?: () => void;
}

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
 * Turns device liveness (session opened, heartbeat, session ended, logout)
 * into per-user presence and fans changes out. It is the chat server's
 * PresenceHooks and the api's PresenceSource.
 *
 * Operations of one user run one after another, so a user's watchers see
 * their changes in order; store failures (Redis away) are logged and
 * dropped: the next heartbeat writes the state again.
 */
export class PresenceTracker {
  private readonly now: () => number;
  private readonly chains = new Map<Id, Promise<void>>();
  private timer?: NodeJS.Timeout;
  private sweeping?: Promise<void>;
  private stopped = false;

  constructor(private readonly deps: PresenceTrackerDeps) {
    if (!(deps.graceMs > 0)) throw new Error("presence grace period must be positive");
    this.now = deps.now ?? Date.now;
  }

  start(): void {
    if (this.deps.sweepIntervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => void this.sweep(), this.deps.sweepIntervalMs);
      this.timer.unref();
    }
  }

  /** Stops sweeping and waits for what is in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.idle();
  }

  // PresenceHooks (called synchronously by the chat server).

  deviceConnected(userId: Id, deviceId: Id): void {
    this.alive(userId, deviceId, false);
  }

  deviceAlive(userId: Id, deviceId: Id): void {
    this.alive(userId, deviceId, false);
  }

  /** The session ended: the device stays online for the grace period unless it comes back. */
  deviceDisconnected(userId: Id, deviceId: Id): void {
    this.alive(userId, deviceId, true);
  }

  /** Logout or revocation: the device is offline at once. */
  deviceLoggedOut(userId: Id, deviceId: Id): void {
    this.run(userId, async () => {
      const now = this.now();
      const lastSeen = await this.deps.store.drop(userId, deviceId, now);
      if (lastSeen !== undefined) await this.announce({ userId, online: false, lastSeenAtMs: lastSeen });
    });
  }

  // PresenceSource (the api's GetPresence).

  async getPresence(userIds: Id[]): Promise<UserPresence[]> {
    return this.deps.store.get(userIds, this.now());
  }

  /** Flips users whose devices all went quiet past the grace period; returns how many. */
  async sweep(): Promise<number> {
    if (this.sweeping) {
      await this.sweeping;
      return 0;
    }
    let count = 0;
    const run = (async () => {
      try {
        for (;;) {
          const flips = await this.deps.store.expire(this.now(), SWEEP_BATCH);
          count += flips.length;
          for (const f of flips) this.run(f.userId, () => this.announce({ userId: f.userId, online: false, lastSeenAtMs: f.lastSeenAtMs }));
          if (flips.length < SWEEP_BATCH || this.stopped) break;
        }
      } catch (err) {
        this.deps.logger?.warn({ err }, "presence sweep failed; will retry");
      }
    })();
    this.sweeping = run;
    await run;
    this.sweeping = undefined;
    await this.idle();
    this.deps.onSwept?.();
    return count;
  }

  /** Resolves once every queued operation has finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }

  private alive(userId: Id, deviceId: Id, ifAlive: boolean): void {
    this.run(userId, async () => {
      const now = this.now();
      const flipped = await this.deps.store.touch(userId, deviceId, now, now + this.deps.graceMs, { ifAlive });
      if (flipped) await this.announce({ userId, online: true });
    });
  }

  private run(userId: Id, op: () => Promise<void>): void {
    const prev = this.chains.get(userId) ?? Promise.resolve();
    const next = prev
      .then(op)
      .catch((err) => this.deps.logger?.warn({ err, userId: String(userId) }, "presence update failed"))
      .finally(() => {
        if (this.chains.get(userId) === next) this.chains.delete(userId);
      });
    this.chains.set(userId, next);
  }

  private async announce(change: PresenceChange): Promise<void> {
    this.deps.onChange?.(change);
    const audience = await this.deps.audience(change.userId);
    if (audience.length > 0) await this.deps.directory.pushToUsers(audience, presenceFrame(change));
  }
}
