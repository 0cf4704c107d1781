import { ACCOUNT_DELETED, signedOutReason, type AccountStore } from "../accounts/store.js";
import { LruMap } from "../cache/lru-map.js";
import { ChatError } from "../model/errors.js";
import { monotonicNow } from "../model/clock.js";
import type { Id } from "../model/types.js";

/**
 * Refuses calls whose device was signed out. An access token is verified by
 * its signature alone and outlives a sign-out by up to its lifetime; this
 * asks the account store instead, at most once per device every `recheckMs`
 * (a device seen signed in is trusted that long), so a sign-out on any api
 * process shuts a token out here within `recheckMs`, and at once on this one.
 * A device seen signed out is remembered as such: it never signs in again,
 * and its token, refused before the account's request rate is taken, would
 * otherwise cost a store read per call. A device of a deleted account is
 * told so (ACCOUNT_DELETED), as its sessions and refreshes are.
 */
export class DeviceGate {
  /** When each device was last seen signed in, or SIGNED_OUT, or DELETED (signed out with its account). */
  private readonly checkedAt: LruMap<string, number>;

  constructor(
    private readonly accounts: AccountStore,
    private readonly options: { recheckMs?: number; capacity?: number; now?: () => number } = {},
  ) {
    this.checkedAt = new LruMap(options.capacity ?? 100_000);
  }

  async check(userId: Id, deviceId: Id): Promise<void> {
    const key = `${userId}:${deviceId}`;
    const at = this.checkedAt.get(key);
    if (at === SIGNED_OUT || at === DELETED) throw refused(at);
    // Monotonic: a wall clock stepped back made `now - at` negative, and a device signed out elsewhere was let in until it caught up.
    const now = (this.options.now ?? monotonicNow)();
    if (at !== undefined && now - at < (this.options.recheckMs ?? 10_000)) return;
    const signedOut = await signedOutReason(this.accounts, userId, deviceId);
    // Signed out here while the read was out (it may have read the row before the sign-out):
    // marking it seen signed in would let its token through for recheckMs after the logout.
    const since = this.checkedAt.peek(key);
    if (since === SIGNED_OUT || since === DELETED) throw refused(since);
    if (signedOut) {
      const mark = signedOut === ACCOUNT_DELETED ? DELETED : SIGNED_OUT;
      this.checkedAt.set(key, mark);
      throw refused(mark);
    }
    this.checkedAt.set(key, now);
  }

  /** This process signed the device out (`why`: with its account): refuse its token from now on. */
  forget(userId: Id, deviceId: Id, why?: typeof ACCOUNT_DELETED): void {
    this.checkedAt.set(`${userId}:${deviceId}`, why === ACCOUNT_DELETED ? DELETED : SIGNED_OUT);
  }
}

/** A device seen signed out: it never signs in again (a login makes a new one). */
const SIGNED_OUT = -1;
/** A device seen signed out with its account: told so, not sent looking for a cause. */
const DELETED = -2;

const refused = (mark: typeof SIGNED_OUT | typeof DELETED) =>
  new ChatError("unauthenticated", mark === DELETED ? ACCOUNT_DELETED : "this device is signed out; sign in again");
