import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { cassandraStores } from "./cassandra-stores.test-support.js";
import { holdNext, rpcError, TestApi } from "./testkit.js";

/**
 * A friendship, a friend request or a direct chat made with an account while
 * it is being deleted: whichever side lands last, none is left pointing at
 * the deleted account. Run on each store, as the window lies between them.
 */
function deletionRaces(start: () => Promise<TestApi>) {
  let api: TestApi;
  beforeEach(async () => (api = await start()));
  afterEach(async () => api.close());

  const name = (prefix: string) => `${prefix}${randomBytes(4).toString("hex")}`;

  it("drops a friendship that landed after the deletion dropped the account's friends", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const friend = await api.signUp(name("f"));
    await doomed.c.users.sendFriendRequest({ userId: friend.userId });
    // The accept has read the request; the deletion then drops friends and requests,
    // and the friendship lands before the account is marked deleted.
    const adding = holdNext(api.deps.accounts, "addFriendship");
    const accept = friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true });
    await adding.reached;
    const marking = holdNext(api.deps.accounts, "deleteUser");
    const deletion = doomed.c.auth.deleteAccount({ password: "my password" });
    await marking.reached;
    adding.release();
    await accept;
    marking.release();
    await deletion;
    assert.deepEqual(await api.deps.accounts.listFriends(friend.userId), []);
    assert.deepEqual(await api.deps.accounts.listFriends(doomed.userId), []);
  });

  it("refuses, and drops, a friendship added after the account was deleted whole", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const friend = await api.signUp(name("f"));
    await doomed.c.users.sendFriendRequest({ userId: friend.userId });
    // The accept checked the account, then the deletion ran from start to end.
    const held = holdNext(api.deps.accounts, "addFriendship");
    const accept = rpcError(() => friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true }));
    await held.reached;
    await doomed.c.auth.deleteAccount({ password: "my password" });
    held.release();
    assert.equal((await accept).code, Code.NotFound);
    assert.deepEqual(await api.deps.accounts.listFriends(friend.userId), []);
    assert.deepEqual(await api.deps.accounts.listFriends(doomed.userId), []);
  });

  it("drops a friend request sent while the account was being deleted", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const sender = await api.signUp(name("s"));
    const held = holdNext(api.deps.accounts, "deleteUser");
    const deletion = doomed.c.auth.deleteAccount({ password: "my password" });
    await held.reached;
    await sender.c.users.sendFriendRequest({ userId: doomed.userId });
    held.release();
    await deletion;
    assert.deepEqual(await api.deps.accounts.listFriendRequests(sender.userId), []);
  });

  it("refuses, and drops, a friend request stored after the account was deleted whole", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const sender = await api.signUp(name("s"));
    const held = holdNext(api.deps.accounts, "putFriendRequest");
    const request = rpcError(() => sender.c.users.sendFriendRequest({ userId: doomed.userId }));
    await held.reached;
    await doomed.c.auth.deleteAccount({ password: "my password" });
    held.release();
    assert.equal((await request).code, Code.NotFound);
    assert.deepEqual(await api.deps.accounts.listFriendRequests(sender.userId), []);
    assert.deepEqual(await api.deps.accounts.listFriendRequests(doomed.userId), []);
  });

  it("leaves no seat to an account added to a group on either side of its deletion's mark", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const late = await api.signUp(name("l"), "my password");
    const admin = await api.signUp(name("a"));
    const group = (await admin.c.channels.createGroup({ title: "Trip", memberUserIds: [] })).channel!;
    // Added before the mark, after the deletion left its groups.
    const marking = holdNext(api.deps.accounts, "deleteUser");
    const deletion = doomed.c.auth.deleteAccount({ password: "my password" });
    await marking.reached;
    await admin.c.channels.addMembers({ channelId: group.channelId, userIds: [doomed.userId] });
    marking.release();
    await deletion;
    // Checked before the deletion, added after it.
    const adding = holdNext(api.deps.channels, "addMembers");
    const add = admin.c.channels.addMembers({ channelId: group.channelId, userIds: [late.userId] });
    await adding.reached;
    await late.c.auth.deleteAccount({ password: "my password" });
    adding.release();
    await add;
    assert.deepEqual((await api.deps.channels.listMembers(group.channelId)).map((m) => m.userId), [admin.userId]);
  });

  it("takes the account out of a group it made from another device while it was deleted, ownership passing on", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const other = await api.signUp(name("o"));
    const phone = (await api.anon.auth.login({ username: (await doomed.c.users.getMe({})).user!.username, password: "my password" })).credentials!;
    const held = holdNext(api.deps.channels, "createGroup");
    const create = rpcError(() => api.clients(phone.accessToken).channels.createGroup({ title: "late", memberUserIds: [other.userId] }));
    await held.reached;
    await doomed.c.auth.deleteAccount({ password: "my password" });
    held.release();
    assert.equal((await create).code, Code.Unauthenticated);
    assert.deepEqual(await api.deps.channels.listMemberships(doomed.userId), []);
    const [left] = await api.deps.channels.listMemberships(other.userId);
    assert.deepEqual((await api.deps.channels.listMembers(left!.channelId)).map((m) => [m.userId, m.role]), [[other.userId, "owner"]]);
  });

  it("takes the account out of a group it joined by link from another device while it was deleted", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const admin = await api.signUp(name("a"));
    const group = (await admin.c.channels.createGroup({ title: "open", memberUserIds: [] })).channel!;
    const { code } = await admin.c.channels.getInviteLink({ channelId: group.channelId });
    const phone = (await api.anon.auth.login({ username: (await doomed.c.users.getMe({})).user!.username, password: "my password" })).credentials!;
    const held = holdNext(api.deps.channels, "addMembers");
    const join = rpcError(() => api.clients(phone.accessToken).channels.joinByInvite({ code }));
    await held.reached;
    await doomed.c.auth.deleteAccount({ password: "my password" });
    held.release();
    assert.equal((await join).code, Code.Unauthenticated);
    assert.deepEqual((await api.deps.channels.listMembers(group.channelId)).map((m) => m.userId), [admin.userId]);
  });

  it("refuses a direct chat made after the account was deleted whole, and leaves it as a deletion leaves one", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const peer = await api.signUp(name("p"));
    const held = holdNext(api.deps.channels, "getOrCreateDirect");
    const open = rpcError(() => peer.c.channels.openDirect({ userId: doomed.userId }));
    await held.reached;
    await doomed.c.auth.deleteAccount({ password: "my password" });
    held.release();
    assert.equal((await open).code, Code.NotFound);
    // A chat of a deleted account is one whose sends are refused: the account blocks the peer, as the deletion does.
    assert.deepEqual(await api.deps.accounts.blockersBetween(doomed.userId, peer.userId), [doomed.userId]);
  });
}

describe("api: deleting an account while others befriend it or open a chat with it", function () {
  this.timeout(60_000);

  describe("on SQLite", () => deletionRaces(() => TestApi.start()));

  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    // Fresh adapter objects per api, one keyspace: accounts and channels are the stores under test.
    deletionRaces(() => TestApi.start(cassandraStores(cassandra())));
  });
});
