import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { BlockCache } from "../accounts/blocks.js";
import type { AccountStore } from "../accounts/store.js";
import type { Id } from "../model/types.js";
import { FixedPresence, holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

const everyoneOnline = new FixedPresence({ online: true });
const BLOCKED = "ERROR_CODE_BLOCKED";

describe("api: blocking users", () => {
  let api: TestApi;
  afterEach(async () => api.close());

  const friends = async (a: TestUser, b: TestUser) => {
    await a.c.users.sendFriendRequest({ userId: b.userId });
    await b.c.users.sendFriendRequest({ userId: a.userId });
  };
  const statuses = async (viewer: TestUser, ids: Id[]) =>
    (await viewer.c.presence.getPresence({ userIds: ids })).presences.map((p) => p.status);

  it("lists whom the caller blocked, newest first; blocking twice and unblocking a stranger succeed", async () => {
    api = await TestApi.start();
    const [me, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await me.c.users.blockUser({ userId: b.userId });
    api.clock.ms += 1_000;
    await me.c.users.blockUser({ userId: c.userId });
    await me.c.users.blockUser({ userId: b.userId });
    const listed = (await me.c.users.listBlockedUsers({})).blockedUsers;
    assert.deepEqual(listed.map((x) => x.user?.userId), [c.userId, b.userId]);
    assert.equal(Number(listed[1]!.blockedAt!.seconds) * 1000, api.clock.ms - 1_000, "the first block's time is kept");
    assert.deepEqual((await b.c.users.listBlockedUsers({})).blockedUsers, [], "a block is the blocker's alone");

    await me.c.users.unblockUser({ userId: c.userId });
    await me.c.users.unblockUser({ userId: c.userId });
    assert.deepEqual((await me.c.users.listBlockedUsers({})).blockedUsers.map((x) => x.user?.userId), [b.userId]);

    assert.equal((await rpcError(() => me.c.users.blockUser({ userId: me.userId }))).code, Code.InvalidArgument);
    assert.equal((await rpcError(() => me.c.users.blockUser({ userId: 4242n }))).code, Code.NotFound);
    assert.equal((await rpcError(() => me.c.users.unblockUser({ userId: 0n }))).code, Code.InvalidArgument);
  });

  it("refuses a block past maxBlockedPerUser with LIMIT_REACHED, changing nothing; blocking again and unblocking pass", async () => {
    // The list is read whole (ListBlockedUsers), and by every presence audience and group join of the user: it stays bounded.
    api = await TestApi.start({ maxBlockedPerUser: 2 });
    const [me, b, c, d] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
    await friends(me, d);
    await me.c.users.blockUser({ userId: b.userId });
    await me.c.users.blockUser({ userId: c.userId });
    const err = await rpcError(() => me.c.users.blockUser({ userId: d.userId }));
    assert.deepEqual([err.code, err.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.match(err.rawMessage, /you blocked 2 users, the most one can: unblock someone first/);
    assert.deepEqual((await me.c.users.listFriends({})).friends.map((f) => f.userId), [d.userId], "the friendship stands");
    assert.deepEqual((await api.storage.accounts.listBlocks(me.userId)).length, 2);

    await me.c.users.blockUser({ userId: b.userId }); // already blocked: takes no room
    await me.c.users.unblockUser({ userId: c.userId });
    await me.c.users.blockUser({ userId: d.userId });
    assert.deepEqual(new Set((await api.storage.accounts.listBlocks(me.userId)).map((x) => x.userId)), new Set([b.userId, d.userId]));
  });

  it("holds maxBlockedPerUser when blocks made at the same moment both pass its read", async () => {
    api = await TestApi.start({ maxBlockedPerUser: 1 });
    const [me, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    const held = holdNext(api.storage.accounts, "putBlock");
    const first = me.c.users.blockUser({ userId: b.userId });
    await held.reached; // past its read of the caller's blocks (none), not yet written
    await me.c.users.blockUser({ userId: c.userId });
    held.release();
    const err = await rpcError(() => first);
    assert.equal(err.chatCode, "ERROR_CODE_LIMIT_REACHED");
    assert.deepEqual((await api.storage.accounts.listBlocks(me.userId)).map((x) => x.userId), [c.userId]);
  });

  it("ends a friendship and pending requests, and refuses friend requests either way until unblocked", async () => {
    api = await TestApi.start();
    const [me, friend, asker] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await friends(me, friend);
    await asker.c.users.sendFriendRequest({ userId: me.userId });
    await me.c.users.blockUser({ userId: friend.userId });
    await me.c.users.blockUser({ userId: asker.userId });
    assert.deepEqual((await me.c.users.listFriends({})).friends, []);
    assert.deepEqual((await friend.c.users.listFriends({})).friends, []);
    assert.deepEqual((await me.c.users.listFriendRequests({})).requests, []);

    const theirs = await rpcError(() => friend.c.users.sendFriendRequest({ userId: me.userId }));
    assert.deepEqual([theirs.code, theirs.chatCode], [Code.PermissionDenied, BLOCKED]);
    assert.match(theirs.rawMessage, /this user blocked you/);
    const mine = await rpcError(() => me.c.users.sendFriendRequest({ userId: friend.userId }));
    assert.match(mine.rawMessage, /you blocked this user: unblock them/);

    await me.c.users.unblockUser({ userId: friend.userId });
    assert.deepEqual((await me.c.users.listFriends({})).friends, [], "unblocking does not restore the friendship");
    await friend.c.users.sendFriendRequest({ userId: me.userId });
    assert.equal((await me.c.users.listFriendRequests({})).requests.length, 1);
  });

  it("leaves no friendship across a block made while a friend request was being accepted", async () => {
    // The accounts the api reads, with a hook as an acceptance is about to store the friendship.
    let store!: AccountStore;
    let beforeBefriend: (() => Promise<void>) | undefined;
    const accounts = new Proxy({} as AccountStore, {
      get: (_, key) => {
        if (key === "addFriendship") {
          return async (a: Id, b: Id, atMs: number) => {
            const hook = beforeBefriend;
            beforeBefriend = undefined;
            await hook?.();
            return store.addFriendship(a, b, atMs);
          };
        }
        const value = (store as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(store) : value;
      },
    });
    api = await TestApi.start({ accounts });
    store = api.storage.accounts;
    for (const accept of [(me: TestUser, asker: TestUser) => me.c.users.respondFriendRequest({ userId: asker.userId, accept: true }),
                          (me: TestUser, asker: TestUser) => me.c.users.sendFriendRequest({ userId: asker.userId })]) {
      const [me, asker] = [await api.signUp(), await api.signUp()];
      await asker.c.users.sendFriendRequest({ userId: me.userId });
      // The asker blocks after the acceptance saw the request, and is done before the friendship is stored.
      beforeBefriend = async () => void (await asker.c.users.blockUser({ userId: me.userId }));
      const refused = await rpcError(() => accept(me, asker));
      assert.deepEqual([refused.code, refused.chatCode], [Code.PermissionDenied, BLOCKED]);
      assert.match(refused.rawMessage, /this user blocked you/);
      assert.deepEqual((await me.c.users.listFriends({})).friends, []);
      assert.deepEqual((await asker.c.users.listFriends({})).friends, []);
      assert.equal(await store.areFriends(me.userId, asker.userId), false);
    }
  });

  it("leaves no pending request across a block made while the request was being sent", async () => {
    let store!: AccountStore;
    let beforeRequest: (() => Promise<void>) | undefined;
    const accounts = new Proxy({} as AccountStore, {
      get: (_, key) => {
        if (key === "putFriendRequest") {
          return async (from: Id, to: Id, atMs: number) => {
            const hook = beforeRequest;
            beforeRequest = undefined;
            await hook?.();
            return store.putFriendRequest(from, to, atMs);
          };
        }
        const value = (store as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(store) : value;
      },
    });
    api = await TestApi.start({ accounts });
    store = api.storage.accounts;
    const [me, asker] = [await api.signUp(), await api.signUp()];
    // I block after the request checked for blocks, and am done before it is stored.
    beforeRequest = async () => void (await me.c.users.blockUser({ userId: asker.userId }));
    const refused = await rpcError(() => asker.c.users.sendFriendRequest({ userId: me.userId }));
    assert.deepEqual([refused.code, refused.chatCode], [Code.PermissionDenied, BLOCKED]);
    assert.match(refused.rawMessage, /this user blocked you/);
    assert.deepEqual((await me.c.users.listFriendRequests({})).requests, []);
    assert.equal(await store.hasFriendRequest(asker.userId, me.userId), false);
  });

  it("keeps the blocked from opening a direct chat with, or adding to groups, the user who blocked them", async () => {
    api = await TestApi.start();
    const [me, pest, other] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await me.c.users.blockUser({ userId: pest.userId });

    const open = await rpcError(() => pest.c.channels.openDirect({ userId: me.userId }));
    assert.deepEqual([open.code, open.chatCode], [Code.PermissionDenied, BLOCKED]);
    // Nor may the blocker start one (unblock first), and the blocked user hears nothing of it.
    const mine = await rpcError(() => me.c.channels.openDirect({ userId: pest.userId }));
    assert.deepEqual([mine.code, mine.chatCode, mine.rawMessage], [Code.PermissionDenied, BLOCKED, "you blocked this user: unblock them to open a chat with them"]);
    assert.deepEqual(api.sessions.framesOf("channel").filter((p) => p.userIds.includes(pest.userId)), [], "nothing was pushed to the blocked user");
    assert.deepEqual((await pest.c.channels.listChannels({})).channels, []);
    // A chat they had before the block the blocker may open again (its history is theirs), telling nobody.
    await me.c.users.unblockUser({ userId: pest.userId });
    const dm = (await me.c.channels.openDirect({ userId: pest.userId })).channel!.channelId;
    await me.c.users.blockUser({ userId: pest.userId });
    const pushes = api.sessions.pushes.length;
    assert.equal((await me.c.channels.openDirect({ userId: pest.userId })).channel!.channelId, dm, "the blocker may open the chat they had");
    assert.equal(api.sessions.pushes.length, pushes);

    const create = await rpcError(() => pest.c.channels.createGroup({ title: "g", memberUserIds: [other.userId, me.userId] }));
    assert.equal(create.chatCode, BLOCKED);
    assert.match(create.rawMessage, new RegExp(String(me.userId)));
    const group = (await pest.c.channels.createGroup({ title: "g", memberUserIds: [other.userId] })).channel!;
    const add = await rpcError(() => pest.c.channels.addMembers({ channelId: group.channelId, userIds: [me.userId] }));
    assert.equal(add.chatCode, BLOCKED);
    assert.equal((await pest.c.channels.listMembers({ channelId: group.channelId })).members.length, 2, "nobody was added");

    // The blocker chose to share a group: a block does not split groups.
    const shared = (await me.c.channels.createGroup({ title: "mine", memberUserIds: [pest.userId] })).channel!;
    assert.equal(shared.memberCount, 2);
  });

  it("checks an add against the blocks of the users it adds alone, however many blocked the caller", async () => {
    api = await TestApi.start();
    const [me, a, b] = [await api.signUp(), await api.signUp(), await api.signUp()];
    for (let i = 0; i < 20; i++) await (await api.signUp()).c.users.blockUser({ userId: me.userId });
    // Anyone may block a user: a read of all who did has no bound (on Cassandra a whole partition, twice per add).
    const store = api.deps.accounts;
    let blockersRead = 0;
    const counted = <A extends unknown[]>(f: (...args: A) => Promise<Id[]>) => async (...args: A) => {
      const ids = await f.apply(store, args);
      blockersRead += ids.length;
      return ids;
    };
    store.listBlockers = counted(store.listBlockers);
    store.blockersAmong = counted(store.blockersAmong);
    const group = (await me.c.channels.createGroup({ title: "g", memberUserIds: [a.userId] })).channel!;
    await me.c.channels.addMembers({ channelId: group.channelId, userIds: [b.userId] });
    assert.equal((await me.c.channels.listMembers({ channelId: group.channelId })).members.length, 3);
    assert.equal(blockersRead, 0, `${blockersRead} blockers read for adds of users who blocked nobody`);
  });

  it("reads who blocked a user only among those its presence concerns, and a deleted account's blockers a page at a time", async () => {
    api = await TestApi.start({ presence: everyoneOnline });
    const [me, friend, pest] = [await api.signUp("moe", "my password"), await api.signUp(), await api.signUp()];
    await friends(me, friend);
    await pest.c.users.blockUser({ userId: me.userId });
    for (let i = 0; i < 20; i++) await (await api.signUp()).c.users.blockUser({ userId: me.userId });
    // Anyone may block a user: a read of all who did has no bound (on Cassandra a whole partition).
    const store = api.deps.accounts;
    const listed: unknown[] = [];
    const asked: number[] = [];
    const listBlockers = store.listBlockers;
    const blockersAmong = store.blockersAmong;
    store.listBlockers = async (userId, page) => (listed.push(page), listBlockers.call(store, userId, page));
    store.blockersAmong = async (userId, among) => (asked.push(among.length), blockersAmong.call(store, userId, among));
    assert.deepEqual(await statuses(me, [friend.userId, pest.userId]), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE]);
    await pest.c.presence.getPresence({ userIds: [me.userId] });
    await me.c.channels.createGroup({ title: "g", memberUserIds: [friend.userId] });
    assert.deepEqual(listed, [], "no presence read lists everyone who blocked a user");
    assert.ok(asked.length > 0 && Math.max(...asked) <= 2, `blockers asked about: ${asked.join(", ")}`);

    await me.c.auth.deleteAccount({ password: "my password" });
    assert.ok(listed.length > 0 && listed.every((p) => { const limit = (p as { limit?: unknown } | undefined)?.limit; return typeof limit === "number" && limit > 0 && limit <= 1_000; }), JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
    assert.deepEqual((await pest.c.users.listBlockedUsers({})).blockedUsers, [], "every blocker's block of the deleted account is gone");
  });

  it("tells nobody of presence when blocking again or unblocking someone not blocked", async () => {
    api = await TestApi.start({ presence: everyoneOnline });
    const [me, peer, other] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await peer.c.channels.openDirect({ userId: me.userId });
    await other.c.channels.openDirect({ userId: me.userId });
    await me.c.users.blockUser({ userId: peer.userId });
    api.sessions.pushes = [];
    await me.c.users.blockUser({ userId: peer.userId });
    await me.c.users.unblockUser({ userId: other.userId });
    assert.deepEqual(api.sessions.pushes, [], "a change that changes nothing pushes nothing");
    await me.c.users.unblockUser({ userId: peer.userId });
    assert.ok(api.sessions.framesOf("presence").length > 0, "a real unblocking tells the pair each other's presence");
  });

  it("hides each side's presence from the other, both ways, and pushes offline without last seen at once", async () => {
    api = await TestApi.start({ presence: everyoneOnline });
    const [me, friend, peer] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await friends(me, friend);
    await peer.c.channels.openDirect({ userId: me.userId });
    assert.deepEqual(await statuses(me, [friend.userId, peer.userId]), [PresenceStatus.ONLINE, PresenceStatus.ONLINE]);

    api.sessions.pushes = [];
    await me.c.users.blockUser({ userId: peer.userId });
    const pushed = api.sessions.framesOf("presence").map((p) => {
      const e = p.frame.kind.case === "presence" ? p.frame.kind.value.presence! : undefined;
      return [p.userIds, e?.userId, e?.status, e?.lastSeenAt];
    });
    assert.deepEqual(
      pushed.sort((x, y) => ((x[0] as Id[])[0]! < (y[0] as Id[])[0]! ? -1 : 1)),
      [
        [[me.userId], peer.userId, PresenceStatus.OFFLINE, undefined],
        [[peer.userId], me.userId, PresenceStatus.OFFLINE, undefined],
      ].sort((x, y) => ((x[0] as Id[])[0]! < (y[0] as Id[])[0]! ? -1 : 1)),
    );
    assert.deepEqual(await statuses(me, [friend.userId, peer.userId]), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE]);
    assert.deepEqual(await statuses(peer, [me.userId]), [PresenceStatus.OFFLINE], "the blocked cannot see the blocker either");

    // Unblocking: they share a direct chat, so each sees the other again, and is told so.
    api.sessions.pushes = [];
    await me.c.users.unblockUser({ userId: peer.userId });
    assert.deepEqual(await statuses(peer, [me.userId]), [PresenceStatus.ONLINE]);
    const told = api.sessions.framesOf("presence").map((p) => [p.userIds[0], p.frame.kind.case === "presence" ? p.frame.kind.value.presence?.status : undefined]);
    assert.equal(told.length, 2);
    assert.ok(told.every(([, status]) => status === PresenceStatus.ONLINE));
  });

  it("forgets the pair in the process's block cache, so its next send is checked afresh", async () => {
    const forgotten: [Id, Id][] = [];
    api = await TestApi.start({ blocks: { forget: (a, b) => void forgotten.push([a, b]) } });
    const [me, b] = [await api.signUp(), await api.signUp()];
    await me.c.users.blockUser({ userId: b.userId });
    await me.c.users.unblockUser({ userId: b.userId });
    assert.deepEqual(forgotten, [
      [me.userId, b.userId],
      [me.userId, b.userId],
    ]);
  });
});

describe("BlockCache", () => {
  it("answers from memory within the TTL, reads again after it or after forget, for either order of the pair", async () => {
    let clock = 0;
    let reads = 0;
    let blockers: Id[] = [];
    const cache = new BlockCache(
      {
        blockersBetween: async () => {
          reads++;
          return blockers;
        },
        getUser: async () => undefined,
      },
      { ttlMs: 100, now: () => clock },
    );
    assert.deepEqual(await cache.blockersBetween(1n, 2n), []);
    blockers = [1n];
    assert.deepEqual(await cache.blockersBetween(2n, 1n), [], "within the TTL, the same pair either way");
    assert.equal(reads, 1);
    clock = 100;
    assert.deepEqual(await cache.blockersBetween(1n, 2n), [1n]);
    blockers = [];
    cache.forget(2n, 1n);
    assert.deepEqual(await cache.blockersBetween(1n, 2n), []);
    assert.equal(reads, 3);
  });

  it("keeps no answer read before a forget: a block made while a send's read was in flight holds at once", async () => {
    let stored: Id[] = [];
    const reads: { answer: (blockers: Id[]) => void }[] = [];
    const cache = new BlockCache({
      // Each read answers when the test says, with what the store held when it was made.
      blockersBetween: () => {
        const seen = stored;
        return new Promise((resolve) => reads.push({ answer: () => resolve(seen) }));
      },
      getUser: async () => undefined,
    });
    const inFlight = cache.blockersBetween(1n, 2n);
    // The block is stored and its process tells this one, all before that read returns.
    stored = [2n];
    cache.forget(1n, 2n);
    reads[0]!.answer(stored);
    assert.deepEqual(await inFlight, [], "the read that raced the block answers what it read");
    const next = cache.blockersBetween(2n, 1n);
    assert.equal(reads.length, 2, "the next check reads the store again");
    reads[1]!.answer(stored);
    assert.deepEqual(await next, [2n]);
  });
});
