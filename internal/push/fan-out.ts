import type { Held, HeldByChat } from "./held.js";
import { hostOf, type Job } from "./job.js";
import type { NotifierContext } from "./notifier-context.js";
import type { SkipReason } from "./notifier-reports.js";
import type { PushEndpoint } from "./port.js";
import { backoff } from "./retry.js";
import type { Sender } from "./sender.js";

/**
 * Turns each closed collapse window into jobs for the sender: asks whether
 * its user is online, has muted the chat, and which of their devices have
 * endpoints to push to and are still logged in.
 */
export class FanOuts {
  readonly flushing = new Set<Promise<void>>();
  /**
   * The last fan-out of each (user, chat) under way: the next window's waits
   * for it. Run side by side, an older window whose reads were slow (a store
   * retried with backoff) made its push after the newer one's, and it took
   * the newer's place on the device (same collapse key).
   */
  private readonly fanningOut = new Map<string, Promise<void>>();
  /** Fan-outs waiting to read the endpoint store again (see pause). */
  private readonly pauses = new Set<() => void>();

  constructor(
    private readonly c: NotifierContext,
    private readonly heldByChat: HeldByChat,
    private readonly sender: Sender,
  ) {}

  /** Fan-outs under way (or waiting for the one before of their chat). */
  get size(): number {
    return this.flushing.size;
  }

  /** Fans out the window of chat `key` that just closed, after the chat's fan-out before it. */
  start(key: string, held: Held): void {
    const fanOut = () => this.c.health.run(() => this.fanOut(held));
    const before = this.fanningOut.get(key);
    const p = (before ? before.then(fanOut) : fanOut())
      .catch((err) => this.c.deps.logger?.warn({ err, userId: String(held.latest.userId) }, "push notification failed"))
      .finally(() => {
        this.flushing.delete(p);
        if (this.fanningOut.get(key) === p) this.fanningOut.delete(key);
        this.heldByChat.release(held);
        this.c.wakeWaiters();
      });
    this.flushing.add(p);
    this.fanningOut.set(key, p);
  }

  /** stop() begins: the fan-outs waiting to read the endpoints again give up. */
  wakePauses(): void {
    for (const wake of this.pauses) wake();
  }

  /** Fans out in a store slot; a wait to read the endpoints again holds none. */
  private async fanOut(held: Held): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.c.storeSlots.run(() => this.fanOutOnce(held, attempt));
      if (outcome !== "again") return;
      if (!(await this.pause(backoff(this.c.o, attempt)))) return this.c.deps.onSkipped?.("stopped");
    }
  }

  /** "again" when the endpoints could not be read and may be asked for again after a backoff. */
  private async fanOutOnce(held: Held, attempt: number): Promise<"again" | void> {
    const { deps, o } = this.c;
    if (this.c.stopped) return;
    const skipped = (reason: SkipReason) => deps.onSkipped?.(reason);
    // Every message of it deleted (or reaction taken back) while it waited for a store slot.
    if (held.requests.size === 0) return skipped(held.emptiedBy);
    const req = held.latest;
    const { origin } = held;
    if (deps.isOnline && (await deps.isOnline(req.userId))) return skipped("online");
    if (!req.mentioned && (await this.c.channelMuted(req.userId, req.message.channelId))) return skipped("channel_muted");
    let endpoints: PushEndpoint[];
    try {
      endpoints = await deps.endpoints.listForUser(req.userId);
    } catch (err) {
      // Nothing is under way yet, so all of it can go again, asked anew (online, muted): its record
      // is committed, and a store away for seconds (a node restarting) cost every push due meanwhile.
      if (attempt >= o.maxAttempts || this.c.draining) throw err;
      // A failure all the same, for the stall clock of /healthz.
      await this.c.health.run(() => Promise.reject(err)).catch(() => {});
      deps.logger?.debug({ err, attempt }, "push endpoints unreadable: trying again");
      return "again";
    }
    if (endpoints.length === 0) skipped("no_endpoint");
    // A device whose login cannot be checked gets nothing (it may be logged
    // out), the others theirs; the failure is thrown once they are under way.
    let failure: unknown;
    let withdrawn = false;
    for (const endpoint of endpoints) {
      if (endpoint.muted) {
        skipped("muted");
        continue;
      }
      if (!deps.providers[endpoint.kind]) {
        skipped("no_provider");
        continue;
      }
      try {
        if (deps.isDeviceActive && !(await deps.isDeviceActive(endpoint.userId, endpoint.deviceId))) {
          await deps.endpoints
            .removeIfAddress(endpoint.userId, endpoint.deviceId, endpoint.address)
            .catch((err) => deps.logger?.warn({ err }, "could not remove a logged-out device's endpoint"));
          skipped("revoked_device");
          continue;
        }
      } catch (err) {
        failure ??= err;
        continue;
      }
      // Withdrawn while the stores were read: what is left, as it is now.
      if (held.requests.size === 0) {
        withdrawn = true;
        break;
      }
      const { latest } = held;
      const versions = held.versions(o.ttlSeconds);
      const notification = endpoint.hidePreview ? versions.noPreview : versions.preview;
      const job: Job = {
        endpoint,
        origin,
        held,
        heldVersion: held.version,
        notification,
        channelId: latest.message.channelId,
        sentAtMs: latest.message.sentAtMs,
        versions,
        attempt: 1,
        host: hostOf(endpoint),
      };
      if (!this.sender.hasRoomFor(job.host)) {
        skipped("backlog");
        continue;
      }
      held.refs++;
      this.sender.supersede(job);
      this.sender.enqueue(job);
    }
    if (withdrawn) skipped(held.emptiedBy);
    this.sender.pump();
    if (failure !== undefined) throw failure;
  }

  /** Resolves true after `ms`, or false at once when stop() begins (or began). */
  private pause(ms: number): Promise<boolean> {
    if (this.c.draining) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.pauses.delete(wake);
        resolve(false);
      };
      const t = setTimeout(() => {
        this.pauses.delete(wake);
        resolve(true);
      }, ms);
      this.pauses.add(wake);
    });
  }
}
