import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { scratchCassandra } from "../../test/support/cassandra.js";
import type { ApiDeps } from "./deps.js";
import { cassandraStores } from "./cassandra-stores.test-support.js";
import { holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

/**
 * A manager's add lifts the bar of one removed before (barred from the invite
 * link), in the store step that adds them. An add undone after it landed (the
 * one added blocked the adder meanwhile, or reached their group limit) took
 * them out again but left them unbarred: the link let them in, the removal
 * walked around. Run on each store, as their bars differ.
 */
function barUndo(start: (deps: Partial<ApiDeps>) => Promise<TestApi>) {
  let api: TestApi;
  afterEach(async () => api?.close());

  // One keyspace for every test on Cassandra: users of names of their own.
  const signUp = () => api.signUp(`b${randomBytes(4).toString("hex")}`);

  /** Alice's group with bob in it, its link, and bob out of it by `out` (a removal, or leaving). */
  async function groupWithBobOut(out: "removed" | "left") {
    const [alice, bob] = [await signUp(), await signUp()];
    const channelId = (await alice.c.channels.createGroup({ title: "g", memberUserIds: [bob.userId] })).channel!.channelId;
    const { code } = await alice.c.channels.getInviteLink({ channelId });
    if (out === "removed") await alice.c.channels.removeMember({ channelId, userId: bob.userId });
    else await bob.c.channels.leaveGroup({ channelId });
    return { alice, bob, channelId, code };
  }

  /** Alice adds bob back, and `meanwhile` runs after the add's checks, before its store step. */
  async function addBackWhile(alice: TestUser, bob: TestUser, channelId: bigint, meanwhile: () => Promise<unknown>) {
    const held = holdNext(api.deps.channels, "addMembers");
    const add = alice.c.channels.addMembers({ channelId, userIds: [bob.userId] });
    await held.reached;
    await meanwhile();
    held.release();
    await add;
    assert.equal(await api.deps.channels.getMember(channelId, bob.userId), undefined, "the add was undone");
  }

  const refusedByBar = async (call: () => Promise<unknown>) => {
    const err = await rpcError(call);
    assert.deepEqual([err.code, err.rawMessage.includes("an admin removed you")], [Code.PermissionDenied, true]);
  };

  it("keeps the bar of one removed whose add back was undone by their block of the adder", async () => {
    api = await start({});
    const { alice, bob, channelId, code } = await groupWithBobOut("removed");
    await addBackWhile(alice, bob, channelId, () => bob.c.users.blockUser({ userId: alice.userId }));
    await refusedByBar(() => bob.c.channels.joinByInvite({ code }));
    await refusedByBar(() => bob.c.channels.describeInvite({ code }));
    assert.equal(await api.deps.channels.getMember(channelId, bob.userId), undefined);
  });

  it("keeps the bar of one removed whose add back was undone by their group limit", async () => {
    api = await start({ maxGroupsPerUser: 1 });
    const { alice, bob, channelId, code } = await groupWithBobOut("removed");
    // Bob's one group, made while the add is held past its check of his groups.
    let own = 0n;
    await addBackWhile(alice, bob, channelId, async () => {
      own = (await bob.c.channels.createGroup({ title: "mine", memberUserIds: [] })).channel!.channelId;
    });
    await bob.c.channels.leaveGroup({ channelId: own });
    await refusedByBar(() => bob.c.channels.joinByInvite({ code }));
  });

  it("bars nobody who left by themselves when their add back is undone", async () => {
    api = await start({});
    const { alice, bob, channelId, code } = await groupWithBobOut("left");
    await addBackWhile(alice, bob, channelId, () => bob.c.users.blockUser({ userId: alice.userId }));
    await bob.c.channels.joinByInvite({ code });
    assert.ok(await api.deps.channels.getMember(channelId, bob.userId));
  });

  it("lifts the bar of one added back whose add stands", async () => {
    api = await start({});
    const { alice, bob, channelId, code } = await groupWithBobOut("removed");
    await alice.c.channels.addMembers({ channelId, userIds: [bob.userId] });
    await bob.c.channels.leaveGroup({ channelId });
    await bob.c.channels.joinByInvite({ code });
  });
}

describe("api: the bar of an add back that was undone", function () {
  this.timeout(60_000);

  describe("on SQLite", () => barUndo((deps) => TestApi.start(deps)));

  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    barUndo((deps) => TestApi.start({ ...cassandraStores(cassandra()), ...deps }));
  });
});
