import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { FriendshipState } from "../../gen/es/chat/v1/users_pb.js";
import { StorageUnavailable, type Db } from "../storage/cassandra/session.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { cassandraStores } from "./cassandra-stores.test-support.js";
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

  /** A Db whose lwt fails, once armed, on the `nth` statements matching `pattern` (a timeout: it may not have landed). */
  function failingDb(db: Db) {
    const fault = { pattern: /$^/, nth: [] as number[], seen: 0 };
    const failing = (query: string) => fault.pattern.test(query) && fault.nth.includes(++fault.seen);
    const lwt: Db["lwt"] = async (query, params) => {
      if (failing(query)) throw new StorageUnavailable("injected timeout", true, undefined);
      return db.lwt(query, params);
    };
    const write: Db["write"] = async (query, params) => {
      if (failing(query)) throw new StorageUnavailable("injected timeout", true, undefined);
      return db.write(query, params);
    };
    return { db: Object.create(db, { lwt: { value: lwt }, write: { value: write } }) as Db, fault };
  }

  /** A TestApi whose account store goes through failingDb, for `body` to arm the fault; closed after it, whatever it throws. */
  async function withFailingApi(body: (api: TestApi, fault: ReturnType<typeof failingDb>["fault"]) => Promise<void>) {
    const storage = cassandra();
    const { db, fault } = failingDb(storage.db);
    const api = await TestApi.start(cassandraStores(storage, db));
    try {
      await body(api, fault);
    } finally {
      await api.close();
    }
  }

  it("drops a friendship whose unfriending stopped after the account's own row (its id the lower)", () =>
    withFailingApi(async (api, fault) => {
      const doomedName = name("d");
      const doomed = await api.signUp(doomedName, "my password");
      const friend = await api.signUp(name("f"));
      assert.ok(doomed.userId < friend.userId, "ids grow: the account made first has the lower");
      await doomed.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true });
      // The unfriending's second row (the friend's) times out: one row of the pair is gone.
      Object.assign(fault, { pattern: /^DELETE FROM \S+friendships /, nth: [2] });
      await rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
      const again = (await api.anon.auth.login({ username: doomedName, password: "my password" })).credentials!;
      await api.clients(again.accessToken).auth.deleteAccount({ password: "my password" });
      assert.deepEqual(await api.deps.accounts.listFriends(friend.userId), []);
      assert.deepEqual(await api.deps.accounts.listFriends(doomed.userId), []);
    }));

  it("lets the recipients answer requests the account sent, left on their side by a deletion stopped between their two rows", () =>
    withFailingApi(async (api, fault) => {
      const doomedName = name("d");
      const doomed = await api.signUp(doomedName, "my password");
      const [declining, accepting] = [await api.signUp(name("p")), await api.signUp(name("p"))];
      await doomed.c.users.sendFriendRequest({ userId: declining.userId });
      await doomed.c.users.sendFriendRequest({ userId: accepting.userId });
      // Each withdrawal takes the sender's row first; the recipient's, second, times out: one per
      // run, the first run stopping at the first request and the second at the other.
      Object.assign(fault, { pattern: /^DELETE FROM \S+friend_requests /, nth: [2, 4] });
      for (let run = 0; ; run++) {
        const again = (await api.anon.auth.login({ username: doomedName, password: "my password" })).credentials!;
        const deletion = api.clients(again.accessToken).auth.deleteAccount({ password: "my password" });
        if (run === 2) {
          await deletion;
          break;
        }
        await rpcError(() => deletion);
      }
      // The retries read the account's own rows, where the requests are gone; the recipients' lists still show them.
      for (const peer of [declining, accepting]) {
        const [left] = (await peer.c.users.listFriendRequests({})).requests;
        assert.equal(left?.user?.deleted, true);
      }
      // An answer takes a lone request away (the store's rule): one from a deleted account too.
      const declined = await declining.c.users.respondFriendRequest({ userId: doomed.userId, accept: false });
      assert.equal(declined.state, FriendshipState.NONE);
      const accept = await rpcError(() => accepting.c.users.respondFriendRequest({ userId: doomed.userId, accept: true }));
      assert.equal(accept.code, Code.NotFound);
      for (const peer of [declining, accepting]) {
        assert.deepEqual((await peer.c.users.listFriendRequests({})).requests, []);
        assert.deepEqual(await api.deps.accounts.listFriends(peer.userId), []);
      }
    }));

  it("leaves an account whose deletion stopped before emptying its row findable by search, and one deleted findable by no search", () =>
    withFailingApi(async (api, fault) => {
      const seeker = await api.signUp(name("s"));
      const found = async (username: string) => (await seeker.c.users.searchUsers({ query: username })).users.map((u) => u.userId);
      // The row's emptying times out: the account is not deleted (its owner signs in, and may keep it).
      const keptName = name("k");
      const kept = await api.signUp(keptName, "my password");
      Object.assign(fault, { pattern: /^UPDATE \S+users SET username = ''/, nth: [1], seen: 0 });
      await rpcError(() => kept.c.auth.deleteAccount({ password: "my password" }));
      await api.anon.auth.login({ username: keptName, password: "my password" });
      assert.deepEqual(await found(keptName), [kept.userId]);
      // Its row emptied, the search row's removal times out: deleted, and found by no search.
      const goneName = name("g");
      const gone = await api.signUp(goneName, "my password");
      Object.assign(fault, { pattern: /^DELETE FROM \S+user_search /, nth: [1], seen: 0 });
      await rpcError(() => gone.c.auth.deleteAccount({ password: "my password" }));
      assert.deepEqual(await found(goneName), []);
      assert.equal((await rpcError(() => api.anon.auth.login({ username: goneName, password: "my password" }))).code, Code.Unauthenticated);
      // Its name is free, and found under its new owner.
      const next = await api.signUp(goneName);
      assert.deepEqual(await found(goneName), [next.userId]);
    }));
});
