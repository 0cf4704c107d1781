import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { EnvReader } from "../config/env.js";
import { CassandraChannelStore } from "../storage/cassandra/index.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { DEFAULT_MAX_GROUPS_PER_USER, readApiLimits } from "../throttle/config.js";
import type { ApiDeps } from "./deps.js";
import { rpcError, TestApi } from "./testkit.js";

const MAX = 3;

function groupLimit(start: (overrides: Partial<ApiDeps>) => Promise<TestApi>) {
  let api: TestApi;
  beforeEach(async () => (api = await start({ maxGroupsPerUser: MAX })));
  afterEach(async () => api.close());

  const name = (prefix: string) => `${prefix}${randomBytes(4).toString("hex")}`;

  it("refuses a group past the limit to its creator, naming the limit; a direct chat does not count, leaving makes room", async () => {
    const me = await api.signUp(name("c"));
    const peer = await api.signUp(name("p"));
    await me.c.channels.openDirect({ userId: peer.userId });
    const groups = [];
    for (let i = 0; i < MAX; i++) groups.push((await me.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] })).channel!);
    const refused = await rpcError(() => me.c.channels.createGroup({ title: "one more", memberUserIds: [] }));
    assert.deepEqual([refused.code, refused.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.match(refused.rawMessage, new RegExp(`\\b${MAX} groups\\b`));
    assert.equal((await me.c.channels.listChannels({})).channels.length, MAX + 1);

    await me.c.channels.leaveGroup({ channelId: groups[0]!.channelId });
    await me.c.channels.createGroup({ title: "room again", memberUserIds: [] });
  });

  it("refuses to add, or put in a new group, a user in as many groups as one may be, and names them", async () => {
    const full = await api.signUp(name("f"));
    const admin = await api.signUp(name("a"));
    const other = await api.signUp(name("o"));
    for (let i = 0; i < MAX; i++) await full.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] });
    const group = (await admin.c.channels.createGroup({ title: "mine", memberUserIds: [] })).channel!;

    const add = await rpcError(() => admin.c.channels.addMembers({ channelId: group.channelId, userIds: [other.userId, full.userId] }));
    assert.deepEqual([add.code, add.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.match(add.rawMessage, new RegExp(`${MAX} groups.*${full.userId}`));
    assert.deepEqual((await admin.c.channels.listMembers({ channelId: group.channelId })).members.map((m) => m.userId), [admin.userId]);

    const create = await rpcError(() => admin.c.channels.createGroup({ title: "with them", memberUserIds: [full.userId] }));
    assert.equal(create.chatCode, "ERROR_CODE_LIMIT_REACHED");

    // Someone already in the group takes no further place.
    const theirs = (await full.c.channels.listChannels({})).channels[0]!;
    await full.c.channels.addMembers({ channelId: theirs.channelId, userIds: [full.userId, admin.userId] });
  });

  it("holds when adds at the same moment all pass its read (joins by link, AddMembers, CreateGroup with and by the user): none stays past it", async () => {
    const user = await api.signUp(name("u"));
    const admin = await api.signUp(name("a"));
    const creator = await api.signUp(name("c"));
    for (let i = 0; i < MAX - 1; i++) await user.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] });
    const open = [];
    for (let i = 0; i < 3; i++) open.push((await admin.c.channels.createGroup({ title: `open${i}`, memberUserIds: [] })).channel!);
    const [linkA, linkB] = await Promise.all(open.slice(0, 2).map(async (g) => (await admin.c.channels.getInviteLink({ channelId: g.channelId })).code));
    const groupsOf = async () => (await user.c.channels.listChannels({})).channels.filter((c) => c.kind === ChannelKind.GROUP).length;

    // Every add's read of the user's groups answers before any of them writes.
    const store = api.deps.channels;
    const original = store.inGroupsAtLeast;
    const adds = 5;
    let reads = 0;
    let allRead!: () => void;
    const readByAll = new Promise<void>((resolve) => (allRead = resolve));
    store.inGroupsAtLeast = async (userIds, n) => {
      const answer = await original.call(store, userIds, n);
      if (userIds.includes(user.userId) && n === MAX && reads < adds) {
        if (++reads === adds) allRead();
        await readByAll;
      }
      return answer;
    };
    try {
      const results = await Promise.allSettled([
        user.c.channels.joinByInvite({ code: linkA! }),
        user.c.channels.joinByInvite({ code: linkB! }),
        admin.c.channels.addMembers({ channelId: open[2]!.channelId, userIds: [user.userId] }),
        creator.c.channels.createGroup({ title: "new", memberUserIds: [user.userId] }),
        user.c.channels.createGroup({ title: "own", memberUserIds: [] }),
      ]);
      for (const r of results) {
        if (r.status === "rejected") assert.equal(ConnectError.from(r.reason).code, Code.FailedPrecondition, String(r.reason));
      }
    } finally {
      store.inGroupsAtLeast = original;
    }
    assert.ok((await groupsOf()) <= MAX, `in ${await groupsOf()} groups, past ${MAX}`);
    // What the racing adds undid leaves the room they found: a join now fits.
    while ((await groupsOf()) > MAX - 1) {
      const some = (await user.c.channels.listChannels({})).channels.find((c) => c.kind === ChannelKind.GROUP);
      await user.c.channels.leaveGroup({ channelId: some!.channelId });
    }
    const host = await api.signUp(name("h"));
    const fresh = (await host.c.channels.createGroup({ title: "fresh", memberUserIds: [] })).channel!;
    await user.c.channels.joinByInvite({ code: (await host.c.channels.getInviteLink({ channelId: fresh.channelId })).code });
    assert.equal(await groupsOf(), MAX);
  });

  it("refuses a join by invite link past the limit", async () => {
    const full = await api.signUp(name("f"));
    const admin = await api.signUp(name("a"));
    for (let i = 0; i < MAX; i++) await full.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] });
    const group = (await admin.c.channels.createGroup({ title: "open", memberUserIds: [] })).channel!;
    const { code } = await admin.c.channels.getInviteLink({ channelId: group.channelId });
    const join = await rpcError(() => full.c.channels.joinByInvite({ code }));
    assert.deepEqual([join.code, join.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.equal((await admin.c.channels.listMembers({ channelId: group.channelId })).members.length, 1);
  });
}

describe("api: how many groups one user may be in", function () {
  this.timeout(60_000);

  it("reads CHAT_MAX_GROUPS_PER_USER at start-up and refuses a bad value, naming it", () => {
    assert.equal(readApiLimits(new EnvReader({})).maxGroupsPerUser, DEFAULT_MAX_GROUPS_PER_USER);
    assert.equal(readApiLimits(new EnvReader({ CHAT_MAX_GROUPS_PER_USER: "20" })).maxGroupsPerUser, 20);
    for (const bad of ["0", "-1", "many", "100001"]) {
      const r = new EnvReader({ CHAT_MAX_GROUPS_PER_USER: bad });
      readApiLimits(r);
      assert.ok(r.problems.some((p) => p.startsWith("CHAT_MAX_GROUPS_PER_USER=")), bad);
    }
  });

  describe("on SQLite", () => groupLimit((overrides) => TestApi.start(overrides)));

  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    // Channels on Cassandra (the count is the store's); accounts stay on SQLite.
    groupLimit((overrides) => {
      const storage = cassandra();
      return TestApi.start({ ...overrides, channels: new CassandraChannelStore(storage.db, storage.messages) });
    });
  });
});
