import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import { MAX_GROUP_MEMBERS, type Id } from "../model/types.js";

/** Who is told, on their open sessions, when a user's presence changes. */
export type PresenceAudience = (userId: Id) => Promise<Id[]>;

/**
 * Friends, and the members of every channel of the user with at most
 * `maxChannelMembers` members (direct chats and small groups). Larger member
 * lists read presence on demand through GetPresence instead. Computed from
 * the stores at change time, so it follows friendship and membership
 * changes without subscriptions to maintain.
 */
export function storeAudience(deps: { accounts: AccountStore; channels: ChannelStore; maxChannelMembers?: number }): PresenceAudience {
  const max = deps.maxChannelMembers ?? MAX_GROUP_MEMBERS;
  return async (userId) => {
    const [friends, memberships] = await Promise.all([deps.accounts.listFriends(userId), deps.channels.listMemberships(userId)]);
    const out = new Set<Id>(friends);
    const rosters = await Promise.all(
      memberships.map(async (m) => ((await deps.channels.memberCount(m.channelId)) > max ? [] : deps.channels.listMembers(m.channelId))),
    );
    for (const roster of rosters) for (const m of roster) out.add(m.userId);
    out.delete(userId);
    return [...out];
  };
}
