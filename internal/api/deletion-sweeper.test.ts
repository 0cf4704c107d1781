import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Registry } from "prom-client";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import type { AccountStore } from "../accounts/store.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { waitFor } from "../../test/support/wait.js";
import { cassandraStores } from "./cassandra-stores.test-support.js";
import type { ApiDeps } from "./deps.js";
import { ABANDONED_DELETION_MS, DELETION_SWEEP_GRACE_MS, DeletionSweeper } from "./deletion-sweeper.js";
import { apiMetrics } from "./metrics.js";
import { holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

/**
 * The real SQLite adapter, whose first `method` call after the account is
 * marked deleted throws: the process running the deletion dying there (a
 * crash, a kill, an engine error) as far as what is stored can tell.
 */
function cutAfterMark(real: AccountStore, method: keyof AccountStore & string) {
  const cut = { marked: false, thrown: false };
  const wrapper = Object.create(real, {
    deleteUser: {
      value: async (userId: bigint) => {
        await real.deleteUser(userId);
        cut.marked = true;
      },
      writable: true,
    },
    [method]: {
      value: async (...args: unknown[]) => {
        if (cut.marked && !cut.thrown) {
          cut.thrown = true;
          throw new Error("injected: the process died here");
        }
        return (real[method] as (...a: unknown[]) => Promise<unknown>).apply(real, args);
      },
      writable: true,
    },
  }) as AccountStore;
  return { wrapper, cut };
}

/** Run on each store: the record, its listing and its removal are the adapter's. */
function sweeps(start: (overrides: Partial<ApiDeps>) => Promise<TestApi>) {
  let api: TestApi;
  let registry: Registry;
  /** The store under test, before any test wraps it. */
  let accounts: AccountStore;
  beforeEach(async () => {
    registry = new Registry();
    api = await start({ metrics: apiMetrics(registry) });
    accounts = api.deps.accounts;
  });
  afterEach(async () => api.close());

  const name = (prefix: string) => `${prefix}${randomBytes(4).toString("hex")}`;
  const swept = async () => (await registry.getSingleMetric("chat_auth_events_total")!.get()).values.find((v) => v.labels.event === "deletion_swept")?.value;

  /**
   * `doomed`'s deletion, with what races it landing between its first pass and its mark (a login,
   * a friendship, an add to a group), and the process dying at the final pass's first store call.
   */
  async function cutDeletion(doomed: TestUser, doomedName: string) {
    const friend = await api.signUp(name("f"));
    const admin = await api.signUp(name("a"));
    const group = (await admin.c.channels.createGroup({ title: "Trip", memberUserIds: [] })).channel!;
    const { wrapper, cut } = cutAfterMark(accounts, "listDevices");
    Object.assign(api.deps, { accounts: wrapper });
    const marking = holdNext(wrapper, "deleteUser");
    const deletion = rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
    await marking.reached;
    // The account is not marked yet: its password still signs in, and a friendship and an add land.
    const late = (await api.anon.auth.login({ username: doomedName, password: "my password" })).credentials!;
    await friend.c.users.sendFriendRequest({ userId: doomed.userId });
    await api.clients(late.accessToken).users.respondFriendRequest({ userId: friend.userId, accept: true });
    await admin.c.channels.addMembers({ channelId: group.channelId, userIds: [doomed.userId] });
    marking.release();
    await deletion;
    assert.ok(cut.thrown, "the final pass was cut short");
    return { friend, group, lateDeviceId: late.deviceId };
  }

  /** The pushes telling `to` that `userId` is offline, with no last seen (as a deletion tells). */
  const offlineTo = (to: bigint, userId: bigint) =>
    api.sessions.framesOf("presence").filter((p) => {
      const presence = p.frame.kind.case === "presence" ? p.frame.kind.value.presence : undefined;
      return p.userIds.includes(to) && presence?.userId === userId && presence.status === PresenceStatus.OFFLINE && !presence.lastSeenAt;
    });
  const isMember = async (channelId: bigint, userId: bigint) => (await api.deps.channels.listMembers(channelId)).some((m) => m.userId === userId);

  it("finishes what the final pass would have: the racing login signed out, the friendship dropped, the group left, the record gone", async () => {
    const doomedName = name("d");
    const doomed = await api.signUp(doomedName, "my password");
    const { friend, group, lateDeviceId } = await cutDeletion(doomed, doomedName);
    // What the final pass was there for stayed: nobody can ask for the deletion again.
    assert.deepEqual(await accounts.listFriends(friend.userId), [doomed.userId]);
    assert.ok(await isMember(group.channelId, doomed.userId));
    assert.equal((await accounts.getDevice(doomed.userId, lateDeviceId))?.revoked, false);
    const [pending] = await accounts.listPendingDeletions(api.clock.ms, 10);
    assert.equal(pending?.userId, doomed.userId);
    assert.equal(pending?.deviceId, doomed.deviceId);

    const sweeper = new DeletionSweeper(api.deps);
    // Within the grace the deletion may still be running elsewhere: left alone.
    assert.equal(await sweeper.sweep(), 0);
    assert.equal((await accounts.listPendingDeletions(api.clock.ms, 10)).length, 1);
    api.clock.ms += DELETION_SWEEP_GRACE_MS;
    api.sessions.closed.length = 0;
    assert.equal(await sweeper.sweep(), 1);
    assert.deepEqual(await accounts.listFriends(friend.userId), []);
    assert.deepEqual(await accounts.listFriends(doomed.userId), []);
    assert.ok(!(await isMember(group.channelId, doomed.userId)));
    assert.equal((await accounts.getDevice(doomed.userId, lateDeviceId))?.revoked, true);
    assert.ok(api.sessions.closed.some((c) => c.userId === doomed.userId && c.deviceId === lateDeviceId));
    assert.deepEqual(await accounts.listPendingDeletions(api.clock.ms, 10), []);
    assert.equal(await swept(), 1);
    // Done: the next sweep finds nothing.
    assert.equal(await sweeper.sweep(), 0);
  });

  it("tells the account offline to the friends the first pass had dropped, whom no friendship names any more", async () => {
    const doomed = await api.signUp(name("d"), "my password");
    const friend = await api.signUp(name("f"));
    await doomed.c.users.sendFriendRequest({ userId: friend.userId });
    await friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true });
    const { wrapper, cut } = cutAfterMark(accounts, "listDevices");
    Object.assign(api.deps, { accounts: wrapper });
    await rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
    assert.ok(cut.thrown, "the final pass was cut short");
    Object.assign(api.deps, { accounts });
    // The first pass dropped the friendship, and its process died before telling the friend.
    assert.deepEqual(await accounts.listFriends(friend.userId), []);
    assert.equal(offlineTo(friend.userId, doomed.userId).length, 0);
    api.clock.ms += DELETION_SWEEP_GRACE_MS;
    assert.equal(await new DeletionSweeper(api.deps).sweep(), 1);
    assert.equal(offlineTo(friend.userId, doomed.userId).length, 1, "the friend told the deleted account is offline");
    assert.deepEqual(await accounts.listPendingDeletions(api.clock.ms, 10), []);
  });

  it("tells the friends an attempt cut short before the mark had dropped, when its owner asks again", async () => {
    const doomedName = name("d");
    const doomed = await api.signUp(doomedName, "my password");
    const friend = await api.signUp(name("f"));
    await doomed.c.users.sendFriendRequest({ userId: friend.userId });
    await friend.c.users.respondFriendRequest({ userId: doomed.userId, accept: true });
    // Armed at once: the mark itself fails, after the friendships were dropped.
    const failing = cutAfterMark(accounts, "deleteUser");
    failing.cut.marked = true;
    Object.assign(api.deps, { accounts: failing.wrapper });
    await rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
    Object.assign(api.deps, { accounts });
    assert.deepEqual(await accounts.listFriends(friend.userId), []);
    assert.equal(offlineTo(friend.userId, doomed.userId).length, 0);
    // The next attempt finds no friendship; the first one's record names the friend.
    const again = (await api.anon.auth.login({ username: doomedName, password: "my password" })).credentials!;
    await api.clients(again.accessToken).auth.deleteAccount({ password: "my password" });
    assert.equal(offlineTo(friend.userId, doomed.userId).length, 1, "the friend told the deleted account is offline");
    assert.deepEqual(await accounts.listPendingDeletions(api.clock.ms, 10), []);
  });

  it("sweeps at start-up, and a sweep that fails on one deletion tries it again at the next", async () => {
    const doomedName = name("d");
    const doomed = await api.signUp(doomedName, "my password");
    const { friend } = await cutDeletion(doomed, doomedName);
    api.clock.ms += DELETION_SWEEP_GRACE_MS;
    // The sweep itself cut short once, at its first store call after reading the account (armed at once).
    const failing = cutAfterMark(accounts, "listDevices");
    failing.cut.marked = true;
    Object.assign(api.deps, { accounts: failing.wrapper });
    const sweeper = new DeletionSweeper(api.deps, { intervalMs: 20 });
    sweeper.start();
    try {
      await waitFor(async () => (await accounts.listPendingDeletions(api.clock.ms, 10)).length === 0, "the deletion swept");
    } finally {
      await sweeper.close();
    }
    assert.ok(failing.cut.thrown);
    assert.deepEqual(await accounts.listFriends(friend.userId), []);
    assert.equal(await swept(), 1);
  });

  it("leaves a deletion cut short before the mark to its owner, and drops its record once abandoned", async () => {
    const keptName = name("k");
    const doomed = await api.signUp(keptName, "my password");
    // Armed at once: the mark itself fails, after the record.
    const failing = cutAfterMark(accounts, "deleteUser");
    failing.cut.marked = true;
    Object.assign(api.deps, { accounts: failing.wrapper });
    await rpcError(() => doomed.c.auth.deleteAccount({ password: "my password" }));
    Object.assign(api.deps, { accounts });
    const sweeper = new DeletionSweeper(api.deps);
    api.clock.ms += DELETION_SWEEP_GRACE_MS;
    assert.equal(await sweeper.sweep(), 0);
    assert.equal((await accounts.listPendingDeletions(api.clock.ms, 10)).length, 1);
    // The owner signs in and keeps the account.
    const again = (await api.anon.auth.login({ username: keptName, password: "my password" })).credentials!;
    api.clock.ms += ABANDONED_DELETION_MS;
    assert.equal(await sweeper.sweep(), 0);
    assert.deepEqual(await accounts.listPendingDeletions(api.clock.ms, 10), []);
    assert.equal((await accounts.getDevice(doomed.userId, again.deviceId))?.revoked, false);
    assert.equal(await swept(), 0);
  });

  it("tells the friends an abandoned deletion had dropped, and no longer reached, offline as it drops the record", async () => {
    const keptName = name("k");
    const kept = await api.signUp(keptName, "my password");
    const [dropped, befriendedAgain] = [await api.signUp(name("f")), await api.signUp(name("f"))];
    for (const f of [dropped, befriendedAgain]) {
      await kept.c.users.sendFriendRequest({ userId: f.userId });
      await f.c.users.respondFriendRequest({ userId: kept.userId, accept: true });
    }
    const failing = cutAfterMark(accounts, "deleteUser");
    failing.cut.marked = true;
    Object.assign(api.deps, { accounts: failing.wrapper });
    await rpcError(() => kept.c.auth.deleteAccount({ password: "my password" }));
    Object.assign(api.deps, { accounts });
    // The owner keeps the account, and makes one of the friendships again.
    const again = api.clients((await api.anon.auth.login({ username: keptName, password: "my password" })).credentials!.accessToken);
    await again.users.sendFriendRequest({ userId: befriendedAgain.userId });
    await befriendedAgain.c.users.respondFriendRequest({ userId: kept.userId, accept: true });
    const sweeper = new DeletionSweeper(api.deps);
    api.clock.ms += DELETION_SWEEP_GRACE_MS;
    assert.equal(await sweeper.sweep(), 0);
    assert.equal(offlineTo(dropped.userId, kept.userId).length, 0, "told while the owner may still ask again");
    api.clock.ms += ABANDONED_DELETION_MS;
    assert.equal(await sweeper.sweep(), 0);
    assert.deepEqual(await accounts.listPendingDeletions(api.clock.ms, 10), []);
    assert.equal(offlineTo(dropped.userId, kept.userId).length, 1, "the friend dropped told");
    assert.equal(offlineTo(befriendedAgain.userId, kept.userId).length, 0, "a friend again told offline");
  });
}

describe("api: a deletion cut short after the account is marked, finished by the sweep", function () {
  this.timeout(60_000);

  describe("on SQLite", () => sweeps((o) => TestApi.start(o)));

  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    sweeps((o) => TestApi.start({ ...cassandraStores(cassandra()), ...o }));
  });
});
