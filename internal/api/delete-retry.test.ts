import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { CassandraAccountStore, CassandraChannelStore } from "../storage/cassandra/index.js";
import { StorageUnavailable, type Db } from "../storage/cassandra/session.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import type { ApiDeps } from "./deps.js";
import { rpcError, TestApi } from "./testkit.js";

/**
 * A deletion cut short (a store timeout, the process killed) is finished by
 * signing in and asking again: the second run must still find what the first
 * left behind, though it reads only the account's own rows.
 */
describe("api: a deletion cut short, asked again", function () {
  this.timeout(60_000);
  const cassandra = scratchCassandra();
  const name = (prefix: string) => `${prefix}${randomBytes(4).toString("hex")}`;

  /** A Db whose lwt fails, once armed, on the `nth` statement matching `pattern` (a timeout: it may not have landed). */
  function failingDb(db: Db) {
    const fault = { pattern: /$^/, nth: 0, seen: 0 };
    const lwt: Db["lwt"] = async (query, params) => {
      if (fault.pattern.test(query) && ++fault.seen === fault.nth) throw new StorageUnavailable("injected timeout", true, undefined);
      return db.lwt(query, params);
    };
    return { db: Object.create(db, { lwt: { value: lwt } }) as Db, fault };
  }

  it("drops a friendship whose unfriending stopped after the account's own row (its id the lower)", async () => {
    const storage = cassandra();
    const { db, fault } = failingDb(storage.db);
    const overrides: Partial<ApiDeps> = { accounts: new CassandraAccountStore(db), channels: new CassandraChannelStore(storage.db, storage.messages) };
    const api = await TestApi.start(overrides);
    try {
      const doomedName = name("d");
      const doomed = await api.signUp(doomedName, "my password");
      const friend = await api.signUp(name("f"));
      assert.ok(doomed.userId < friend.userId, "ids grow: the account made first has the lower");
      await doomed.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true });
      // The unfriending's second row (the friend's) times out: one row of the pair is gone.
      Object.assign(fault, { pattern: /^DELETE FROM \S+friendships /, nth: 2 });
      await rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
      const again = (await api.anon.auth.login({ username: doomedName, password: "my password" })).credentials!;
      await api.clients(again.accessToken).auth.deleteAccount({ password: "my password" });
      assert.deepEqual(await api.deps.accounts.listFriends(friend.userId), []);
      assert.deepEqual(await api.deps.accounts.listFriends(doomed.userId), []);
    } finally {
      await api.close();
    }
  });
});
