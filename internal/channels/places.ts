import type { ChannelPlace } from "../model/types.js";

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
 * The place without one of its settings: the very same object when it had
 * none, so that a caller comparing identities writes nothing.
 */
export function without(place: ChannelPlace | undefined, setting: keyof ChannelPlace): ChannelPlace | undefined {
  if (place?.[setting] === undefined) return place;
  const rest = { ...place };
  delete rest[setting];
  return rest;
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
