import type { EnvReader } from "../config/env.js";

/** Rate limits of the public api (README: "Configuration"). A rate of 0 turns that limit off. */
export interface ApiLimitsConfig {
  /** SignUp and Login per client address: argon2id costs tens of milliseconds of CPU each. */
  authPerSec: number;
  authBurst: number;
  /** Every other method, per account. */
  callsPerSec: number;
  callBurst: number;
  /** Failed logins of one account from one address before its logins are refused for the rest of the window. */
  loginMaxFailures: number;
  loginWindowMs: number;
  /**
   * Signed-in devices an account keeps: a login past it signs out the devices
   * seen least recently, so scripts that log in on every run cannot grow an
   * account's devices (and their tokens and cursors) without end.
   */
  maxDevicesPerAccount: number;
  /** Groups one account may be in (created, added to or joined by link): what ListChannels and presence read grows with them. */
  maxGroupsPerUser?: number;
  /**
   * New direct chats one account may start in a day (0: no limit). Each
   * stays for good, is read by the caller's ListChannels, and puts the
   * caller in the peer's presence audience; reopening one is never counted.
   */
  maxNewDirectPerDay?: number;
  /**
   * A header set by a reverse proxy in front of the api that carries the
   * client's address (the last entry, the one the proxy appended); without
   * it the socket's peer address is the client's.
   */
  clientIpHeader?: string;
}

export const DEFAULT_MAX_DEVICES_PER_ACCOUNT = 100;
export const DEFAULT_MAX_GROUPS_PER_USER = 500;
// A person starts a few new chats a day, a few dozen on a busy one; 200 leaves room for
// that and for bulk introductions while holding a script that walks SearchUsers to
// 200 a day, not the 180,000 an hour the call rate alone lets through.
export const DEFAULT_MAX_NEW_DIRECT_PER_DAY = 200;

export function readApiLimits(r: EnvReader): ApiLimitsConfig {
  const header = r.string("CHAT_CLIENT_IP_HEADER", "").trim().toLowerCase();
  if (header && !/^[a-z0-9-]+$/.test(header)) r.problems.push(`CHAT_CLIENT_IP_HEADER=${JSON.stringify(header)}: expected a header name`);
  return {
    authPerSec: r.int("CHAT_API_AUTH_PER_SEC", 5, 0, 100_000),
    authBurst: r.int("CHAT_API_AUTH_BURST", 20, 1, 100_000),
    callsPerSec: r.int("CHAT_API_CALLS_PER_SEC", 50, 0, 100_000),
    callBurst: r.int("CHAT_API_CALL_BURST", 200, 1, 100_000),
    loginMaxFailures: r.int("CHAT_LOGIN_MAX_FAILURES", 10, 0, 100_000),
    loginWindowMs: r.int("CHAT_LOGIN_FAILURE_WINDOW_S", 900, 1, 86_400) * 1000,
    maxDevicesPerAccount: r.int("CHAT_MAX_DEVICES_PER_ACCOUNT", DEFAULT_MAX_DEVICES_PER_ACCOUNT, 1, 100_000),
    maxGroupsPerUser: r.int("CHAT_MAX_GROUPS_PER_USER", DEFAULT_MAX_GROUPS_PER_USER, 1, 100_000),
    maxNewDirectPerDay: r.int("CHAT_MAX_NEW_DIRECT_PER_DAY", DEFAULT_MAX_NEW_DIRECT_PER_DAY, 0, 100_000),
    clientIpHeader: header || undefined,
  };
}
