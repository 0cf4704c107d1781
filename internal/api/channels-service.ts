import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MemberRole as PbMemberRole } from "../../gen/es/chat/v1/types_pb.js";
import { refuseIfBlocked } from "../accounts/blocks.js";
import { isDeletedUser } from "../accounts/store.js";
import { deadInvite, removedByAdmin, type MembershipCheck } from "../channels/store.js";
import { ChatError } from "../model/errors.js";
import { newInviteCode } from "../channels/invite-code.js";
import { applyPlaceChange, compareListPositions, isArchived, type ListPosition } from "../channels/places.js";
import { MAX_GROUP_MEMBERS, MAX_PINNED_CHANNELS, type ChannelPlace, type ChannelRecord, type Id, type MemberRecord, type PlaceChange } from "../model/types.js";
import { blockedPair, ChannelEventKind, channelNow, channelView, channelViews, forgetBlock, forgetOwnSettings, leaveGroup, membersAsRead, pushChannelEvent, pushChannelEvents, pushLeft, requireMember, tellCameTogether, tellGoneApart, writeNote } from "./access.js";
import { caller } from "./context.js";
import { channelToProto, memberToProto, type ChannelView } from "./convert.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";
import { DEFAULT_MAX_GROUPS_PER_USER } from "../throttle/config.js";

/** A position past any seq: the store caps it at the channel's newest message. */
const THROUGH_NEWEST = v.MAX_ID;

/** The end of 9999-12-31, UTC: "muted for good" without risking the 64-bit columns. */
const LATEST_MUTE_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export function channelService(deps: ApiDeps): Partial<ServiceImpl<typeof ChannelService>> {
  const { channels, accounts } = deps;
  const now = deps.now ?? Date.now;
  const maxGroups = deps.maxGroupsPerUser ?? DEFAULT_MAX_GROUPS_PER_USER;

  const inGroupsAtLeast = async (userIds: readonly Id[], n: number): Promise<Id[]> =>
    userIds.length === 0 ? [] : channels.inGroupsAtLeast(userIds, n);

  /**
   * Refuses to put users into one more group when they are in as many as one
   * may be. Read, then written: calls at the same moment may each pass, so
   * each looks again once written (pastGroupLimit).
   */
  async function refuseGroupLimit(me: Id, userIds: readonly Id[]): Promise<void> {
    const full = await inGroupsAtLeast(userIds, maxGroups);
    if (full.length === 0) return;
    if (full.includes(me)) throw groupLimitReached();
    throw new ChatError("limit_reached", `these users are in ${maxGroups} groups, the most one can be in: ${full.join(", ")}`);
  }

  const groupLimitReached = () => new ChatError("limit_reached", `you are in ${maxGroups} groups, the most one can be in: leave one first`);

  /**
   * Of users just put into a group, those now past the limit: adds to other
   * groups at the same moment passed refuseGroupLimit's read too. Each such
   * add is undone. Of adds racing for a user's last place, the one whose
   * write landed last reads every other's, so all that stay fit (some may
   * all go; a retry finds the room).
   */
  const pastGroupLimit = (userIds: readonly Id[]): Promise<Id[]> => inGroupsAtLeast(userIds, maxGroups + 1);

  async function requireUsers(userIds: readonly Id[]): Promise<void> {
    const found = new Set((await accounts.getUsers(userIds)).filter((u) => !isDeletedUser(u)).map((u) => u.userId));
    const missing = userIds.filter((id) => !found.has(id));
    if (missing.length > 0) throw new ChatError("not_found", `no such user: ${missing.join(", ")}`);
  }

  /**
   * The users `by` just added to a group, less any whose account was deleted
   * or who blocked `by` since they were checked (they are taken out again):
   * a deletion leaves the groups it finds after marking the account, a block
   * is stored before anything looks for it, and this add may have landed
   * after either. `barred`: those of them barred from the invite link before
   * the add (which lifted it): one taken out again is barred again in the
   * step that takes them out, else an add that did not stand let them in by
   * the link.
   */
  async function withoutRefused(channelId: Id, by: Id, added: readonly Id[], barred: readonly Id[] = []): Promise<Id[]> {
    if (added.length === 0) return [];
    const [users, blockers, past] = await Promise.all([accounts.getUsers(added), accounts.blockersAmong(by, added), pastGroupLimit(added)]);
    const blocking = new Set(blockers);
    const refused = new Set([...users.filter(isDeletedUser).map((u) => u.userId), ...added.filter((id) => blocking.has(id)), ...past]);
    for (const userId of refused) await channels.removeMember(channelId, userId, undefined, barred.includes(userId));
    return added.filter((id) => !refused.has(id));
  }

  /**
   * After a direct chat was made or found: a deletion of either account that
   * left its chats before the chat landed never blocked the other, which it
   * does so that sends to the deleted account are refused rather than stored
   * for nobody. The deletion marks the account before it leaves its chats a
   * last time: either that pass finds this chat, or this read finds the mark,
   * and the block is made here as the deletion would.
   */
  async function refuseIfDeletedSince(me: Id, peer: Id): Promise<void> {
    const alive = new Set((await accounts.getUsers([me, peer])).filter((u) => !isDeletedUser(u)).map((u) => u.userId));
    if (alive.has(me) && alive.has(peer)) return;
    for (const [gone, other] of [[me, peer], [peer, me]] as const) {
      if (alive.has(gone)) continue;
      await accounts.putBlock(gone, other, now());
      await forgetBlock(deps, gone, other);
    }
    if (!alive.has(me)) throw new ChatError("unauthenticated", "this account was deleted");
    throw new ChatError("not_found", `no such user: ${peer}`);
  }

  /**
   * After the caller went into a group (making it, joining it by link): the
   * caller's own account may have been deleted meanwhile, from another device,
   * after its deletion left the groups it was in. The deletion marks the
   * account before it leaves them a last time, so either that pass finds
   * this membership or this read finds the mark, and the caller leaves as
   * the deletion would have made them.
   */
  async function leaveIfCallerDeleted(channel: ChannelRecord, ctx: Parameters<typeof caller>[0]): Promise<void> {
    const by = caller(ctx);
    const user = await accounts.getUser(by.userId);
    if (user && !isDeletedUser(user)) return;
    await leaveGroup(deps, channel, by);
    throw new ChatError("unauthenticated", "this account was deleted");
  }

  /** A group the caller is in, with the caller's membership. */
  async function requireGroup(channelId: Id, userId: Id) {
    const m = await requireMember(deps, v.id("channel_id", channelId), userId);
    if (m.channel.kind !== "group") throw new ChatError("invalid_argument", "this is a direct chat; only groups have a title, an invite link, roles, and members who come and go");
    return m;
  }

  function requireManager(member: MemberRecord): void {
    if (member.role === "member") throw new ChatError("permission_denied", "only the owner and admins can do this");
  }

  /**
   * Role checks go to the store, which runs them on the members its write
   * is made on: a role read earlier could be gone by then (an admin demoted,
   * an owner who has left).
   */
  const managerCheck = (me: Id): MembershipCheck => (members) => requireManager(callerIn(members, me));

  /** The caller's membership among `members`, as a check of the store sees them. */
  function callerIn(members: readonly MemberRecord[], me: Id): MemberRecord {
    const mine = members.find((m) => m.userId === me);
    if (!mine) throw new ChatError("not_a_member", "not a member of this channel");
    return mine;
  }

  function targetIn(members: readonly MemberRecord[], target: Id): MemberRecord {
    const theirs = members.find((m) => m.userId === target);
    if (!theirs) throw new ChatError("not_found", "user is not a member of this channel");
    return theirs;
  }

  /**
   * Refuses adding users who blocked the caller. A user the caller blocked
   * may be added: the caller chose to share the group with them, and a block
   * does not split groups.
   */
  async function refuseBlockers(me: Id, userIds: readonly Id[]): Promise<void> {
    const refusing = userIds.length === 0 ? [] : await accounts.blockersAmong(me, userIds);
    if (refusing.length > 0) throw new ChatError("blocked", `these users blocked you: you cannot add them: ${refusing.join(", ")}`);
  }

  /** The caller's mute of the channel, while it lasts. */
  const activeMute = (mutes: ReadonlyMap<Id, number>, channelId: Id) => {
    const until = mutes.get(channelId);
    return until !== undefined && until > now() ? until : undefined;
  };

  const memberIds = async (channelId: Id) => (await channels.listMembers(channelId)).map((m) => m.userId);

  /** The group a code leads to; one reset, revoked or never made is NOT_FOUND, told the same way. */
  async function invitedChannel(code: string): Promise<ChannelRecord> {
    const channelId = await channels.channelOfInvite(code);
    const channel = channelId === undefined ? undefined : await channels.getChannel(channelId);
    if (!channel) throw deadInvite();
    return channel;
  }

  /**
   * After writing one of the caller's own settings of a channel: one written
   * as they were being removed (after their membership was read, before the
   * removal forgot their settings) would outlive the membership and be back
   * when they are (a mute silencing a group they rejoined), so it goes again.
   */
  async function requireStillMember(me: Id, channelId: Id): Promise<void> {
    if (await channels.getMember(channelId, me)) return;
    await forgetOwnSettings(deps, me, channelId);
    throw new ChatError("not_a_member", "not a member of this channel");
  }

  /** The caller's own settings of a channel, as a view shows them: mute, pin, archive. */
  async function ownSettings(me: Id, channelId: Id, last: { sentAtMs: number } | undefined) {
    const [mutes, places] = await Promise.all([channels.listMutes(me), channels.listPlaces(me)]);
    return settingsOf(mutes, places.get(channelId), channelId, last?.sentAtMs);
  }

  /**
   * Moves a channel in the caller's list (`change` from its place now and
   * all of the caller's places), writing only a change that moves anything,
   * and only the settings it names: a change made at the same time on
   * another device to another setting stays. Answers with the channel as
   * the caller now sees it, from the places already read. The caller's other
   * devices are told of a change (they DescribeChannel on the event), so
   * every list shows the same.
   */
  async function movePlace(
    me: Id,
    channel: ChannelRecord,
    member: MemberRecord,
    change: (place: ChannelPlace | undefined, places: ReadonlyMap<Id, ChannelPlace>) => Promise<PlaceChange>,
    written?: (was: ChannelPlace | undefined, wanted: PlaceChange) => Promise<void>,
  ) {
    const [places, mutes] = await Promise.all([channels.listPlaces(me), channels.listMutes(me)]);
    const wanted = await change(places.get(channel.channelId), places);
    const { place, changed } = applyPlaceChange(places.get(channel.channelId), wanted);
    if (changed) {
      await channels.changePlace(me, channel.channelId, wanted);
      await requireStillMember(me, channel.channelId);
      await written?.(places.get(channel.channelId), wanted);
    }
    const view = await channelView(deps, channel, member);
    if (changed) await pushChannelEvent(deps, [me], ChannelEventKind.UPDATED, view);
    return { channel: channelToProto({ ...view, ...settingsOf(mutes, place, channel.channelId, view.last?.sentAtMs) }) };
  }

  function settingsOf(mutes: ReadonlyMap<Id, number>, place: ChannelPlace | undefined, channelId: Id, lastAtMs: number | undefined) {
    const mutedUntilMs = activeMute(mutes, channelId);
    return {
      mutedUntilMs,
      pinnedAtMs: place?.pinnedAtMs,
      archived: isArchived(place, lastAtMs, mutedUntilMs !== undefined),
      markedUnread: place?.markedUnreadAtMs !== undefined,
    };
  }

  return {
    async openDirect(req, ctx) {
      const me = caller(ctx).userId;
      const peer = v.id("user_id", req.userId);
      if (peer === me) throw new ChatError("invalid_argument", "cannot open a direct channel with yourself");
      await requireUsers([peer]);
      // The blocker may still open a chat they had (its history stays theirs); sends are refused either way.
      // A new one they may not, as WhatsApp and Messenger ask to unblock first: made, it told the blocked
      // user (JOINED) of someone who had blocked them, in a chat neither could send in.
      const blockers = await accounts.blockersBetween(me, peer);
      if (blockers.includes(peer) || (blockers.includes(me) && !(await channels.hasDirect(me, peer)))) {
        refuseIfBlocked(blockers, me, peer, "open a chat with");
      }
      const giveBack = await deps.limits?.startDirect(me, () => channels.hasDirect(me, peer));
      const candidate: ChannelRecord = { channelId: deps.ids.next(), kind: "direct", title: "", createdAtMs: now(), createdBy: me };
      const channel = await channels.getOrCreateDirect(candidate, me, peer).catch(async (e: unknown) => {
        await giveBack?.();
        throw e;
      });
      // Made meanwhile (by the peer, or by another open of the caller's): not a chat the caller started.
      const made = channel.channelId === candidate.channelId;
      if (!made) await giveBack?.();
      // A refused open is no chat started, even though its row was written.
      await refuseIfDeletedSince(me, peer).catch(async (e: unknown) => {
        if (made) await giveBack?.();
        throw e;
      });
      const member = await channels.getMember(channel.channelId, me);
      const view = await channelView(deps, channel, member);
      if (made) {
        await pushChannelEvent(deps, [me, peer], ChannelEventKind.JOINED, view, peer);
        await tellCameTogether(deps, [peer], [me]);
        return { channel: channelToProto(view) };
      }
      // A chat opened again may be muted, pinned or archived.
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async createGroup(req, ctx) {
      const me = caller(ctx).userId;
      const title = v.groupTitle(req.title);
      // No bound on the ids here: too many, once duplicates and the caller are left out, is group_full below.
      const others = v.ids("member_user_ids", req.memberUserIds, Infinity).filter((id) => id !== me);
      if (others.length + 1 > MAX_GROUP_MEMBERS) {
        throw new ChatError("group_full", `a group has at most ${MAX_GROUP_MEMBERS} members including the owner`);
      }
      await requireUsers(others);
      await refuseBlockers(me, others);
      await refuseGroupLimit(me, [me, ...others]);
      const t = now();
      const channel: ChannelRecord = { channelId: deps.ids.next(), kind: "group", title, createdAtMs: t, createdBy: me };
      const owner: MemberRecord = { channelId: channel.channelId, userId: me, role: "owner", joinedAtMs: t, readSeq: 0n };
      const members = [owner, ...others.map((userId): MemberRecord => ({ ...owner, userId, role: "member" }))];
      await channels.createGroup(channel, members);
      // As for AddMembers: an account deleted, or a block made, since they were looked at would stay in the group for good.
      await leaveIfCallerDeleted(channel, ctx);
      if ((await pastGroupLimit([me])).length > 0) {
        // Nobody asked for the group without its owner: it goes whole, the owner last (no heir is chosen).
        for (const m of [...members].reverse()) await channels.removeMember(channel.channelId, m.userId);
        throw groupLimitReached();
      }
      const joined = await withoutRefused(channel.channelId, me, others);
      const view = { channel, memberCount: joined.length + 1, me: owner };
      await pushChannelEvent(deps, [me, ...joined], ChannelEventKind.JOINED, view);
      await tellCameTogether(deps, joined, [me]);
      return { channel: channelToProto(view) };
    },

    async describeChannel(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      const view = await channelView(deps, channel, member);
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async muteChannel(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // Out of the Timestamp's range, nanos would move the end by whole seconds (2e9 is 2 s more): no time a client meant.
      if (req.mutedUntil && !(req.mutedUntil.nanos >= 0 && req.mutedUntil.nanos <= 999_999_999)) {
        throw new ChatError("invalid_argument", "muted_until.nanos must be 0 to 999,999,999");
      }
      const until = req.mutedUntil ? timestampMs(req.mutedUntil) : undefined;
      if (until !== undefined && !(until <= LATEST_MUTE_MS)) throw new ChatError("invalid_argument", "muted_until must be before the year 10000");
      const mutedUntilMs = until !== undefined && until > now() ? until : undefined;
      const view = await channelView(deps, channel, member);
      // Muted as asked already (to the same time, or not at all): nothing to write.
      const mutes = await channels.listMutes(me);
      if (activeMute(mutes, channel.channelId) === mutedUntilMs) {
        return { channel: channelToProto({ ...view, ...settingsOf(mutes, (await channels.listPlaces(me)).get(channel.channelId), channel.channelId, view.last?.sentAtMs) }) };
      }
      // A muted chat stays archived through new messages (isArchived); one a message has already
      // brought back is out of the archive for good, or this mute would put it away again.
      if (mutedUntilMs !== undefined) {
        const place = (await channels.listPlaces(me)).get(channel.channelId);
        if (place?.archivedAtMs !== undefined && !isArchived(place, view.last?.sentAtMs, false)) {
          await channels.changePlace(me, channel.channelId, { archivedAtMs: null });
        }
      }
      await channels.setMute(me, channel.channelId, mutedUntilMs);
      await requireStillMember(me, channel.channelId);
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async pinChannel(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // Only chats the user is in count: a pin left behind by a removal that raced it can no longer be unpinned.
      const pinnedElsewhere = async (places: ReadonlyMap<Id, ChannelPlace>) => {
        const mine = new Set((await channels.listMemberships(me)).map((m) => m.channelId));
        return [...places].filter(([id, p]) => p.pinnedAtMs !== undefined && id !== channel.channelId && mine.has(id)).length;
      };
      // LIMIT_REACHED, as for friends: the request is well formed, the caller's pins are what refuse it.
      const limitReached = () => new ChatError("limit_reached", `at most ${MAX_PINNED_CHANNELS} chats can be pinned; unpin one first`);
      return movePlace(me, channel, member, async (place, places) => {
        if (!req.pinned) return { pinnedAtMs: null };
        if ((await pinnedElsewhere(places)) >= MAX_PINNED_CHANNELS) throw limitReached();
        // Pinning a pinned channel again keeps its time, and so its place among the pinned.
        if (place?.pinnedAtMs !== undefined) return {};
        return { pinnedAtMs: now(), archivedAtMs: null };
      }, async (was, wanted) => {
        // Read, then written: pins sent at once (a client firing many) all passed that read, so each
        // looks again once written and takes itself back past the limit. Of pins racing for the last
        // place, the one written last reads every other's, so all that stay fit (a retry finds room).
        if (!wanted.pinnedAtMs || (await pinnedElsewhere(await channels.listPlaces(me))) < MAX_PINNED_CHANNELS) return;
        await channels.changePlace(me, channel.channelId, { pinnedAtMs: null, archivedAtMs: was?.archivedAtMs ?? null });
        throw limitReached();
      });
    },

    async archiveChannel(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // Archiving again moves the time on: what came before it stays archived. Only an archiving is undone: a pinned chat stays pinned.
      return movePlace(me, channel, member, async (place) =>
        req.archived ? { archivedAtMs: now(), pinnedAtMs: null } : { archivedAtMs: null });
    },

    async markUnread(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // Marking a marked channel again keeps the mark as it was.
      return movePlace(me, channel, member, async (place) =>
        !req.unread ? { markedUnreadAtMs: null } : place?.markedUnreadAtMs !== undefined ? {} : { markedUnreadAtMs: now() });
    },

    async clearHistory(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      const through = req.throughSeq === 0n ? THROUGH_NEWEST : v.bound(req.throughSeq);
      const clearedSeq = await channels.clearHistory(channel.channelId, me, through);
      const view = await channelView(deps, channel, { ...member, clearedSeq });
      // The caller's other devices drop what they show of it (they DescribeChannel on the event);
      // clearing again with nothing new since moves nothing, and tells them nothing.
      if (clearedSeq !== (member.clearedSeq ?? 0n)) await pushChannelEvent(deps, [me], ChannelEventKind.UPDATED, view);
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async getInviteLink(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireGroup(req.channelId, me);
      requireManager(member); // Early and cheap; the store checks again as it reads or writes the code.
      // 128 random bits: guessing one is hopeless, so a code needs no rate of its own.
      const code = newInviteCode();
      // A manager removed or demoted meanwhile neither learns the code nor
      // sets one: else the link reset to lock them out would be undone.
      if (!req.reset) return { code: await channels.claimInviteCode(channel.channelId, code, managerCheck(me)) };
      await channels.setInviteCode(channel.channelId, code, managerCheck(me));
      return { code };
    },

    async revokeInviteLink(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireGroup(req.channelId, me);
      requireManager(member); // Early and cheap; the store checks again as it writes.
      await channels.setInviteCode(channel.channelId, undefined, managerCheck(me));
      return {};
    },

    async describeInvite(req, ctx) {
      const me = caller(ctx).userId;
      const channel = await invitedChannel(v.inviteCode(req.code));
      const [memberCount, mine, barred] = await Promise.all([
        channels.memberCount(channel.channelId), channels.getMember(channel.channelId, me), channels.isBarred(channel.channelId, me),
      ]);
      if (memberCount === 0) throw deadInvite();
      // Refused rather than described: the join it previews would be refused, and one
      // removed sees no more of the group (its title, its size) than a removal leaves them.
      if (barred) throw removedByAdmin();
      return { channelId: channel.channelId, title: channel.title, memberCount, member: mine !== undefined };
    },

    async joinByInvite(req, ctx) {
      const me = caller(ctx).userId;
      const code = v.inviteCode(req.code);
      const channel = await invitedChannel(code);
      let member = await channels.getMember(channel.channelId, me);
      let joined = false;
      let joinedView: ChannelView | undefined;
      let everyone: Id[] = [];
      if (!member) {
        await refuseGroupLimit(me, [me]);
        // Its note goes to every member's inbox, as a send does (takeGroupChange).
        deps.limits?.takeGroupChange(me);
        // The history before them is not unread, but not read either (see addMembers).
        const joining: MemberRecord = { channelId: channel.channelId, userId: me, role: "member", joinedAtMs: now(), readSeq: 0n };
        // Checked on the members the store writes to: a group everyone has left is nobody's to join, its link left behind or not.
        // And the code is compared as the add lands: one reset or revoked since the lookup above adds nobody;
        // so is a bar (removedByAdmin): a removal landing since the lookup above is not walked around.
        // In the channel's turn, the add and its note (see writeNote).
        joined = await channels.changeInTurn(channel.channelId, async () => {
          // Read in the turn (see addMembers).
          joining.joinedSeq = (await deps.log.latest([channel.channelId])).get(channel.channelId)?.seq ?? 0n;
          const added = await channels.addMembers(channel.channelId, [joining], MAX_GROUP_MEMBERS, (members) => {
            if (members.length === 0) throw deadInvite();
          }, code);
          if (added.length === 0) return false;
          await leaveIfCallerDeleted(channel, ctx);
          if ((await pastGroupLimit([me])).length > 0) {
            await channels.removeMember(channel.channelId, me);
            throw groupLimitReached();
          }
          await writeNote(deps, caller(ctx), channel.channelId, { kind: "joined_by_invite", userIds: [] });
          // Told in the turn (see addMembers). The event carries only the shared fields of the view
          // (pushChannelEvent leaves the caller's own out).
          joinedView = await channelView(deps, await channelNow(deps, channel), joining);
          everyone = await memberIds(channel.channelId);
          await pushChannelEvent(deps, everyone, ChannelEventKind.JOINED, joinedView, me);
          return true;
        });
        // Not added: a concurrent join (or an add) got there first. Added: read again, with the join
        // point the note's writer moved to the note (the answer showed the note unread, the list not).
        member = joined ? ((await channels.getMember(channel.channelId, me)) ?? joining) : await channels.getMember(channel.channelId, me);
        // And out again since (removed, or left from another device): the view would show one out of
        // the group its newest message, maybe one sent after a removal.
        if (!member) throw new ChatError("not_a_member", "not a member of this channel");
      }
      const view = joinedView ? { ...joinedView, me: member } : await channelView(deps, channel, member);
      if (joined) await tellCameTogether(deps, [me], everyone);
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },


    async listChannels(req, ctx) {
      const me = caller(ctx).userId;
      const limit = v.limit(req.limit, 50, 200);
      const [memberships, mutes, places] = await Promise.all([channels.listMemberships(me), channels.listMutes(me), channels.listPlaces(me)]);
      // Every chat's newest message sorts the list, but only the page's are shown: their texts
      // (up to ~400 KB each) are read for the page alone, not for hundreds of chats.
      const lastAt = await deps.log.latestSentAt(memberships.map((m) => m.channelId));
      const rows = memberships
        .map((m) => {
          const settings = settingsOf(mutes, places.get(m.channelId), m.channelId, lastAt.get(m.channelId));
          // Activity is the last message, or joining for a channel without newer messages.
          const activityAtMs = Math.max(lastAt.get(m.channelId) ?? 0, m.joinedAtMs);
          // The archive lists by activity alone: a pin never lives there.
          const pinnedAtMs = settings.archived ? 0 : (settings.pinnedAtMs ?? 0);
          return { m, settings, pos: { pinnedAtMs, activityAtMs, channelId: m.channelId } };
        })
        .filter((r) => r.settings.archived === req.archived)
        .sort((a, b) => compareListPositions(a.pos, b.pos));

      let start = 0;
      if (req.pageToken) {
        const after = decodePageToken(req.pageToken);
        start = rows.findIndex((r) => compareListPositions(after, r.pos) < 0);
        if (start < 0) start = rows.length;
      }
      const page = rows.slice(start, start + limit);
      const more = start + limit < rows.length;

      const pageIds = page.map(({ m }) => m.channelId);
      const [latest, found] = await Promise.all([deps.log.latest(pageIds), channels.getChannels(pageIds)]);
      const shown = page.flatMap(({ m, settings }) => {
        const channel = found.get(m.channelId);
        return channel ? [{ channel, me: m, settings }] : [];
      });
      const views = await channelViews(deps, shown, latest);
      const lastRow = page[page.length - 1];
      return {
        channels: views.map((view, i) => channelToProto({ ...view, ...shown[i]!.settings })),
        nextPageToken: more && lastRow ? encodePageToken(lastRow.pos) : "",
      };
    },

    async listMembers(req, ctx) {
      const me = caller(ctx).userId;
      const { channel } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      const members = await membersAsRead(deps, channel.channelId);
      // Across a block the other's reading is not told, as no receipt of theirs is (receiptAudience).
      const hidden = await blockedPair(deps, channel, me, members.map((m) => m.userId));
      return { members: members.map((m) => memberToProto(hidden && m.userId !== me ? { ...m, readSeq: 0n } : m)) };
    },

    async addMembers(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireGroup(req.channelId, me);
      requireManager(member); // Early and cheap; the store checks again as it writes.
      const wanted = v.ids("user_ids", req.userIds, MAX_GROUP_MEMBERS);
      if (wanted.length === 0) throw new ChatError("invalid_argument", "user_ids is required");
      await requireUsers(wanted);
      // Those already in the group are a success that changes nothing (a retry, a whole selection sent again):
      // they take no further place, and one who blocked the caller since stays in it, as a block leaves a group whole.
      const already = new Set(await memberIds(channel.channelId));
      const fresh = wanted.filter((id) => !already.has(id));
      await refuseBlockers(me, fresh);
      await refuseGroupLimit(me, fresh);
      // Its note goes to every member's inbox, as a send does (takeGroupChange); an add of
      // those in already writes none, and is not taken.
      if (fresh.length > 0) deps.limits?.takeGroupChange(me);
      const t = now();
      // The history before joiners is not unread for them: it was never theirs
      // to catch up on. Their join point is the newest seq read here until the note of
      // the add is stored, whose writer moves it to the note (ChannelStore.markJoined):
      // in the cluster messages acked before this read may be sequenced after it.
      // Nor is it read: their read position, which others are shown as what
      // they have seen, starts at nothing until their own receipts move it.
      // In the channel's turn, the add and its note (see writeNote).
      // The events too: a user's own JOINED and LEFT decide whether their apps list the group, so of
      // two changes of one user (added as they leave, removed and added back) the last to land is
      // told last; told after the turn, either event could overtake the other.
      const { added, view, everyone } = await channels.changeInTurn(channel.channelId, async () => {
        // Read in the turn: another change's note sequenced between this read and the turn
        // came before the joiners, yet counted as theirs to read.
        const joinedSeq = (await deps.log.latest([channel.channelId])).get(channel.channelId)?.seq ?? 0n;
        // Read in the turn too: bars are made and lifted only by changes in it (a removal, an
        // add), so these are the bars this add lifts, to be put back if it is undone.
        const barred = await channels.barredAmong(channel.channelId, wanted);
        const written = await channels.addMembers(
          channel.channelId,
          wanted.map((userId): MemberRecord => ({ channelId: channel.channelId, userId, role: "member", joinedAtMs: t, readSeq: 0n, joinedSeq })),
          MAX_GROUP_MEMBERS,
          managerCheck(me),
        );
        const added = await withoutRefused(channel.channelId, me, written, barred);
        if (added.length > 0) await writeNote(deps, caller(ctx), channel.channelId, { kind: "members_added", userIds: [...added] });
        const view = await channelView(deps, await channelNow(deps, channel), member);
        if (added.length === 0) return { added, view, everyone: [] };
        const everyone = await memberIds(channel.channelId);
        await pushChannelEvents(deps, everyone, ChannelEventKind.JOINED, view, added);
        return { added, view, everyone };
      });
      if (added.length > 0) await tellCameTogether(deps, added, everyone);
      // The caller's own settings, as every other answer of a channel carries them: without them a client
      // taking the answer for the group showed a muted, pinned group unmuted and unpinned.
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async removeMember(req, ctx) {
      const me = caller(ctx).userId;
      const { channel } = await requireGroup(req.channelId, me);
      const target = v.id("user_id", req.userId);
      if (target === me) throw new ChatError("invalid_argument", "use LeaveGroup to leave a group");
      // Its note goes to every member's inbox, as a send does (takeGroupChange); a removal of one
      // out already (a retry, a manager removing again until it takes) writes none, and is not taken.
      if (await channels.getMember(channel.channelId, target)) deps.limits?.takeGroupChange(me);
      const check: MembershipCheck = (members) => {
        const mine = callerIn(members, me);
        requireManager(mine);
        // Someone not in it (a retry of a removal that landed) is a success that changes nothing.
        const theirs = members.find((m) => m.userId === target);
        if (mine.role === "admin" && theirs && theirs.role !== "member") {
          throw new ChatError("permission_denied", "admins can remove members only, not the owner or other admins");
        }
      };
      // Barred from the link in the step that removes them: else they could walk back in at once.
      // In the channel's turn, the removal and its note (see writeNote).
      // The events too (see addMembers): told after the turn, this LEFT could reach the one
      // removed after the JOINED of an add back that landed next, and their apps dropped the group.
      const everyone = await channels.changeInTurn(channel.channelId, async () => {
        if (!(await channels.removeMember(channel.channelId, target, check, true)).removed) return undefined;
        await writeNote(deps, caller(ctx), channel.channelId, { kind: "member_removed", userIds: [target] });
        await forgetOwnSettings(deps, target, channel.channelId);
        const everyone = await memberIds(channel.channelId);
        await pushLeft(deps, everyone, target, await channelView(deps, await channelNow(deps, channel)));
        return everyone;
      });
      if (everyone) await tellGoneApart(deps, target, everyone);
      return {};
    },

    async setMemberRole(req, ctx) {
      const me = caller(ctx).userId;
      const { channel } = await requireGroup(req.channelId, me);
      const target = v.id("user_id", req.userId);
      if (req.role !== PbMemberRole.MEMBER && req.role !== PbMemberRole.ADMIN) {
        throw new ChatError("invalid_argument", "role must be MEMBER or ADMIN; ownership moves only by leaving");
      }
      const role = req.role === PbMemberRole.ADMIN ? "admin" : "member";
      // Its note goes to every member's inbox, as a send does (takeGroupChange); the role they
      // have already writes none, and is not taken.
      if ((await channels.getMember(channel.channelId, target))?.role !== role) deps.limits?.takeGroupChange(me);
      const check: MembershipCheck = (members) => {
        if (callerIn(members, me).role !== "owner") throw new ChatError("permission_denied", "only the owner can change roles");
        if (target === me) throw new ChatError("invalid_argument", "the owner's role changes only by leaving");
        targetIn(members, target);
      };
      // In the channel's turn, the change, its note and its event (see writeNote): told after the
      // turn, its event could follow a rename's and tell the title the group had before it.
      await channels.changeInTurn(channel.channelId, async () => {
        if (!(await channels.setRole(channel.channelId, target, role, check))) return;
        await writeNote(deps, caller(ctx), channel.channelId, { kind: "role_changed", userIds: [target], role });
        const view = await channelView(deps, await channelNow(deps, channel));
        await pushChannelEvent(deps, await memberIds(channel.channelId), ChannelEventKind.UPDATED, view, target);
      });
      return {};
    },

    async updateGroup(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireGroup(req.channelId, me);
      requireManager(member); // Early and cheap; the store checks again as it writes.
      const title = v.groupTitle(req.title);
      // Its note goes to every member's inbox, as a send does, its title stored as a text is
      // (takeGroupChange); the same title again writes none, and is not taken.
      if (title !== channel.title) deps.limits?.takeGroupChange(me, title);
      // The same title again (a retry, a second device) succeeds but tells nobody: up to 100 members' devices.
      // In the channel's turn, the change, its note and its event (see writeNote): told after the
      // turn, the event of the rename that landed first could be told last, with its title.
      const view = await channels.changeInTurn(channel.channelId, async () => {
        const changed = await channels.updateTitle(channel.channelId, title, managerCheck(me));
        if (changed) await writeNote(deps, caller(ctx), channel.channelId, { kind: "title_changed", userIds: [], title });
        const view = await channelView(deps, { ...channel, title }, member);
        // The event goes to every member, so it carries nobody's own settings; the answer carries the caller's.
        if (changed) await pushChannelEvent(deps, await memberIds(channel.channelId), ChannelEventKind.UPDATED, view);
        return view;
      });
      return { channel: channelToProto({ ...view, ...(await ownSettings(me, channel.channelId, view.last)) }) };
    },

    async leaveGroup(req, ctx) {
      const me = caller(ctx).userId;
      const { channel } = await requireGroup(req.channelId, me);
      // Its note goes to every member's inbox, as a send does (takeGroupChange); a deletion's
      // leaving is not taken: it must not be refused.
      deps.limits?.takeGroupChange(me);
      await leaveGroup(deps, channel, caller(ctx));
      return {};
    },
  };
}

function encodePageToken(p: ListPosition): string {
  return Buffer.from(`${p.pinnedAtMs}:${p.activityAtMs}:${p.channelId}`).toString("base64url");
}

/** Also reads the tokens of builds before pins ("activity:channel"), as a position among the unpinned. */
function decodePageToken(token: string): ListPosition {
  const m = /^(?:(\d{1,16}):)?(\d{1,16}):(\d{1,20})$/.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) throw new ChatError("invalid_argument", "page_token is not one this server issued");
  const channelId = BigInt(m[3]!);
  if (channelId > v.MAX_ID) throw new ChatError("invalid_argument", "page_token is not one this server issued");
  return { pinnedAtMs: Number(m[1] ?? 0), activityAtMs: Number(m[2]), channelId };
}
