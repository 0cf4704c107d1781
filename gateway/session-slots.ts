import { Counter, type Registry } from "prom-client";
import type { EnvReader } from "../internal/config/env.js";
import { countedFromZero } from "../internal/observability/metrics.js";

/**
 * How many realtime sessions (WebSockets and native gRPC streams together) one device, and one
 * account over all its devices, may hold open at once on one gateway process (chatd is one).
 *
 * Counted in the gateway's memory, with no round trip: with N gateways a device may hold up to
 * N times the cap in all, which is enough to stop one token from opening sockets by the ten
 * thousand. The chat servers' index of sessions by user would not do for a cluster-wide count:
 * gateways place sessions by load, not by user, so a user's sessions are spread over servers
 * anyway, and a session that fails over or drains is counted there on two servers for a moment.
 * On the gateway a moved session is the same socket and keeps its one slot.
 *
 * A tab past the cap is refused, never the oldest session closed to make room: the tabs of a
 * browser share a device id, and would take each other's place in a loop.
 */
export interface SessionCaps {
  /** Sessions one device may hold open on a gateway: a browser's tabs share a device. */
  maxPerDevice: number;
  /** Sessions one account may hold open on a gateway, over all its devices. */
  maxPerAccount: number;
}

export const DEFAULT_SESSION_CAPS: SessionCaps = { maxPerDevice: 8, maxPerAccount: 200 };

/** CHAT_MAX_SESSIONS_PER_DEVICE and CHAT_MAX_SESSIONS_PER_ACCOUNT; the account's must hold at least one device's. */
export function readSessionCaps(r: EnvReader): SessionCaps {
  const caps = {
    maxPerDevice: r.int("CHAT_MAX_SESSIONS_PER_DEVICE", DEFAULT_SESSION_CAPS.maxPerDevice, 1, 10_000),
    maxPerAccount: r.int("CHAT_MAX_SESSIONS_PER_ACCOUNT", DEFAULT_SESSION_CAPS.maxPerAccount, 1, 1_000_000),
  };
  if (caps.maxPerAccount < caps.maxPerDevice) {
    r.problems.push(
      `CHAT_MAX_SESSIONS_PER_ACCOUNT=${caps.maxPerAccount}: must be at least CHAT_MAX_SESSIONS_PER_DEVICE=${caps.maxPerDevice}, or a device could never reach its own cap`,
    );
  }
  return caps;
}

/** Which cap refused a session: each a series of gateway_sessions_refused_total at 0 from the start. */
export const SESSION_CAP_LIMITS = ["device", "account"] as const;

/**
 * An account's open sessions: one device's alone, as most accounts hold (no map: a gateway keeps
 * one of these per account it serves, and a Map per account was most of 190 bytes a session),
 * or, once a second device opens, in all and by device.
 */
type AccountSessions = { deviceId: bigint; count: number } | { count: number; byDevice: Map<bigint, number> };

/**
 * The slots of a gateway process's open sessions. One is shared by the WebSocket gateway and the
 * gRPC session service of a process, so both transports count against the same caps. An entry
 * lives only while its account has a session open: released to zero, it is gone.
 */
export class SessionSlots {
  private readonly accounts = new Map<bigint, AccountSessions>();
  private readonly refused?: Counter<"limit">;

  constructor(
    readonly caps: SessionCaps = DEFAULT_SESSION_CAPS,
    registry?: Registry,
  ) {
    if (registry) {
      this.refused = countedFromZero(
        new Counter({
          name: "gateway_sessions_refused_total",
          help: "Realtime sessions refused for their device's or account's cap on open sessions (CHAT_MAX_SESSIONS_PER_*)",
          labelNames: ["limit"],
          registers: [registry],
        }),
        "limit",
        SESSION_CAP_LIMITS,
      );
    }
  }

  /**
   * Takes a slot for a new session of the device: undefined when taken, else why it is refused
   * (a close reason, within a close frame's 123 bytes). A taken slot is given back by release, once.
   */
  take(userId: bigint, deviceId: bigint): string | undefined {
    const account = this.accounts.get(userId);
    const ofDevice = countOf(account, deviceId);
    if (ofDevice >= this.caps.maxPerDevice) {
      this.refused?.inc({ limit: "device" });
      return `too many sessions of this device (at most ${this.caps.maxPerDevice}, CHAT_MAX_SESSIONS_PER_DEVICE)`;
    }
    if (account && account.count >= this.caps.maxPerAccount) {
      this.refused?.inc({ limit: "account" });
      return `too many sessions of this account (at most ${this.caps.maxPerAccount}, CHAT_MAX_SESSIONS_PER_ACCOUNT)`;
    }
    if (account === undefined) {
      this.accounts.set(userId, { deviceId, count: 1 });
    } else if ("byDevice" in account) {
      account.count++;
      account.byDevice.set(deviceId, ofDevice + 1);
    } else if (account.deviceId === deviceId) {
      account.count++;
    } else {
      this.accounts.set(userId, { count: account.count + 1, byDevice: new Map([[account.deviceId, account.count], [deviceId, 1]]) });
    }
    return undefined;
  }

  /** Gives back the slot of a session that ended. */
  release(userId: bigint, deviceId: bigint): void {
    const account = this.accounts.get(userId);
    const ofDevice = countOf(account, deviceId);
    if (account === undefined || ofDevice === 0) return;
    if (--account.count === 0) this.accounts.delete(userId);
    else if (!("byDevice" in account)) return;
    else if (ofDevice > 1) account.byDevice.set(deviceId, ofDevice - 1);
    else {
      account.byDevice.delete(deviceId);
      // Down to one device again: its compact form.
      if (account.byDevice.size === 1) {
        const [[only, count]] = account.byDevice;
        this.accounts.set(userId, { deviceId: only!, count: count! });
      }
    }
  }

  /** Sessions of the device holding a slot. */
  ofDevice(userId: bigint, deviceId: bigint): number {
    return countOf(this.accounts.get(userId), deviceId);
  }

  /** Accounts with a session holding a slot: none left behind once all have closed. */
  get accountCount(): number {
    return this.accounts.size;
  }
}

/** The device's open sessions in its account's entry (one map lookup per open or close, not two). */
function countOf(account: AccountSessions | undefined, deviceId: bigint): number {
  if (account === undefined) return 0;
  if ("byDevice" in account) return account.byDevice.get(deviceId) ?? 0;
  return account.deviceId === deviceId ? account.count : 0;
}
