import type { Logger } from "pino";
import type { FriendLimits } from "./users-service.js";
import type { AccountStore } from "../accounts/store.js";
import type { PasswordHasher } from "../auth/passwords.js";
import type { TokenSigner, TokenVerifier } from "../auth/tokens.js";
import type { ChannelStore } from "../channels/store.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { IdGenerator } from "../ids/snowflake.js";
import type { Inbox } from "../messages/inbox.js";
import type { MessageLog } from "../messages/log.js";
import type { MessageSubmitter } from "../messages/submit.js";
import type { DeviceGate } from "./device-gate.js";
import type { ApiLimiter } from "./limits.js";
import type { ApiMetrics } from "./metrics.js";
import type { Id } from "../model/types.js";

export interface PresenceSource {
  getPresence(userIds: Id[]): Promise<{ userId: Id; online: boolean; lastSeenAtMs?: number }[]>;
  /** Pushes the user's latest state to users who just came into their audience, again if a flip overtakes it. */
  tellLatest(userId: Id, to: readonly Id[]): Promise<void>;
  /** Tells users just out of the user's audience that the user is offline, with no last seen, again to those not reached (resolves after the first try). */
  tellGone(userId: Id, to: readonly Id[]): Promise<void>;
}

export interface ApiDeps {
  accounts: AccountStore;
  channels: ChannelStore;
  log: MessageLog;
  inbox: Inbox;
  submitter: MessageSubmitter;
  /**
   * What remembers blocks, told when one changes here so it holds at once:
   * this process's cache, and in the cluster also the chat servers holding
   * either user's sessions.
   */
  blocks?: { forget(a: Id, b: Id): void | Promise<void> };
  sessions: SessionDirectory;
  /**
   * Told once each time MarkRead moves a user's read mark (publishReadMarks): the notifier drops the
   * pushes it still holds of what was read. Without it none are.
   */
  readMoved?: (userId: Id, channelId: Id, seq: bigint) => Promise<void>;
  ids: IdGenerator;
  signer: TokenSigner;
  verifier: TokenVerifier;
  /** Without it every user reads as offline. */
  presence?: PresenceSource;
  now?: () => number;
  logger?: Logger;
  /** Defaults to argon2id at the OWASP baseline; tests pass lighter parameters. */
  passwords?: PasswordHasher;
  /**
   * Request rates and failed-login throttling; without it nothing is limited.
   * The client address it keys on comes from `clientAddressValues` given to
   * connectNodeAdapter as `contextValues`.
   */
  limits?: ApiLimiter;
  /**
   * The sign-out check of access tokens. Give the same one to every router of
   * a process (chatd registers the api on two listeners), so that a sign-out
   * through one shuts the token out of all at once; without it each router
   * makes its own.
   */
  devices?: DeviceGate;
  /** Calls by method and outcome, and the sign-in path's security events (Prometheus). */
  metrics?: ApiMetrics;
  /** Signed-in devices per account (default DEFAULT_MAX_DEVICES_PER_ACCOUNT, 100); a login past it signs out the least recently seen. */
  maxDevicesPerAccount?: number;
  /** Groups one user may be in (default DEFAULT_MAX_GROUPS_PER_USER, 500); past it creating, adding to or joining a group is refused. */
  maxGroupsPerUser?: number;
  /** Friends per user, and friend requests a user may have sent or received waiting for an answer (defaults in users-service.ts). */
  friendLimits?: FriendLimits;
  /** Users one user may have blocked (default DEFAULT_MAX_BLOCKED_PER_USER, 5,000); past it BlockUser is refused. */
  maxBlockedPerUser?: number;
  /** Refresh token lifetime, default 30 days. */
  refreshTtlMs?: number;
  /** How long a used refresh token may be retried after a lost reply (REFRESH_REUSE_GRACE_MS, 60 s); 0: never. */
  refreshReuseGraceMs?: number;
}
