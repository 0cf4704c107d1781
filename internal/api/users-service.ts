import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { FriendshipState, UserService } from "../../gen/es/chat/v1/users_pb.js";
import { refuseIfBlocked } from "../accounts/blocks.js";
import { ACCOUNT_DELETED, isDeletedUser } from "../accounts/store.js";
import { ChatError, isChatError } from "../model/errors.js";
import { tellOffline } from "./tell-offline.js";
import { reaches } from "../presence/audience.js";
import type { Id, UserRecord } from "../model/types.js";
import { forgetBlock } from "./access.js";
import { caller } from "./context.js";
import { userToProto } from "./convert.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";

/**
 * Friends are who see a user's presence pushed, and a user's requests are one
 * list read whole: both stay bounded, so no account (a spammed one, a bot's)
 * makes a presence change or a ListFriendRequests unboundedly large.
 */
export interface FriendLimits {
  maxFriends: number;
  /** Requests a user sent that wait for an answer, and requests a user received that wait for theirs, each. */
  maxPendingRequests: number;
}
export const DEFAULT_FRIEND_LIMITS: FriendLimits = { maxFriends: 5_000, maxPendingRequests: 1_000 };

/**
 * Users one user may have blocked. The list is read whole: by
 * ListBlockedUsers, and by every presence audience and group join the user
 * is in (blockedEitherWay). Unbounded, one account blocking every account it
 * finds would make each of those reads as large as it liked.
 */
export const DEFAULT_MAX_BLOCKED_PER_USER = 5_000;

export function userService(deps: ApiDeps): Partial<ServiceImpl<typeof UserService>> {
  const { accounts } = deps;
  const now = deps.now ?? Date.now;
  const limits = deps.friendLimits ?? DEFAULT_FRIEND_LIMITS;
  const maxBlocked = deps.maxBlockedPerUser ?? DEFAULT_MAX_BLOCKED_PER_USER;

  async function mustGetUser(userId: Id): Promise<UserRecord> {
    const user = await accounts.getUser(userId);
    if (!user || isDeletedUser(user)) throw new ChatError("not_found", "no such user");
    return user;
  }

  /**
   * The caller's own account. One deleted through another api process, whose device this
   * process's gate still trusts (for up to 10 s), is told so as its devices are: "no such
   * user" (NOT_FOUND) sent its client looking for a bug instead of back to signing in.
   */
  async function mustGetMe(userId: Id): Promise<UserRecord> {
    const user = await accounts.getUser(userId);
    if (!user || isDeletedUser(user)) throw new ChatError("unauthenticated", ACCOUNT_DELETED);
    return user;
  }

  /** The other user of a friend operation: given, existing, and not the caller. */
  async function other(me: Id, userId: Id): Promise<Id> {
    v.id("user_id", userId);
    if (userId === me) throw new ChatError("invalid_argument", "user_id must be another user");
    await mustGetUser(userId);
    return userId;
  }

  return {
    async getMe(_req, ctx) {
      return { user: userToProto(await mustGetMe(caller(ctx).userId)) };
    },

    async updateProfile(req, ctx) {
      const me = caller(ctx);
      const displayName = v.displayName(req.displayName);
      // The name it has already is no write (a Paxos round on Cassandra).
      const user = await mustGetMe(me.userId);
      if (user.displayName === displayName) return { user: userToProto(user) };
      await accounts.updateDisplayName(me.userId, displayName);
      return { user: userToProto(await mustGetMe(me.userId)) };
    },

    async getUsers(req, ctx) {
      caller(ctx);
      const users = await accounts.getUsers(v.ids("user_ids", req.userIds, 100));
      return { users: users.map(userToProto) };
    },

    async searchUsers(req, ctx) {
      caller(ctx);
      // Full-width letters (and ＠) are what an East Asian keyboard types in its wide mode: NFKC makes them ASCII.
      const query = req.query.normalize("NFKC").trim().replace(/^@/, "");
      if (query.length === 0) throw new ChatError("invalid_argument", "query is required");
      // Nothing can match characters a username cannot have.
      if (!/^[a-z0-9_.]{1,32}$/i.test(query)) return { users: [] };
      // Prefix search returns an exact match first: it sorts before its extensions.
      const users = await accounts.searchUsers(query.toLowerCase(), v.limit(req.limit, 20, 100));
      return { users: users.map(userToProto) };
    },

    async sendFriendRequest(req, ctx) {
      const me = caller(ctx).userId;
      const them = await other(me, req.userId);
      refuseIfBlocked(await accounts.blockersBetween(me, them), me, them, "send a friend request to");
      if (await accounts.areFriends(me, them)) return { state: FriendshipState.FRIENDS };
      // Asking someone who already asked you is accepting.
      if (await accounts.hasFriendRequest(them, me)) {
        await befriend(me, them);
        return { state: FriendshipState.FRIENDS };
      }
      const isNew = !(await accounts.hasFriendRequest(me, them));
      const full = isNew ? await pendingFull(me, them, limits.maxPendingRequests) : undefined;
      if (full) throw full;
      // Sent again while it waits: it keeps the time it was first sent.
      // Only the call that stored the request may withdraw it past the limit: a repeat from another
      // device, which read it as new too, found it stored by a call already answered as sent.
      const stored = isNew && (await accounts.putFriendRequest(me, them, now()));
      await undoIfDeleted(me, them, () => accounts.deleteFriendRequest(me, them));
      // Read, then written: requests sent at the same moment (many senders to one user) each passed the
      // read above, so each looks again once written and withdraws itself past a limit. The last to
      // land sees every other; those that all go leave the room a retry finds.
      if (stored) {
        const past = await pendingFull(me, them, limits.maxPendingRequests + 1);
        if (past) {
          await accounts.deleteFriendRequest(me, them);
          throw past;
        }
      }
      // A block stores itself before it drops the pair's requests, so one made after the check above
      // and done before this request was stored is seen here.
      const blockers = await accounts.blockersBetween(me, them);
      if (blockers.length > 0) {
        await accounts.deleteFriendRequest(me, them);
        refuseIfBlocked(blockers, me, them, "send a friend request to");
      }
      // Theirs may have been stored after the look above: two asking each other at once are friends,
      // not two requests each waiting for the other. Either this read or theirs finds the other.
      if (await accounts.hasFriendRequest(them, me)) {
        try {
          await befriend(me, them);
          return { state: FriendshipState.FRIENDS };
        } catch (e) {
          // Past a friend limit the requests wait, as any request does; this one was sent.
          if (!(isChatError(e) && e.code === "limit_reached")) throw e;
        }
      }
      return { state: FriendshipState.REQUEST_SENT };
    },

    async respondFriendRequest(req, ctx) {
      const me = caller(ctx).userId;
      const them = await other(me, req.userId).catch(async (e: unknown) => {
        // A deleted account's request, left on the caller's side alone (its deletion cut short between
        // the request's two rows, and the retry reads only the account's own): an answer takes it away,
        // as it does any lone one below, else it stayed on the list for good.
        if (!(isChatError(e) && e.code === "not_found")) throw e;
        if (!(await accounts.listFriendRequests(me)).some((r) => r.fromUserId === req.userId && r.toUserId === me)) throw e;
        await accounts.deleteFriendRequest(req.userId, me);
        if (req.accept) throw new ChatError("not_found", "this account was deleted; its friend request is taken off your list");
        return undefined;
      });
      if (them === undefined) return { state: FriendshipState.NONE };
      if (await accounts.areFriends(me, them)) {
        if (req.accept) return { state: FriendshipState.FRIENDS };
        throw new ChatError("not_found", "no pending friend request from this user (already friends)");
      }
      if (!(await accounts.hasFriendRequest(them, me))) {
        // The caller's own row may be left alone (a store of two rows, the sender's written last and
        // deleted first: a withdrawal or a send cut short). It is in their list, so an answer to it
        // takes it away. A decline is what they asked; an acceptance is refused: the sender
        // withdrew it, or was told their send failed, and becomes nobody's friend unasked.
        const lone = (await accounts.listFriendRequests(me)).some((r) => r.fromUserId === them && r.toUserId === me);
        if (!lone) throw new ChatError("not_found", "no pending friend request from this user");
        await accounts.deleteFriendRequest(them, me);
        if (req.accept) throw new ChatError("not_found", "this friend request was withdrawn by its sender; it is taken off your list");
        return { state: FriendshipState.NONE };
      }
      if (req.accept) {
        await befriend(me, them);
        return { state: FriendshipState.FRIENDS };
      }
      await accounts.deleteFriendRequest(them, me);
      return { state: FriendshipState.NONE };
    },

    async listFriendRequests(_req, ctx) {
      const me = caller(ctx).userId;
      const requests = await accounts.listFriendRequests(me);
      const users = new Map(
        (await accounts.getUsers(requests.map((r) => (r.fromUserId === me ? r.toUserId : r.fromUserId)))).map((u) => [u.userId, u]),
      );
      return {
        requests: requests.flatMap((r) => {
          const outgoing = r.fromUserId === me;
          const user = users.get(outgoing ? r.toUserId : r.fromUserId);
          return user ? [{ user: userToProto(user), outgoing }] : [];
        }),
      };
    },

    async listFriends(_req, ctx) {
      const friends = await accounts.getUsers(await accounts.listFriends(caller(ctx).userId));
      return { friends: friends.map(userToProto) };
    },

    async removeFriend(req, ctx) {
      const me = caller(ctx).userId;
      const them = v.id("user_id", req.userId);
      // As UnblockUser: the caller's own id is no friend to remove, and no deleted or unknown user is refused (nothing left to undo).
      if (them === me) throw new ChatError("invalid_argument", "user_id must be another user");
      const were = await accounts.areFriends(me, them);
      // Also withdraws a request either way, so "remove" works at every stage.
      await accounts.removeFriendship(me, them);
      await accounts.deleteFriendRequest(me, them);
      await accounts.deleteFriendRequest(them, me);
      // Where the friendship was all that showed one to the other, neither keeps a stale "online".
      if (were) await Promise.all([tellGone(me, them), tellGone(them, me)]);
      return {};
    },

    async blockUser(req, ctx) {
      const me = caller(ctx).userId;
      const them = await other(me, req.userId);
      // Blocking again takes no more room. Read, then written: blocks made at the same moment may each
      // pass, so a new one looks again once written and goes past the limit (as friend requests do).
      const isNew = !(await accounts.listBlocks(me)).some((b) => b.userId === them);
      if (isNew) await refuseBlocksPast(me, maxBlocked);
      // Only the call that stored the block may take it back: a repeat from another device, which read
      // it as new too, found it stored by a call already answered OK.
      const stored = await accounts.putBlock(me, them, now());
      if (isNew && stored) {
        await refuseBlocksPast(me, maxBlocked + 1).catch(async (e: unknown) => {
          await accounts.deleteBlock(me, them);
          await forgetBlock(deps, me, them);
          throw e;
        });
      }
      await accounts.removeFriendship(me, them);
      await accounts.deleteFriendRequest(me, them);
      await accounts.deleteFriendRequest(them, me);
      await forgetBlock(deps, me, them);
      // A block made before told each the other offline then: nobody is told again.
      if (!isNew) return {};
      // Neither keeps a stale "online" of the other: each is told offline, with no last seen.
      // Best effort: the block is stored, and holds whether or not this reaches anyone.
      try {
        await Promise.all([tellOffline(deps, me, [them]), tellOffline(deps, them, [me])]);
      } catch (err) {
        deps.logger?.warn({ err }, "presence after a block not told");
      }
      return {};
    },

    async unblockUser(req, ctx) {
      const me = caller(ctx).userId;
      const them = v.id("user_id", req.userId);
      if (them === me) throw new ChatError("invalid_argument", "user_id must be another user");
      // Nothing to undo (never blocked, or unblocked already): no write, and nobody told of presence they already see.
      if (!(await accounts.blockersBetween(me, them)).includes(me)) return {};
      await accounts.deleteBlock(me, them);
      await forgetBlock(deps, me, them);
      // Presence hidden by the block comes back where a shared chat and the settings allow it.
      await Promise.all([tellPresence(me, them), tellPresence(them, me)]);
      return {};
    },

    async listBlockedUsers(_req, ctx) {
      const blocks = await accounts.listBlocks(caller(ctx).userId);
      const users = new Map((await accounts.getUsers(blocks.map((b) => b.userId))).map((u) => [u.userId, u]));
      return {
        blockedUsers: blocks.flatMap((b) => {
          const user = users.get(b.userId);
          return user ? [{ user: userToProto(user), blockedAt: timestampFromMs(b.atMs) }] : [];
        }),
      };
    },
  };

  /** Refuses when `me` has blocked `atLeast` users. */
  async function refuseBlocksPast(me: Id, atLeast: number): Promise<void> {
    if ((await accounts.listBlocks(me)).length >= atLeast) {
      throw new ChatError("limit_reached", `you blocked ${maxBlocked} users, the most one can: unblock someone first`);
    }
  }

  /** The refusal when `me` has sent, or `them` has received, `atLeast` requests that wait for an answer. */
  async function pendingFull(me: Id, them: Id, atLeast: number): Promise<ChatError | undefined> {
    const [mine, theirs] = await Promise.all([accounts.listFriendRequests(me), accounts.listFriendRequests(them)]);
    if (mine.filter((r) => r.fromUserId === me).length >= atLeast) {
      return new ChatError("limit_reached", `you have ${limits.maxPendingRequests} friend requests waiting for an answer: withdraw some (RemoveFriend) first`);
    }
    if (theirs.filter((r) => r.toUserId === them).length >= atLeast) {
      return new ChatError("limit_reached", "this user has too many friend requests waiting for their answer; try again later");
    }
    return undefined;
  }

  /** The refusal when either of the pair has `atLeast` friends. */
  async function friendsFull(me: Id, them: Id, atLeast: number): Promise<ChatError | undefined> {
    const [mine, theirs] = await Promise.all([accounts.listFriends(me), accounts.listFriends(them)]);
    if (mine.length >= atLeast) return new ChatError("limit_reached", `you have ${limits.maxFriends} friends, the most there can be: remove some first`);
    if (theirs.length >= atLeast) return new ChatError("limit_reached", `this user has ${limits.maxFriends} friends, the most there can be`);
    return undefined;
  }

  async function befriend(me: Id, them: Id): Promise<void> {
    const [full, mineAsked, theyAsked] = await Promise.all([
      friendsFull(me, them, limits.maxFriends),
      accounts.hasFriendRequest(me, them),
      accounts.hasFriendRequest(them, me),
    ]);
    if (full) throw full;
    await accounts.addFriendship(me, them, now());
    await undoIfDeleted(me, them, () => accounts.removeFriendship(me, them));
    // A block stores itself before it ends the pair's friendship, so one made while this was under
    // way (after the request was read, ending the friendship before it was added) is seen here.
    const blockers = await accounts.blockersBetween(me, them);
    if (blockers.length > 0) {
      await accounts.removeFriendship(me, them);
      refuseIfBlocked(blockers, me, them, "befriend");
    }
    // Read, then written: friendships made at the same moment (many accepting one user's requests)
    // each passed the read above, so each looks again once made and is undone past a limit, its
    // requests left waiting as a refusal before the write leaves them.
    const past = await friendsFull(me, them, limits.maxFriends + 1);
    if (past) {
      await accounts.removeFriendship(me, them);
      if (mineAsked) await accounts.putFriendRequest(me, them, now());
      if (theyAsked) await accounts.putFriendRequest(them, me, now());
      throw past;
    }
    // Friendship may show each to the other where nothing did before.
    await Promise.all([tellPresence(me, them), tellPresence(them, me)]);
  }

  /**
   * After writing something between the pair (a request, a friendship): a
   * deletion of either account that dropped its friends and requests before
   * the write landed would leave it pointing at the deleted account for good,
   * so it is undone here. The deletion marks the account before it drops
   * them a last time: either that pass finds the write, or this read finds
   * the mark.
   */
  async function undoIfDeleted(me: Id, them: Id, undo: () => Promise<void>): Promise<void> {
    const alive = new Set((await accounts.getUsers([me, them])).filter((u) => !isDeletedUser(u)).map((u) => u.userId));
    if (alive.has(me) && alive.has(them)) return;
    await undo();
    if (!alive.has(me)) throw new ChatError("unauthenticated", "this account was deleted");
    throw new ChatError("not_found", "no such user");
  }

  /** Tells `to` that `userId` is offline, with no last seen, when `to` may no longer see `userId`. */
  async function tellGone(userId: Id, to: Id): Promise<void> {
    // Best effort, as after a block: the unfriending is stored already.
    try {
      if (await reaches(deps, userId, to)) return;
      await tellOffline(deps, userId, [to]);
    } catch (err) {
      deps.logger?.warn({ err }, "presence after an unfriending not told");
    }
  }

  /** Pushes `userId`'s latest presence to `to` when `to` may see it. */
  async function tellPresence(userId: Id, to: Id): Promise<void> {
    // Best effort, as after a block: the friendship or unblocking is stored, and failing the call
    // would tell the client it was not.
    try {
      if (deps.presence && (await reaches(deps, userId, to))) await deps.presence.tellLatest(userId, [to]);
    } catch (err) {
      deps.logger?.warn({ err }, "presence after a friendship or an unblocking not told");
    }
  }
}
