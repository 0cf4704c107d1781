import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { pino } from "pino";
import { EnvReader } from "../config/env.js";
import { DEFAULT_MAX_NEW_DIRECT_PER_DAY, readApiLimits, type ApiLimitsConfig } from "../throttle/config.js";
import { MemoryLoginAttempts, MemoryWindowCounts } from "../throttle/memory.js";
import type { WindowCounts } from "../throttle/port.js";
import type { Id } from "../model/types.js";
import { RETRY_AFTER_HEADER } from "./errors.js";
import { ApiLimiter, NEW_DIRECT_WINDOW_MS } from "./limits.js";
import { rpcError, TestApi, type TestUser } from "./testkit.js";

const MAX = 3;
const OFF: ApiLimitsConfig = { authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 0, loginWindowMs: 60_000, maxDevicesPerAccount: 100 };

describe("api: a quota of new direct chats", () => {
  let api: TestApi;
  // The counter's own clock, moved by the tests.
  const clock = { ms: 0 };
  const now = () => clock.ms;
  const start = async (max: number | undefined, counts: WindowCounts = new MemoryWindowCounts(NEW_DIRECT_WINDOW_MS, { now }), logger?: pino.Logger) =>
    (api = await TestApi.start({ limits: new ApiLimiter({ ...OFF, maxNewDirectPerDay: max }, new MemoryLoginAttempts(60_000), { newDirects: counts, logger }) }));
  beforeEach(() => (clock.ms = 1_000_000));
  afterEach(async () => api?.close());

  const users = (n: number) => Promise.all(Array.from({ length: n }, () => api.signUp()));
  const open = (from: TestUser, to: TestUser) => from.c.channels.openDirect({ userId: to.userId });
  const directsOf = async (u: TestUser) => (await u.c.channels.listChannels({})).channels.length;

  it("refuses a new direct chat past the day's quota with RATE_LIMITED, naming the limit and when it resets; reopening is never refused", async () => {
    await start(MAX);
    const [me, ...peers] = await users(MAX + 2);
    const opened = [];
    for (const peer of peers.slice(0, MAX)) opened.push((await open(me, peer)).channel!.channelId);
    const refused = await rpcError(() => open(me, peers[MAX]!));
    assert.deepEqual([refused.code, refused.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"]);
    assert.match(refused.rawMessage, new RegExp(`\\b${MAX} new direct chats today\\b.*more in 24 h`));
    assert.equal(refused.metadata.get(RETRY_AFTER_HEADER), String(NEW_DIRECT_WINDOW_MS));
    assert.equal(await directsOf(me), MAX, "the refused chat was not made");

    // Open already: given again, in either direction, and not counted.
    for (const [i, peer] of peers.slice(0, MAX).entries()) {
      assert.equal((await open(me, peer)).channel!.channelId, opened[i]);
      assert.equal((await open(peer, me)).channel!.channelId, opened[i]);
    }

    clock.ms += NEW_DIRECT_WINDOW_MS;
    await open(me, peers[MAX]!);
  });

  it("counts a chat for the one who started it, not for the peer, who opens it even with the quota used up", async () => {
    await start(MAX);
    const [me, ...others] = await users(MAX + 1);
    for (const other of others) await open(other, me);
    // None of those was mine: my whole quota is left.
    for (const peer of await users(MAX)) await open(me, peer);
    assert.match((await rpcError(() => users(1).then(([u]) => open(me!, u!)))).rawMessage, /new direct chats today/);
    for (const other of others) await open(me, other);
    // And each was theirs.
    const [other] = others;
    for (const peer of await users(MAX - 1)) await open(other!, peer);
    assert.match((await rpcError(() => users(1).then(([u]) => open(other!, u!)))).rawMessage, /new direct chats today/);
  });

  it("holds when new chats are opened at the same moment: none past the quota, and the count is the chats started", async () => {
    const counts = new MemoryWindowCounts(NEW_DIRECT_WINDOW_MS, { now });
    await start(MAX, counts);
    const [me, same, ...peers] = await users(12);
    // Every open's look for an existing chat answers before any of them counts.
    const store = api.deps.channels;
    const original = store.hasDirect;
    const opens = peers.length + 3;
    let looked = 0;
    let allLooked!: () => void;
    const lookedByAll = new Promise<void>((resolve) => (allLooked = resolve));
    store.hasDirect = async (a: Id, b: Id) => {
      const answer = await original.call(store, a, b);
      if (++looked === opens) allLooked();
      await lookedByAll;
      return answer;
    };
    // To ten peers at once, and one pair's chat three times, from both ends.
    const [toPeers, pair] = await Promise.all([
      Promise.allSettled(peers.map((p) => open(me!, p))),
      Promise.allSettled([open(me!, same!), open(me!, same!), open(same!, me!)]),
    ]);
    store.hasDirect = original;
    for (const o of [...toPeers, ...pair]) if (o.status === "rejected") assert.match(String(o.reason), /new direct chats today/);
    const started = toPeers.filter((o) => o.status === "fulfilled").length;
    assert.ok(started >= 1 && started <= MAX, `${started} new chats to peers with a quota of ${MAX}`);

    // One chat for the pair, counted once, for whoever made it; the others gave their counts back.
    const made = pair.flatMap((o) => (o.status === "fulfilled" ? [o.value.channel!.channelId] : []));
    assert.equal(new Set(made).size, 1);
    const creator = (await store.getChannel(made[0]!))!.createdBy;
    assert.equal((await counts.get(String(me!.userId))).count, started + (creator === me!.userId ? 1 : 0));
    assert.equal((await counts.get(String(same!.userId))).count, creator === same!.userId ? 1 : 0);
  });

  it("gives the count back when the open is refused because the peer was deleted meanwhile, or does not exist", async () => {
    const counts = new MemoryWindowCounts(NEW_DIRECT_WINDOW_MS, { now });
    await start(MAX, counts);
    const [me, peer] = await users(2);
    // The peer's account goes between the open's look at it and the chat being made.
    const store = api.deps.channels;
    const original = store.getOrCreateDirect;
    store.getOrCreateDirect = async (...args: Parameters<typeof original>) => {
      const made = await original.apply(store, args);
      await api.storage.accounts.deleteUser(peer!.userId);
      return made;
    };
    const refused = await rpcError(() => open(me!, peer!));
    store.getOrCreateDirect = original;
    assert.equal(refused.code, Code.NotFound);
    assert.equal((await rpcError(() => me!.c.channels.openDirect({ userId: 987_654_321n }))).code, Code.NotFound);
    assert.equal((await counts.get(String(me!.userId))).count, 0, "no refused open counts");
  });

  it("lets new chats through, and warns, when the counter store fails", async () => {
    const down = () => Promise.reject(new Error("redis down"));
    const broken: WindowCounts = { get: down, add: down, takeBack: down, clear: down, close: async () => {} };
    const warnings: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    await start(1, broken, logger);
    const [me, ...peers] = await users(3);
    for (const peer of peers) await open(me, peer);
    assert.ok(warnings.includes("new direct chat counter unavailable; chat not counted"), warnings.join("; "));
  });

  it("is off at 0", async () => {
    await start(0);
    const [me, ...peers] = await users(5);
    for (const peer of peers) await open(me, peer);
  });

  it("reads CHAT_MAX_NEW_DIRECT_PER_DAY, 200 by default, and refuses a negative one at start-up", () => {
    assert.equal(readApiLimits(new EnvReader({})).maxNewDirectPerDay, DEFAULT_MAX_NEW_DIRECT_PER_DAY);
    assert.equal(DEFAULT_MAX_NEW_DIRECT_PER_DAY, 200);
    assert.equal(readApiLimits(new EnvReader({ CHAT_MAX_NEW_DIRECT_PER_DAY: "0" })).maxNewDirectPerDay, 0);
    const r = new EnvReader({ CHAT_MAX_NEW_DIRECT_PER_DAY: "-1" });
    readApiLimits(r);
    assert.match(r.problems.join("\n"), /CHAT_MAX_NEW_DIRECT_PER_DAY/);
  });
});
