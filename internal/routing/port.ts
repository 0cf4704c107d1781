import type { Id } from "../model/types.js";

/**
 * SessionRoutes records which chat servers hold sessions of which users, so
 * that the pipeline and the api can reach a user's devices. Entries are soft
 * state: each chat server refreshes its own, and entries of a server that
 * died expire on their own. Adapters: redis (distributed), memory (chatd).
 */
export interface SessionRoutes {
  /** How long an entry lives after its last add or refresh. */
  readonly ttlMs?: number;
  /** The user has at least one session on this server. */
  add(userId: Id, serverId: string): Promise<void>;
  /**
   * The user's last session on this server ended. Deletes the entry only if
   * this process wrote it last: another process under the same server id (a
   * restart while the old one drains) holds the user if it wrote it since.
   */
  remove(userId: Id, serverId: string): Promise<void>;
  /** Re-asserts every user this server holds (after a registry restart, and periodically). */
  refresh(serverId: string, userIds: readonly Id[]): Promise<void>;
  /** Server ids per user; users with no live entry are absent. */
  lookup(userIds: readonly Id[]): Promise<Map<Id, string[]>>;
  /**
   * Called when the store may have lost entries (Redis reconnected, perhaps
   * after a restart): holders re-assert their routes, and sessions re-check
   * their inboxes for entries whose live push found no route meanwhile.
   */
  onReset?(listener: () => void): void;
  close(): Promise<void>;
}
