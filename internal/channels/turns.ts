import { AsyncLocalStorage } from "node:async_hooks";
import type { Id } from "../model/types.js";

/**
 * One piece of work at a time per channel within this process, the next
 * starting once the one before it settled (ChannelStore.changeInTurn).
 * Reentrant: work run inside a channel's turn (a join that finds its joiner's
 * account deleted and leaves again) runs at once rather than wait for itself.
 */
export class ChannelTurns {
  /** The last work of each channel not settled yet. */
  private readonly last = new Map<Id, Promise<unknown>>();
  /** The channels whose turn the current async context holds. */
  private readonly held = new AsyncLocalStorage<ReadonlySet<Id>>();

  /** Whether the current async context runs inside the channel's turn. */
  holds(channelId: Id): boolean {
    return this.held.getStore()?.has(channelId) ?? false;
  }

  async run<T>(channelId: Id, work: () => Promise<T>): Promise<T> {
    if (this.holds(channelId)) return work();
    const before = this.last.get(channelId);
    const mine = (async () => {
      if (before) await before.catch(() => undefined);
      return this.held.run(new Set([...(this.held.getStore() ?? []), channelId]), work);
    })();
    this.last.set(channelId, mine);
    try {
      return await mine;
    } finally {
      if (this.last.get(channelId) === mine) this.last.delete(channelId);
    }
  }
}
