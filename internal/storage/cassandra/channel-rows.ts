import type { ChannelKind, ChannelRecord, Id, MemberRecord, MemberRole } from "../../model/types.js";
import { big, ms, type Row } from "./session.js";

export const toChannel = (r: Row, channelId: Id): ChannelRecord => ({
  channelId,
  kind: r.get("kind") as ChannelKind,
  title: r.get("title") as string,
  createdAtMs: ms(r.get("created_at_ms")),
  createdBy: big(r.get("created_by")),
});

export const toMember = (r: Row, channelId: Id): MemberRecord => ({
  channelId,
  userId: big(r.get("user_id")),
  role: r.get("role") as MemberRole,
  joinedAtMs: ms(r.get("joined_at_ms")),
  readSeq: big(r.get("read_seq")),
  ...clearedOf(r),
  ...joinedOf(r),
});

function clearedOf(r: Row): { clearedSeq?: bigint } {
  const seq = big(r.get("cleared_seq"));
  return seq > 0n ? { clearedSeq: seq } : {};
}

function joinedOf(r: Row): { joinedSeq?: bigint } {
  const seq = big(r.get("joined_seq"));
  return seq > 0n ? { joinedSeq: seq } : {};
}

export const compareBigints = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** The member rows of a channel partition (a static-only row has no user_id), in join order. */
export function inJoinOrder(rows: Row[], channelId: Id): MemberRecord[] {
  const present = rows.filter((r) => r.get("user_id") !== null);
  const order = new Map(present.map((r) => [big(r.get("user_id")), big(r.get("join_order"))]));
  return present
    .map((r) => toMember(r, channelId))
    .sort((x, y) => x.joinedAtMs - y.joinedAtMs || compareBigints(order.get(x.userId)!, order.get(y.userId)!));
}
