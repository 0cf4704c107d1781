import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id } from "../model/types.js";

export interface BatchingOptions {
  /** How long the first push of a batch waits for others to join it. Default 10 ms. */
  windowMs?: number;
  /** A batch this large goes at once (once the one in flight is done). Default 5000 (user, frame) pairs. */
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
 * rejects if the batch failed).
 *
 * One batch is in flight at a time, and what gathers meanwhile goes as the
 * next one when it is done. Two batches side by side raced: the later one's
 * routing lookup could answer first and its frames reach a chat server
 * before the earlier one's, so a watcher was told a user's older state last
 * (offline after online) until the announcement noticed and told it again.
 * Waiting costs no throughput: a slow batch makes the next one larger, not
 * later ones more numerous.
 */
export class BatchingDirectory implements Pick<SessionDirectory, "pushToUsers"> {
  private readonly windowMs: number;
  private readonly maxItems: number;
  private items: Item[] = [];
  private timer?: NodeJS.Timeout;
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private sending?: Promise<void>;

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
    // While a batch is in flight, its end sends what gathered: no window to wait for.
    if (this.sending) return done;
    if (this.items.length >= this.maxItems) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    return done;
  }

  /** Sends what is gathered now, or as soon as the batch in flight is done. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || this.items.length === 0) return;
    const items = this.items;
    const waiters = this.waiters;
    this.items = [];
    this.waiters = [];
    this.sending = this.target
      .pushMany(items)
      .then(
        () => waiters.forEach((w) => w.resolve()),
        (err) => waiters.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        this.sending = undefined;
        this.flush();
      });
  }

  /** Sends what is gathered and waits until every batch is handed over (shutdown). */
  async close(): Promise<void> {
    this.flush();
    while (this.sending) await this.sending;
  }
}
