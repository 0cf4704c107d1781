import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelKind, MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import type { Id } from "../model/types.js";
import { rpcError, TestApi, type TestUser } from "./testkit.js";

describe("api: ChannelService", () => {
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start()));
  afterEach(async () => api.close());

  const send = (u: TestUser, channelId: Id, text: string) =>
    u.c.messages.sendMessage({ channelId, text, clientMsgId: `${text}-${api.clock.ms}` });

  it("finds or creates one direct channel per pair, either way round", async () => {
    const a = await api.signUp();
    const b = await api.signUp();
    const ab = (await a.c.channels.openDirect({ userId: b.userId })).channel!;
    assert.equal(ab.kind, ChannelKind.DIRECT);
    assert.equal(ab.memberCount, 2);
    assert.equal(ab.peerUserId, b.userId);
    assert.equal(ab.myRole, MemberRole.MEMBER);
    const ba = (await b.c.channels.openDirect({ userId: a.userId })).channel!;
    assert.equal(ba.channelId, ab.channelId);
    assert.equal(ba.peerUserId, a.userId);

    const joined = api.sessions.framesOf("channel");
    assert.equal(joined.length, 1, "only creation is announced");
    assert.deepEqual(joined[0]!.userIds, [a.userId, b.userId]);

    assert.equal((await rpcError(() => a.c.channels.openDirect({ userId: a.userId }))).code, Code.InvalidArgument);
    assert.equal((await rpcError(() => a.c.channels.openDirect({ userId: 42n }))).code, Code.NotFound);
    const add = await rpcError(() => a.c.channels.addMembers({ channelId: ab.channelId, userIds: [a.userId] }));
    assert.equal(add.code, Code.InvalidArgument);
  });

  it("creates a group of 100 and refuses the 101st member with group_full", async () => {
    const owner = await api.signUp();
    const others: TestUser[] = [];
    for (let i = 0; i < 100; i++) others.push(await api.signUp());
    const ids = others.map((u) => u.userId);

    const tooBig = await rpcError(() => owner.c.channels.createGroup({ title: "big", memberUserIds: ids }));
    assert.equal(tooBig.code, Code.FailedPrecondition);
    assert.equal(tooBig.chatCode, "ERROR_CODE_GROUP_FULL");

    const group = (await owner.c.channels.createGroup({ title: " big ", memberUserIds: [...ids.slice(0, 99), owner.userId] })).channel!;
    assert.equal(group.title, "big");
    assert.equal(group.memberCount, 100);
    assert.equal(group.myRole, MemberRole.OWNER);

    const full = await rpcError(() => owner.c.channels.addMembers({ channelId: group.channelId, userIds: [ids[99]!] }));
    assert.equal(full.code, Code.FailedPrecondition);
    assert.equal(full.chatCode, "ERROR_CODE_GROUP_FULL");
    assert.equal((await owner.c.channels.listMembers({ channelId: group.channelId })).members.length, 100);

    assert.equal((await rpcError(() => owner.c.channels.createGroup({ title: "", memberUserIds: [] }))).code, Code.InvalidArgument);
    assert.equal((await rpcError(() => owner.c.channels.createGroup({ title: "x".repeat(129) }))).code, Code.InvalidArgument);
  });

  it("refuses non-members, and does not tell them whether the channel exists", async () => {
    const a = await api.signUp();
    const b = await api.signUp();
    const outsider = await api.signUp();
    const ch = (await a.c.channels.openDirect({ userId: b.userId })).channel!;
    for (const call of [
      () => outsider.c.channels.describeChannel({ channelId: ch.channelId }),
      () => outsider.c.channels.describeChannel({ channelId: 777n }),
      () => outsider.c.messages.listMessages({ channelId: ch.channelId }),
      () => outsider.c.channels.listMembers({ channelId: ch.channelId }),
    ]) {
      const err = await rpcError(call);
      assert.equal(err.code, Code.PermissionDenied);
      assert.equal(err.rawMessage, "not a member of this channel");
      assert.equal(err.chatCode, "ERROR_CODE_NOT_A_MEMBER");
    }
    assert.equal((await b.c.channels.describeChannel({ channelId: ch.channelId })).channel?.channelId, ch.channelId);
  });

  it("enforces roles: owner and admins manage, admins spare admins, only the owner sets roles", async () => {
    const [owner, admin, m1, m2, m3] = await Promise.all([1, 2, 3, 4, 5].map(() => api.signUp()));
    const g = (await owner!.c.channels.createGroup({ title: "team", memberUserIds: [admin!.userId, m1!.userId] })).channel!;
    const channelId = g.channelId;

    const denied = async (call: () => Promise<unknown>) => {
      const err = await rpcError(call);
      assert.equal(err.code, Code.PermissionDenied);
      assert.equal(err.chatCode, "ERROR_CODE_PERMISSION_DENIED");
    };
    await denied(() => m1!.c.channels.addMembers({ channelId, userIds: [m2!.userId] }));
    await denied(() => m1!.c.channels.updateGroup({ channelId, title: "mine" }));
    await denied(() => admin!.c.channels.setMemberRole({ channelId, userId: m1!.userId, role: MemberRole.ADMIN }));

    await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    const owned = await rpcError(() => owner!.c.channels.setMemberRole({ channelId, userId: m1!.userId, role: MemberRole.OWNER }));
    assert.equal(owned.code, Code.InvalidArgument);

    api.sessions.pushes = [];
    await admin!.c.channels.addMembers({ channelId, userIds: [m2!.userId, m3!.userId] });
    const joined = api.sessions.framesOf("channel").map((p) => p.frame.kind.value as { kind: ChannelEventKind; userId: bigint });
    assert.deepEqual(joined.map((e) => [e.kind, e.userId]), [
      [ChannelEventKind.JOINED, m2!.userId],
      [ChannelEventKind.JOINED, m3!.userId],
    ]);
    assert.equal(api.sessions.framesOf("channel")[0]!.userIds.length, 5);

    const renamed = await admin!.c.channels.updateGroup({ channelId, title: "team two" });
    assert.equal(renamed.channel?.title, "team two");

    await admin!.c.channels.removeMember({ channelId, userId: m3!.userId });
    await denied(() => admin!.c.channels.removeMember({ channelId, userId: owner!.userId }));
    await owner!.c.channels.setMemberRole({ channelId, userId: m2!.userId, role: MemberRole.ADMIN });
    await denied(() => admin!.c.channels.removeMember({ channelId, userId: m2!.userId }));
    await owner!.c.channels.removeMember({ channelId, userId: m2!.userId });

    const removed = await rpcError(() => m3!.c.channels.describeChannel({ channelId }));
    assert.equal(removed.code, Code.PermissionDenied);
    const roles = (await owner!.c.channels.listMembers({ channelId })).members.map((m) => [m.userId, m.role]);
    assert.deepEqual(roles, [
      [owner!.userId, MemberRole.OWNER],
      [admin!.userId, MemberRole.ADMIN],
      [m1!.userId, MemberRole.MEMBER],
    ]);
  });

  it("hands ownership to the longest-standing admin, else member, when the owner leaves", async () => {
    const [owner, m1, m2, a1] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [m1!.userId, m2!.userId, a1!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: a1!.userId, role: MemberRole.ADMIN });

    await owner!.c.channels.leaveGroup({ channelId });
    const roleOf = async (u: TestUser) => (await u.c.channels.describeChannel({ channelId })).channel!.myRole;
    assert.equal(await roleOf(a1!), MemberRole.OWNER, "the admin, although a later joiner");
    assert.equal((await a1!.c.channels.describeChannel({ channelId })).channel!.memberCount, 3);

    await a1!.c.channels.leaveGroup({ channelId });
    assert.equal(await roleOf(m1!), MemberRole.OWNER, "no admin left: the first member");
    await m1!.c.channels.leaveGroup({ channelId });
    await m2!.c.channels.leaveGroup({ channelId });
    assert.deepEqual((await m2!.c.channels.listChannels({})).channels, []);
  });

  it("lists channels by last activity with unread counts, in pages", async () => {
    const me = await api.signUp();
    const [b, c, d] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const dmB = (await me.c.channels.openDirect({ userId: b!.userId })).channel!.channelId;
    api.clock.ms += 1000;
    const dmC = (await me.c.channels.openDirect({ userId: c!.userId })).channel!.channelId;
    api.clock.ms += 1000;
    const group = (await d!.c.channels.createGroup({ title: "g", memberUserIds: [me.userId] })).channel!.channelId;
    api.clock.ms += 1000;

    await send(b!, dmB, "one");
    api.clock.ms += 1000;
    await send(b!, dmB, "two");
    api.clock.ms += 1000;
    await send(b!, dmB, "three");
    api.clock.ms += 1000;
    await send(me, dmC, "mine");

    const all = await me.c.channels.listChannels({});
    assert.deepEqual(all.channels.map((ch) => ch.channelId), [dmC, dmB, group]);
    assert.deepEqual(all.channels.map((ch) => ch.unreadCount), [1n, 3n, 0n]);
    assert.equal(all.channels[1]!.lastMessage?.text, "three");
    assert.equal(all.channels[1]!.lastSeq, 3n);
    assert.equal(all.channels[1]!.peerUserId, b!.userId);
    assert.equal(all.nextPageToken, "");

    await me.c.messages.markRead({ channelId: dmB, seq: 2n });
    const p1 = await me.c.channels.listChannels({ limit: 2 });
    assert.deepEqual(p1.channels.map((ch) => [ch.channelId, ch.unreadCount, ch.readSeq]), [
      [dmC, 1n, 0n],
      [dmB, 1n, 2n],
    ]);
    assert.notEqual(p1.nextPageToken, "");
    const p2 = await me.c.channels.listChannels({ limit: 2, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.channels.map((ch) => ch.channelId), [group]);
    assert.equal(p2.nextPageToken, "");

    const bad = await rpcError(() => me.c.channels.listChannels({ pageToken: "garbage" }));
    assert.equal(bad.code, Code.InvalidArgument);
  });
});
