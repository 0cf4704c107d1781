import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { PresenceService, PresenceSettingsSchema } from "../../gen/es/chat/v1/presence_pb.js";
import { PresenceSchema, PresenceStatus, PresenceVisibility as PbVisibility } from "../../gen/es/chat/v1/types_pb.js";
import { blockedEitherWay } from "../accounts/blocks.js";
import { presenceVisibility } from "../accounts/store.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { ChatError, isChatError } from "../model/errors.js";
import { DEFAULT_PRESENCE_VISIBILITY, type Id, type PresenceVisibility } from "../model/types.js";
import { audienceFor, coMembersOf, readReach } from "../presence/audience.js";
import { tellOffline } from "./tell-offline.js";
import { caller } from "./context.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";

const VISIBILITIES: [PresenceVisibility, PbVisibility][] = [
  ["chats", PbVisibility.CHATS],
  ["friends", PbVisibility.FRIENDS],
  ["nobody", PbVisibility.NOBODY],
];

function visibilityFromProto(p: PbVisibility | undefined): PresenceVisibility {
  const found = VISIBILITIES.find(([, pb]) => pb === p);
  if (!found) throw new ChatError("invalid_argument", "settings.visibility: one of CHATS, FRIENDS, NOBODY");
  return found[0];
}

const settingsToProto = (visibility: PresenceVisibility) =>
  create(PresenceSettingsSchema, { visibility: VISIBILITIES.find(([k]) => k === visibility)![1] });

export function presenceService(deps: ApiDeps): Partial<ServiceImpl<typeof PresenceService>> {
  /**
   * Whose presence the caller may see among `wanted`: their own; a friend's
   * unless the friend chose nobody; a co-member's (any channel size: large
   * rosters read presence here, on demand) if the co-member left the
   * default; never of a user blocked either way.
   */
  async function visibleTo(me: Id, wanted: readonly Id[]): Promise<Set<Id>> {
    const [blocked, friends, settings] = await Promise.all([
      blockedEitherWay(deps.accounts, me, wanted),
      deps.accounts.listFriends(me).then((ids) => new Set(ids)),
      deps.accounts.getPresenceVisibility(wanted.filter((id) => id !== me)),
    ]);
    const others = wanted.filter((id) => id !== me && !blocked.has(id));
    const setting = (id: Id) => settings.get(id) ?? DEFAULT_PRESENCE_VISIBILITY;
    const visible = new Set<Id>([me]);
    for (const id of others) if (friends.has(id) && setting(id) !== "nobody") visible.add(id);
    const byChannel = others.filter((id) => !visible.has(id) && setting(id) === "chats");
    if (byChannel.length > 0) {
      const coMembers = await coMembersOf(deps.channels, me);
      for (const id of byChannel) if (coMembers.has(id)) visible.add(id);
    }
    return visible;
  }

  return {
    async getPresence(req, ctx) {
      const me = caller(ctx).userId;
      const wanted = v.ids("user_ids", req.userIds, 500);
      const offline = (userId: Id) => create(PresenceSchema, { userId, status: PresenceStatus.OFFLINE });
      if (!deps.presence || wanted.length === 0) return { presences: wanted.map(offline) };

      const visible = await visibleTo(me, wanted);
      const states = await deps.presence.getPresence(wanted.filter((id) => visible.has(id))).catch((err: unknown) => {
        if (isChatError(err)) throw err;
        // The store's own error (Redis away) would be INTERNAL, a bug to the client, not a retry.
        deps.logger?.warn({ err }, "presence store unavailable");
        throw new ChatError("unavailable", "presence is not available right now; retry", ENGINE_RETRY_AFTER_MS);
      });
      const known = new Map(states.map((p) => [p.userId, p]));
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

    async getPresenceSettings(_req, ctx) {
      return { settings: settingsToProto(await presenceVisibility(deps.accounts, caller(ctx).userId)) };
    },

    async updatePresenceSettings(req, ctx) {
      const me = caller(ctx).userId;
      const visibility = visibilityFromProto(req.settings?.visibility);
      const previous = await presenceVisibility(deps.accounts, me);
      // The setting it has already: no write, nobody to tell.
      if (previous === visibility) return { settings: settingsToProto(visibility) };
      // One read of whom the caller can reach serves both settings.
      const reach = await readReach(deps, me, previous === "chats" || visibility === "chats");
      await deps.accounts.setPresenceVisibility(me, visibility);
      const before = audienceFor(previous, reach);
      const after = new Set(audienceFor(visibility, reach));
      // Those who may no longer see the caller keep no stale "online": they are told offline, with no last seen.
      const dropped = before.filter((id) => !after.has(id));
      const had = new Set(before);
      const added = [...after].filter((id) => !had.has(id));
      // Best effort, each: the setting is stored, and failing the call would tell the client it was not.
      const told = (telling: Promise<unknown> | undefined) =>
        telling?.catch((err: unknown) => deps.logger?.warn({ err }, "presence after a change of its setting not told"));
      if (dropped.length > 0) await told(tellOffline(deps, me, dropped));
      if (added.length > 0) await told(deps.presence?.tellLatest(me, added));
      return { settings: settingsToProto(visibility) };
    },
  };
}
