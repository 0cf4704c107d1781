import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { uniqueId, uniqueName } from "../../internal/storage/contract/helpers.js";
import { openSqliteStorage } from "../../internal/storage/sqlite/index.js";
import { openDatabase } from "../../internal/storage/sqlite/database.js";
import { openCassandraStorage } from "../../internal/storage/cassandra/index.js";
import { signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { engineConfig } from "../support/engines.js";
import { startRole, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// chatd killed after marking an account deleted and before the deletion's last pass: started
// again, it finishes that deletion itself (its sweep runs at start-up), or nothing ever would.
describe("chatd: a deletion cut short by the process dying, finished at the next start", function () {
  this.timeout(120_000);
  let dataDir: string;
  let chatd: ChatdProcess | undefined;
  beforeEach(() => (dataDir = mkdtempSync(join(tmpdir(), "chatd-deletion-sweep-"))));
  afterEach(async () => {
    await chatd?.stop();
    chatd = undefined;
    removeDataDir(dataDir);
  });

  it("drops the friendship and signs out the device that raced the deletion, and removes the record", async () => {
    const [doomed, friend] = [uniqueId(), uniqueId()];
    const deviceId = uniqueId();
    // What the killed process left in chat.db: the account marked, a friendship and a login that
    // landed before the mark, and the deletion's pending record.
    const storage = openSqliteStorage(join(dataDir, "chat.db"));
    const atMs = Date.now() - 10 * 60_000;
    for (const userId of [doomed, friend]) {
      await storage.accounts.createUser({ userId, username: uniqueName("u"), displayName: "x", passwordHash: "x", createdAtMs: atMs });
    }
    await storage.accounts.addFriendship(doomed, friend, atMs);
    await storage.accounts.createDevice({ userId: doomed, deviceId, name: "phone", platform: "ios", createdAtMs: atMs, lastSeenAtMs: atMs, revoked: false });
    await storage.accounts.putPendingDeletion({ userId: doomed, deviceId, atMs });
    await storage.accounts.deleteUser(doomed);
    await storage.close();

    chatd = await startChatd({ dataDir });
    // A reader beside chatd's own connection (WAL): what the sweep has written shows once committed.
    const db = openDatabase(join(dataDir, "chat.db"));
    try {
      const count = (sql: string, ...args: unknown[]) => Number(db.prepare(sql).pluck().get(...args));
      await waitFor(() => count("SELECT count(*) FROM pending_deletions WHERE user_id = ?", doomed) === 0, "the pending deletion swept");
      assert.equal(count("SELECT count(*) FROM friendships WHERE user_id = ? OR friend_user_id = ?", doomed, doomed), 0);
      assert.equal(count("SELECT revoked FROM devices WHERE user_id = ? AND device_id = ?", doomed, deviceId), 1);
    } finally {
      db.close();
    }
  });
});

// The same in the cluster: an api process died between the mark and the final pass; the next api
// process to start (or any other's next sweep) finishes the deletion.
describe("api: a deletion cut short by its process dying, finished by another api process's sweep", function () {
  this.timeout(180_000);
  const deployment = useDeployment("delsweep");

  it("drops the friendship that stayed, and removes the record", async () => {
    const first = await startRole("api", deployment.env);
    const url = String(first.info.http);
    const [doomed, friend] = [await signUp(url, "d"), await signUp(url, "f")];
    await doomed.api.users.sendFriendRequest({ userId: friend.userId });
    await friend.api.users.respondFriendRequest({ userId: doomed.userId, accept: true });
    await first.stop();
    // What the dead process left: the deletion recorded and the account marked, the friendship kept.
    const cfg = engineConfig();
    const storage = await openCassandraStorage({
      contactPoints: cfg.cassandraContactPoints,
      localDataCenter: cfg.cassandraDc,
      keyspace: deployment.env.CHAT_CASSANDRA_KEYSPACE,
      applySchema: false,
    });
    try {
      await storage.accounts.putPendingDeletion({ userId: doomed.userId, deviceId: doomed.devices[0]!.deviceId, atMs: Date.now() - 10 * 60_000 });
      await storage.accounts.deleteUser(doomed.userId);
      assert.deepEqual(await storage.accounts.listFriends(friend.userId), [doomed.userId]);
      const next = await startRole("api", deployment.env);
      try {
        await waitFor(async () => (await storage.accounts.listPendingDeletions(Date.now(), 100)).length === 0, "the pending deletion swept", 60_000, 200);
        assert.deepEqual(await storage.accounts.listFriends(friend.userId), []);
        assert.deepEqual(await storage.accounts.listFriends(doomed.userId), []);
      } finally {
        await next.stop();
      }
    } finally {
      await storage.close();
    }
  });
});
