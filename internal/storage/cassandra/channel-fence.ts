import { setTimeout as sleep } from "node:timers/promises";
import { ContendedError } from "../../model/errors.js";
import type { Id, MemberRecord } from "../../model/types.js";
import type { ChannelQueries } from "./channel-queries.js";
import { inJoinOrder } from "./channel-rows.js";
import { big, type Db, type Statement } from "./session.js";

const MAX_ATTEMPTS = 32;

/** A channel partition as one read saw it: the version fence, the members in join order, the invite code as stored. */
export interface State {
  version: bigint;
  count: number;
  members: MemberRecord[];
  inviteCode: string | null;
  title: string;
}

/**
 * What a membership change does at the state it was planned on: nothing
 * (writes absent), or these writes conditional on that state's version, with
 * the member count after them (unchanged when absent).
 */
export interface Plan<T> {
  result: T;
  writes?: Statement[];
  count?: number;
}

/**
 * The channel version compare-and-set every membership, role, title and
 * invite code change goes through (why: CassandraChannelStore).
 */
export class ChannelFence {
  constructor(
    private readonly db: Db,
    private readonly q: ChannelQueries,
  ) {}

  /**
   * Plans a change on the channel's current state and writes it as one batch
   * conditional on that state's version (moving it to version + 1); a batch
   * that lost to another change re-reads and plans again. `plan` gets
   * undefined for a missing channel, and the version the batch would write.
   */
  async fenced<T>(channelId: Id, plan: (s: State | undefined, next: bigint) => Plan<T> | Promise<Plan<T>>): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (attempt >= 3) await sleep(Math.random() * Math.min(100, 5 * 2 ** attempt));
      const s = await this.state(channelId);
      const p = await plan(s, (s?.version ?? 0n) + 1n);
      if (!s || !p.writes) return p.result;
      const r = await this.db.batch([
        { query: this.q.bump, params: [s.version + 1n, p.count ?? s.count, channelId, s.version] },
        ...p.writes,
      ], { logged: false, conditional: true });
      if (r.applied) return p.result;
    }
    throw new ContendedError(`channel ${channelId}: membership stayed contended, try again`);
  }

  /**
   * A plain LOCAL_QUORUM read is enough: the batch CAS re-checks the version
   * (every change to members and roles moves it), and a lost CAS leaves the
   * winner committed, so the retry's read sees it.
   */
  private async state(channelId: Id): Promise<State | undefined> {
    const rows = await this.db.rows(this.q.state, [channelId]);
    const first = rows[0];
    if (!first || first.get("kind") === null) return undefined;
    return {
      version: big(first.get("version")),
      count: (first.get("member_count") as number | null) ?? 0,
      members: inJoinOrder(rows, channelId),
      inviteCode: (first.get("invite_code") as string | null | undefined) ?? null,
      title: (first.get("title") as string | null | undefined) ?? "",
    };
  }
}
