import type { Id } from "../model/types.js";
import { presenceFrame } from "../presence/tracker.js";
import type { ApiDeps } from "./deps.js";

/**
 * Tells `to`, who may no longer see `userId` (an unfriending, a block, a
 * group left, a narrower setting, a deleted account), that `userId` is
 * offline, with no last seen: a stale "online" stays on their screens for
 * good otherwise. Through the presence tracker where there is one, which
 * tells again those whose chat server did not take it (frozen, its sessions
 * about to move); pushed once where there is none.
 */
export async function tellOffline(deps: Pick<ApiDeps, "presence" | "sessions">, userId: Id, to: readonly Id[]): Promise<void> {
  if (to.length === 0) return;
  if (deps.presence) return deps.presence.tellGone(userId, to);
  await deps.sessions.pushToUsers(to, presenceFrame({ userId, online: false }));
}
