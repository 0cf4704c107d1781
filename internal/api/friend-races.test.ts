import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { FriendshipState } from "../../gen/es/chat/v1/users_pb.js";
import type { AccountStore } from "../accounts/store.js";
import type { Id } from "../model/types.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import type { ApiDeps } from "./deps.js";
import { holdNext, rpcError, TestApi } from "./testkit.js";

/**
 * Makes the first `count` reads of `user`'s list by `method` all answer before
 * any of them returns: calls at the same moment that all pass a limit's read.
 */
function readsTogether(accounts: AccountStore, method: "listFriends" | "listFriendRequests", user: Id, count: number): () => void {
  const original = accounts[method] as (userId: Id) => Promise<unknown>;
  let reads = 0;
  let allRead!: () => void;
  const readByAll = new Promise<void>((resolve) => (allRead = resolve));
  (accounts as unknown as Record<string, unknown>)[method] = async (userId: Id) => {
    const answer = await original.call(accounts, userId);
    if (userId === user && reads < count) {
      if (++reads === count) allRead();
      await readByAll;
    }
    return answer;
  };
  return () => ((accounts as unknown as Record<string, unknown>)[method] = original);
}

/** Every refusal among `results` is LIMIT_REACHED. */
function onlyLimitRefusals(results: PromiseSettledResult<unknown>[]): void {
  for (const r of results) {
    if (r.status === "rejected") {
      const e = ConnectError.from(r.reason);
      assert.deepEqual([e.code, e.metadata.get("chat-error-code")], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"], String(r.reason));
    }
  }
}

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

/** Friend limits against calls that all pass their read before any writes, on `start`'s account store. */
function limitsUnderBurst(start: (overrides: Partial<ApiDeps>) => Promise<TestApi>) {
  const MAX = 2;
  const BURST = 5;
  let api: TestApi;
  afterEach(async () => api.close());
  const signUp = () => api.signUp(`f${randomBytes(5).toString("hex")}`);

  it("holds a user's waiting requests when many send at the same moment and all pass its read", async () => {
    api = await start({ friendLimits: { maxFriends: MAX, maxPendingRequests: MAX } });
    const target = await signUp();
    const senders = [];
    for (let i = 0; i < BURST; i++) senders.push(await signUp());
    const restore = readsTogether(api.deps.accounts, "listFriendRequests", target.userId, BURST);
    try {
      onlyLimitRefusals(await Promise.allSettled(senders.map((s) => s.c.users.sendFriendRequest({ userId: target.userId }))));
    } finally {
      restore();
    }
    const waiting = (await target.c.users.listFriendRequests({})).requests.length;
    assert.ok(waiting <= MAX, `${waiting} requests waiting, past ${MAX}`);
    // What the racing requests undid leaves the room they found.
    for (const s of senders.slice(0, MAX - waiting)) await s.c.users.sendFriendRequest({ userId: target.userId });
    assert.equal((await target.c.users.listFriendRequests({})).requests.length, MAX);
  });

  it("holds a user's friends when many accept at the same moment and all pass its read, the requests left waiting", async () => {
    api = await start({ friendLimits: { maxFriends: MAX, maxPendingRequests: 10 } });
    const user = await signUp();
    const others = [];
    for (let i = 0; i < BURST; i++) {
      const other = await signUp();
      await user.c.users.sendFriendRequest({ userId: other.userId });
      others.push(other);
    }
    const restore = readsTogether(api.deps.accounts, "listFriends", user.userId, BURST);
    try {
      onlyLimitRefusals(await Promise.allSettled(others.map((o) => o.c.users.respondFriendRequest({ userId: user.userId, accept: true }))));
    } finally {
      restore();
    }
    const friends = (await user.c.users.listFriends({})).friends.length;
    assert.ok(friends <= MAX, `${friends} friends, past ${MAX}`);
    assert.equal((await user.c.users.listFriendRequests({})).requests.length, BURST - friends, "a refused acceptance leaves its request waiting");
  });
}

describe("api: friend limits under a burst", function () {
  this.timeout(60_000);
  describe("on SQLite", () => limitsUnderBurst((overrides) => TestApi.start(overrides)));
  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    // Accounts on Cassandra (the lists are the store's); the rest stays on SQLite.
    limitsUnderBurst((overrides) => TestApi.start({ ...overrides, accounts: cassandra().accounts }));
  });
});

describe("api: a friend request whose sender's row is gone (on Cassandra, a withdrawal or send cut short)", function () {
  this.timeout(60_000);
  const cassandra = scratchCassandra();
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start({ accounts: cassandra().accounts })));
  afterEach(async () => api.close());
  const signUp = () => api.signUp(`l${randomBytes(5).toString("hex")}`);

  /** A request from `from` to `to` with only the recipient's row left, as a withdrawal stopped after its first delete leaves it. */
  async function loneRequest(from: Id, to: Id): Promise<void> {
    const storage = cassandra();
    await storage.client.execute(
      `DELETE FROM ${storage.schema.keyspace}.friend_requests WHERE user_id = ? AND other_user_id = ? AND outgoing = true`,
      [from, to],
      { prepare: true },
    );
    assert.equal(await storage.accounts.hasFriendRequest(from, to), false);
  }

  it("declines it, and it is off the recipient's list", async () => {
    const [a, b] = [await signUp(), await signUp()];
    await a.c.users.sendFriendRequest({ userId: b.userId });
    await loneRequest(a.userId, b.userId);
    assert.equal((await b.c.users.listFriendRequests({})).requests.length, 1, "the recipient still sees it");
    assert.equal((await b.c.users.respondFriendRequest({ userId: a.userId, accept: false })).state, FriendshipState.NONE);
    assert.deepEqual((await b.c.users.listFriendRequests({})).requests, []);
  });

  it("refuses to accept it NOT_FOUND, saying it was withdrawn, and takes it off the list; no friendship is made", async () => {
    const [a, b] = [await signUp(), await signUp()];
    await a.c.users.sendFriendRequest({ userId: b.userId });
    await loneRequest(a.userId, b.userId);
    const err = await rpcError(() => b.c.users.respondFriendRequest({ userId: a.userId, accept: true }));
    assert.equal(err.code, Code.NotFound);
    assert.match(err.rawMessage, /withdrawn/);
    assert.deepEqual((await b.c.users.listFriendRequests({})).requests, []);
    assert.deepEqual((await b.c.users.listFriends({})).friends, []);
    // A new request from the sender is a request again.
    await a.c.users.sendFriendRequest({ userId: b.userId });
    assert.equal((await b.c.users.respondFriendRequest({ userId: a.userId, accept: true })).state, FriendshipState.FRIENDS);
  });

  it("still answers NOT_FOUND, as before, where there is no row at all", async () => {
    const [a, b] = [await signUp(), await signUp()];
    const err = await rpcError(() => b.c.users.respondFriendRequest({ userId: a.userId, accept: false }));
    assert.deepEqual([err.code, err.rawMessage], [Code.NotFound, "no pending friend request from this user"]);
  });
});
