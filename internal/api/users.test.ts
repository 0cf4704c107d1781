import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { FriendshipState } from "../../gen/es/chat/v1/users_pb.js";
import { PresenceStatus, PresenceVisibility } from "../../gen/es/chat/v1/types_pb.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { RETRY_AFTER_HEADER } from "./errors.js";
import { FixedPresence, rpcError, TestApi, UnreachableSessions } from "./testkit.js";

describe("api: UserService and PresenceService", () => {
  let api: TestApi;
  afterEach(async () => api.close());

  describe("with the routing table away, pushing presence fails but the change stands", () => {
    let sessions: UnreachableSessions;
    beforeEach(async () => (api = await TestApi.start({ sessions: (sessions = new UnreachableSessions()) })));

    it("answers BlockUser with the block stored", async () => {
      const a = await api.signUp();
      const b = await api.signUp();
      await a.c.users.blockUser({ userId: b.userId });
      assert.deepEqual((await a.c.users.listBlockedUsers({})).blockedUsers.map((x) => x.user?.userId), [b.userId]);
      assert.ok(sessions.calls > 0, "the offline pushes were tried");
    });

    it("answers RemoveFriend with the friendship gone", async () => {
      const a = await api.signUp();
      const b = await api.signUp();
      await a.c.users.sendFriendRequest({ userId: b.userId });
      await b.c.users.respondFriendRequest({ userId: a.userId, accept: true });
      await a.c.users.removeFriend({ userId: b.userId });
      assert.deepEqual((await b.c.users.listFriends({})).friends, []);
      assert.ok(sessions.calls > 0, "the offline pushes were tried");
    });

    it("answers BlockUser, UnblockUser and DeleteAccount with the change made when the chat servers cannot be told to forget the pair", async () => {
      // In the cluster, forgetting looks the pair's chat servers up in the routing table, away here.
      await api.close();
      const forgets: bigint[][] = [];
      const blocks = {
        forget: async (a: bigint, b: bigint) => {
          forgets.push([a, b]);
          throw new Error("Connection is closed.");
        },
      };
      api = await TestApi.start({ sessions: (sessions = new UnreachableSessions()), blocks });
      const [a, b] = [await api.signUp("blocker", "correct horse"), await api.signUp()];
      await a.c.users.blockUser({ userId: b.userId });
      assert.deepEqual((await a.c.users.listBlockedUsers({})).blockedUsers.map((x) => x.user?.userId), [b.userId]);
      await a.c.users.unblockUser({ userId: b.userId });
      assert.deepEqual((await a.c.users.listBlockedUsers({})).blockedUsers, []);
      await a.c.channels.openDirect({ userId: b.userId });
      await a.c.auth.deleteAccount({ password: "correct horse" });
      assert.equal((await b.c.users.getUsers({ userIds: [a.userId] })).users[0]?.deleted, true);
      assert.equal(forgets.length, 4, "each was tried: block, unblock, and the deletion's block of its direct peer, twice");
    });

    it("answers GetPresence UNAVAILABLE, to be retried, while the presence store is away", async () => {
      await api.close();
      const presence = new FixedPresence({ online: true });
      presence.getPresence = () => Promise.reject(new Error("Connection is closed."));
      api = await TestApi.start({ presence });
      const [a, b] = [await api.signUp(), await api.signUp()];
      const err = await rpcError(() => a.c.presence.getPresence({ userIds: [a.userId, b.userId] }));
      assert.deepEqual([err.code, err.chatCode], [Code.Unavailable, "ERROR_CODE_UNAVAILABLE"]);
      assert.match(err.rawMessage, /presence is not available right now; retry/);
      // With no retry time a client either asked again at once or gave up.
      assert.equal(err.metadata.get(RETRY_AFTER_HEADER), String(ENGINE_RETRY_AFTER_MS));
    });

    it("answers a friendship, an unblocking and a presence setting with the change stored", async () => {
      // Presence tells through the same routing table, away too.
      await api.close();
      const presence = new FixedPresence({ online: true });
      api = await TestApi.start({ sessions: (sessions = new UnreachableSessions()), presence });
      presence.directory = sessions;
      const [a, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await a.c.users.sendFriendRequest({ userId: b.userId });
      assert.equal((await b.c.users.respondFriendRequest({ userId: a.userId, accept: true })).state, FriendshipState.FRIENDS);
      assert.deepEqual((await a.c.users.listFriends({})).friends.map((u) => u.userId), [b.userId]);

      await a.c.users.blockUser({ userId: c.userId });
      await a.c.users.unblockUser({ userId: c.userId });
      assert.deepEqual((await a.c.users.listBlockedUsers({})).blockedUsers, []);

      for (const visibility of [PresenceVisibility.NOBODY, PresenceVisibility.CHATS]) {
        assert.equal((await a.c.presence.updatePresenceSettings({ settings: { visibility } })).settings?.visibility, visibility);
        assert.equal((await a.c.presence.getPresenceSettings({})).settings?.visibility, visibility);
      }
      assert.ok(sessions.calls > 0, "the presence pushes were tried");
    });
  });

  describe("friend limits", () => {
    beforeEach(async () => (api = await TestApi.start({ friendLimits: { maxFriends: 2, maxPendingRequests: 2 } })));
    const limitReached = async (call: () => Promise<unknown>, message: RegExp) => {
      const err = await rpcError(call);
      assert.equal(err.code, Code.FailedPrecondition);
      assert.equal(err.metadata.get("chat-error-code"), "ERROR_CODE_LIMIT_REACHED");
      assert.match(err.rawMessage, message);
    };

    it("refuses a request past the sender's waiting requests, or past the recipient's, and lets a resend and a withdrawn one through", async () => {
      const [a, b, c, d, e] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
      await a.c.users.sendFriendRequest({ userId: b.userId });
      await a.c.users.sendFriendRequest({ userId: c.userId });
      await limitReached(() => a.c.users.sendFriendRequest({ userId: d.userId }), /you have 2 friend requests waiting/);
      assert.equal((await a.c.users.sendFriendRequest({ userId: b.userId })).state, FriendshipState.REQUEST_SENT, "asking again is no new request");
      await a.c.users.removeFriend({ userId: c.userId });
      assert.equal((await a.c.users.sendFriendRequest({ userId: d.userId })).state, FriendshipState.REQUEST_SENT);

      await c.c.users.sendFriendRequest({ userId: e.userId });
      await b.c.users.sendFriendRequest({ userId: e.userId });
      await limitReached(() => d.c.users.sendFriendRequest({ userId: e.userId }), /this user has too many friend requests/);
      assert.equal((await e.c.users.listFriendRequests({})).requests.length, 2);
    });

    it("refuses a friendship past either user's friends, the request kept for later", async () => {
      const [a, b, c, d, x] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
      for (const other of [b, c]) {
        await a.c.users.sendFriendRequest({ userId: other.userId });
        await other.c.users.respondFriendRequest({ userId: a.userId, accept: true });
      }
      await d.c.users.sendFriendRequest({ userId: a.userId });
      await limitReached(() => a.c.users.respondFriendRequest({ userId: d.userId, accept: true }), /you have 2 friends/);
      await a.c.users.sendFriendRequest({ userId: x.userId });
      await limitReached(() => x.c.users.respondFriendRequest({ userId: a.userId, accept: true }), /this user has 2 friends/);
      await a.c.users.removeFriend({ userId: b.userId });
      assert.equal((await a.c.users.respondFriendRequest({ userId: d.userId, accept: true })).state, FriendshipState.FRIENDS);
    });
  });

  describe("profiles and friends", () => {
    beforeEach(async () => (api = await TestApi.start()));

    it("updates the profile, gets users and searches by prefix", async () => {
      const a = await api.signUp("anna");
      const b = await api.signUp("annabel");
      await api.signUp("bert");
      const updated = await a.c.users.updateProfile({ displayName: "  Anna K " });
      assert.equal(updated.user?.displayName, "Anna K");
      assert.equal((await rpcError(() => a.c.users.updateProfile({ displayName: " " }))).code, Code.InvalidArgument);

      const got = await a.c.users.getUsers({ userIds: [b.userId, 999n, a.userId] });
      assert.deepEqual(got.users.map((u) => u.username), ["annabel", "anna"]);
      const tooMany = await rpcError(() => a.c.users.getUsers({ userIds: Array.from({ length: 101 }, (_, i) => BigInt(i + 1)) }));
      assert.equal(tooMany.code, Code.InvalidArgument);

      assert.deepEqual((await a.c.users.searchUsers({ query: "ANNA" })).users.map((u) => u.username), ["anna", "annabel"]);
      assert.deepEqual((await a.c.users.searchUsers({ query: "@anna", limit: 1 })).users.map((u) => u.username), ["anna"]);
      assert.deepEqual((await a.c.users.searchUsers({ query: "a b" })).users, []);
    });

    it("searches a username typed in full-width letters (an East Asian keyboard's) as the letters they are", async () => {
      const a = await api.signUp("anna_k");
      for (const query of ["ａｎｎａ＿ｋ", "＠ＡＮＮＡ", " @anna "]) {
        assert.deepEqual((await a.c.users.searchUsers({ query })).users.map((u) => u.username), ["anna_k"], query);
      }
    });

    it("writes nothing for a profile or a presence setting set to what it is", async () => {
      const a = await api.signUp();
      await a.c.users.updateProfile({ displayName: "Anna" });
      await a.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
      const writes: string[] = [];
      const store = api.storage.accounts;
      const [name, visibility] = [store.updateDisplayName.bind(store), store.setPresenceVisibility.bind(store)];
      store.updateDisplayName = (...args) => (writes.push("name"), name(...args));
      store.setPresenceVisibility = (...args) => (writes.push("visibility"), visibility(...args));
      assert.equal((await a.c.users.updateProfile({ displayName: " Anna " })).user?.displayName, "Anna");
      const same = await a.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
      assert.equal(same.settings?.visibility, PresenceVisibility.FRIENDS);
      assert.deepEqual(writes, []);
      await a.c.users.updateProfile({ displayName: "Anna K" });
      assert.deepEqual(writes, ["name"]);
    });

    it("keeps a friend request sent again while it waits where it was, with its first time", async () => {
      const [a, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await a.c.users.sendFriendRequest({ userId: c.userId });
      api.clock.ms += 1_000;
      await a.c.users.sendFriendRequest({ userId: b.userId });
      api.clock.ms += 1_000;
      await a.c.users.sendFriendRequest({ userId: c.userId }); // a retry: nothing changes
      const listed = await api.storage.accounts.listFriendRequests(a.userId);
      assert.deepEqual(listed.map((r) => [r.toUserId, r.atMs]), [[c.userId, api.clock.ms - 2_000], [b.userId, api.clock.ms - 1_000]]);
      assert.deepEqual((await a.c.users.listFriendRequests({})).requests.map((r) => r.user?.userId), [c.userId, b.userId]);
    });

    it("runs the friend flow: request, accept, decline, cross-request, remove", async () => {
      const a = await api.signUp();
      const b = await api.signUp();
      const c = await api.signUp();

      assert.equal((await a.c.users.sendFriendRequest({ userId: b.userId })).state, FriendshipState.REQUEST_SENT);
      const aReqs = await a.c.users.listFriendRequests({});
      assert.deepEqual(aReqs.requests.map((r) => [r.user?.userId, r.outgoing]), [[b.userId, true]]);
      const bReqs = await b.c.users.listFriendRequests({});
      assert.deepEqual(bReqs.requests.map((r) => [r.user?.userId, r.outgoing]), [[a.userId, false]]);

      // Only the receiver can answer.
      assert.equal((await rpcError(() => a.c.users.respondFriendRequest({ userId: b.userId, accept: true }))).code, Code.NotFound);
      assert.equal((await b.c.users.respondFriendRequest({ userId: a.userId, accept: true })).state, FriendshipState.FRIENDS);
      assert.deepEqual((await a.c.users.listFriends({})).friends.map((u) => u.userId), [b.userId]);
      assert.deepEqual((await b.c.users.listFriends({})).friends.map((u) => u.userId), [a.userId]);
      assert.equal((await a.c.users.listFriendRequests({})).requests.length, 0);
      assert.equal((await a.c.users.sendFriendRequest({ userId: b.userId })).state, FriendshipState.FRIENDS);

      // Declined.
      await a.c.users.sendFriendRequest({ userId: c.userId });
      assert.equal((await c.c.users.respondFriendRequest({ userId: a.userId, accept: false })).state, FriendshipState.NONE);
      assert.equal((await c.c.users.listFriendRequests({})).requests.length, 0);

      // A request to someone who already asked you makes you friends.
      await c.c.users.sendFriendRequest({ userId: b.userId });
      assert.equal((await b.c.users.sendFriendRequest({ userId: c.userId })).state, FriendshipState.FRIENDS);
      assert.equal((await b.c.users.listFriends({})).friends.length, 2);

      await b.c.users.removeFriend({ userId: a.userId });
      assert.deepEqual((await a.c.users.listFriends({})).friends, []);
      assert.deepEqual((await b.c.users.listFriends({})).friends.map((u) => u.userId), [c.userId]);

      assert.equal((await rpcError(() => a.c.users.sendFriendRequest({ userId: a.userId }))).code, Code.InvalidArgument);
      assert.equal((await rpcError(() => a.c.users.sendFriendRequest({ userId: 12345n }))).code, Code.NotFound);
      // The caller's own id is a client's mistake, told as every other friend call tells it, not a success that did nothing.
      const self = await rpcError(() => a.c.users.removeFriend({ userId: a.userId }));
      assert.deepEqual([self.code, self.rawMessage], [Code.InvalidArgument, "user_id must be another user"]);
    });

    it("reports everyone offline without a presence source", async () => {
      const a = await api.signUp();
      const b = await api.signUp();
      const res = await a.c.presence.getPresence({ userIds: [b.userId, a.userId] });
      assert.deepEqual(res.presences.map((p) => [p.userId, p.status]), [
        [b.userId, PresenceStatus.OFFLINE],
        [a.userId, PresenceStatus.OFFLINE],
      ]);
      const tooMany = await rpcError(() => a.c.presence.getPresence({ userIds: Array.from({ length: 501 }, (_, i) => BigInt(i + 1)) }));
      assert.equal(tooMany.code, Code.InvalidArgument);
    });
  });

  it("shows presence of friends and channel co-members only", async () => {
    api = await TestApi.start({
      presence: new FixedPresence({ online: true }),
    });
    const me = await api.signUp();
    const friend = await api.signUp();
    const peer = await api.signUp();
    const stranger = await api.signUp();
    await me.c.users.sendFriendRequest({ userId: friend.userId });
    await friend.c.users.sendFriendRequest({ userId: me.userId });
    await me.c.channels.openDirect({ userId: peer.userId });

    const res = await me.c.presence.getPresence({ userIds: [friend.userId, peer.userId, stranger.userId] });
    assert.deepEqual(res.presences.map((p) => p.status), [PresenceStatus.ONLINE, PresenceStatus.ONLINE, PresenceStatus.OFFLINE]);
  });

  it("answers GetPresence for duplicates, unknown ids, blocked users and deleted accounts without showing any online or with a last seen", async () => {
    api = await TestApi.start({ presence: new FixedPresence({ online: false, lastSeenAtMs: Date.UTC(2026, 4, 1) }) });
    const me = await api.signUp();
    const [friend, peer, member, blocked, gone] = [await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp(), await api.signUp()];
    await me.c.users.sendFriendRequest({ userId: friend.userId });
    await friend.c.users.respondFriendRequest({ userId: me.userId, accept: true });
    await me.c.channels.openDirect({ userId: peer.userId });
    await me.c.channels.createGroup({ title: "g", memberUserIds: [member.userId, blocked.userId, gone.userId] });
    await me.c.users.sendFriendRequest({ userId: gone.userId });
    await gone.c.users.respondFriendRequest({ userId: me.userId, accept: true });
    await gone.c.channels.openDirect({ userId: me.userId });
    await blocked.c.users.blockUser({ userId: me.userId });
    await gone.c.auth.deleteAccount({ password: "correct horse" });
    const ids = [friend.userId, gone.userId, blocked.userId, 123_456_789n, member.userId, friend.userId, peer.userId, gone.userId];
    const res = await me.c.presence.getPresence({ userIds: ids });
    const seen = new Map(res.presences.map((p) => [p.userId, p.lastSeenAt !== undefined]));
    assert.deepEqual(
      [...new Set(ids)].map((id) => seen.get(id)),
      [true, false, false, false, true, true],
      "friend, deleted, blocked, unknown, member, peer",
    );
    assert.ok(res.presences.every((p) => p.status === PresenceStatus.OFFLINE));
  });

  describe("presence settings", () => {
    const statuses = async (viewer: { c: { presence: { getPresence(r: { userIds: bigint[] }): Promise<{ presences: { status: PresenceStatus }[] }> } } }, ids: bigint[]) =>
      (await viewer.c.presence.getPresence({ userIds: ids })).presences.map((p) => p.status);
    const { ONLINE, OFFLINE } = PresenceStatus;

    it("shows a user's presence only as far as they chose: chats, friends, nobody", async () => {
      api = await TestApi.start({ presence: new FixedPresence({ online: true }) });
      const [me, friend, peer] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await me.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.sendFriendRequest({ userId: me.userId });
      await peer.c.channels.openDirect({ userId: me.userId }); // a stranger who wrote to me first
      const ids = [friend.userId, peer.userId];
      assert.equal((await me.c.presence.getPresenceSettings({})).settings?.visibility, PresenceVisibility.CHATS, "the default");
      assert.deepEqual(await statuses(me, ids), [ONLINE, ONLINE]);

      await peer.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
      await friend.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
      assert.deepEqual(await statuses(me, ids), [ONLINE, OFFLINE]);
      await friend.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.NOBODY } });
      assert.deepEqual(await statuses(me, ids), [OFFLINE, OFFLINE]);
      assert.equal((await friend.c.presence.getPresenceSettings({})).settings?.visibility, PresenceVisibility.NOBODY);
      assert.deepEqual(await statuses(friend, [friend.userId]), [ONLINE], "everyone sees themselves");

      const bad = await rpcError(() => me.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.UNSPECIFIED } }));
      assert.equal(bad.code, Code.InvalidArgument);
      assert.match(bad.rawMessage, /settings\.visibility/);
    });

    it("tells those who may no longer see the user offline at once, and those who now may the current presence", async () => {
      api = await TestApi.start({ presence: new FixedPresence({ online: true }) });
      const [me, friend, peer] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await me.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.sendFriendRequest({ userId: me.userId });
      await me.c.channels.openDirect({ userId: peer.userId });
      const presenceTo = () =>
        api.sessions.framesOf("presence").map((p) => {
          const e = p.frame.kind.case === "presence" ? p.frame.kind.value.presence! : undefined;
          return [p.userIds, e?.userId, e?.status, e?.lastSeenAt];
        });

      api.sessions.pushes = [];
      await me.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.FRIENDS } });
      assert.deepEqual(presenceTo(), [[[peer.userId], me.userId, OFFLINE, undefined]]);

      api.sessions.pushes = [];
      await me.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.NOBODY } });
      assert.deepEqual(presenceTo(), [[[friend.userId], me.userId, OFFLINE, undefined]]);

      api.sessions.pushes = [];
      await me.c.presence.updatePresenceSettings({ settings: { visibility: PresenceVisibility.CHATS } });
      const [[to, who, status]] = presenceTo() as [bigint[], bigint, PresenceStatus][];
      assert.deepEqual([[...to].sort(), who, status], [[friend.userId, peer.userId].sort(), me.userId, ONLINE]);
    });

    it("tells ex-friends offline when only the friendship let them see each other, and new friends each other's presence", async () => {
      api = await TestApi.start({ presence: new FixedPresence({ online: true, lastSeenAtMs: 1 }) });
      const [me, friend, peer] = [await api.signUp(), await api.signUp(), await api.signUp()];
      const presenceTo = () =>
        api.sessions.framesOf("presence").map((p) => {
          const e = p.frame.kind.case === "presence" ? p.frame.kind.value.presence! : undefined;
          return [p.userIds, e?.userId, e?.status, e?.lastSeenAt];
        });
      const byRecipient = (a: unknown[], b: unknown[]) => ((a[0] as bigint[])[0]! < (b[0] as bigint[])[0]! ? -1 : 1);

      await me.c.users.sendFriendRequest({ userId: friend.userId });
      api.sessions.pushes = [];
      await friend.c.users.respondFriendRequest({ userId: me.userId, accept: true });
      assert.deepEqual(presenceTo().sort(byRecipient), [
        [[me.userId], friend.userId, ONLINE, undefined],
        [[friend.userId], me.userId, ONLINE, undefined],
      ].sort(byRecipient));

      // A cross-request accepts too; peer and me share a chat as well.
      await me.c.channels.openDirect({ userId: peer.userId });
      await peer.c.users.sendFriendRequest({ userId: me.userId });
      api.sessions.pushes = [];
      await me.c.users.sendFriendRequest({ userId: peer.userId });
      assert.equal(presenceTo().length, 2);

      api.sessions.pushes = [];
      await friend.c.users.removeFriend({ userId: me.userId });
      assert.deepEqual(presenceTo().sort(byRecipient), [
        [[me.userId], friend.userId, OFFLINE, undefined],
        [[friend.userId], me.userId, OFFLINE, undefined],
      ].sort(byRecipient));
      assert.deepEqual(await statuses(me, [friend.userId]), [OFFLINE]);

      // The shared chat still shows each to the other; removing a friend who is not one tells nobody anything.
      api.sessions.pushes = [];
      await me.c.users.removeFriend({ userId: peer.userId });
      await me.c.users.removeFriend({ userId: friend.userId });
      assert.deepEqual(presenceTo(), []);
      assert.deepEqual(await statuses(me, [peer.userId]), [ONLINE]);
    });
  });
});
