import assert from "node:assert/strict";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import type { Id, MemberRecord } from "../model/types.js";
import { reaches, storeAudience } from "./audience.js";

describe("presence audience", () => {
  let storage: SqliteStorage;
  beforeEach(() => (storage = openSqliteStorage(":memory:")));
  afterEach(() => storage.close());

  const group = async (channelId: Id, userIds: Id[]) => {
    const member = (userId: Id, i: number): MemberRecord => ({ channelId, userId, role: i === 0 ? "owner" : "member", joinedAtMs: 1, readSeq: 0n });
    await storage.channels.createGroup({ channelId, kind: "group", title: "g", createdAtMs: 1, createdBy: userIds[0]! }, userIds.map(member));
  };

  it("leaves out users blocked either way, friends and co-members alike, and takes them back once unblocked", async () => {
    const [me, friend, member, blockedByMe, blockingMe] = [1n, 2n, 3n, 4n, 5n];
    await storage.accounts.addFriendship(me, friend, 1);
    await storage.accounts.addFriendship(me, blockingMe, 1);
    await group(10n, [me, member, blockedByMe, blockingMe]);
    await storage.accounts.putBlock(me, blockedByMe, 2);
    await storage.accounts.putBlock(blockingMe, me, 2);

    const audience = storeAudience(storage);
    assert.deepEqual((await audience(me)).sort(), [friend, member]);
    assert.deepEqual((await audience(blockedByMe)).sort(), [member, blockingMe], "nor does the blocked see the blocker");
    assert.equal(await reaches(storage, me, blockingMe), false);

    await storage.accounts.deleteBlock(blockingMe, me);
    assert.equal(await reaches(storage, me, blockingMe), true);
  });
});
