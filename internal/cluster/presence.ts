import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { presenceMetrics } from "../presence/metrics.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { EnvReader } from "../config/env.js";
import type { SessionDirectory } from "../delivery/port.js";
import { CloseCode } from "../model/close-codes.js";
import type { Id } from "../model/types.js";
import { storeAudience } from "../presence/audience.js";
import { checkPresenceConfig } from "../presence/config.js";
import { CassandraLastSeenLog } from "../presence/cassandra.js";
import { RedisPresenceStore } from "../presence/redis.js";
import type { Db } from "../storage/cassandra/session.js";
import { PresenceTracker } from "../presence/tracker.js";
import { BatchingDirectory } from "./batching-directory.js";

/** Presence settings of the distributed processes (the store is always Redis). */
export interface ClusterPresenceConfig {
  /** A device counts as online this long after its last heartbeat or after its session ended. */
  graceMs: number;
  /** How often this process looks for users past the grace period; 0 = it does not sweep. */
  sweepIntervalMs: number;
  /** How long presence events wait to be batched into one Deliver per chat server. */
  batchWindowMs: number;
}

/**
 * CHAT_PRESENCE_GRACE_MS (default: the larger of 60 s and two heartbeat
 * intervals plus 10 s; must exceed the heartbeat interval),
 * CHAT_PRESENCE_SWEEP_MS (default `defaultSweepMs`; 0 turns sweeping off),
 * CHAT_PRESENCE_BATCH_MS (default 10). The Redis address is CHAT_REDIS_URL
 * (internal/config/engines.ts).
 */
export function readClusterPresenceConfig(r: EnvReader, heartbeatIntervalMs: number, defaultSweepMs = 1_000): ClusterPresenceConfig {
  const c = {
    store: "redis" as const,
    redisUrl: "",
    graceMs: r.int("CHAT_PRESENCE_GRACE_MS", 0, 50, 3_600_000),
    sweepIntervalMs: r.int("CHAT_PRESENCE_SWEEP_MS", defaultSweepMs, 0, 60_000),
  };
  if (c.sweepIntervalMs > 0 && c.sweepIntervalMs < 10) r.problems.push(`CHAT_PRESENCE_SWEEP_MS=${c.sweepIntervalMs}: expected 0 (off) or 10 to 60000`);
  checkPresenceConfig(r, c, heartbeatIntervalMs);
  return { graceMs: c.graceMs, sweepIntervalMs: c.sweepIntervalMs, batchWindowMs: r.int("CHAT_PRESENCE_BATCH_MS", 10, 0, 1_000) };
}

export interface ClusterPresenceDeps {
  redisUrl: string;
  /**
   * Key prefix of the presence store: one per cluster (the processes pass
   * "<CHAT_ETCD_PREFIX>:presence:"), so clusters sharing a Redis never sweep
   * each other's users.
   */
  keyPrefix: string;
  /**
   * Where friends and channel co-members are read (the audience of a change),
   * and with `db`, where last-seen times are kept beyond Redis (CassandraLastSeenLog).
   */
  storage: { accounts: AccountStore; channels: ChannelStore; db?: Db };
  /** Reaches sessions on every chat server: the RoutedSessionDirectory. */
  directory: { pushMany(items: readonly { userId: Id; frame: Parameters<SessionDirectory["pushToUsers"]>[1] }[]): Promise<unknown> };
  config: ClusterPresenceConfig;
  logger: Logger;
  registry?: Registry;
}

export interface ClusterPresence {
  store: RedisPresenceStore;
  tracker: PresenceTracker;
  /** Stops sweeping, finishes the updates in flight and closes the store. */
  close(): Promise<void>;
}

/** The presence key prefix of a cluster (its etcd prefix names it). */
export const presenceKeyPrefix = (etcdPrefix: string): string => `${etcdPrefix}:presence:`;

/**
 * Presence in the distributed mode, the same in every process that runs it
 * (chat servers, `cmd/presence`, the api): the shared Redis PresenceStore,
 * whose scripts decide every flip exactly once however many processes touch
 * or sweep at once, and a PresenceTracker that fans the flips this process
 * caused out to friends and small-channel co-members through the routing
 * table, batched per chat server. See "Presence and push" in
 * docs/architecture.md.
 */
export function openClusterPresence(deps: ClusterPresenceDeps): ClusterPresence {
  const logger = deps.logger.child({ component: "presence" });
  let lastLogErrorMs = -Infinity;
  const store = new RedisPresenceStore({
    redis: deps.redisUrl,
    prefix: deps.keyPrefix,
    ...(deps.storage.db && {
      lastSeenLog: new CassandraLastSeenLog(deps.storage.db),
      // Logged once a minute at most: during a Cassandra outage every sweep's flips fail it.
      onLastSeenLogError: (err: unknown) => {
        if (Date.now() - lastLogErrorMs < 60_000) return;
        lastLogErrorMs = Date.now();
        logger.warn({ err }, "last seen not written to or read from Cassandra (written: lost only if Redis loses it too)");
      },
    }),
  });
  const batching = new BatchingDirectory(deps.directory, { windowMs: deps.config.batchWindowMs });
  const tracker = new PresenceTracker({
    store,
    audience: storeAudience(deps.storage),
    directory: batching,
    graceMs: deps.config.graceMs,
    sweepIntervalMs: deps.config.sweepIntervalMs,
    logger,
    ...(deps.registry && presenceMetrics(deps.registry)),
  });
  tracker.start();
  return {
    store,
    tracker,
    async close() {
      await tracker.stop();
      await batching.close();
      await store.close();
    },
  };
}

/**
 * The api's session directory: logout and revocation also take the device
 * out of presence at once, even when it has no open session (its socket
 * closed just before the logout call, so its grace period was running and no
 * chat server holds it any more). A chat server that does hold the session
 * drops it too; the store reports the flip once.
 */
export function withLogoutPresence(directory: SessionDirectory, tracker: Pick<PresenceTracker, "deviceLoggedOut">): SessionDirectory {
  return {
    pushToUsers: (userIds, frame) => directory.pushToUsers(userIds, frame),
    pushMany: directory.pushMany ? (items) => directory.pushMany!(items) : undefined,
    onlineUsers: (userIds) => directory.onlineUsers(userIds),
    async closeDevice(userId, deviceId, code, reason) {
      if (code === CloseCode.loggedOut) tracker.deviceLoggedOut(userId, deviceId);
      await directory.closeDevice(userId, deviceId, code, reason);
    },
  };
}
