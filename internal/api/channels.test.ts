import assert from "node:assert/strict";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind, ChannelNoteKind, MemberRole, PresenceStatus, PresenceVisibility, type Message } from "../../gen/es/chat/v1/types_pb.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { MessageLog } from "../messages/log.js";
import type { Id } from "../model/types.js";
import { FixedPresence, holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

describe("api: ChannelService", () => {
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start()));
  afterEach(async () => api.close());

  const send = (u: TestUser, channelId: Id, text: string) =>
    u.c.messages.sendMessage({ channelId, text, clientMsgId: `${text}-${api.clock.ms}` });

  it("tells a member who leaves or is removed, and those left, each other offline where the group was all they shared", async () => {
    const [owner, friend, stranger, leaver] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
    await friend.c.users.sendFriendRequest({ userId: leaver.userId });
    await leaver.c.users.respondFriendRequest({ userId: friend.userId, accept: true });
    const group = (await owner.c.channels.createGroup({ title: "Trip", memberUserIds: [friend.userId, stranger.userId, leaver.userId] })).channel!;
    const offline = () =>
      api.sessions.framesOf("presence").flatMap((p) => {
        const e = p.frame.kind.case === "presence" ? p.frame.kind.value.presence! : undefined;
        return p.userIds.map((to) => `${e?.userId}->${to}`);
      }).sort();
    const pair = (a: TestUser, b: TestUser) => [`${a.userId}->${b.userId}`, `${b.userId}->${a.userId}`];

    api.sessions.pushes = [];
    await leaver.c.channels.leaveGroup({ channelId: group.channelId });
    // The friend still sees the leaver through their friendship: nothing for them.
    assert.deepEqual(offline(), [...pair(leaver, owner), ...pair(leaver, stranger)].sort());

    api.sessions.pushes = [];
    await owner.c.channels.removeMember({ channelId: group.channelId, userId: stranger.userId });
    assert.deepEqual(offline(), [...pair(stranger, owner), ...pair(stranger, friend)].sort());
  });

  it("tells users just in a chat together each other's presence, as their settings and blocks allow", async () => {
    await api.close();
    api = await TestApi.start({ presence: new FixedPresence({ online: true }) });
    const [owner, a, b, hidden, blocker, joiner, peer] = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => api.signUp()));
    await hidden!.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
    await blocker!.c.users.blockUser({ userId: a!.userId });
    const told = () =>
      api.sessions.framesOf("presence").flatMap((p) => {
        const e = p.frame.kind.case === "presence" ? p.frame.kind.value.presence! : undefined;
        assert.equal(e?.status, PresenceStatus.ONLINE);
        return p.userIds.map((to) => `${e?.userId}->${to}`);
      }).sort();
    const both = (x: TestUser, ys: TestUser[]) => ys.flatMap((y) => [`${x.userId}->${y.userId}`, `${y.userId}->${x.userId}`]);
    const from = (x: TestUser, ys: TestUser[]) => ys.map((y) => `${x.userId}->${y.userId}`);

    // A new group: every pair, but a "friends" setting shows nothing to strangers and a block nothing across it.
    api.sessions.pushes = [];
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [a!.userId, hidden!.userId] })).channel!.channelId;
    assert.deepEqual(told(), [...both(owner!, [a!]), ...from(owner!, [hidden!]), ...from(a!, [hidden!])].sort());

    // Members added: each newcomer and everyone, the newcomers among themselves, not the blocked pair.
    api.sessions.pushes = [];
    await owner!.c.channels.addMembers({ channelId, userIds: [b!.userId, blocker!.userId] });
    assert.deepEqual(
      told(),
      [...both(b!, [owner!, a!, blocker!]), ...from(b!, [hidden!]), ...both(blocker!, [owner!]), ...from(blocker!, [hidden!])].sort(),
    );

    // A joiner by invite link, and a first direct chat (opened again, it tells nothing).
    const { code } = await owner!.c.channels.getInviteLink({ channelId });
    api.sessions.pushes = [];
    await joiner!.c.channels.joinByInvite({ code });
    assert.deepEqual(told(), [...both(joiner!, [owner!, a!, b!, blocker!]), ...from(joiner!, [hidden!])].sort());
    api.sessions.pushes = [];
    await peer!.c.channels.openDirect({ userId: owner!.userId });
    assert.deepEqual(told(), both(peer!, [owner!]).sort());
    api.sessions.pushes = [];
    await owner!.c.channels.openDirect({ userId: peer!.userId });
    assert.deepEqual(told(), []);
  });

  it("tells one who leaves or is removed of it without a message sent after they were out", async () => {
    // The log the api reads, with a hook as it reads the newest message for the event.
    let log!: MessageLog;
    let beforeLatest: (() => Promise<void>) | undefined;
    const proxy = new Proxy({} as MessageLog, {
      get: (_, key) => {
        if (key === "latest") {
          return async (ids: Id[]) => {
            const hook = beforeLatest;
            beforeLatest = undefined;
            await hook?.();
            return log.latest(ids);
          };
        }
        const value = (log as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(log) : value;
      },
    });
    await api.close();
    api = await TestApi.start({ log: proxy });
    log = api.storage.messages;
    const [owner, stays, removed, leaver] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [stays!.userId, removed!.userId, leaver!.userId] })).channel!.channelId;
    const leftEvents = (userId: Id) =>
      api.sessions.framesOf("channel").flatMap((p) =>
        p.frame.kind.case === "channel" && p.frame.kind.value.kind === ChannelEventKind.LEFT && p.userIds.includes(userId) ? [p.frame.kind.value] : []);

    for (const [out, go] of [
      [removed!, () => owner!.c.channels.removeMember({ channelId, userId: removed!.userId })],
      [leaver!, () => leaver!.c.channels.leaveGroup({ channelId })],
    ] as const) {
      api.sessions.pushes = [];
      // Written after they were out, before the event's view reads the newest message.
      beforeLatest = async () => void (await send(stays!, channelId, `not for ${out.userId}`));
      await go();
      const [theirs] = leftEvents(out.userId);
      assert.equal(theirs?.userId, out.userId);
      assert.equal(theirs?.channel?.lastMessage, undefined, "what was sent once they were out is not theirs to read");
      const [others] = leftEvents(stays!.userId);
      assert.equal(others?.channel?.lastMessage?.text, `not for ${out.userId}`, "those who stay see the chat as it is");
    }
  });

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

  it("says what is wrong: group-only calls on a direct chat, and a 0 among a new group's members", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const ab = (await a.c.channels.openDirect({ userId: b.userId })).channel!;
    const groupOnly: [string, () => Promise<unknown>][] = [
      ["UpdateGroup", () => a.c.channels.updateGroup({ channelId: ab.channelId, title: "t" })],
      ["GetInviteLink", () => a.c.channels.getInviteLink({ channelId: ab.channelId })],
      ["RevokeInviteLink", () => a.c.channels.revokeInviteLink({ channelId: ab.channelId })],
      ["AddMembers", () => a.c.channels.addMembers({ channelId: ab.channelId, userIds: [a.userId] })],
      ["LeaveGroup", () => a.c.channels.leaveGroup({ channelId: ab.channelId })],
    ];
    for (const [method, call] of groupOnly) {
      const e = await rpcError(call);
      assert.equal(e.code, Code.InvalidArgument, method);
      assert.match(e.rawMessage, /^this is a direct chat; only groups have/, method);
    }
    const zero = await rpcError(() => a.c.channels.createGroup({ title: "t", memberUserIds: [b.userId, 0n] }));
    assert.equal(zero.code, Code.InvalidArgument);
    assert.equal(zero.rawMessage, "member_user_ids must not contain 0");
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

  it("leaves out of a new group a member whose account is deleted while it is being created", async () => {
    // The accounts the api reads, with a hook after its look at the members (requireUsers).
    let store!: AccountStore;
    let afterLook: (() => Promise<void>) | undefined;
    const accounts = new Proxy({} as AccountStore, {
      get: (_, key) => {
        if (key === "getUsers") {
          return async (ids: Id[]) => {
            const users = await store.getUsers(ids);
            const hook = afterLook;
            afterLook = undefined;
            await hook?.();
            return users;
          };
        }
        const value = (store as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(store) : value;
      },
    });
    await api.close();
    api = await TestApi.start({ accounts });
    store = api.storage.accounts;
    const [owner, stays, leaving] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    // The deletion leaves the groups it finds; this one is not written yet.
    afterLook = () => store.deleteUser(leaving!.userId);
    const created = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [stays!.userId, leaving!.userId] })).channel!;
    assert.equal(created.memberCount, 2);
    const members = (await owner!.c.channels.listMembers({ channelId: created.channelId })).members.map((m) => m.userId);
    assert.deepEqual(members, [owner!.userId, stays!.userId]);
  });

  it("leaves out of a group one who blocked its adder while they were being added", async () => {
    // The accounts the api reads, with a hook after its look at who blocked the caller.
    let store!: AccountStore;
    let afterLook: (() => Promise<void>) | undefined;
    const accounts = new Proxy({} as AccountStore, {
      get: (_, key) => {
        if (key === "blockersAmong") {
          return async (id: Id, among: readonly Id[]) => {
            const blockers = await store.blockersAmong(id, among);
            const hook = afterLook;
            afterLook = undefined;
            await hook?.();
            return blockers;
          };
        }
        const value = (store as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(store) : value;
      },
    });
    await api.close();
    api = await TestApi.start({ accounts });
    store = api.storage.accounts;
    const [owner, stays, blocker, later] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const members = async (channelId: Id) => (await owner!.c.channels.listMembers({ channelId })).members.map((m) => m.userId);

    afterLook = async () => void (await blocker!.c.users.blockUser({ userId: owner!.userId }));
    const created = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [stays!.userId, blocker!.userId] })).channel!;
    assert.equal(created.memberCount, 2);
    assert.deepEqual(await members(created.channelId), [owner!.userId, stays!.userId]);

    await blocker!.c.users.unblockUser({ userId: owner!.userId });
    afterLook = async () => void (await blocker!.c.users.blockUser({ userId: owner!.userId }));
    await owner!.c.channels.addMembers({ channelId: created.channelId, userIds: [blocker!.userId, later!.userId] });
    assert.deepEqual(await members(created.channelId), [owner!.userId, stays!.userId, later!.userId]);
    const added = (await owner!.c.messages.listMessages({ channelId: created.channelId })).messages.find((m) => m.note);
    assert.deepEqual(added?.note?.userIds, [later!.userId], "the note names only who stayed added");
  });

  it("keeps no mute, pin, archiving or unread mark set while its user was being removed, for when they come back", async () => {
    // The channels the api writes, with a hook as a setting of the caller's is about to be written.
    let store!: ChannelStore;
    let beforeSetting: (() => Promise<void>) | undefined;
    const once = async () => {
      const hook = beforeSetting;
      beforeSetting = undefined;
      await hook?.();
    };
    const channels = new Proxy({} as ChannelStore, {
      get: (_, key) => {
        if (key === "setMute" || key === "changePlace") {
          const write = (store[key] as (...args: unknown[]) => Promise<void>).bind(store);
          return async (...args: unknown[]) => {
            await once();
            return write(...args);
          };
        }
        const value = (store as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(store) : value;
      },
    });
    await api.close();
    api = await TestApi.start({ channels });
    store = api.storage.channels;
    const [owner, member] = [await api.signUp(), await api.signUp()];
    const channelId = (await owner.c.channels.createGroup({ title: "g", memberUserIds: [member.userId] })).channel!.channelId;
    const setters: [string, () => Promise<unknown>][] = [
      ["mute", () => member.c.channels.muteChannel({ channelId, mutedUntil: timestampFromMs(Date.UTC(9999, 0, 1)) })],
      ["pin", () => member.c.channels.pinChannel({ channelId, pinned: true })],
      ["archive", () => member.c.channels.archiveChannel({ channelId, archived: true })],
      ["mark unread", () => member.c.channels.markUnread({ channelId, unread: true })],
    ];
    for (const [what, set] of setters) {
      // Removed after the call saw the membership, before it wrote the setting.
      beforeSetting = async () => void (await owner.c.channels.removeMember({ channelId, userId: member.userId }));
      const refused = await rpcError(set);
      assert.deepEqual([refused.code, refused.chatCode], [Code.PermissionDenied, "ERROR_CODE_NOT_A_MEMBER"], what);
      await owner.c.channels.addMembers({ channelId, userIds: [member.userId] });
      const back = (await member.c.channels.describeChannel({ channelId })).channel!;
      assert.deepEqual([back.mutedUntil, back.pinnedAt, back.archived, back.markedUnread], [undefined, undefined, false, false], what);
      assert.equal((await store.listMutes(member.userId)).size + (await store.listPlaces(member.userId)).size, 0, what);
    }
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

  /**
   * Restarts the api on a channel store that waits a moment before each call,
   * as a remote engine does, so concurrent requests interleave; `beforeWrite`
   * runs once, just before the next change reaches the store.
   */
  async function restartOnHookedStore() {
    await api.close();
    const hooks: { beforeWrite?: () => Promise<unknown> } = {};
    let real!: ChannelStore;
    // The changes a hook makes stand for another api process's: they wait for no turn of this one's.
    let hooking = false;
    const channels = new Proxy({} as ChannelStore, {
      get(_, key: keyof ChannelStore) {
        const f = (real[key] as (...a: unknown[]) => Promise<unknown>).bind(real);
        if (key === "changeInTurn") return (channelId: bigint, work: () => Promise<unknown>) => (hooking ? work() : f(channelId, work));
        return async (...args: unknown[]) => {
          await new Promise((r) => setTimeout(r, Math.random() * 2));
          if (["removeMember", "setRole", "addMembers", "updateTitle", "setInviteCode", "claimInviteCode"].includes(key)) {
            const hook = hooks.beforeWrite;
            hooks.beforeWrite = undefined;
            if (hook) {
              hooking = true;
              try {
                await hook();
              } finally {
                hooking = false;
              }
            }
          }
          return f(...args);
        };
      },
    });
    api = await TestApi.start({ channels });
    real = api.storage.channels;
    return { real, hooks };
  }

  it("the owner and the heir leaving at once leave exactly one owner among those who stay", async () => {
    await restartOnHookedStore();
    const [owner, heir, m1, m2] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    for (let round = 0; round < 20; round++) {
      const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [m1!.userId, m2!.userId, heir!.userId] })).channel!.channelId;
      await owner!.c.channels.setMemberRole({ channelId, userId: heir!.userId, role: MemberRole.ADMIN });
      await Promise.all([owner!.c.channels.leaveGroup({ channelId }), heir!.c.channels.leaveGroup({ channelId })]);
      const members = (await m1!.c.channels.listMembers({ channelId })).members;
      assert.deepEqual(members.map((m) => m.userId), [m1!.userId, m2!.userId], `round ${round}`);
      assert.deepEqual(members.filter((m) => m.role === MemberRole.OWNER).map((m) => m.userId), [m1!.userId], `round ${round}`);
    }
  });

  it("checks the caller's role as it is when the change is made, not as an earlier read saw it", async () => {
    const { real, hooks } = await restartOnHookedStore();
    const [owner, admin, m1, m2] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [admin!.userId, m1!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    const roles = async () => (await m1!.c.channels.listMembers({ channelId })).members.map((m) => [m.userId, m.role]);

    // The owner demotes the admin while the admin's removal of m1 is under way.
    hooks.beforeWrite = () => real.setRole(channelId, admin!.userId, "member");
    const removal = await rpcError(() => admin!.c.channels.removeMember({ channelId, userId: m1!.userId }));
    assert.equal(removal.chatCode, "ERROR_CODE_PERMISSION_DENIED");
    assert.deepEqual(await roles(), [[owner!.userId, MemberRole.OWNER], [admin!.userId, MemberRole.MEMBER], [m1!.userId, MemberRole.MEMBER]]);

    // The same for adding members and renaming, each with a fresh demotion.
    for (const call of [
      () => admin!.c.channels.addMembers({ channelId, userIds: [m2!.userId] }),
      () => admin!.c.channels.updateGroup({ channelId, title: "renamed" }),
    ]) {
      await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
      hooks.beforeWrite = () => real.setRole(channelId, admin!.userId, "member");
      assert.equal((await rpcError(call)).chatCode, "ERROR_CODE_PERMISSION_DENIED");
    }
    const g = (await m1!.c.channels.describeChannel({ channelId })).channel!;
    assert.deepEqual([g.title, g.memberCount], ["g", 3]);

    // The owner leaves (ownership passes on) while its role change is under way.
    hooks.beforeWrite = () => real.removeMember(channelId, owner!.userId);
    const change = await rpcError(() => owner!.c.channels.setMemberRole({ channelId, userId: m1!.userId, role: MemberRole.ADMIN }));
    assert.equal(change.code, Code.PermissionDenied);
    assert.deepEqual(await roles(), [[admin!.userId, MemberRole.OWNER], [m1!.userId, MemberRole.MEMBER]]);
  });

  it("lets no admin removed or demoted while asking reset, revoke or learn the invite link", async () => {
    const { real, hooks } = await restartOnHookedStore();
    const [owner, admin, m1, outsider] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [admin!.userId, m1!.userId] })).channel!.channelId;
    const promote = () => owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    await promote();
    const first = (await owner!.c.channels.getInviteLink({ channelId })).code;
    const lockout = "L".repeat(22);

    // The admin resets the link; meanwhile the owner removes them and resets it to lock them out.
    hooks.beforeWrite = async () => {
      await real.removeMember(channelId, admin!.userId);
      await real.setInviteCode(channelId, lockout);
    };
    assert.equal((await rpcError(() => admin!.c.channels.getInviteLink({ channelId, reset: true }))).chatCode, "ERROR_CODE_NOT_A_MEMBER");
    assert.equal(await real.inviteCodeOf(channelId), lockout, "the owner's reset stands");
    assert.equal((await rpcError(() => admin!.c.channels.joinByInvite({ code: first }))).code, Code.NotFound);

    // Back in and an admin again, then demoted while revoking, and while asking for the link.
    await owner!.c.channels.addMembers({ channelId, userIds: [admin!.userId] });
    await promote();
    hooks.beforeWrite = () => real.setRole(channelId, admin!.userId, "member");
    assert.equal((await rpcError(() => admin!.c.channels.revokeInviteLink({ channelId }))).chatCode, "ERROR_CODE_PERMISSION_DENIED");
    assert.equal(await real.inviteCodeOf(channelId), lockout);
    await promote();
    const fresh = "F".repeat(22);
    hooks.beforeWrite = async () => {
      await real.setRole(channelId, admin!.userId, "member");
      await real.setInviteCode(channelId, fresh);
    };
    assert.equal((await rpcError(() => admin!.c.channels.getInviteLink({ channelId }))).chatCode, "ERROR_CODE_PERMISSION_DENIED");
    // A group with no link: a refused claim makes none.
    await promote();
    await owner!.c.channels.revokeInviteLink({ channelId });
    hooks.beforeWrite = () => real.removeMember(channelId, admin!.userId);
    assert.equal((await rpcError(() => admin!.c.channels.getInviteLink({ channelId }))).chatCode, "ERROR_CODE_NOT_A_MEMBER");
    assert.equal(await real.inviteCodeOf(channelId), undefined);
    assert.deepEqual((await m1!.c.channels.listMembers({ channelId })).members.map((m) => m.userId), [owner!.userId, m1!.userId]);
    assert.equal((await rpcError(() => outsider!.c.channels.getInviteLink({ channelId }))).code, Code.PermissionDenied);
  });

  it("refuses a join whose invite link is reset or revoked while the join is under way", async () => {
    const { real, hooks } = await restartOnHookedStore();
    const [owner, joiner] = await Promise.all([1, 2].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [] })).channel!.channelId;
    const first = (await owner!.c.channels.getInviteLink({ channelId })).code;
    const framesBefore = api.sessions.framesOf("channel").length;

    let second = "";
    hooks.beforeWrite = async () => (second = (await owner!.c.channels.getInviteLink({ channelId, reset: true })).code);
    const reset = await rpcError(() => joiner!.c.channels.joinByInvite({ code: first }));
    assert.equal(reset.code, Code.NotFound);
    assert.match(reset.rawMessage, /this invite link does not work/);
    assert.notEqual(second, "");

    hooks.beforeWrite = () => owner!.c.channels.revokeInviteLink({ channelId });
    assert.equal((await rpcError(() => joiner!.c.channels.joinByInvite({ code: second }))).code, Code.NotFound);

    assert.deepEqual((await owner!.c.channels.listMembers({ channelId })).members.map((m) => m.userId), [owner!.userId]);
    assert.deepEqual((await owner!.c.messages.listMessages({ channelId })).messages, [], "no note of a join");
    assert.equal(api.sessions.framesOf("channel").length, framesBefore, "nobody is told of a join");
    // The link of the moment still lets the joiner in.
    const third = (await owner!.c.channels.getInviteLink({ channelId })).code;
    assert.equal((await joiner!.c.channels.joinByInvite({ code: third })).channel!.memberCount, 2);
    assert.equal(await real.memberCount(channelId), 2);
  });

  it("keeps one a manager removed from coming back by the invite link until a manager adds them back; one who left comes back", async () => {
    const [owner, admin, removed, leaver] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [admin!.userId, removed!.userId, leaver!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    const { code } = await owner!.c.channels.getInviteLink({ channelId });
    await admin!.c.channels.removeMember({ channelId, userId: removed!.userId });
    await leaver!.c.channels.leaveGroup({ channelId });
    const [notes, events] = [(await owner!.c.messages.listMessages({ channelId })).messages.length, api.sessions.framesOf("channel").length];

    // Refused with a reason, the preview too: the join it offers would be refused.
    for (const call of [() => removed!.c.channels.joinByInvite({ code }), () => removed!.c.channels.describeInvite({ code })]) {
      const err = await rpcError(call);
      assert.deepEqual([err.code, err.chatCode], [Code.PermissionDenied, "ERROR_CODE_PERMISSION_DENIED"]);
      assert.match(err.rawMessage, /an admin removed you from this group.*an admin must add you back/);
    }
    assert.deepEqual([(await owner!.c.messages.listMessages({ channelId })).messages.length, api.sessions.framesOf("channel").length], [notes, events], "no note, no event");
    // One who left by themselves comes back by the link, as before.
    assert.equal((await leaver!.c.channels.describeInvite({ code })).title, "g");
    assert.equal((await leaver!.c.channels.joinByInvite({ code })).channel!.memberCount, 3);

    // Added back by a manager, the removed one is a member like any other: one who then leaves comes back by the link.
    await owner!.c.channels.addMembers({ channelId, userIds: [removed!.userId] });
    await removed!.c.channels.leaveGroup({ channelId });
    assert.equal((await removed!.c.channels.joinByInvite({ code })).channel!.memberCount, 4);
    assert.deepEqual((await owner!.c.channels.listMembers({ channelId })).members.map((m) => m.userId),
      [owner!.userId, admin!.userId, leaver!.userId, removed!.userId]);
  });

  it("refuses a join by link of one a manager added back and removed again while the join was under way", async () => {
    const { real, hooks } = await restartOnHookedStore();
    const [owner, x] = await Promise.all([1, 2].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [x!.userId] })).channel!.channelId;
    const { code } = await owner!.c.channels.getInviteLink({ channelId });
    await x!.c.channels.leaveGroup({ channelId });
    // x's join found x out and unbarred; before its add lands, the owner adds x back and removes them.
    hooks.beforeWrite = async () => {
      await owner!.c.channels.addMembers({ channelId, userIds: [x!.userId] });
      await owner!.c.channels.removeMember({ channelId, userId: x!.userId });
    };
    assert.equal((await rpcError(() => x!.c.channels.joinByInvite({ code }))).code, Code.PermissionDenied);
    assert.equal(await real.getMember(channelId, x!.userId), undefined);
    assert.equal(await real.memberCount(channelId), 1);
  });

  it("renames a group to the title it has as a success that tells nobody and writes nothing", async () => {
    const [owner, m1] = [await api.signUp(), await api.signUp()];
    const channelId = (await owner.c.channels.createGroup({ title: "same", memberUserIds: [m1.userId] })).channel!.channelId;
    const events = api.sessions.framesOf("channel").length;
    const again = (await owner.c.channels.updateGroup({ channelId, title: "same" })).channel!;
    assert.equal(again.title, "same");
    assert.equal(api.sessions.framesOf("channel").length, events, "no member's devices are told of a rename that changes nothing");
    // A plain member is still refused, same title or not.
    assert.equal((await rpcError(() => m1.c.channels.updateGroup({ channelId, title: "same" }))).code, Code.PermissionDenied);
    await owner.c.channels.updateGroup({ channelId, title: "other" });
    const told = api.sessions.framesOf("channel").slice(events);
    assert.deepEqual(told.map((f) => f.userIds.sort()), [[owner.userId, m1.userId].sort()], "a real rename is told to every member");
  });

  it("writes a note of each change to a group into its history, for its members of the moment", async () => {
    const [owner, admin, m1, m2] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [admin!.userId, m1!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    await admin!.c.channels.addMembers({ channelId, userIds: [m2!.userId] });
    await admin!.c.channels.updateGroup({ channelId, title: "renamed" });
    await admin!.c.channels.updateGroup({ channelId, title: "renamed" }); // unchanged: no note
    await send(m1!, channelId, "hello");
    await admin!.c.channels.removeMember({ channelId, userId: m2!.userId });
    await owner!.c.channels.leaveGroup({ channelId });

    const shown = (m: Message) =>
      m.note ? [m.seq, m.senderUserId, ChannelNoteKind[m.note.kind], m.note.userIds, m.note.title, MemberRole[m.note.role]] : [m.seq, m.senderUserId, m.text];
    const history = (await m1!.c.messages.listMessages({ channelId })).messages.reverse();
    // Creating the group wrote none: the group appearing, titled, with its members, tells it.
    assert.deepEqual(history.map(shown), [
      [1n, owner!.userId, "ROLE_CHANGED", [admin!.userId], "", "ADMIN"],
      [2n, admin!.userId, "MEMBERS_ADDED", [m2!.userId], "", "UNSPECIFIED"],
      [3n, admin!.userId, "TITLE_CHANGED", [], "renamed", "UNSPECIFIED"],
      [4n, m1!.userId, "hello"],
      [5n, admin!.userId, "MEMBER_REMOVED", [m2!.userId], "", "UNSPECIFIED"],
      // The owner left; the admin, the longest-serving of those left, owns it now.
      [6n, owner!.userId, "MEMBER_LEFT", [admin!.userId], "", "UNSPECIFIED"],
    ]);
    assert.ok(history.every((m) => m.text === "" || !m.note), "a note has no text");

    // Each inbox holds the notes of the time its user was a member: m2 saw none after being removed.
    const inboxOf = async (u: TestUser) => (await api.storage.inbox.readAfter(u.userId, 0n, 100)).map((e) => e.message.seq);
    assert.deepEqual(await inboxOf(m2!), [2n, 3n, 4n]);
    assert.deepEqual(await inboxOf(owner!), [1n, 2n, 3n, 4n, 5n]);
    assert.deepEqual(await inboxOf(admin!), [1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it("a chat a message brought back from the archive stays in the list when it is muted afterwards", async () => {
    const me = await api.signUp();
    const peer = await api.signUp();
    const dm = (await me.c.channels.openDirect({ userId: peer.userId })).channel!.channelId;
    await send(peer, dm, "first");
    api.clock.ms += 1000;
    await me.c.channels.archiveChannel({ channelId: dm, archived: true });
    api.clock.ms += 1000;
    await send(peer, dm, "are you there?");
    const listed = async (archived: boolean) => (await me.c.channels.listChannels({ archived })).channels.map((c) => c.channelId);
    assert.deepEqual(await listed(false), [dm], "back by itself with the message");

    const muted = (await me.c.channels.muteChannel({ channelId: dm, mutedUntil: timestampFromMs(Date.UTC(9999, 0, 1)) })).channel!;
    assert.equal(muted.archived, false, "the mute's answer");
    assert.deepEqual([await listed(false), await listed(true)], [[dm], []]);
    api.clock.ms += 1000;
    await send(peer, dm, "still here");
    assert.deepEqual([await listed(false), await listed(true)], [[dm], []], "a later message changes nothing");

    // Archived again while muted, it stays put away through new messages, as before.
    api.clock.ms += 1000;
    await me.c.channels.archiveChannel({ channelId: dm, archived: true });
    api.clock.ms += 1000;
    await send(peer, dm, "quiet");
    assert.deepEqual([await listed(false), await listed(true)], [[], [dm]]);
  });

  it("pins chats at the top and archives them out of the list; a message brings an archived chat back unless it is muted", async () => {
    const me = await api.signUp();
    const peers = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const [dmB, dmC, dmD] = await Promise.all(peers.map(async (p) => (await me.c.channels.openDirect({ userId: p!.userId })).channel!.channelId));
    for (const [i, dm] of [dmB, dmC, dmD].entries()) {
      api.clock.ms += 1000;
      await send(peers[i]!, dm!, `hello ${i}`);
    }
    const list = async (archived = false) => (await me.c.channels.listChannels({ archived })).channels.map((c) => c.channelId);
    const paged = async (archived = false) => {
      const ids: Id[] = [];
      let pageToken = "";
      do {
        const page = await me.c.channels.listChannels({ archived, limit: 1, pageToken });
        ids.push(...page.channels.map((c) => c.channelId));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return ids;
    };
    assert.deepEqual(await list(), [dmD, dmC, dmB]);

    api.clock.ms += 1000;
    const pinnedB = (await me.c.channels.pinChannel({ channelId: dmB!, pinned: true })).channel!;
    assert.equal(timestampMs(pinnedB.pinnedAt!), api.clock.ms);
    api.clock.ms += 1000;
    await me.c.channels.pinChannel({ channelId: dmC!, pinned: true });
    api.clock.ms += 1000;
    await me.c.channels.pinChannel({ channelId: dmB!, pinned: true }); // again: keeps its place
    assert.deepEqual(await list(), [dmC, dmB, dmD], "the most recently pinned first, then by activity");
    assert.deepEqual(await paged(), [dmC, dmB, dmD], "pages follow the same order");

    api.clock.ms += 1000;
    await me.c.channels.archiveChannel({ channelId: dmD!, archived: true });
    const archivedC = (await me.c.channels.archiveChannel({ channelId: dmC!, archived: true })).channel!;
    assert.deepEqual([archivedC.archived, archivedC.pinnedAt], [true, undefined], "archiving unpins");
    assert.deepEqual(await list(), [dmB]);
    assert.deepEqual(await list(true), [dmD, dmC]);
    assert.deepEqual(await paged(true), [dmD, dmC]);

    // A message brings an archived chat back; a muted one stays archived.
    await me.c.channels.muteChannel({ channelId: dmC!, mutedUntil: timestampFromMs(Date.UTC(9999, 0, 1)) });
    api.clock.ms += 1000;
    await send(peers[2]!, dmD!, "back?");
    api.clock.ms += 1000;
    await send(peers[1]!, dmC!, "still quiet");
    assert.deepEqual(await list(), [dmB, dmD]);
    assert.deepEqual(await list(true), [dmC]);
    assert.equal((await me.c.channels.describeChannel({ channelId: dmD! })).channel!.archived, false);
    assert.equal((await me.c.channels.describeChannel({ channelId: dmC! })).channel!.archived, true);
    await me.c.channels.archiveChannel({ channelId: dmC!, archived: false });
    assert.deepEqual(await list(), [dmB, dmC, dmD]);
    assert.deepEqual(await list(true), []);

    // Unarchiving a chat that is not archived keeps its pin.
    await me.c.channels.pinChannel({ channelId: dmB!, pinned: true });
    assert.notEqual((await me.c.channels.archiveChannel({ channelId: dmB!, archived: false })).channel!.pinnedAt, undefined);

    // At most five pinned; unpinning makes room. A pin left on a chat the user is no longer in does not count.
    await api.storage.channels.changePlace(me.userId, 4242n, { pinnedAtMs: api.clock.ms });
    const groups = await Promise.all([1, 2, 3, 4].map(async (n) => (await me.c.channels.createGroup({ title: `g${n}`, memberUserIds: [] })).channel!.channelId));
    for (const g of groups) await me.c.channels.pinChannel({ channelId: g, pinned: true });
    const sixth = await rpcError(() => me.c.channels.pinChannel({ channelId: dmC!, pinned: true }));
    // A limit the caller's own pins reach, not a bad field: clients branch on LIMIT_REACHED, as for friends.
    assert.deepEqual([sixth.code, sixth.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.match(sixth.rawMessage, /at most 5 chats can be pinned/);
    await me.c.channels.pinChannel({ channelId: dmB!, pinned: false });
    await me.c.channels.pinChannel({ channelId: dmC!, pinned: true });

    // Leaving a group forgets its place: back in it, it is not pinned.
    const owner = peers[0]!;
    const g = (await owner.c.channels.createGroup({ title: "in and out", memberUserIds: [me.userId] })).channel!.channelId;
    await me.c.channels.pinChannel({ channelId: groups[0]!, pinned: false });
    await me.c.channels.pinChannel({ channelId: g, pinned: true });
    await me.c.channels.leaveGroup({ channelId: g });
    await owner.c.channels.addMembers({ channelId: g, userIds: [me.userId] });
    assert.equal((await me.c.channels.describeChannel({ channelId: g })).channel!.pinnedAt, undefined);
    // Every answer that returns the chat to its user carries their settings.
    assert.notEqual((await me.c.channels.openDirect({ userId: peers[1]!.userId })).channel!.pinnedAt, undefined);
    assert.notEqual((await me.c.channels.updateGroup({ channelId: groups[1]!, title: "renamed" })).channel!.pinnedAt, undefined);
    // A pin is the pinner's alone: the other side of the chat sees none.
    assert.notEqual((await me.c.channels.describeChannel({ channelId: dmC! })).channel!.pinnedAt, undefined);
    assert.equal((await peers[1]!.c.channels.describeChannel({ channelId: dmC! })).channel!.pinnedAt, undefined);
  });

  it("lets anyone with a group's invite link join it, until the link is reset or revoked; only its managers see the link", async () => {
    const [owner, admin, member, joiner, late] = await Promise.all([1, 2, 3, 4, 5].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "open", memberUserIds: [admin!.userId, member!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    const { code } = await admin!.c.channels.getInviteLink({ channelId });
    assert.match(code, /^[A-Za-z0-9_-]{22}$/);
    assert.equal((await owner!.c.channels.getInviteLink({ channelId })).code, code, "asked again, the same link");
    assert.equal((await rpcError(() => member!.c.channels.getInviteLink({ channelId }))).code, Code.PermissionDenied);
    assert.equal((await rpcError(() => joiner!.c.channels.getInviteLink({ channelId }))).code, Code.PermissionDenied);

    assert.deepEqual(await joiner!.c.channels.describeInvite({ code }), { $typeName: "chat.v1.DescribeInviteResponse", channelId, title: "open", memberCount: 3, member: false });
    const joined = (await joiner!.c.channels.joinByInvite({ code })).channel!;
    assert.deepEqual([joined.channelId, joined.memberCount, joined.myRole], [channelId, 4, MemberRole.MEMBER]);
    assert.equal((await joiner!.c.channels.joinByInvite({ code })).channel!.memberCount, 4, "joining again changes nothing");
    assert.equal((await joiner!.c.channels.describeInvite({ code })).member, true);
    const note = (await owner!.c.messages.listMessages({ channelId, limit: 1 })).messages[0]!;
    assert.deepEqual([note.senderUserId, note.note?.kind], [joiner!.userId, ChannelNoteKind.JOINED_BY_INVITE]);
    const events = api.sessions.framesOf("channel").filter((p) => p.frame.kind.case === "channel" && p.frame.kind.value.userId === joiner!.userId);
    assert.ok(events.some((p) => p.userIds.includes(owner!.userId)), "the members are told live");

    // A reset link stops working; a revoked one too.
    const reset = (await owner!.c.channels.getInviteLink({ channelId, reset: true })).code;
    assert.notEqual(reset, code);
    for (const call of [() => late!.c.channels.describeInvite({ code }), () => late!.c.channels.joinByInvite({ code })]) {
      const err = await rpcError(call);
      assert.equal(err.code, Code.NotFound);
      assert.match(err.rawMessage, /this invite link does not work/);
    }
    await admin!.c.channels.revokeInviteLink({ channelId });
    assert.equal((await rpcError(() => late!.c.channels.joinByInvite({ code: reset }))).code, Code.NotFound);
    assert.equal((await rpcError(() => late!.c.channels.joinByInvite({ code: "short" }))).code, Code.InvalidArgument);
    assert.equal((await member!.c.channels.describeChannel({ channelId })).channel!.memberCount, 4);
  });

  it("lets nobody in by the link of a group everyone has left", async () => {
    const [a, b, stranger] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const channelId = (await a!.c.channels.createGroup({ title: "private", memberUserIds: [b!.userId] })).channel!.channelId;
    await send(a!, channelId, "private words");
    const { code } = await a!.c.channels.getInviteLink({ channelId });
    await a!.c.channels.leaveGroup({ channelId });
    await b!.c.channels.leaveGroup({ channelId });
    for (const call of [() => stranger!.c.channels.describeInvite({ code }), () => stranger!.c.channels.joinByInvite({ code })]) {
      assert.equal((await rpcError(call)).code, Code.NotFound);
    }
    assert.equal(await api.storage.channels.inviteCodeOf(channelId), undefined, "the last one out took the link along");
    // Even with a code left behind (a leave that failed half-way), the store's own check refuses the join.
    await api.storage.channels.setInviteCode(channelId, code);
    assert.equal((await rpcError(() => stranger!.c.channels.joinByInvite({ code }))).code, Code.NotFound);
    assert.equal(await api.storage.channels.memberCount(channelId), 0);
  });

  it("refuses a join by invite link to a full group with group_full", async () => {
    const owner = await api.signUp();
    const others = await Promise.all([...Array(99).keys()].map(() => api.signUp()));
    const channelId = (await owner.c.channels.createGroup({ title: "full", memberUserIds: others.map((u) => u.userId) })).channel!.channelId;
    const { code } = await owner.c.channels.getInviteLink({ channelId });
    const late = await api.signUp();
    assert.equal((await rpcError(() => late.c.channels.joinByInvite({ code }))).chatCode, "ERROR_CODE_GROUP_FULL");
  });

  it("does not count the user's own messages as unread", async () => {
    const [a, b] = await Promise.all([1, 2].map(() => api.signUp()));
    const group = (await a!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
    await send(a!, group, "one");
    api.clock.ms += 1;
    await send(a!, group, "two");
    const unread = async (u: TestUser) => {
      const ch = (await u.c.channels.describeChannel({ channelId: group })).channel!;
      return [ch.unreadCount, ch.readSeq];
    };
    assert.deepEqual(await unread(a!), [0n, 2n]);
    assert.deepEqual(await unread(b!), [2n, 0n]);
    assert.deepEqual((await a!.c.channels.listChannels({})).channels.map((ch) => ch.unreadCount), [0n]);

    // b replies: a's own two stay read, only the reply is unread.
    await send(b!, group, "three");
    assert.deepEqual(await unread(a!), [1n, 2n]);
    // a writes between b's messages: only what came after a's newest counts.
    await send(b!, group, "four");
    await send(a!, group, "five");
    await send(b!, group, "six");
    await send(b!, group, "seven");
    assert.deepEqual(await unread(a!), [2n, 5n]);
    assert.deepEqual((await a!.c.channels.listChannels({})).channels.map((ch) => [ch.unreadCount, ch.readSeq]), [[2n, 5n]]);
    // b sent the newest: nothing unread for b.
    assert.deepEqual(await unread(b!), [0n, 7n]);
  });

  it("a member added to a group starts with its earlier history read", async () => {
    const [owner, b, late] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
    for (const text of ["one", "two", "three"]) {
      await send(b!, channelId, text);
      api.clock.ms += 1;
    }
    await owner!.c.channels.addMembers({ channelId, userIds: [late!.userId] });
    const view = async () => (await late!.c.channels.describeChannel({ channelId })).channel!;
    // The history before them is read, and so is the note of adding them: it tells them nothing they missed.
    assert.deepEqual([(await view()).unreadCount, (await view()).readSeq], [0n, 4n]);
    await send(b!, channelId, "four");
    assert.deepEqual([(await view()).unreadCount, (await view()).readSeq], [1n, 4n]);
  });

  it("answers a join by link with the chat as the joiner's list then shows it: their own note is not unread", async () => {
    const [owner, b, joiner] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
    await send(b!, channelId, "one");
    const { code } = await owner!.c.channels.getInviteLink({ channelId });
    const answer = (await joiner!.c.channels.joinByInvite({ code })).channel!;
    const listed = (await joiner!.c.channels.listChannels({})).channels.find((ch) => ch.channelId === channelId)!;
    assert.deepEqual([listed.lastSeq, listed.unreadCount, listed.readSeq], [2n, 0n, 2n]);
    assert.deepEqual([answer.lastSeq, answer.unreadCount, answer.readSeq], [listed.lastSeq, listed.unreadCount, listed.readSeq]);
  });

  /**
   * Runs `change` the moment the next read of the log's newest messages has answered, before its answer is used:
   * awaited when that read runs outside the channel's turn, only started (and returned) when inside it, since the
   * change waits for that turn.
   */
  function changeAfterNextLatestRead(channelId: Id, change: () => Promise<unknown>): { done: Promise<unknown> } {
    const log = api.deps.log;
    const out: { done: Promise<unknown> } = { done: Promise.resolve() };
    const turns = (api.storage.channels as unknown as { turns: { holds(id: Id): boolean } }).turns;
    (api.deps as { log: MessageLog }).log = Object.assign(Object.create(log) as MessageLog, {
      latest: async (ids: readonly Id[]) => {
        const answer = await log.latest(ids);
        (api.deps as { log: MessageLog }).log = log;
        out.done = change();
        if (!turns.holds(channelId)) await out.done;
        return answer;
      },
    });
    return out;
  }

  for (const how of ["added", "joined by link"] as const) {
    it(`counts a change landing as a member is ${how} as theirs to read only when its note follows their join`, async () => {
      const [owner, b, late] = await Promise.all([1, 2, 3].map(() => api.signUp()));
      const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
      await owner!.c.channels.setMemberRole({ channelId, userId: b!.userId, role: MemberRole.ADMIN });
      const code = (await owner!.c.channels.getInviteLink({ channelId })).code;
      const raced = changeAfterNextLatestRead(channelId, () => b!.c.channels.updateGroup({ channelId, title: "renamed" }));
      if (how === "added") await owner!.c.channels.addMembers({ channelId, userIds: [late!.userId] });
      else await late!.c.channels.joinByInvite({ code });
      await raced.done;
      const history = (await owner!.c.messages.listMessages({ channelId })).messages;
      const joinNote = history.find((m) => m.note?.kind === (how === "added" ? ChannelNoteKind.MEMBERS_ADDED : ChannelNoteKind.JOINED_BY_INVITE))!;
      const ch = (await late!.c.channels.describeChannel({ channelId })).channel!;
      // Everything after the note of their join is theirs to read, nothing before it, nor the note.
      assert.equal(ch.unreadCount, ch.lastSeq - joinNote.seq);
      assert.equal(ch.readSeq, joinNote.seq);
    });
  }

  it("counts nothing up to a join by link's note as unread, a message sequenced between the join and it included, and ListMembers shows it unread", async () => {
    const [owner, b, joiner] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
    const code = (await owner!.c.channels.getInviteLink({ channelId })).code;
    const before = (await owner!.c.channels.describeChannel({ channelId })).channel!.lastSeq;
    // b's message lands once the joiner is in, before the note of their join.
    const store = api.storage.channels;
    const add = store.addMembers.bind(store);
    store.addMembers = async (...args) => {
      const added = await add(...args);
      store.addMembers = add;
      await send(b!, channelId, "while you join");
      return added;
    };
    await joiner!.c.channels.joinByInvite({ code });
    const history = (await owner!.c.messages.listMessages({ channelId })).messages.reverse();
    assert.deepEqual(history.filter((m) => m.seq > before).map((m) => [m.text, m.note?.kind]), [["while you join", undefined], ["", ChannelNoteKind.JOINED_BY_INVITE]]);
    const listed = async () => (await joiner!.c.channels.listChannels({})).channels.find((ch) => ch.channelId === channelId)!;
    const described = async () => (await joiner!.c.channels.describeChannel({ channelId })).channel!;
    const membersRead = async () => (await owner!.c.channels.listMembers({ channelId })).members.find((m) => m.userId === joiner!.userId)!.readSeq;
    // b's message shows above the note of their join, as what came before them: neither is theirs to catch up on.
    for (const ch of [await listed(), await described()]) assert.deepEqual([ch.unreadCount, ch.readSeq], [0n, before + 2n]);
    // Others are shown what they read, not where they joined: nothing.
    assert.equal(await membersRead(), 0n);
    // What comes after the note is unread.
    await send(owner!, channelId, "welcome");
    for (const ch of [await listed(), await described()]) assert.deepEqual([ch.unreadCount, ch.readSeq], [1n, before + 2n]);
    assert.equal(await membersRead(), 0n);
  });

  it("shows nobody added or joined by link as having seen what they never read", async () => {
    const [owner, b, added, joiner] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [b!.userId] })).channel!.channelId;
    await send(owner!, channelId, "anyone seen this?");
    await owner!.c.channels.addMembers({ channelId, userIds: [added!.userId] });
    const code = (await owner!.c.channels.getInviteLink({ channelId })).code;
    await joiner!.c.channels.joinByInvite({ code });
    const readBy = async () =>
      new Map((await owner!.c.channels.listMembers({ channelId })).members.map((m) => [m.userId, m.readSeq]));
    // Like b, who was there all along, neither has read anything: no "seen" under the owner's message. The
    // owner has read their own (1) and the note of their add (2), as their unread count has it; the note of a
    // join (3) is not its joiner's reading of what came before them.
    assert.deepEqual([...(await readBy())].map(([u, seq]) => [u, seq]), [[owner!.userId, 2n], [b!.userId, 0n], [added!.userId, 0n], [joiner!.userId, 0n]]);
    assert.equal((await owner!.c.channels.describeChannel({ channelId })).channel!.readSeq, 2n);
    // Their own view still starts after what came before them, the note of their coming included (ListMembers
    // tells only what they read: the joiner's note is not read as a send is, nor anything before it).
    for (const [u, readSeq] of [[added!, 2n], [joiner!, 3n]] as const) {
      const ch = (await u.c.channels.describeChannel({ channelId })).channel!;
      assert.equal(ch.readSeq, readSeq);
      assert.equal(ch.unreadCount, ch.lastSeq - readSeq);
    }
    // Their receipts move what others see, as anyone's.
    await added!.c.messages.markRead({ channelId, seq: 1n });
    assert.equal((await readBy()).get(added!.userId), 1n);
    // Their own view keeps its floor at the note of their add.
    assert.equal((await added!.c.channels.describeChannel({ channelId })).channel!.readSeq, 2n);
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
    assert.deepEqual(all.channels.map((ch) => ch.unreadCount), [0n, 3n, 0n], "my own message is not unread");
    assert.equal(all.channels[1]!.lastMessage?.text, "three");
    assert.equal(all.channels[1]!.lastSeq, 3n);
    assert.equal(all.channels[1]!.peerUserId, b!.userId);
    assert.equal(all.nextPageToken, "");

    await me.c.messages.markRead({ channelId: dmB, seq: 2n });
    const p1 = await me.c.channels.listChannels({ limit: 2 });
    assert.deepEqual(p1.channels.map((ch) => [ch.channelId, ch.unreadCount, ch.readSeq]), [
      [dmC, 0n, 1n],
      [dmB, 1n, 2n],
    ]);
    assert.notEqual(p1.nextPageToken, "");
    const p2 = await me.c.channels.listChannels({ limit: 2, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.channels.map((ch) => ch.channelId), [group]);
    assert.equal(p2.nextPageToken, "");

    const bad = await rpcError(() => me.c.channels.listChannels({ pageToken: "garbage" }));
    assert.equal(bad.code, Code.InvalidArgument);
  });

  it("reads the newest messages whole only for the chats of the page; when they were sent sorts the list", async () => {
    const me = await api.signUp();
    const groups: Id[] = [];
    for (let i = 0; i < 5; i++) {
      groups.push((await me.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] })).channel!.channelId);
      api.clock.ms += 1000;
      await send(me, groups[i]!, `text ${i}`);
    }
    const log = api.storage.messages;
    const latest = log.latest.bind(log);
    const asked: Id[][] = [];
    log.latest = async (ids) => {
      asked.push([...ids]);
      return latest(ids);
    };
    const p1 = await me.c.channels.listChannels({ limit: 2 });
    assert.deepEqual(p1.channels.map((ch) => [ch.channelId, ch.lastMessage?.text]), [[groups[4], "text 4"], [groups[3], "text 3"]]);
    const p2 = await me.c.channels.listChannels({ limit: 2, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.channels.map((ch) => [ch.channelId, ch.lastMessage?.text]), [[groups[2], "text 2"], [groups[1], "text 1"]]);
    assert.deepEqual(asked, [[groups[4], groups[3]], [groups[2], groups[1]]]);
  });

  it("mutes a channel for the caller alone until a time, shows it, unmutes, and forgets it when the caller leaves", async () => {
    const [me, other] = [await api.signUp(), await api.signUp()];
    const group = (await me.c.channels.createGroup({ title: "busy", memberUserIds: [other.userId] })).channel!.channelId;
    // Ten minutes: the clock moves past it within the access token's lifetime.
    const until = timestampFromMs(api.clock.ms + 600_000);
    const muted = await me.c.channels.muteChannel({ channelId: group, mutedUntil: until });
    assert.deepEqual(muted.channel?.mutedUntil, until);
    assert.deepEqual((await me.c.channels.describeChannel({ channelId: group })).channel?.mutedUntil, until);
    assert.deepEqual((await me.c.channels.listChannels({})).channels[0]?.mutedUntil, until);
    assert.equal((await other.c.channels.describeChannel({ channelId: group })).channel?.mutedUntil, undefined, "the caller's alone");
    assert.equal((await api.storage.channels.listMutes(me.userId)).get(group), api.clock.ms + 600_000);

    api.clock.ms += 600_000;
    assert.equal((await me.c.channels.describeChannel({ channelId: group })).channel?.mutedUntil, undefined, "a mute that ended shows no more");
    await me.c.channels.muteChannel({ channelId: group, mutedUntil: timestampFromMs(api.clock.ms + 60_000) });
    assert.equal((await me.c.channels.muteChannel({ channelId: group })).channel?.mutedUntil, undefined, "no time unmutes");
    assert.equal((await api.storage.channels.listMutes(me.userId)).size, 0);

    await me.c.channels.muteChannel({ channelId: group, mutedUntil: timestampFromMs(Date.UTC(9999, 0, 1)) });
    await me.c.channels.leaveGroup({ channelId: group });
    assert.equal((await api.storage.channels.listMutes(me.userId)).size, 0, "leaving forgets the mute");

    const stranger = await rpcError(() => me.c.channels.muteChannel({ channelId: group, mutedUntil: until }));
    assert.equal(stranger.code, Code.PermissionDenied);
    const farOff = await rpcError(() => other.c.channels.muteChannel({ channelId: group, mutedUntil: { seconds: 1n << 50n, nanos: 0 } }));
    assert.deepEqual([farOff.code, farOff.rawMessage], [Code.InvalidArgument, "muted_until must be before the year 10000"]);
  });

  it("removes someone no longer in a group again as a success that writes no note and tells nobody", async () => {
    const [owner, m1, m2, stranger] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
    const channelId = (await owner.c.channels.createGroup({ title: "g", memberUserIds: [m1.userId, m2.userId] })).channel!.channelId;
    await owner.c.channels.removeMember({ channelId, userId: m1.userId });
    const [events, notes] = [api.sessions.framesOf("channel").length, (await owner.c.messages.listMessages({ channelId })).messages.length];
    await owner.c.channels.removeMember({ channelId, userId: m1.userId }); // a retry
    await owner.c.channels.removeMember({ channelId, userId: stranger.userId });
    assert.equal(api.sessions.framesOf("channel").length, events, "nobody is told");
    assert.equal((await owner.c.messages.listMessages({ channelId })).messages.length, notes, "no note");
    // Only managers may ask, in it or not.
    assert.equal((await rpcError(() => m2.c.channels.removeMember({ channelId, userId: m1.userId }))).code, Code.PermissionDenied);
  });

  it("adds one already in a group, who blocked the adder since, as a success that changes nothing; one not in it who blocked them is refused", async () => {
    const [owner, inside, outside, newcomer] = await Promise.all([1, 2, 3, 4].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [inside!.userId] })).channel!.channelId;
    // A block does not split a group: the one who blocked stays in it.
    await inside!.c.users.blockUser({ userId: owner!.userId });
    await outside!.c.users.blockUser({ userId: owner!.userId });
    const notes = (await owner!.c.messages.listMessages({ channelId })).messages.length;
    await owner!.c.channels.addMembers({ channelId, userIds: [inside!.userId, newcomer!.userId] });
    const members = (await owner!.c.channels.listMembers({ channelId })).members.map((m) => m.userId);
    assert.deepEqual(members, [owner!.userId, inside!.userId, newcomer!.userId]);
    const history = (await owner!.c.messages.listMessages({ channelId })).messages;
    assert.equal(history.length, notes + 1);
    assert.deepEqual(history[0]?.note?.userIds, [newcomer!.userId], "the note names only who was added");
    const refused = await rpcError(() => owner!.c.channels.addMembers({ channelId, userIds: [inside!.userId, outside!.userId] }));
    assert.equal(refused.chatCode, "ERROR_CODE_BLOCKED");
    assert.match(refused.rawMessage, new RegExp(`${outside!.userId}$`), "names only the one it would add");
  });

  it("writes nothing for a mute or an unmute the chat already has", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const dm = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    const until = timestampFromMs(api.clock.ms + 3_600_000);
    await a.c.channels.muteChannel({ channelId: dm, mutedUntil: until });
    const writes: (number | undefined)[] = [];
    const setMute = api.storage.channels.setMute.bind(api.storage.channels);
    api.storage.channels.setMute = (u, c, ms) => (writes.push(ms), setMute(u, c, ms));
    assert.deepEqual((await a.c.channels.muteChannel({ channelId: dm, mutedUntil: until })).channel!.mutedUntil, until);
    await a.c.channels.muteChannel({ channelId: dm });
    assert.equal((await a.c.channels.muteChannel({ channelId: dm })).channel!.mutedUntil, undefined);
    assert.deepEqual(writes, [undefined], "only the unmute that changed something was written");
  });

  it("tells the caller's devices nothing when clearing a history again with nothing new since", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const dm = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    await send(b, dm, "one");
    await a.c.channels.clearHistory({ channelId: dm });
    const events = api.sessions.framesOf("channel").length;
    assert.equal((await a.c.channels.clearHistory({ channelId: dm })).channel!.clearedThroughSeq, 1n);
    assert.equal(api.sessions.framesOf("channel").length, events, "nothing moved: nobody is told");
    await send(b, dm, "two");
    await a.c.channels.clearHistory({ channelId: dm });
    assert.equal(api.sessions.framesOf("channel").length, events + 1, "a clear that moves is told");
  });

  it("clears a chat's history for the caller alone: history, search, the last message and the unread count start after it", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const dm = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    for (let i = 1; i <= 4; i++) await send(b, dm, `lunch ${i}`);
    const events = api.sessions.framesOf("channel").length;

    const cleared = (await a.c.channels.clearHistory({ channelId: dm })).channel!;
    assert.deepEqual([cleared.clearedThroughSeq, cleared.lastSeq, cleared.unreadCount, cleared.lastMessage, cleared.readSeq], [4n, 4n, 0n, undefined, 0n],
      "nothing shown or unread, and nothing read either (no receipt goes to b)");
    const newest = (await b.c.messages.listMessages({ channelId: dm, limit: 1 })).messages[0]!;
    assert.deepEqual(cleared.lastActivityAt, newest.sentAt, "the chat keeps its place in a list by activity");
    const told = api.sessions.framesOf("channel").slice(events);
    assert.deepEqual(told.map((f) => f.userIds), [[a.userId]], "a's other devices are told, b is not");

    assert.deepEqual((await a.c.messages.listMessages({ channelId: dm })).messages, []);
    assert.deepEqual((await a.c.messages.searchMessages({ channelId: dm, query: "lunch" })).messages, []);
    assert.equal((await b.c.messages.listMessages({ channelId: dm })).messages.length, 4, "b keeps all of it");

    await send(b, dm, "lunch 5");
    const later = (await a.c.channels.describeChannel({ channelId: dm })).channel!;
    assert.deepEqual([later.unreadCount, later.lastMessage?.text, later.clearedThroughSeq], [1n, "lunch 5", 4n]);
    assert.deepEqual((await a.c.messages.listMessages({ channelId: dm })).messages.map((m) => m.seq), [5n]);
    const forward = await a.c.messages.listMessages({ channelId: dm, anchorSeq: 1n, direction: PageDirection.FORWARD });
    assert.deepEqual(forward.messages.map((m) => m.seq), [5n]);
    assert.deepEqual((await a.c.messages.searchMessages({ channelId: dm, query: "lunch" })).messages.map((m) => m.seq), [5n]);
    assert.equal((await a.c.channels.listChannels({})).channels[0]!.lastMessage?.text, "lunch 5");

    // Only forward: clearing through an earlier seq keeps what was cleared; through a later one stops at the newest.
    assert.equal((await a.c.channels.clearHistory({ channelId: dm, throughSeq: 2n })).channel!.clearedThroughSeq, 4n);
    assert.equal((await a.c.channels.clearHistory({ channelId: dm, throughSeq: 99n })).channel!.clearedThroughSeq, 5n);

    const stranger = await api.signUp();
    assert.equal((await rpcError(() => stranger.c.channels.clearHistory({ channelId: dm }))).code, Code.PermissionDenied);
    assert.equal((await rpcError(() => a.c.channels.clearHistory({ channelId: 0n }))).code, Code.InvalidArgument);
  });

  it("lists each member's read position, so a client opening a chat shows what the others have seen", async () => {
    const [a, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    const group = (await a.c.channels.createGroup({ title: "seen", memberUserIds: [b.userId, c.userId] })).channel!.channelId;
    const read = async (by = a) => new Map((await by.c.channels.listMembers({ channelId: group })).members.map((m) => [m.userId, m.readSeq]));
    // The owner's first message: read by its sender the moment it is stored, though no receipt of theirs moved anything.
    await send(a, group, "m1");
    assert.deepEqual(await read(b), new Map([[a.userId, 1n], [b.userId, 0n], [c.userId, 0n]]));
    for (let i = 2; i <= 3; i++) await send(a, group, `m${i}`);
    await b.c.messages.markRead({ channelId: group, seq: 2n });
    assert.deepEqual(await read(), new Map([[a.userId, 3n], [b.userId, 2n], [c.userId, 0n]]));
    await c.c.messages.markRead({ channelId: group, seq: 3n });
    assert.equal((await read()).get(c.userId), 3n);
    // A note (a's rename, 4) counts as its actor's reading, as a send does and as a's own unread count has it:
    // a is shown as having read up to it, newest or not; b's message (5) is b's; c's receipt stays ahead of c's own message (6).
    await a.c.channels.updateGroup({ channelId: group, title: "seen again" });
    const own = async () => (await a.c.channels.describeChannel({ channelId: group })).channel!;
    assert.deepEqual([(await own()).readSeq, (await own()).unreadCount, (await read(c)).get(a.userId)], [4n, 0n, 4n]);
    await send(b, group, "m5");
    await send(c, group, "m6");
    assert.deepEqual([(await own()).readSeq, (await own()).unreadCount], [4n, 2n]);
    assert.deepEqual(await read(c), new Map([[a.userId, 4n], [b.userId, 5n], [c.userId, 6n]]));
    await send(a, group, "m7");
    await c.c.messages.markRead({ channelId: group, seq: 7n });
    assert.deepEqual(await read(c), new Map([[a.userId, 7n], [b.userId, 5n], [c.userId, 7n]]));
  });

  it("marks a chat unread for the caller until they take the mark away or read it; a pin or an archiving keeps it; their other devices are told", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const dm = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    await send(b, dm, "hello");
    await a.c.messages.markRead({ channelId: dm, seq: 1n });
    const marked = async () => (await a.c.channels.describeChannel({ channelId: dm })).channel!.markedUnread;
    const events = () => api.sessions.framesOf("channel").filter((f) => f.userIds.length === 1 && f.userIds[0] === a.userId).length;

    let told = events();
    const answer = (await a.c.channels.markUnread({ channelId: dm, unread: true })).channel!;
    assert.deepEqual([answer.markedUnread, answer.unreadCount], [true, 0n], "marked, with nothing unread to count");
    assert.equal(events(), told + 1, "a's other devices are told");
    assert.equal((await a.c.channels.listChannels({})).channels[0]!.markedUnread, true);
    assert.equal((await b.c.channels.describeChannel({ channelId: dm })).channel!.markedUnread, false, "the mark is a's alone");
    told = events();
    await a.c.channels.markUnread({ channelId: dm, unread: true });
    assert.equal(events(), told, "marking again changes nothing, so nobody is told");

    await a.c.channels.pinChannel({ channelId: dm, pinned: true });
    assert.equal(await marked(), true, "pinning keeps the mark");
    await a.c.channels.pinChannel({ channelId: dm, pinned: false });
    await a.c.channels.archiveChannel({ channelId: dm, archived: true });
    assert.equal(await marked(), true, "archiving keeps the mark");
    await a.c.channels.archiveChannel({ channelId: dm, archived: false });
    assert.equal(await marked(), true, "unarchiving keeps the mark");

    const unmarked = (await a.c.channels.markUnread({ channelId: dm, unread: false })).channel!;
    assert.equal(unmarked.markedUnread, false);
    await a.c.channels.markUnread({ channelId: dm, unread: true });
    await a.c.channels.pinChannel({ channelId: dm, pinned: true });
    told = events();
    await a.c.messages.markRead({ channelId: dm, seq: 1n });
    assert.deepEqual([await marked(), events()], [false, told + 1], "reading takes the mark away and tells a's other devices");
    assert.notEqual((await a.c.channels.describeChannel({ channelId: dm })).channel!.pinnedAt, undefined, "and keeps the pin");

    const stranger = await api.signUp();
    assert.equal((await rpcError(() => stranger.c.channels.markUnread({ channelId: dm, unread: true }))).code, Code.PermissionDenied);
  });

  it("keeps both of two settings changed at once from two devices: a pin and an unread mark", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    const dm = (await a.c.channels.openDirect({ userId: b.userId })).channel!.channelId;
    const store = api.storage.channels;
    // Neither request goes on past reading the caller's places until both have read them: each then writes from a place without the other's change.
    const readPlaces = store.listPlaces.bind(store);
    let arrived = 0;
    let bothRead!: () => void;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    store.listPlaces = async (userId) => {
      const places = await readPlaces(userId);
      if (++arrived === 2) bothRead();
      await barrier;
      return places;
    };
    try {
      await Promise.all([a.c.channels.pinChannel({ channelId: dm, pinned: true }), a.c.channels.markUnread({ channelId: dm, unread: true })]);
    } finally {
      store.listPlaces = readPlaces;
    }
    const seen = (await a.c.channels.describeChannel({ channelId: dm })).channel!;
    assert.deepEqual([seen.pinnedAt !== undefined, seen.markedUnread], [true, true]);
  });

  it("answers AddMembers with the group as the caller has it: their mute, pin and unread mark", async () => {
    const [owner, a, b] = await Promise.all([1, 2, 3].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [a!.userId] })).channel!.channelId;
    const until = timestampFromMs(api.clock.ms + 600_000);
    await owner!.c.channels.muteChannel({ channelId, mutedUntil: until });
    await owner!.c.channels.pinChannel({ channelId, pinned: true });
    await owner!.c.channels.markUnread({ channelId, unread: true });
    const described = (await owner!.c.channels.describeChannel({ channelId })).channel!;
    const added = (await owner!.c.channels.addMembers({ channelId, userIds: [b!.userId] })).channel!;
    assert.deepEqual(added.mutedUntil, until);
    assert.deepEqual(added.pinnedAt, described.pinnedAt);
    assert.equal(added.markedUnread, true);
    assert.equal(added.memberCount, 3);
  });

  it("tells the title a group has as each change lands: no event of a change asked before a rename carries the old title after the rename's", async () => {
    const [owner, a, b, c, d] = await Promise.all([1, 2, 3, 4, 5].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "old", memberUserIds: [a!.userId, c!.userId] })).channel!.channelId;
    await owner!.c.channels.setMemberRole({ channelId, userId: a!.userId, role: MemberRole.ADMIN });
    const lastTitle = () => {
      const events = api.sessions.framesOf("channel").map((p) => p.frame.kind.value as { channel?: { title: string } });
      return events[events.length - 1]?.channel?.title;
    };
    // Each change is held after its caller's checks, before its turn, while the group is renamed.
    const renamedWhile = async (change: () => Promise<unknown>, held: keyof ChannelStore & string, title: string) => {
      const hold = holdNext(api.storage.channels, held);
      const changing = change();
      await hold.reached;
      await a!.c.channels.updateGroup({ channelId, title });
      hold.release();
      await changing;
      assert.equal(lastTitle(), title);
    };
    await renamedWhile(() => owner!.c.channels.addMembers({ channelId, userIds: [b!.userId] }), "inGroupsAtLeast", "after add");
    await renamedWhile(() => owner!.c.channels.removeMember({ channelId, userId: b!.userId }), "changeInTurn", "after removal");
    await renamedWhile(() => owner!.c.channels.setMemberRole({ channelId, userId: c!.userId, role: MemberRole.ADMIN }), "changeInTurn", "after role");
    await renamedWhile(() => owner!.c.channels.leaveGroup({ channelId }), "changeInTurn", "after leaving");
    const code = (await a!.c.channels.getInviteLink({ channelId })).code;
    await renamedWhile(() => d!.c.channels.joinByInvite({ code }), "inGroupsAtLeast", "after join");
  });

  it("shows nothing of a group to one whose join by link found them in it and who was out again before it answered", async () => {
    const [owner, joiner] = await Promise.all([1, 2].map(() => api.signUp()));
    const channelId = (await owner!.c.channels.createGroup({ title: "g", memberUserIds: [] })).channel!.channelId;
    const { code } = await owner!.c.channels.getInviteLink({ channelId });
    // Two devices join at once: the second finds the joiner in already, and before it answers they are removed.
    const checked = holdNext(api.storage.channels, "inGroupsAtLeast");
    const second = joiner!.c.channels.joinByInvite({ code });
    await checked.reached;
    await joiner!.c.channels.joinByInvite({ code });
    const answering = holdNext(api.storage.channels, "getMember");
    checked.release();
    await answering.reached;
    await owner!.c.channels.removeMember({ channelId, userId: joiner!.userId });
    await send(owner!, channelId, "said after the removal");
    answering.release();
    const err = await rpcError(() => second);
    assert.equal(err.code, Code.PermissionDenied);
    assert.equal(err.chatCode, "ERROR_CODE_NOT_A_MEMBER");
  });
});
