import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import { DEFAULT_PRESENCE_VISIBILITY, MAX_GROUP_MEMBERS, type Id } from "../model/types.js";

/** Who is told, on their open sessions, when a user's presence changes. */
export type PresenceAudience = (userId: Id) => Promise<Id[]>;

/**
 * Friends, and the members of every channel of the user with at most
 * `maxChannelMembers` members (direct chats and small groups), as far as the
 * user's PresenceVisibility allows: friends only, or nobody. Larger member
 * lists read presence on demand through GetPresence instead. Computed from
 * the stores at change time, so it follows friendship, membership and
 * setting changes without subscriptions to maintain.
 */
export function storeAudience(deps: { accounts: AccountStore; channels: ChannelStore; maxChannelMembers?: number }): PresenceAudience {
  const max = deps.maxChannelMembers ?? MAX_GROUP_MEMBERS;
  return async (userId) => {
    const [settings, friends, memberships] = await Promise.all([
      deps.accounts.getPresenceVisibility([userId]),
      deps.accounts.listFriends(userId),
      deps.channels.listMemberships(userId),
    ]);
    const visibility = settings.get(userId) ?? DEFAULT_PRESENCE_VISIBILITY;
    if (visibility === "nobody") return [];
    if (visibility === "friends") return friends.filter((id) => id !== userId);
    const out = new Set<Id>(friends);
    const rosters = await Promise.all(
      memberships.map(async (m) => ((await deps.channels.memberCount(m.channelId)) > max ? [] : deps.channels.listMembers(m.channelId))),
    );
    for (const roster of rosters) for (const m of roster) out.add(m.userId);
    out.delete(userId);
    return [...out];
  };
}
