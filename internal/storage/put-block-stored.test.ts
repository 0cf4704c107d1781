import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { scratchCassandra } from "../../test/support/cassandra.js";
import type { AccountStore } from "../accounts/store.js";
import type { UserRecord } from "../model/types.js";
import { uniqueId, uniqueName } from "./contract/helpers.js";
import { openDatabase, SqliteAccountStore, type SqliteDatabase } from "./sqlite/index.js";

/** Two new users, stored in `s`. */
async function twoUsers(s: AccountStore): Promise<[UserRecord, UserRecord]> {
  const newUser = async (): Promise<UserRecord> => {
    const u: UserRecord = { userId: uniqueId(), username: uniqueName("User_"), displayName: "u", passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$abc$def", createdAtMs: 1_767_225_600_123 };
    await s.createUser(u);
    return u;
  };
  return [await newUser(), await newUser()];
}

// The block and pending-request limits' second looks (BlockUser, SendFriendRequest) take a row back
// only if their own call stored it: the store must tell a row it stored from one there already.
function putBlockTellsStored(store: () => AccountStore) {
  it("putBlock answers true for the block it stored, false for one there already (keeping its first time)", async () => {
    const s = store();
    const [a, b] = await twoUsers(s);
    assert.equal(await s.putBlock(a.userId, b.userId, 1000), true);
    assert.equal(await s.putBlock(a.userId, b.userId, 2000), false);
    assert.deepEqual(await s.listBlocks(a.userId), [{ userId: b.userId, atMs: 1000 }]);
    await s.deleteBlock(a.userId, b.userId);
    assert.equal(await s.putBlock(a.userId, b.userId, 3000), true, "blocked again after an unblock: stored anew");
  });

  it("putFriendRequest answers true for the request it stored, false for one waiting already", async () => {
    const s = store();
    const [a, b] = await twoUsers(s);
    assert.equal(await s.putFriendRequest(a.userId, b.userId, 1000), true);
    assert.equal(await s.putFriendRequest(a.userId, b.userId, 2000), false);
    assert.equal(await s.putFriendRequest(b.userId, a.userId, 2000), true, "the other way is another request");
    await s.deleteFriendRequest(a.userId, b.userId);
    assert.equal(await s.putFriendRequest(a.userId, b.userId, 3000), true, "sent again after a withdrawal: stored anew");
    assert.equal(await s.hasFriendRequest(a.userId, b.userId), true);
  });
}

describe("putBlock and putFriendRequest tell whether they stored the row", function () {
  this.timeout(120_000);

  describe("sqlite", () => {
    let dir = "";
    let db: SqliteDatabase | undefined;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), "chatd-sqlite-"));
      db = openDatabase(join(dir, "chat.db"));
    });
    after(() => {
      db?.close();
      rmSync(dir, { recursive: true, force: true });
    });
    putBlockTellsStored(() => new SqliteAccountStore(db!));
  });

  describe("cassandra", () => {
    // Its keyspace's drop waits out a loaded node and closes the client even when it fails: a bare
    // drop here timed out at the driver's 12 s, and the open client held mocha after its summary.
    const storage = scratchCassandra();
    putBlockTellsStored(() => storage().accounts);
  });
});
