import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { presenceMetrics } from "../presence/metrics.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { SessionDirectory } from "../delivery/port.js";
import { CloseCode } from "../model/close-codes.js";
import type { Id } from "../model/types.js";
import { storeAudience } from "../presence/audience.js";
import type { ClusterPresenceConfig } from "../presence/config.js";
import { CassandraLastSeenLog } from "../presence/cassandra.js";
import { RedisPresenceStore } from "../presence/redis.js";
import type { Db } from "../storage/cassandra/session.js";
import { PresenceTracker } from "../presence/tracker.js";
import { BatchingDirectory } from "./batching-directory.js";
import { ThrottledWarning } from "../observability/outage-log.js";

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
  directory: {
    pushMany(items: readonly { userId: Id; frame: Parameters<SessionDirectory["pushToUsers"]>[1] }[]): Promise<unknown>;
    /** Rejects with a PushFailedError for users whose chat server did not take the batch (the tracker retries them). */
    pushPresence?(items: readonly { userId: Id; frame: Parameters<SessionDirectory["pushToUsers"]>[1] }[]): Promise<unknown>;
  };
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
  const logErrors = new ThrottledWarning({ logger, message: "last seen not written to or read from Cassandra (written: lost only if Redis loses it too)" });
  const store = new RedisPresenceStore({
    redis: deps.redisUrl,
    prefix: deps.keyPrefix,
    ...(deps.storage.db && {
      lastSeenLog: new CassandraLastSeenLog(deps.storage.db),
      // Logged once a minute at most: during a Cassandra outage every sweep's flips fail it.
      onLastSeenLogError: (err: unknown) => logErrors.warn({ err }),
    }),
  });
  const batching = new BatchingDirectory({ pushMany: (items) => (deps.directory.pushPresence ?? deps.directory.pushMany).call(deps.directory, items) }, { windowMs: deps.config.batchWindowMs });
  const tracker = new PresenceTracker({
    store,
    audience: storeAudience(deps.storage),
    directory: batching,
    graceMs: deps.config.graceMs,
    heartbeatIntervalMs: deps.config.heartbeatIntervalMs,
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
