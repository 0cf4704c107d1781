import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
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
