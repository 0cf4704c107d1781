import type { EnvReader } from "../config/env.js";

export interface PresenceConfig {
  /** Where presence lives: process memory (chatd) or Redis (shared by processes). */
  store: "memory" | "redis";
  /** Used when store = "redis". */
  redisUrl: string;
  /** A device counts as online this long after its last heartbeat or after its session ended. */
  graceMs: number;
  /** How often users past the grace period are looked for. */
  sweepIntervalMs: number;
  /** chatd's memory store: how often a user still online has their last seen written to chat.db (what a crash may lose of it). */
  lastSeenWriteMs?: number;
}

/**
 * CHAT_PRESENCE_STORE (memory | redis, default memory), CHAT_REDIS_URL
 * (default redis://127.0.0.1:6379), CHAT_PRESENCE_GRACE_MS (default: the
 * larger of 60 s and two heartbeat intervals plus 10 s), CHAT_PRESENCE_SWEEP_MS
 * (default 1000), CHAT_PRESENCE_LAST_SEEN_WRITE_MS (default 60000). Call
 * checkPresenceConfig once the heartbeat interval is known.
 */
export function readPresenceConfig(r: EnvReader): PresenceConfig {
  return {
    store: r.oneOf("CHAT_PRESENCE_STORE", "memory", ["memory", "redis"] as const),
    redisUrl: r.string("CHAT_REDIS_URL", "redis://127.0.0.1:6379"),
    graceMs: r.int("CHAT_PRESENCE_GRACE_MS", 0, 50, 3_600_000),
    sweepIntervalMs: r.int("CHAT_PRESENCE_SWEEP_MS", 1_000, 10, 60_000),
    lastSeenWriteMs: r.int("CHAT_PRESENCE_LAST_SEEN_WRITE_MS", 60_000, 100, 3_600_000),
  };
}

/**
 * Fills in the default grace period and refuses one shorter than two heartbeat
 * intervals: the margin the tracker assumes (its hold-off after a store
 * failure). Just over one, a heartbeat held up behind a slow store call (a
 * user's calls run in order) lands after a sweep expired the device, and its
 * user flips offline and online again.
 */
export function checkPresenceConfig(r: EnvReader, config: PresenceConfig, heartbeatIntervalMs: number): void {
  if (config.graceMs === 0) config.graceMs = Math.max(60_000, 2 * heartbeatIntervalMs + 10_000);
  const min = 2 * heartbeatIntervalMs;
  if (config.graceMs < min) {
    r.problems.push(
      `CHAT_PRESENCE_GRACE_MS=${config.graceMs}: must be at least ${min} ms, twice CHAT_HEARTBEAT_INTERVAL_MS (${heartbeatIntervalMs} ms), or a late heartbeat lands after its device was expired and its user flaps offline`,
    );
  }
}

/** Presence settings of the distributed processes (the store is always Redis). */
export interface ClusterPresenceConfig {
  /** A device counts as online this long after its last heartbeat or after its session ended. */
  graceMs: number;
  /** How often this process looks for users past the grace period; 0 = it does not sweep. */
  sweepIntervalMs: number;
  /** How long presence events wait to be batched into one Deliver per chat server. */
  batchWindowMs: number;
  /** The sessions' heartbeat interval: how soon sweeps resume after a store failure (PresenceTrackerDeps). */
  heartbeatIntervalMs?: number;
}

/**
 * CHAT_PRESENCE_GRACE_MS (default: the larger of 60 s and two heartbeat
 * intervals plus 10 s; at least two heartbeat intervals),
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
  return { graceMs: c.graceMs, sweepIntervalMs: c.sweepIntervalMs, batchWindowMs: r.int("CHAT_PRESENCE_BATCH_MS", 10, 0, 1_000), heartbeatIntervalMs };
}
