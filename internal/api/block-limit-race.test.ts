import assert from "node:assert/strict";
import { holdNext, TestApi } from "./testkit.js";

describe("api: the block limit's second look under a repeated block", () => {
  let api: TestApi;
  afterEach(async () => api.close());

  it("leaves a block another call made and answered OK in place when a repeat of it finds the list past the limit", async () => {
    // Two devices blocking the same user at once: the second to store finds the block there already.
    // It made no room-taking write, so it has nothing to take back: its look past the limit undid the
    // first call's block, answered OK, and the blocked user could write again.
    api = await TestApi.start({ maxBlockedPerUser: 1 });
    const [me, b, c] = [await api.signUp(), await api.signUp(), await api.signUp()];
    const held = holdNext(api.storage.accounts, "putBlock");
    const repeat = me.c.users.blockUser({ userId: b.userId });
    await held.reached; // past its read (b not blocked yet, room for one), not yet written
    await me.c.users.blockUser({ userId: b.userId }); // the other device's: stored and answered OK
    // A third block stored meanwhile, its own second look still to come (it takes itself out then).
    await api.storage.accounts.putBlock(me.userId, c.userId, api.clock.ms);
    held.release();
    await repeat; // b was blocked, as asked
    const blocked = (await api.storage.accounts.listBlocks(me.userId)).map((x) => x.userId);
    assert.ok(blocked.includes(b.userId), "the block answered OK still holds");
  });
});
