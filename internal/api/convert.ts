import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { isDeletedUser } from "../accounts/store.js";
import {
  ChannelKind as PbChannelKind,
  ChannelSchema,
  DevicePlatform,
  DeviceSchema,
  MemberRole as PbMemberRole,
  MemberSchema,
  UserSchema,
  type Channel,
  type Device,
  type Member,
  type User,
} from "../../gen/es/chat/v1/types_pb.js";
import type {
  ChannelRecord,
  DeviceRecord,
  Id,
  MemberRecord,
  MemberRole,
  Platform,
  StoredMessage,
  UserRecord,
} from "../model/types.js";
import { messageToProto } from "../wire/messages.js";
import { readByItsActor } from "../messages/notes.js";
import { joinersOf } from "../channels/joins.js";

const PLATFORMS: [Platform, DevicePlatform][] = [
  ["unspecified", DevicePlatform.UNSPECIFIED],
  ["web", DevicePlatform.WEB],
  ["ios", DevicePlatform.IOS],
  ["android", DevicePlatform.ANDROID],
  ["desktop", DevicePlatform.DESKTOP],
  ["cli", DevicePlatform.CLI],
];

export function platformFromProto(p: DevicePlatform): Platform {
  return PLATFORMS.find(([, v]) => v === p)?.[0] ?? "unspecified";
}

export function platformToProto(p: Platform): DevicePlatform {
  return PLATFORMS.find(([k]) => k === p)?.[1] ?? DevicePlatform.UNSPECIFIED;
}

export function roleToProto(r: MemberRole): PbMemberRole {
  return r === "owner" ? PbMemberRole.OWNER : r === "admin" ? PbMemberRole.ADMIN : PbMemberRole.MEMBER;
}

export function userToProto(u: UserRecord): User {
  return create(UserSchema, {
    userId: u.userId,
    username: u.username,
    displayName: u.displayName,
    createdAt: timestampFromMs(u.createdAtMs),
    deleted: isDeletedUser(u),
  });
}

export function deviceToProto(d: DeviceRecord, currentDeviceId: Id): Device {
  return create(DeviceSchema, {
    deviceId: d.deviceId,
    name: d.name,
    platform: platformToProto(d.platform),
    createdAt: timestampFromMs(d.createdAtMs),
    lastSeenAt: timestampFromMs(d.lastSeenAtMs),
    current: d.deviceId === currentDeviceId,
  });
}

export { inboxEntryToProto, messageToProto } from "../wire/messages.js";

/** Where a member's unread messages start: their read position, or where they joined when that is later. */
export function readFloor(m: MemberRecord): bigint {
  return m.joinedSeq !== undefined && m.joinedSeq > m.readSeq ? m.joinedSeq : m.readSeq;
}

/** A member as others see them: read_seq is what their receipts and own messages told (membersAsRead), never where they joined. */
export function memberToProto(m: MemberRecord): Member {
  return create(MemberSchema, { userId: m.userId, role: roleToProto(m.role), joinedAt: timestampFromMs(m.joinedAtMs), readSeq: m.readSeq });
}

export interface ChannelView {
  channel: ChannelRecord;
  memberCount: number;
  last?: StoredMessage;
  /** The caller's membership; absent in events pushed to many users at once. */
  me?: MemberRecord;
  peerUserId?: Id;
  /** The caller's own newest message after their read position (see access.ts). */
  ownNewestUnreadSeq?: bigint;
  /** Until when the caller muted the channel's pushes, while that is ahead. */
  mutedUntilMs?: number;
  /** When the caller pinned the channel, while it is pinned. */
  pinnedAtMs?: number;
  /** The caller archived the channel and nothing brought it back since (places.ts isArchived). */
  archived?: boolean;
  /** The caller marked the channel unread (MarkUnread). */
  markedUnread?: boolean;
}

export function channelToProto(v: ChannelView): Channel {
  const lastSeq = v.last?.seq ?? 0n;
  // Whoever sends has read the channel up to their message. Decided here, from
  // the newest message every view reads anyway (and, when that is someone
  // else's, the caller's own newest after their read position), where moving
  // the sender's stored position on every send would cost a storage write per
  // message on the hot path.
  // Not a join by link's note: its joiner read nothing before it (ListMembers has it so too).
  const sentLast = v.me !== undefined && v.last?.senderUserId === v.me.userId && (!v.last.note || readByItsActor(v.last.note));
  // The note of the caller's own add or join is their join point (ChannelStore.markJoined): read from the
  // newest message too, since in the cluster the Sequencer moves the stored point a moment after the note.
  const joinedLast = v.me !== undefined && v.last !== undefined && joinersOf(v.last).includes(v.me.userId);
  // What came before the caller joined counts as read for them alone (others are shown their receipts' position).
  let readSeq = v.me ? readFloor(v.me) : 0n;
  if ((sentLast || joinedLast) && lastSeq > readSeq) readSeq = lastSeq;
  if (v.me && v.ownNewestUnreadSeq !== undefined && v.ownNewestUnreadSeq > readSeq) readSeq = v.ownNewestUnreadSeq;
  // What the caller cleared is neither shown nor unread; their read position (what receipts tell others) stays.
  const clearedSeq = v.me?.clearedSeq ?? 0n;
  const unreadFrom = clearedSeq > readSeq ? clearedSeq : readSeq;
  return create(ChannelSchema, {
    channelId: v.channel.channelId,
    kind: v.channel.kind === "direct" ? PbChannelKind.DIRECT : PbChannelKind.GROUP,
    title: v.channel.title,
    memberCount: v.memberCount,
    createdAt: timestampFromMs(v.channel.createdAtMs),
    lastSeq,
    lastMessage: v.last && v.last.seq > clearedSeq ? messageToProto(v.last) : undefined,
    unreadCount: v.me && lastSeq > unreadFrom ? lastSeq - unreadFrom : 0n,
    readSeq,
    myRole: v.me ? roleToProto(v.me.role) : PbMemberRole.UNSPECIFIED,
    peerUserId: v.peerUserId ?? 0n,
    mutedUntil: v.mutedUntilMs !== undefined ? timestampFromMs(v.mutedUntilMs) : undefined,
    pinnedAt: v.pinnedAtMs !== undefined ? timestampFromMs(v.pinnedAtMs) : undefined,
    archived: v.archived ?? false,
    clearedThroughSeq: clearedSeq,
    lastActivityAt: v.last ? timestampFromMs(v.last.sentAtMs) : undefined,
    markedUnread: v.markedUnread ?? false,
  });
}
