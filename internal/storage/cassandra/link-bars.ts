import { MAX_BARS } from "../../channels/store.js";
import type { Id } from "../../model/types.js";
import type { ChannelQueries } from "./channel-queries.js";
import { big, type Db, type Statement } from "./session.js";

/**
 * Those barred from a group's link: static columns of its partition
 * (`barred`, and `barred_at` for when), changed in the removal or add
 * batches that go through the fence.
 */
export class LinkBars {
  constructor(
    private readonly db: Db,
    private readonly q: ChannelQueries,
  ) {}

  async isBarred(channelId: Id, userId: Id): Promise<boolean> {
    return (await this.barredOf(channelId)).has(userId);
  }

  async barredAmong(channelId: Id, userIds: readonly Id[]): Promise<Id[]> {
    const barred = await this.barredOf(channelId);
    return userIds.filter((userId) => barred.has(userId));
  }

  /**
   * The writes that bar userId at version `next`, and lift the oldest bars
   * past MAX_BARS (why a cap, and why the oldest: MAX_BARS).
   */
  barStatements(channelId: Id, userId: Id, next: bigint, barredAt: Map<Id, bigint>): Statement[] {
    const writes: Statement[] = [{ query: this.q.bar, params: [[userId], userId, next, channelId] }];
    const others = [...barredAt].filter(([id]) => id !== userId);
    const over = others.length + 1 - MAX_BARS;
    if (over <= 0) return writes;
    // Oldest first; ties (bars an older build made, with no time) by user id, as SQLite breaks them.
    const oldest = others.sort(([x, a], [y, b]) => (a !== b ? (a < b ? -1 : 1) : x < y ? -1 : 1)).slice(0, over).map(([id]) => id);
    writes.push({ query: this.q.liftBar, params: [oldest, oldest, channelId] });
    return writes;
  }

  /** Those barred from the group's link, each with when (-1: barred by an older build, which kept no time). */
  async barredAtOf(channelId: Id): Promise<Map<Id, bigint>> {
    const row = await this.db.one(this.q.barredAt, [channelId]);
    const ids = (row?.get("barred") as unknown[] | null | undefined) ?? [];
    // The driver gives a map as an object keyed by the ids' strings (or a Map, if so configured).
    const column = row?.get("barred_at") as Map<unknown, unknown> | Record<string, unknown> | null | undefined;
    const at = new Map<Id, bigint>(
      (column instanceof Map ? [...column.entries()] : Object.entries(column ?? {})).map(([k, v]) => [BigInt(k as string | bigint), big(v)]),
    );
    return new Map(ids.map((id) => [big(id), at.get(big(id)) ?? -1n]));
  }

  /** Those barred from the group's link (as the static `barred` holds them; null is nobody). */
  async barredOf(channelId: Id): Promise<Set<Id>> {
    const row = await this.db.one(this.q.barred, [channelId]);
    const ids = (row?.get("barred") as unknown[] | null | undefined) ?? [];
    return new Set(ids.map(big));
  }
}
