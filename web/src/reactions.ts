import { create } from "@bufbuild/protobuf";
import { ReactionSchema, type Message, type Reaction } from "../../gen/es/chat/v1/types_pb.js";

/** The palette a message's React button opens. Any one emoji is accepted by the server; these are the ones offered. */
export const REACTION_CHOICES = ["👍", "❤️", "😂", "😮", "😢", "🙏"] as const;

/**
 * A message's reactions after `userId` reacted with `emoji` ("" when they
 * took their reaction back): one per user, so it replaces theirs. Kept in
 * user id order, as history gives them, so that a chat shows its chips in
 * the same order before and after a reload.
 */
export function withReaction(reactions: readonly Reaction[], userId: bigint, emoji: string): Reaction[] {
  const out = reactions.filter((r) => r.userId !== userId);
  if (emoji) out.push(create(ReactionSchema, { userId, emoji }));
  return out.sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}

/** The emoji `me` reacted to `m` with, "" when none. */
export function myReaction(m: Message, me: bigint): string {
  return m.reactions.find((r) => r.userId === me)?.emoji ?? "";
}

export interface ReactionGroup {
  emoji: string;
  /** Who reacted with it, in user id order. */
  userIds: bigint[];
  /** One of them is me. */
  mine: boolean;
}

/** Reactions grouped by emoji, in the order each emoji first appears. */
export function reactionGroups(reactions: readonly Reaction[], me: bigint): ReactionGroup[] {
  const groups = new Map<string, ReactionGroup>();
  for (const r of reactions) {
    if (!r.emoji) continue;
    let g = groups.get(r.emoji);
    if (!g) groups.set(r.emoji, (g = { emoji: r.emoji, userIds: [], mine: false }));
    g.userIds.push(r.userId);
    g.mine ||= r.userId === me;
  }
  return [...groups.values()];
}
