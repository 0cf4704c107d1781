import type { Id } from "../model/types.js";
import type { SessionRoutes } from "./port.js";

export interface MemorySessionRoutesOptions {
  /** An entry lives this long after its last add/refresh (default 60 s; refresh at most every third of it). */
  ttlMs?: number;
  /** The clock (default Date.now), for tests. */
  now?: () => number;
  /** Another adapter whose entries this one shares, as two processes share a Redis (tests). */
  sharing?: MemorySessionRoutes;
}

interface Entry {
  until: number;
  /** The adapter (the process) that wrote it last: only its remove deletes it. */
  by: MemorySessionRoutes;
}

/**
 * Session routes in this process's memory (chatd): the same soft-state rules
 * as the Redis adapter — an entry expires `ttlMs` after its server last
 * added or refreshed it — so a chat server that stops refreshing drops out,
 * and a remove deletes an entry only if this adapter wrote it last.
 */
export class MemorySessionRoutes implements SessionRoutes {
  readonly ttlMs: number;
  private readonly now: () => number;
  /** user -> server -> entry */
  private readonly routes: Map<Id, Map<string, Entry>>;

  constructor(options: MemorySessionRoutesOptions = {}) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.routes = options.sharing?.routes ?? new Map();
  }

  async add(userId: Id, serverId: string): Promise<void> {
    this.assert(userId, serverId);
    this.touch(userId, serverId, this.now() + this.ttlMs);
  }

  async remove(userId: Id, serverId: string): Promise<void> {
    this.assert(userId, serverId);
    const servers = this.routes.get(userId);
    if (servers?.get(serverId)?.by !== this) return;
    servers.delete(serverId);
    if (servers.size === 0) this.routes.delete(userId);
  }

  async refresh(serverId: string, userIds: readonly Id[]): Promise<void> {
    const until = this.now() + this.ttlMs;
    for (const userId of userIds) {
      this.assert(userId, serverId);
      this.touch(userId, serverId, until);
    }
  }

  async lookup(userIds: readonly Id[]): Promise<Map<Id, string[]>> {
    const now = this.now();
    const out = new Map<Id, string[]>();
    for (const userId of userIds) {
      const servers = this.routes.get(userId);
      if (!servers) continue;
      const live: string[] = [];
      for (const [serverId, { until }] of servers) {
        if (until > now) live.push(serverId);
        else servers.delete(serverId);
      }
      if (servers.size === 0) this.routes.delete(userId);
      if (live.length > 0) out.set(userId, live.sort());
    }
    return out;
  }

  /** Forgets every entry (a restart of the routing store), for tests. */
  clear(): void {
    this.routes.clear();
  }

  async close(): Promise<void> {}

  private touch(userId: Id, serverId: string, until: number): void {
    let servers = this.routes.get(userId);
    if (!servers) this.routes.set(userId, (servers = new Map()));
    servers.set(serverId, { until, by: this });
  }

  private assert(userId: Id, serverId: string): void {
    validateRoute(userId, serverId);
  }
}

/** @internal shared by the adapters */
export function validateRoute(userId: Id, serverId: string): void {
  if (typeof userId !== "bigint" || userId < 0n) throw new RangeError(`user id must be a non-negative bigint, got ${String(userId)}`);
  if (typeof serverId !== "string" || serverId === "") throw new RangeError("server id must be a non-empty string");
}
