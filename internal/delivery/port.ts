import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { Id, InboxEntry } from "../model/types.js";

/**
 * SessionDirectory reaches the live sessions of users wherever they are
 * connected: in chatd the one local chat server, in the distributed mode the
 * chat servers that the routing table (Redis) names.
 */
export interface SessionDirectory {
  /** Pushes a frame to every open session of the given users (best effort). */
  pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void>;
  /**
   * Many (user, frame) pairs at once, so a remote directory can batch them per
   * server. Resolves to the users it found an open session for, so that
   * telling who is offline takes no second lookup. Rejects only when it could
   * not tell (the routes could not be read): the caller takes every user as
   * not reached, without a second lookup.
   */
  pushMany?(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<ReadonlySet<Id>>;
  /**
   * Stored inbox entries handed on as they are, at once, for a directory in
   * this process: it encodes each message once, and only for users it holds
   * a session of, rather than being handed a ServerFrame per entry. Returns
   * the users it found no started session of, the others of what pushMany
   * resolves to: nearly always none, which then costs no set. A message's
   * entries come together.
   */
  pushEntries?(items: readonly { userId: Id; entry: InboxEntry }[]): ReadonlySet<Id>;
  /** Closes the sessions of one device (logout, revocation); resolves to how many, where the directory can tell. */
  closeDevice(userId: Id, deviceId: Id, code: number, reason: string): Promise<number | void>;
  /** Users among the given ones with at least one open session. */
  onlineUsers(userIds: readonly Id[]): Promise<Set<Id>>;
}
