import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { ChatError } from "../model/errors.js";
import type { Id, UserRecord } from "../model/types.js";
import { DEFAULT_MAX_NEW_DIRECT_PER_DAY, type ApiLimitsConfig } from "../throttle/config.js";
import { KeyedBuckets } from "../throttle/keyed-buckets.js";
import { DEFAULT_SEND_RATE, SendRateLimiter, type SendRate } from "../throttle/send-rate.js";
import { DEFAULT_TEXT_BUDGET, textCost, type TextBudget } from "../throttle/text-budget.js";
import { MemoryWindowCounts } from "../throttle/memory.js";
import type { FailureCount, LoginAttempts, WindowCounts } from "../throttle/port.js";

/** Failures of one account from all addresses together before its logins are refused: a spread-out guesser. */
const ACCOUNT_WIDE_FACTOR = 10;
/** How long an address the account signed in from stays exempt from the account-wide refusal. */
export const KNOWN_ADDRESS_MS = 30 * 24 * 3_600_000;
const NONE: FailureCount = { failures: 0, resetInMs: 0 };
/** The window of the quota of new direct chats. */
export const NEW_DIRECT_WINDOW_MS = 24 * 3_600_000;
const NOTHING_TO_GIVE_BACK = async () => {};

/**
 * The public api's limits: a request rate per client address on the methods
 * that need no token (each costs an argon2id hash), a request rate per
 * account on the rest, and failed logins per account. The two rates are per
 * process; failed logins are counted in `attempts` (Redis in the cluster), so
 * a guesser gains nothing by spreading over api processes.
 *
 * Failed logins are counted per account and address, and per account from
 * every address with ten times the allowance: a guesser on one address is
 * stopped early while the owner elsewhere still gets in, and one spread over
 * many addresses is stopped too, except on the addresses the account signed
 * up or in from within KNOWN_ADDRESS_MS, so that a guesser spread over many
 * cannot lock the owner out of a new device at home (until the password
 * changes: the account may have been taken over from one of them). While refused, a login
 * is answered RATE_LIMITED without checking the password, right or wrong, so
 * refusals tell a guesser nothing.
 *
 * And the new direct chats an account starts in a day, counted in
 * `newDirects` (Redis in the cluster) like failed logins.
 */
export class ApiLimiter {
  private readonly auth?: KeyedBuckets;
  private readonly calls?: KeyedBuckets;
  /** Always on: the call rate alone lets an account have 50 texts of up to 400 KB a second stored. */
  private readonly texts: KeyedBuckets;
  /** The call rate alone lets an account send 50 messages a second, each to up to a hundred inboxes. */
  private readonly sends: SendRateLimiter;
  private readonly logger?: Logger;
  private readonly newDirects: WindowCounts;

  /**
   * `newDirects` must count in windows of NEW_DIRECT_WINDOW_MS; without it they are counted in this process's memory.
   * `textBudget`: CHAT_TEXT_* (internal/throttle/text-budget.ts), its defaults unless given.
   * `sendRate`: CHAT_SENDS_PER_SEC and CHAT_SEND_BURST (internal/throttle/send-rate.ts), its defaults unless given.
   */
  constructor(
    private readonly config: ApiLimitsConfig,
    private readonly attempts: LoginAttempts,
    options: { now?: () => number; logger?: Logger; newDirects?: WindowCounts; textBudget?: TextBudget; sendRate?: SendRate } = {},
  ) {
    const { now } = options;
    if (config.authPerSec > 0) this.auth = new KeyedBuckets(config.authPerSec, config.authBurst, now);
    if (config.callsPerSec > 0) this.calls = new KeyedBuckets(config.callsPerSec, config.callBurst, now);
    const { textBytesPerSecond, textBurstBytes } = options.textBudget ?? DEFAULT_TEXT_BUDGET;
    this.texts = new KeyedBuckets(textBytesPerSecond, textBurstBytes, now);
    this.sends = new SendRateLimiter(options.sendRate ?? DEFAULT_SEND_RATE, now);
    this.logger = options.logger;
    this.newDirects = options.newDirects ?? new MemoryWindowCounts(NEW_DIRECT_WINDOW_MS, { now });
  }

  /** The methods that hash a password (SignUp, Login, ChangePassword, DeleteAccount): per client address. */
  takeAuth(address: string): void {
    const wait = this.auth?.take(address) ?? 0;
    if (wait > 0) throw new ChatError("rate_limited", `too many sign-in requests from this address; retry in ${seconds(wait)}`, wait);
  }

  /** Every method that runs as an account. */
  takeCall(userId: Id): void {
    const wait = this.calls?.take(String(userId)) ?? 0;
    if (wait > 0) throw new ChatError("rate_limited", `too many requests for this account; retry in ${seconds(wait)}`, wait);
  }

  /**
   * SendMessage: counted against the account's send rate in this process, and
   * the text's bytes taken from its text budget, as a chat server does for its
   * sessions. Counted first: a send refused for the count takes no text bytes.
   */
  takeSend(userId: Id, text: string): void {
    const sendWait = this.sends.take(userId);
    if (sendWait > 0) throw new ChatError("rate_limited", `too many messages sent by this account; retry in ${seconds(sendWait)}`, sendWait);
    this.takeText(userId, text);
  }

  /**
   * A group change that writes a note (a rename, an add, a removal, a role
   * change, a join by link, a leaving): taken from the account's send rate,
   * as a send is, and a rename's title from its text budget. Each note goes
   * into the history and every member's inbox as a message does, so under
   * the call rate alone an admin could write 50 renames a second into up to
   * a hundred inboxes. Taken before the change: a refused one changes nothing.
   */
  takeGroupChange(userId: Id, title?: string): void {
    const wait = this.sends.take(userId);
    if (wait > 0) throw new ChatError("rate_limited", `too many messages and group changes by this account; retry in ${seconds(wait)}`, wait);
    if (title !== undefined) this.takeText(userId, title);
  }

  private takeText(userId: Id, text: string): void {
    const wait = this.texts.take(String(userId), textCost(text));
    if (wait > 0) throw new ChatError("rate_limited", `too much text sent by this account; retry in ${seconds(wait)}`, wait);
  }

  /**
   * Throws RATE_LIMITED while logins of `username` from `address` are refused;
   * otherwise counts the login as a failure before its password is checked,
   * so that concurrent guesses cannot all get past a count none of them has
   * added to yet. `signedIn` forgets it again if the password was right.
   * Says whether it was counted (only then has a success anything to clear).
   * `owner`: the account the name is now, if any, whose addresses are exempt
   * from the account-wide refusal.
   */
  async checkLogin(username: string, address: string, owner?: KnownAccount): Promise<{ failures: boolean }> {
    const max = this.config.loginMaxFailures;
    if (max <= 0) return { failures: false };
    const key = pairKey(username, address);
    const [pair, account, known] = await this.guarded(
      () =>
        Promise.all([
          this.attempts.get(key),
          this.attempts.get(accountKey(username)),
          owner === undefined ? false : this.attempts.succeededBefore(knownKey(owner, address)),
        ]),
      [NONE, NONE, false] as const,
    );
    // Read first, so that refused logins count nothing: a guesser hammering one address
    // would otherwise soon have the account refused everywhere.
    refuseAt(full(pair, max), known ? 0 : full(account, max * ACCOUNT_WIDE_FACTOR));
    // The counts with this login say whether a concurrent one took the last of the allowance.
    // The pair's first: one refused by it is not counted for the account either.
    const counted = await this.guarded(async () => {
      const p = await this.attempts.fail(key);
      return { pair: p, account: p.failures > max ? NONE : await this.attempts.fail(accountKey(username)) };
    }, undefined);
    if (!counted) return { failures: false };
    refuseAt(full(counted.pair, max + 1), known ? 0 : full(counted.account, max * ACCOUNT_WIDE_FACTOR + 1));
    return { failures: true };
  }

  /**
   * A sign-up or a login of `account` under `username` succeeded (or its
   * password was changed from `address`): the address is remembered as the
   * account's with that password, and the failures, this login's among them
   * when `checkLogin` counted it, forgotten.
   */
  async signedIn(username: string, account: KnownAccount, address: string, hadFailures = false): Promise<void> {
    if (this.config.loginMaxFailures <= 0) return;
    const key = pairKey(username, address);
    await this.guarded(async () => {
      const forget = hadFailures ? [this.attempts.clear(key), this.attempts.clear(accountKey(username))] : [];
      await Promise.all([this.attempts.rememberSuccess(knownKey(account, address), KNOWN_ADDRESS_MS), ...forget]);
    }, undefined);
  }

  /**
   * Counts a new direct chat of `userId` unless `exists` says the pair has
   * its chat already (opening it again is never counted nor refused); throws
   * RATE_LIMITED when the account has started as many today as it may.
   * Counted before the chat is made, so that opens at the same moment each
   * get their own count and none passes the limit. Returns what gives the
   * count back, for when no new chat came of it after all (the pair's chat
   * was made meanwhile, by either of them, or the open failed).
   */
  async startDirect(userId: Id, exists: () => Promise<boolean>): Promise<() => Promise<void>> {
    const max = this.config.maxNewDirectPerDay ?? DEFAULT_MAX_NEW_DIRECT_PER_DAY;
    if (max <= 0 || (await exists())) return NOTHING_TO_GIVE_BACK;
    const key = String(userId);
    const unavailable = "new direct chat counter unavailable; chat not counted";
    const counted = await this.guarded(() => this.newDirects.add(key), undefined, unavailable);
    if (!counted) return NOTHING_TO_GIVE_BACK;
    const giveBack = () => this.guarded(() => this.newDirects.takeBack(key, counted), undefined, unavailable);
    if (counted.count > max) {
      // Refusals are not counted: the count stays the chats started.
      await giveBack();
      const wait = counted.resetInMs;
      throw new ChatError("rate_limited", `you have started ${max} new direct chats today, the most one may in a day; more in ${duration(wait)} (chats already open can still be opened)`, wait);
    }
    return giveBack;
  }

  /**
   * Fails open: with the counter store down, logins go on unthrottled (still
   * rate-limited per address) rather than nobody being able to sign in, and
   * new direct chats uncounted (still rate-limited per account).
   */
  private async guarded<T>(op: () => Promise<T>, fallback: T, unavailable = "login attempt counter unavailable; login not throttled"): Promise<T> {
    try {
      return await op();
    } catch (err) {
      this.logger?.warn({ err }, unavailable);
      return fallback;
    }
  }
}

// Usernames are case-insensitive at sign-in, so the keys are too. Each kind has its own
// prefix: without them the pair key of (alice, 203.0.113.7) was the account key of a name
// "alice|203.0.113.7", whose failures then refused Alice at that address.
const accountKey = (username: string) => `account:${username.toLowerCase()}`;
const pairKey = (username: string, address: string) => `pair:${username.toLowerCase()}|${address}`;
// An address the account signed in from is the account's, not its name's: a name freed by a deleted
// account and taken by a new one would otherwise exempt the old owner's addresses from the new one's refusal.
// And its password's: a password change (the account perhaps taken over from one of them) leaves
// every address trusted before unknown, with no list of them to go through. Keys of an older build
// (no password in them) are found by none: after an upgrade the owner's addresses count once more.
export type KnownAccount = Pick<UserRecord, "userId" | "passwordHash">;
const knownKey = ({ userId, passwordHash }: KnownAccount, address: string) =>
  `known:${userId}|${createHash("sha256").update(passwordHash).digest("base64url").slice(0, 16)}|${address}`;

/** Milliseconds until `count`'s window ends when it holds `limit` failures or more; else 0. */
function full(count: FailureCount, limit: number): number {
  return count.failures >= limit ? count.resetInMs : 0;
}

function refuseAt(...waits: number[]): void {
  const wait = Math.max(...waits);
  if (wait > 0) throw new ChatError("rate_limited", `too many failed logins for this account; retry in ${seconds(wait)}`, wait);
}

function seconds(ms: number): string {
  return `${Math.ceil(ms / 1000)} s`;
}

/** A wait of hours in hours and minutes, rounded up: "5 h 3 min", "12 min", "40 s". */
function duration(ms: number): string {
  const minutes = Math.ceil(ms / 60_000);
  if (ms < 60_000) return seconds(ms);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
}
