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

/**
 * A push some of whose users' sessions could not be told (their chat server
 * did not take it: frozen, its stream broken); `userIds` are those it was
 * for. A directory that tells it apart from a push that found no session
 * (nothing to tell) throws it, so that what no inbox makes up for (presence)
 * is tried again.
 */
export class PushFailedError extends Error {
  constructor(readonly userIds: ReadonlySet<Id>) {
    super(`push not taken by a chat server for ${userIds.size} user(s)`);
    this.name = "PushFailedError";
  }
}
