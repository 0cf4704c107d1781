import { isDeletedUser, type PendingDeletion } from "../accounts/store.js";
import { storeAudience } from "../presence/audience.js";
import { tellOffline } from "./tell-offline.js";
import { deletionFinisher } from "./auth-service.js";
import type { ApiDeps } from "./deps.js";
import type { DeviceGate } from "./device-gate.js";
import type { PushApiDeps } from "./push-service.js";

/** Between sweeps, each moved by up to a tenth either way so that the api processes started together do not sweep in step. */
export const DELETION_SWEEP_INTERVAL_MS = 60_000;
/**
 * How old a pending deletion must be before a sweep finishes it: a deletion
 * still running in another process (its final pass takes seconds, a minute
 * for an account in thousands of chats) is left to it. Were one still
 * running, the two would only do the same work twice.
 */
export const DELETION_SWEEP_GRACE_MS = 2 * 60_000;
/**
 * A deletion recorded whose account was never marked deleted (its process
 * died in the first pass, before the mark) is its owner's to ask again, or
 * not: its record is dropped once this old, its friends no longer reached told
 * the account is offline.
 */
export const ABANDONED_DELETION_MS = 60 * 60_000;
/** Pending deletions one sweep reads; more wait for the next. */
const SWEEP_BATCH = 500;

export interface DeletionSweeperOptions {
  intervalMs?: number;
  graceMs?: number;
  abandonedMs?: number;
  /** In [0, 1): the jitter of each wait. */
  random?: () => number;
}

/**
 * Finishes the account deletions whose process died (a crash, a kill, an
 * engine error thrown) between marking the account deleted and the end of
 * the deletion's final pass: nobody can ask for them again, and a login, a
 * friendship or a group add that raced the deletion would otherwise stay.
 * Runs at start-up and then every DELETION_SWEEP_INTERVAL_MS, in each api
 * process (and chatd). Several processes sweeping at once is harmless: every
 * step of the final pass may run again and beside another run of itself
 * (deletionSteps), and a record is removed only as it was read (its atMs). A
 * sweep that fails for one deletion logs it and tries it again at the next.
 */
export class DeletionSweeper {
  private readonly finish: (pending: PendingDeletion) => Promise<void>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private closed = false;

  constructor(
    private readonly deps: ApiDeps & PushApiDeps,
    private readonly options: DeletionSweeperOptions = {},
    devices?: DeviceGate,
  ) {
    this.finish = deletionFinisher(deps, devices);
  }

  /** Sweeps now, then every interval until close(). */
  start(): void {
    this.schedule(0);
  }

  /** Waits for a sweep under way; none starts after. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One sweep: the number of deletions it finished. Never throws. */
  async sweep(): Promise<number> {
    const logger = this.deps.logger;
    const now = (this.deps.now ?? Date.now)();
    let pending: PendingDeletion[];
    try {
      pending = await this.deps.accounts.listPendingDeletions(now - (this.options.graceMs ?? DELETION_SWEEP_GRACE_MS), SWEEP_BATCH);
    } catch (err) {
      logger?.warn({ err }, "pending account deletions not read; tried again at the next sweep");
      return 0;
    }
    let finished = 0;
    for (const p of pending) {
      if (this.closed) break;
      try {
        if (await this.sweepOne(p, now)) finished++;
      } catch (err) {
        logger?.warn({ err, userId: String(p.userId) }, "account deletion not finished by the sweep; tried again at the next one");
      }
    }
    return finished;
  }

  /** True when it finished the deletion. */
  private async sweepOne(p: PendingDeletion, now: number): Promise<boolean> {
    const user = await this.deps.accounts.getUser(p.userId);
    if (user && !isDeletedUser(user)) {
      // Cut short before the mark: the account is its owner's, who may ask again (which records
      // the deletion anew, at another time, so this removal leaves that record).
      if (p.atMs <= now - (this.options.abandonedMs ?? ABANDONED_DELETION_MS)) {
        await this.tellGone(p);
        await this.deps.accounts.removePendingDeletion(p.userId, p.atMs);
      }
      return false;
    }
    await this.finish(p);
    await this.deps.accounts.removePendingDeletion(p.userId, p.atMs);
    this.deps.metrics?.auth.inc({ event: "deletion_swept" });
    this.deps.logger?.info({ userId: String(p.userId) }, "account deletion cut short after its mark finished by the sweep");
    return true;
  }

  /**
   * An abandoned deletion may have dropped friendships before it was cut
   * short, and told nobody: the friends recorded that the account no longer
   * reaches (a friendship made again, or a chat shared, reaches them) are told
   * it is offline, as an unfriending tells. Once: the record goes next. Best
   * effort: the record is dropped either way.
   */
  private async tellGone(p: PendingDeletion): Promise<void> {
    if (!p.tellOffline?.length) return;
    try {
      const audience = new Set(await storeAudience(this.deps)(p.userId));
      const gone = p.tellOffline.filter((id) => !audience.has(id));
      await tellOffline(this.deps, p.userId, gone);
    } catch (err) {
      this.deps.logger?.warn({ err, userId: String(p.userId) }, "presence after an abandoned account deletion not told");
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep().finally(() => {
        this.running = undefined;
        const interval = this.options.intervalMs ?? DELETION_SWEEP_INTERVAL_MS;
        this.schedule(interval * (0.9 + 0.2 * (this.options.random ?? Math.random)()));
      });
    }, delayMs);
    // A sweep waiting is no reason to keep a process alive.
    this.timer.unref();
  }
}
