import assert from "node:assert/strict";
import { FriendshipState } from "../../gen/es/chat/v1/users_pb.js";
import { holdNext, TestApi } from "./testkit.js";

describe("api: friend requests crossing", () => {
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start()));
  afterEach(async () => api.close());

  it("makes two users who ask each other at the same moment friends, not two requests waiting", async () => {
    const [a, b] = [await api.signUp(), await api.signUp()];
    // a's request has looked for one from b (none yet) and is about to be stored; b's is sent meanwhile.
    const held = holdNext(api.storage.accounts, "putFriendRequest");
    const fromA = a.c.users.sendFriendRequest({ userId: b.userId });
    await held.reached;
    assert.equal((await b.c.users.sendFriendRequest({ userId: a.userId })).state, FriendshipState.REQUEST_SENT);
    held.release();
    assert.equal((await fromA).state, FriendshipState.FRIENDS);
    assert.deepEqual((await a.c.users.listFriends({})).friends.map((u) => u.userId), [b.userId]);
    assert.deepEqual((await b.c.users.listFriends({})).friends.map((u) => u.userId), [a.userId]);
    assert.deepEqual((await a.c.users.listFriendRequests({})).requests, []);
    assert.deepEqual((await b.c.users.listFriendRequests({})).requests, []);
  });

  it("keeps a crossing request waiting, answered as sent, when the friendship it would make is past a limit", async () => {
    await api.close();
    api = await TestApi.start({ friendLimits: { maxFriends: 1, maxPendingRequests: 10 } });
    const [a, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    await a.c.users.sendFriendRequest({ userId: c.userId });
    await c.c.users.respondFriendRequest({ userId: a.userId, accept: true });
    const held = holdNext(api.storage.accounts, "putFriendRequest");
    const fromA = a.c.users.sendFriendRequest({ userId: b.userId });
    await held.reached;
    await b.c.users.sendFriendRequest({ userId: a.userId });
    held.release();
    assert.equal((await fromA).state, FriendshipState.REQUEST_SENT);
    assert.equal((await a.c.users.listFriendRequests({})).requests.length, 2);
  });
});
