import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { MAX_PINNED_CHANNELS, type Id } from "../model/types.js";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { cassandraStores } from "./cassandra-stores.test-support.js";
import { holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

/**
 * Pins made at once (two devices, or a client firing many) each read the
 * pins before any is written: every one passed the limit's read, and a user
 * could pin as many chats as requests they sent together. Run on each store,
 * as the write of a place differs between them.
 */
function pinRaces(start: () => Promise<TestApi>) {
  let api: TestApi;
  beforeEach(async () => (api = await start()));
  afterEach(async () => api.close());

  // One keyspace for every test on Cassandra: users of names of their own.
  const signUp = () => api.signUp(`p${randomBytes(4).toString("hex")}`);
  const groups = async (me: TestUser, n: number): Promise<Id[]> => {
    const ids: Id[] = [];
    for (let i = 0; i < n; i++) ids.push((await me.c.channels.createGroup({ title: `g${i}`, memberUserIds: [] })).channel!.channelId);
    return ids;
  };
  const pinnedOf = async (me: TestUser) => [...(await api.deps.channels.listPlaces(me.userId))].filter(([, p]) => p.pinnedAtMs !== undefined).length;

  it(`refuses the pin past ${MAX_PINNED_CHANNELS} that read the pins before another landed, and takes it back`, async () => {
    const me = await signUp();
    const chats = await groups(me, MAX_PINNED_CHANNELS + 1);
    for (const id of chats.slice(0, MAX_PINNED_CHANNELS - 1)) await me.c.channels.pinChannel({ channelId: id, pinned: true });
    // One device's pin has read four pins and is about to write; the other's pins the fifth meanwhile.
    const held = holdNext(api.deps.channels, "changePlace");
    const late = rpcError(() => me.c.channels.pinChannel({ channelId: chats[MAX_PINNED_CHANNELS]!, pinned: true }));
    await held.reached;
    await me.c.channels.pinChannel({ channelId: chats[MAX_PINNED_CHANNELS - 1]!, pinned: true });
    held.release();
    const refused = await late;
    assert.deepEqual([refused.code, refused.chatCode], [Code.FailedPrecondition, "ERROR_CODE_LIMIT_REACHED"]);
    assert.equal(await pinnedOf(me), MAX_PINNED_CHANNELS);
    const seen = (await me.c.channels.describeChannel({ channelId: chats[MAX_PINNED_CHANNELS]! })).channel!;
    assert.deepEqual([seen.pinnedAt, seen.archived], [undefined, false], "nothing of the refused pin stays");
  });

  it(`keeps at most ${MAX_PINNED_CHANNELS} of many pins sent at once`, async () => {
    const me = await signUp();
    const chats = await groups(me, 2 * MAX_PINNED_CHANNELS);
    const answers = await Promise.allSettled(chats.map((channelId) => me.c.channels.pinChannel({ channelId, pinned: true })));
    const kept = answers.filter((a) => a.status === "fulfilled").length;
    assert.ok(kept <= MAX_PINNED_CHANNELS, `${kept} pins answered OK`);
    assert.equal(await pinnedOf(me), kept, "every pin answered OK stays, no refused one does");
  });
}

describe("api: pins made at once and the pin limit", function () {
  this.timeout(60_000);

  describe("on SQLite", () => pinRaces(() => TestApi.start()));

  describe("on Cassandra", () => {
    const cassandra = scratchCassandra();
    pinRaces(() => TestApi.start(cassandraStores(cassandra())));
  });
});
