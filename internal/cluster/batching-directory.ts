import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id } from "../model/types.js";

export interface BatchingOptions {
  /** How long the first push of a batch waits for others to join it. Default 10 ms. */
  windowMs?: number;
  /** A batch this large goes at once. Default 5000 (user, frame) pairs. */
  maxItems?: number;
}

type Item = { userId: Id; frame: ServerFrame };

/**
 * Gathers the pushes of a short window into one `pushMany`: with the
 * RoutedSessionDirectory that is one routing lookup and one Deliver call per
 * chat server for the whole batch, instead of one per event. Presence is
 * its user: a sweep that takes a hundred users offline, or a burst of
 * connects after a chat server failed over, reaches each chat server in a
 * few calls. Each push resolves when its batch has been handed over (and
 * rejects if the batch failed), so callers keep their per-user order.
 */
export class BatchingDirectory implements Pick<SessionDirectory, "pushToUsers"> {
  private readonly windowMs: number;
  private readonly maxItems: number;
  private items: Item[] = [];
  private timer?: NodeJS.Timeout;
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly target: { pushMany(items: readonly Item[]): Promise<unknown> },
    options: BatchingOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 10;
    this.maxItems = options.maxItems ?? 5000;
  }

  pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void> {
    if (userIds.length === 0) return Promise.resolve();
    for (const userId of userIds) this.items.push({ userId, frame });
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.items.length >= this.maxItems) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    return done;
  }

  /** Sends what is gathered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.items.length === 0) return;
    const items = this.items;
    const waiters = this.waiters;
    this.items = [];
    this.waiters = [];
    const p = this.target.pushMany(items).then(
      () => waiters.forEach((w) => w.resolve()),
      (err) => waiters.forEach((w) => w.reject(err)),
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Sends what is gathered and waits for every batch in flight (shutdown). */
  async close(): Promise<void> {
    this.flush();
    await Promise.all([...this.inFlight]);
  }
}
