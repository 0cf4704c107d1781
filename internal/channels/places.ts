import type { ChannelPlace, PlaceChange } from "../model/types.js";

/**
 * Whether a channel the user archived is still in the archive: until a
 * message newer than the archiving arrives, and for good while the user
 * muted it (a quiet chat stays put away). Read at listing time, so the
 * message path writes nothing for it.
 */
export function isArchived(place: ChannelPlace | undefined, lastMessageAtMs: number | undefined, muted: boolean): boolean {
  if (place?.archivedAtMs === undefined) return false;
  return muted || lastMessageAtMs === undefined || lastMessageAtMs <= place.archivedAtMs;
}

/**
 * The place after a change, and whether the change moves anything, so a
 * caller writes and tells only a real change. A change that moves anything
 * is written whole: pinning also clears an archiving the reader did not see,
 * so a pin and an archive made at once on two devices end as one of them,
 * never as both.
 */
export function applyPlaceChange(place: ChannelPlace | undefined, change: PlaceChange): { place: ChannelPlace | undefined; changed: boolean } {
  const next: ChannelPlace = { ...place };
  let changed = false;
  for (const setting of Object.keys(change) as (keyof ChannelPlace)[]) {
    const value = change[setting];
    if (value === undefined || next[setting] === (value ?? undefined)) continue;
    changed = true;
    if (value === null) delete next[setting];
    else next[setting] = value;
  }
  return { place: Object.keys(next).length > 0 ? next : undefined, changed };
}

/** A row of a user's channel list: pinned first (the most recently pinned first), then by latest activity, newest first. */
export interface ListPosition {
  /** 0 when not pinned. */
  pinnedAtMs: number;
  activityAtMs: number;
  channelId: bigint;
}

/** Negative when `a` is listed before `b`. Channel id breaks ties, so every row has one place and pages never repeat or skip one. */
export function compareListPositions(a: ListPosition, b: ListPosition): number {
  if (a.pinnedAtMs !== b.pinnedAtMs) return b.pinnedAtMs - a.pinnedAtMs;
  if (a.activityAtMs !== b.activityAtMs) return b.activityAtMs - a.activityAtMs;
  return b.channelId > a.channelId ? 1 : b.channelId < a.channelId ? -1 : 0;
}
