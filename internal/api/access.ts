import { create } from "@bufbuild/protobuf";
import { ChannelEventKind, ChannelEventSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ChatError } from "../model/errors.js";
import { readByItsActor } from "../messages/notes.js";
import { OWN_MESSAGE_WINDOW } from "../messages/own-messages.js";
import type { Sender } from "../messages/submit.js";
import { NO_PLACE, type ChannelNote, type ChannelRecord, type Id, type MemberRecord, type StoredMessage } from "../model/types.js";
import { blockedEitherWay } from "../accounts/blocks.js";
import { presenceVisibility } from "../accounts/store.js";
import { readReach } from "../presence/audience.js";
import { tellOffline } from "./tell-offline.js";
import { channelToProto, readFloor, type ChannelView } from "./convert.js";
import type { ApiDeps } from "./deps.js";

/**
 * The caller's membership of a channel. A missing channel and a channel the
 * caller is not in look the same, so channel ids cannot be probed.
 */
export async function requireMember(
  deps: ApiDeps,
  channelId: Id,
  userId: Id,
): Promise<{ channel: ChannelRecord; member: MemberRecord }> {
  const [channel, member] = await Promise.all([
    deps.channels.getChannel(channelId),
    deps.channels.getMember(channelId, userId),
  ]);
  if (!channel || !member) throw new ChatError("not_a_member", "not a member of this channel");
  return { channel, member };
}

/**
 * Who hears that `me` read a channel: every member, except across a block in
 * a direct chat, where only `me`'s own devices do: the pair tell each other
 * nothing while it stands.
 */
export async function receiptAudience(deps: ApiDeps, channel: ChannelRecord, me: Id, read?: readonly MemberRecord[]): Promise<Id[]> {
  const members = (read ?? (await deps.channels.listMembers(channel.channelId))).map((m) => m.userId);
  return (await blockedPair(deps, channel, me, members)) ? [me] : members;
}

/** Whether `me` and the other of a direct chat's pair blocked each other, either way. */
export async function blockedPair(deps: ApiDeps, channel: ChannelRecord, me: Id, memberIds: readonly Id[]): Promise<boolean> {
  if (channel.kind !== "direct") return false;
  const peer = memberIds.find((id) => id !== me);
  return peer !== undefined && (await deps.accounts.blockersBetween(me, peer)).length > 0;
}

/**
 * The channel as it is now, for the view a change tells inside its turn: the
 * record the caller read before the turn may predate a rename that landed
 * meanwhile, whose UPDATED was told first, and the change's event then told
 * the old title last.
 */
export async function channelNow(deps: ApiDeps, channel: ChannelRecord): Promise<ChannelRecord> {
  return (await deps.channels.getChannel(channel.channelId)) ?? channel;
}

/** Everything channelToProto needs, looked up for one channel. */
export async function channelView(deps: ApiDeps, channel: ChannelRecord, me?: MemberRecord): Promise<ChannelView> {
  return (await channelViews(deps, [{ channel, me }]))[0]!;
}

/**
 * channelView of many channels, each read made once for them all (a list
 * of chats: a page of 50 cost some 200 reads, one per channel each), given
 * their newest messages when the caller has read them already.
 */
export async function channelViews(
  deps: ApiDeps,
  of: readonly { channel: ChannelRecord; me?: MemberRecord }[],
  latest?: Map<Id, StoredMessage>,
): Promise<ChannelView[]> {
  const ids = (pick: (o: (typeof of)[number]) => boolean) => of.filter(pick).map((o) => o.channel.channelId);
  const groups = ids((o) => o.channel.kind !== "direct");
  // Only a member is shown the other of a direct chat.
  const directs = ids((o) => o.channel.kind === "direct" && o.me !== undefined);
  const lastRead = latest ? Promise.resolve(latest) : deps.log.latest(ids(() => true));
  const [last, counts, pairs, ownNewest] = await Promise.all([
    lastRead,
    groups.length > 0 ? deps.channels.memberCounts(groups) : new Map<Id, number>(),
    directs.length > 0 ? deps.channels.listMembersOf(directs) : new Map<Id, MemberRecord[]>(),
    // Beside the other reads, not after them: it needs only the newest messages.
    lastRead.then((l) => Promise.all(of.map(({ channel, me }) => {
      const newest = l.get(channel.channelId);
      return me && newest ? ownNewestAfter(deps, channel.channelId, me, newest) : undefined;
    }))),
  ]);
  return of.map(({ channel, me }, i) => ({
    channel,
    memberCount: channel.kind === "direct" ? 2 : (counts.get(channel.channelId) ?? 0),
    last: last.get(channel.channelId),
    me,
    peerUserId: pairs.get(channel.channelId)?.find((m) => m.userId !== me?.userId)?.userId,
    ownNewestUnreadSeq: ownNewest[i],
  }));
}

/**
 * The caller's own newest message after their read position, if the newest
 * message is someone else's: whoever sends has read the channel up to there,
 * so only what came after it is unread. Asked of the log only when there is
 * something unread, at most OWN_MESSAGE_WINDOW seqs back.
 */
async function ownNewestAfter(deps: ApiDeps, channelId: Id, me: MemberRecord, last: StoredMessage): Promise<bigint | undefined> {
  const read = readFloor(me);
  if (last.senderUserId === me.userId || last.seq <= read + 1n) return undefined;
  const windowStart = last.seq - OWN_MESSAGE_WINDOW;
  const from = read + 1n > windowStart ? read + 1n : windowStart;
  return deps.log.lastSentBy(channelId, me.userId, from, last.seq - 1n);
}

/**
 * A channel's members with their read positions as others are shown them: the furthest
 * of where their receipts moved it and their own newest message, since
 * whoever sends has read up to there. A send moves no stored position (a
 * write per message; see channelToProto), so without this the owner of a new
 * group showed as having read nothing right after their first message, in
 * `chatd` and the cluster alike. Looked for in the newest
 * OWN_MESSAGE_WINDOW seqs, and only when someone's stored position is behind
 * the newest message. A note counts as its actor's, as their own unread count
 * has it (a change made, a group showing nothing unread to its maker, while
 * the others were shown the maker as not having read it), except the note of
 * a join by link: the joiner never read what came before them.
 */
export async function membersAsRead(deps: ApiDeps, channelId: Id): Promise<MemberRecord[]> {
  // Together: neither read waits on the other.
  const [members, latest] = await Promise.all([deps.channels.listMembers(channelId), deps.log.latest([channelId])]);
  const last = latest.get(channelId);
  if (!last) return members;
  const behind = members.filter((m) => m.readSeq < last.seq);
  if (behind.length === 0) return members;
  const lowest = behind.reduce((min, m) => (m.readSeq < min ? m.readSeq : min), last.seq);
  const windowStart = last.seq - OWN_MESSAGE_WINDOW + 1n;
  const from = lowest + 1n > windowStart ? lowest + 1n : windowStart;
  // The newest alone needs no range read; its row may also still be only the head's copy.
  const sent = last.seq > from ? await deps.log.newestBySender(channelId, from, last.seq - 1n) : new Map<Id, bigint>();
  if (!last.note || readByItsActor(last.note)) sent.set(last.senderUserId, last.seq);
  return members.map((m) => {
    const own = sent.get(m.userId);
    return own !== undefined && own > m.readSeq ? { ...m, readSeq: own } : m;
  });
}

/**
 * Tells users that a channel or its membership changed. One frame goes to
 * everyone, so its channel carries only the shared fields (no my_role,
 * read_seq or unread_count); clients that need them call DescribeChannel.
 */
export async function pushChannelEvent(
  deps: ApiDeps,
  to: readonly Id[],
  kind: ChannelEventKind,
  view: ChannelView,
  userId: Id = 0n,
): Promise<void> {
  if (to.length === 0) return;
  try {
    await deps.sessions.pushToUsers(to, channelEventFrame(kind, view, userId));
  } catch (e) {
    // Best effort: the change is stored; clients also learn of it on their next list.
    deps.logger?.warn({ err: e }, "channel event push failed");
  }
}

/**
 * An event of `kind` about each of `userIds` (an add's JOINED), each to all of `to`, in that
 * order, in one pushMany where the directory has it: a batch per chat server, not one per user.
 * Pushed in a group's turn one after another, a chat server slow to answer (2 s a batch) held
 * the turn that long per user added, up to 100 of them, past the lease's renewals, while
 * every other change of the group waited for it.
 */
export async function pushChannelEvents(deps: ApiDeps, to: readonly Id[], kind: ChannelEventKind, view: ChannelView, userIds: readonly Id[]): Promise<void> {
  const pushMany = deps.sessions.pushMany?.bind(deps.sessions);
  if (!pushMany) {
    for (const userId of userIds) await pushChannelEvent(deps, to, kind, view, userId);
    return;
  }
  if (to.length === 0 || userIds.length === 0) return;
  const items = userIds.flatMap((about) => {
    const frame = channelEventFrame(kind, view, about);
    return to.map((userId) => ({ userId, frame }));
  });
  try {
    await pushMany(items);
  } catch (e) {
    deps.logger?.warn({ err: e }, "channel event push failed");
  }
}

/** One frame for everyone, so its channel carries only the shared fields. */
function channelEventFrame(kind: ChannelEventKind, view: ChannelView, userId: Id): ServerFrame {
  return create(ServerFrameSchema, {
    kind: {
      case: "channel",
      value: create(ChannelEventSchema, { kind, userId, channel: channelToProto({ ...view, me: undefined, peerUserId: undefined }) }),
    },
  });
}

/**
 * Tells the members of a group, and the user just out of it, that the user
 * left or was removed. The one out gets the event without the newest
 * message: it is read after they were out, and may be one sent since.
 */
export async function pushLeft(deps: ApiDeps, members: readonly Id[], userId: Id, view: ChannelView): Promise<void> {
  await pushChannelEvent(deps, members, ChannelEventKind.LEFT, view, userId);
  await pushChannelEvent(deps, [userId], ChannelEventKind.LEFT, { ...view, last: undefined }, userId);
}

/**
 * Takes a user out of a group, as LeaveGroup does: the store passes
 * ownership on in the same step, to an heir among the members at that moment
 * (one chosen from an earlier read may be leaving too), the user's mute,
 * pin or archiving of the group goes, a note of it goes into the group's
 * history, and the members are told. False when the user was not in
 * it (a concurrent call, or a removal, got there first).
 */
export async function leaveGroup(deps: ApiDeps, channel: ChannelRecord, by: Sender): Promise<boolean> {
  const userId = by.userId;
  // In the channel's turn, the leaving, its note and its events (see writeNote): told after the
  // turn, the LEFT could reach the user after the JOINED of an add back that landed next.
  const remaining = await deps.channels.changeInTurn(channel.channelId, async () => {
    const { removed, newOwner } = await deps.channels.removeMember(channel.channelId, userId);
    if (!removed) return undefined;
    await writeNote(deps, by, channel.channelId, { kind: "member_left", userIds: newOwner !== undefined ? [newOwner] : [] });
    await forgetOwnSettings(deps, userId, channel.channelId);
    const view = await channelView(deps, await channelNow(deps, channel));
    const remaining = (await deps.channels.listMembers(channel.channelId)).map((m) => m.userId);
    // The last one out takes the invite link along: an empty group has nobody left to turn it off.
    if (remaining.length === 0) await deps.channels.setInviteCode(channel.channelId, undefined);
    await pushLeft(deps, remaining, userId, view);
    if (newOwner !== undefined) await pushChannelEvent(deps, remaining, ChannelEventKind.UPDATED, view, newOwner);
    return remaining;
  });
  if (!remaining) return false;
  await tellGoneApart(deps, userId, remaining);
  return true;
}

/**
 * A user just out of a group, and its remaining members: where the group was
 * all that showed one to the other (no friendship, no other shared chat),
 * each is told the other is offline, with no last seen, as an unfriending
 * does; a stale "online" would otherwise stay on their screens. Best effort.
 */
export async function tellGoneApart(deps: ApiDeps, userId: Id, members: readonly Id[]): Promise<void> {
  if (members.length === 0) return;
  try {
    // Friends and co-members are both symmetric: whom the user still shares with is whom it still reaches.
    const reach = await readReach(deps, userId, true);
    const still = new Set([...reach.friends, ...reach.coMembers]);
    const apart = members.filter((id) => id !== userId && !still.has(id));
    if (apart.length === 0) return;
    await Promise.all([
      tellOffline(deps, userId, apart),
      ...apart.map((id) => tellOffline(deps, id, [userId])),
    ]);
  } catch (e) {
    deps.logger?.warn({ err: e }, "presence after leaving a group not told");
  }
}

/**
 * Users just in a chat together (a new group, new members, a first direct
 * chat): each pair is now in each other's presence audience where their
 * settings allow and no block stands between them, so each is told the
 * other's current state rather than wait for the next change. Only those
 * whose setting lets chats show them are told anything: a "friends" setting
 * reached friends before, "nobody" reaches nobody. Best effort.
 */
export async function tellCameTogether(deps: ApiDeps, joiners: readonly Id[], members: readonly Id[]): Promise<void> {
  const presence = deps.presence;
  if (!presence || joiners.length === 0) return;
  const newcomers = new Set(joiners);
  const everyone = [...new Set([...members, ...joiners])];
  try {
    await Promise.all(
      everyone.map(async (userId) => {
        if ((await presenceVisibility(deps.accounts, userId)) !== "chats") return;
        // A joiner meets everyone; the others meet only the joiners.
        const met = (newcomers.has(userId) ? everyone : joiners).filter((id) => id !== userId);
        const blocked = await blockedEitherWay(deps.accounts, userId, met);
        await presence.tellLatest(userId, met.filter((id) => !blocked.has(id)));
      }),
    );
  } catch (e) {
    deps.logger?.warn({ err: e }, "presence of new chat members not told");
  }
}

/**
 * Tells what remembers blocks (this process's cache, the chat servers of the
 * pair) that a block between the pair was made or lifted. Best effort: the
 * block is stored, and a cache not told sees it within its TTL; failing the
 * call would tell the client it was not made.
 */
export async function forgetBlock(deps: ApiDeps, a: Id, b: Id): Promise<void> {
  try {
    await deps.blocks?.forget(a, b);
  } catch (err) {
    deps.logger?.warn({ err }, "block caches not told of a block; they see it within their TTL");
  }
}

/** A user out of a channel keeps none of their own settings of it: mute, pin, archive. */
export async function forgetOwnSettings(deps: ApiDeps, userId: Id, channelId: Id): Promise<void> {
  await Promise.all([deps.channels.setMute(userId, channelId, undefined), deps.channels.changePlace(userId, channelId, NO_PLACE)]);
}

/**
 * Writes a note of a change just made into the channel's history, where
 * the members of the moment find it, in order with the messages. Best
 * effort: the change is made (and told live) already, so a note that cannot
 * be written is logged and never undoes it.
 *
 * Call it inside the channel's turn that made the change
 * (ChannelStore.changeInTurn), the store step and this write both: the note
 * gets its seq where it reaches the channel's queue, and two changes made at
 * once (two api processes, or two requests on one) otherwise landed in the
 * store in one order and had their notes sequenced in the other ("added bob"
 * after "removed bob" while bob is out), and a member list rebuilt from the
 * history disagreed with ListMembers. In turn, the next change's store step
 * starts only after this note is in the queue.
 */
export async function writeNote(deps: ApiDeps, by: Sender, channelId: Id, note: ChannelNote): Promise<void> {
  try {
    await deps.submitter.note(by, channelId, note);
  } catch (err) {
    deps.logger?.warn({ err, channelId, note: note.kind }, "channel note not written");
  }
}

export { ChannelEventKind };
