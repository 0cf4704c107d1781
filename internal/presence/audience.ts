import { blockedEitherWay } from "../accounts/blocks.js";
import { presenceVisibility, type AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import { MAX_GROUP_MEMBERS, type Id, type MemberRecord, type PresenceVisibility } from "../model/types.js";

/** Who is told, on their open sessions, when a user's presence changes. */
export type PresenceAudience = (userId: Id) => Promise<Id[]>;

export interface AudienceDeps {
  accounts: AccountStore;
  channels: ChannelStore;
  maxChannelMembers?: number;
}

/** Whom a user's presence can reach before their setting narrows it. */
export interface PresenceReach {
  friends: readonly Id[];
  /** Members of the user's channels of at most `maxChannelMembers` members; empty unless read. */
  coMembers: readonly Id[];
}

/**
 * Reads a user's friends, and with `channels` the members of their direct
 * chats and small groups (larger member lists read presence on demand
 * through GetPresence instead). Read at change time, so it follows
 * friendship, membership and block changes without subscriptions to
 * maintain. Users blocked either way are left out.
 */
export async function readReach(deps: AudienceDeps, userId: Id, channels: boolean): Promise<PresenceReach> {
  const [friends, coMembers] = await Promise.all([
    deps.accounts.listFriends(userId),
    channels ? coMembersOf(deps.channels, userId, deps.maxChannelMembers ?? MAX_GROUP_MEMBERS) : new Set<Id>(),
  ]);
  const blocked = await blockedEitherWay(deps.accounts, userId, [...friends, ...coMembers]);
  for (const id of blocked) coMembers.delete(id);
  return { friends: friends.filter((id) => !blocked.has(id)), coMembers: [...coMembers] };
}

/**
 * The members of the user's channels, but the user; with `maxMembers`, of
 * channels no larger (their counts read first). Each read names all the
 * channels at once: two per channel made a user in 500 chats cost 1,000
 * reads per presence change and per GetPresence.
 */
export async function coMembersOf(channels: ChannelStore, userId: Id, maxMembers?: number): Promise<Set<Id>> {
  let ids = (await channels.listMemberships(userId)).map((m) => m.channelId);
  if (maxMembers !== undefined && ids.length > 0) {
    const counts = await channels.memberCounts(ids);
    ids = ids.filter((id) => (counts.get(id) ?? 0) <= maxMembers);
  }
  const rosters = ids.length > 0 ? await channels.listMembersOf(ids) : new Map<Id, MemberRecord[]>();
  const out = new Set([...rosters.values()].flatMap((roster) => roster.map((m) => m.userId)));
  out.delete(userId);
  return out;
}

/** The audience a setting leaves of a reach: everyone in it, friends only, or nobody. */
export function audienceFor(visibility: PresenceVisibility, reach: PresenceReach): Id[] {
  if (visibility === "nobody") return [];
  if (visibility === "friends") return [...reach.friends];
  return [...new Set([...reach.friends, ...reach.coMembers])];
}

/** Whether `to` is in `userId`'s presence audience now. */
export async function reaches(deps: AudienceDeps, userId: Id, to: Id): Promise<boolean> {
  return (await storeAudience(deps)(userId)).includes(to);
}

/** Friends and small-channel co-members, as far as the user's PresenceVisibility allows. */
export function storeAudience(deps: AudienceDeps): PresenceAudience {
  return async (userId) => {
    const visibility = await presenceVisibility(deps.accounts, userId);
    if (visibility === "nobody") return [];
    return audienceFor(visibility, await readReach(deps, userId, visibility === "chats"));
  };
}
