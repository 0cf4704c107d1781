import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import type { Id } from "../model/types.js";
import { caller } from "./context.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";

export function presenceService(deps: ApiDeps): Partial<ServiceImpl<typeof PresenceService>> {
  /** Who may see the caller's presence and vice versa: friends and anyone sharing a channel. */
  async function visibleTo(me: Id, wanted: readonly Id[]): Promise<Set<Id>> {
    const visible = new Set<Id>([me, ...(await deps.accounts.listFriends(me))]);
    if (wanted.every((id) => visible.has(id))) return visible;
    const memberships = await deps.channels.listMemberships(me);
    const rosters = await Promise.all(memberships.map((m) => deps.channels.listMembers(m.channelId)));
    for (const roster of rosters) for (const m of roster) visible.add(m.userId);
    return visible;
  }

  return {
    async getPresence(req, ctx) {
      const me = caller(ctx).userId;
      const wanted = v.ids("user_ids", req.userIds, 500);
      const offline = (userId: Id) => create(PresenceSchema, { userId, status: PresenceStatus.OFFLINE });
      if (!deps.presence || wanted.length === 0) return { presences: wanted.map(offline) };

      const visible = await visibleTo(me, wanted);
      const known = new Map((await deps.presence.getPresence(wanted.filter((id) => visible.has(id)))).map((p) => [p.userId, p]));
      return {
        presences: wanted.map((userId) => {
          const p = known.get(userId);
          if (!p) return offline(userId);
          return create(PresenceSchema, {
            userId,
            status: p.online ? PresenceStatus.ONLINE : PresenceStatus.OFFLINE,
            lastSeenAt: !p.online && p.lastSeenAtMs !== undefined ? timestampFromMs(p.lastSeenAtMs) : undefined,
          });
        }),
      };
    },
  };
}
