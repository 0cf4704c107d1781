import assert from "node:assert/strict";
import { FriendshipState } from "../../gen/es/chat/v1/users_pb.js";
import { holdNext, TestApi } from "./testkit.js";

describe("api: the pending-request limit's second look under a repeated request", () => {
  let api: TestApi;
  afterEach(async () => api.close());

  it("leaves a request another call stored and answered as sent waiting when a repeat of it finds the list past the limit", async () => {
    // Two devices sending the same request at once: the second to store finds it there already, so has
    // nothing of its own to take back; its look past the limit withdrew the request answered as sent.
    api = await TestApi.start({ friendLimits: { maxFriends: 10, maxPendingRequests: 1 } });
    const [me, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    const held = holdNext(api.storage.accounts, "putFriendRequest");
    const repeat = me.c.users.sendFriendRequest({ userId: b.userId });
    await held.reached; // past its read (no request yet, room for one), not yet written
    assert.equal((await me.c.users.sendFriendRequest({ userId: b.userId })).state, FriendshipState.REQUEST_SENT);
    // A third request stored meanwhile, its own second look still to come (it withdraws itself then).
    await api.storage.accounts.putFriendRequest(me.userId, c.userId, api.clock.ms);
    held.release();
    assert.equal((await repeat).state, FriendshipState.REQUEST_SENT);
    assert.equal(await api.storage.accounts.hasFriendRequest(me.userId, b.userId), true, "the request answered as sent still waits");
  });
});
