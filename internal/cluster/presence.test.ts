import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { engineConfig, uniqueName } from "../../test/support/engines.js";
import type { SessionDirectory } from "../delivery/port.js";
import { CloseCode } from "../model/close-codes.js";
import type { Id } from "../model/types.js";
import { RedisPresenceStore } from "../presence/redis.js";
import { PresenceTracker, presenceFrame, type PresenceChange } from "../presence/tracker.js";
import { BatchingDirectory } from "./batching-directory.js";
import { openClusterPresence, withLogoutPresence } from "./presence.js";

const GRACE = 1_000;

/** Random positive 63-bit ids, so nothing collides with other runs on the shared Redis. */
const newId = (): Id => BigInt(`0x${randomBytes(8).toString("hex")}`) & ((1n << 63n) - 1n);

async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

/**
 * Several processes (chat servers, presence sweepers) on one Redis presence
 * store, each with its own connection and tracker, on a shared test clock.
 */
describe("cluster presence on the real Redis: several processes, one store", function () {
  this.timeout(60_000);
  const url = engineConfig().redisUrl;
  let prefix: string;
  let clock: number;
  const now = () => clock;
  let processes: { store: RedisPresenceStore; tracker: PresenceTracker; changes: PresenceChange[] }[];
  let admin: Redis;

  /** Expire calls in flight across the processes now, and at most so far. */
  let expiring = { now: 0, most: 0 };
  const open = () => {
    const store = new RedisPresenceStore({ redis: url, prefix, shards: 4 });
    const expire = store.expire.bind(store);
    store.expire = async (nowMs, limit) => {
      expiring.most = Math.max(expiring.most, ++expiring.now);
      try {
        return await expire(nowMs, limit);
      } finally {
        expiring.now--;
      }
    };
    const changes: PresenceChange[] = [];
    const tracker = new PresenceTracker({
      store,
      audience: async () => [],
      directory: { pushToUsers: async () => {} },
      graceMs: GRACE,
      sweepIntervalMs: 0,
      now,
      onChange: (c) => changes.push(c),
    });
    const p = { store, tracker, changes };
    processes.push(p);
    return p;
  };

  beforeEach(() => {
    prefix = `${uniqueName("test:cluster-presence")}:`;
    clock = 1_800_000_000_000;
    processes = [];
    expiring = { now: 0, most: 0 };
    admin = new Redis(url);
  });
  afterEach(async () => {
    for (const p of processes) {
      await p.tracker.stop();
      await p.store.close();
    }
    await deleteByPrefix(admin, prefix);
    await admin.quit();
  });

  it("reports each expiry once when three processes sweep at the same time", async () => {
    const [a, b, c] = [open(), open(), open()];
    const users = Array.from({ length: 300 }, newId);
    // Each user's devices sit on one or two "chat servers".
    users.forEach((u, i) => {
      processes[i % 3]!.tracker.deviceConnected(u, 1n);
      if (i % 2 === 0) processes[(i + 1) % 3]!.tracker.deviceConnected(u, 2n);
    });
    await Promise.all(processes.map((p) => p.tracker.idle()));
    const onlines = processes.flatMap((p) => p.changes.filter((ch) => ch.online));
    assert.equal(onlines.length, users.length, "each user came online once, whichever server saw the first device");

    clock += GRACE + 1;
    for (let round = 0; round < 3; round++) await Promise.all([a, b, c].map((p) => p.tracker.sweep()));
    const offlines = processes.flatMap((p) => p.changes.filter((ch) => !ch.online));
    assert.equal(offlines.length, users.length, `${offlines.length} offline reports for ${users.length} users`);
    assert.equal(new Set(offlines.map((ch) => ch.userId)).size, users.length, "no user reported twice");
    for (const ch of offlines) assert.equal(ch.lastSeenAtMs, clock - GRACE - 1, "last seen = the last sign of life");
    // Which process wins each user is Redis's order of arrival; what the test
    // needs is that the three sweeps were in the store at once.
    assert.equal(expiring.most, 3, "the sweeps really ran side by side");
  });

  it("sweeps the devices of a process that died without a word", async () => {
    const dead = open();
    const survivor = open();
    await survivor.tracker.sweep(); // running since before: its start's hold-off is over by the sweeps below
    const users = Array.from({ length: 20 }, newId);
    for (const u of users) dead.tracker.deviceConnected(u, 7n);
    await dead.tracker.idle();
    await dead.tracker.stop(); // no disconnects reported: the process is gone
    clock += GRACE / 2;
    assert.equal(await survivor.tracker.sweep(), 0, "still inside the grace period");
    clock += GRACE / 2 + 1;
    assert.equal(await survivor.tracker.sweep(), users.length);
    assert.deepEqual(new Set(survivor.changes.map((ch) => ch.userId)), new Set(users));
    assert.ok((await survivor.tracker.getPresence(users)).every((p) => !p.online));
  });

  it("takes a logged-out device offline at once through the api's directory, even with no session, and reports it once", async () => {
    const api = open();
    const chatServer = open();
    const user = newId();
    chatServer.tracker.deviceConnected(user, 1n);
    await chatServer.tracker.idle();
    // Its socket closed a moment ago: the grace period runs, no chat server holds it.
    chatServer.tracker.deviceDisconnected(user, 1n);
    await chatServer.tracker.idle();
    const closed: Id[] = [];
    const routed: SessionDirectory = {
      pushToUsers: async () => {},
      onlineUsers: async () => new Set(),
      closeDevice: async (u) => void closed.push(u),
    };
    const sessions = withLogoutPresence(routed, api.tracker);
    await sessions.closeDevice(user, 1n, CloseCode.loggedOut, "logged out");
    chatServer.tracker.deviceLoggedOut(user, 1n); // a chat server that did hold it drops it as well
    await Promise.all([api.tracker.idle(), chatServer.tracker.idle()]);
    assert.deepEqual(closed, [user]);
    const offlines = [...api.changes, ...chatServer.changes].filter((ch) => !ch.online);
    assert.equal(offlines.length, 1);
    assert.equal((await api.tracker.getPresence([user]))[0]!.online, false);
    // Other close codes leave presence alone (the grace period decides).
    const other = newId();
    chatServer.tracker.deviceConnected(other, 1n);
    await chatServer.tracker.idle();
    await sessions.closeDevice(other, 1n, CloseCode.goingAway, "moving");
    await api.tracker.idle();
    assert.equal((await api.tracker.getPresence([other]))[0]!.online, true);
  });
});

describe("BatchingDirectory", () => {
  const frame = {} as ServerFrame;

  it("sends the pushes of one window as one pushMany, and each push resolves with its batch", async () => {
    const calls: { userId: Id }[][] = [];
    const d = new BatchingDirectory({ pushMany: async (items) => void calls.push([...items]) }, { windowMs: 20 });
    const done = Array.from({ length: 50 }, (_, i) => d.pushToUsers([BigInt(i), BigInt(i + 1000)], frame));
    await Promise.all(done);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.length, 100);
    await d.pushToUsers([1n], frame);
    assert.equal(calls.length, 2);
    await d.pushToUsers([], frame);
    assert.equal(calls.length, 2, "nothing to send, no call");
  });

  it("sends at once when a batch is full, and passes a failure to every push of the batch", async () => {
    const sizes: number[] = [];
    let fail = false;
    const d = new BatchingDirectory(
      {
        pushMany: async (items) => {
          sizes.push(items.length);
          if (fail) throw new Error("redis away");
        },
      },
      { windowMs: 10_000, maxItems: 10 },
    );
    await Promise.all(Array.from({ length: 5 }, (_, i) => d.pushToUsers([BigInt(i), BigInt(i + 100)], frame)));
    assert.deepEqual(sizes, [10]);
    fail = true;
    const pushes = [d.pushToUsers([1n], frame), d.pushToUsers([2n], frame)];
    d.flush();
    for (const p of pushes) await assert.rejects(p, /redis away/);
    await d.close();
  });

  it("keeps one batch in flight: a later batch cannot land first and leave a watcher with the user's older state, and what gathers meanwhile goes as one", async () => {
    const user = 7n;
    const offline = presenceFrame({ userId: user, online: false });
    const online = presenceFrame({ userId: user, online: true });
    /** What reached the watchers, in order: the last frame a watcher got is what its screen shows. */
    const landed: { userId: Id; frame: ServerFrame }[] = [];
    const unanswered: (() => void)[] = [];
    let calls = 0;
    const d = new BatchingDirectory(
      {
        pushMany: (items) =>
          new Promise<void>((resolve) => {
            calls++;
            unanswered.push(() => {
              landed.push(...items);
              resolve();
            });
          }),
      },
      { windowMs: 10_000 },
    );
    const first = d.pushToUsers([1n], offline);
    d.flush();
    const second = d.pushToUsers([1n], online);
    const third = d.pushToUsers([2n], online);
    d.flush();
    // The later batch is always the faster one (its routing lookup answered first).
    let settled = false;
    void Promise.all([first, second, third]).then(() => (settled = true));
    while (!settled) {
      unanswered.pop()?.();
      await new Promise((r) => setImmediate(r));
    }
    const watcher = landed.filter((i) => i.userId === 1n).map((i) => (i.frame === online ? "online" : "offline"));
    assert.deepEqual(watcher, ["offline", "online"], "the user's latest state landed last");
    assert.equal(calls, 2, "the two pushes made while the first batch was out went together");
    await d.close();
  });
});

describe("openClusterPresence: the last-seen log's failures", function () {
  this.timeout(30_000);

  // Spaced on the wall clock, a clock stepped forward (NTP, a restored VM) let a line per failure through.
  it("are warned once a minute on the monotonic clock, however the wall clock steps", async () => {
    const warned: string[] = [];
    const log = (_o: unknown, msg: string) => void warned.push(msg);
    const logger = { warn: log, error: () => {}, info: () => {}, debug: () => {}, child: () => logger };
    const db = { t: (name: string) => name, rows: () => Promise.reject(new Error("cassandra away")), write: () => Promise.reject(new Error("cassandra away")) };
    const prefix = `${uniqueName("test:cluster-presence-log")}:`;
    const presence = openClusterPresence({
      redisUrl: engineConfig().redisUrl,
      keyPrefix: prefix,
      storage: { accounts: {} as never, channels: {} as never, db: db as never },
      directory: { pushMany: async () => {} },
      config: { graceMs: 1_000, sweepIntervalMs: 0, batchWindowMs: 10 },
      logger: logger as never,
    });
    const realNow = Date.now;
    let wall = realNow();
    Date.now = () => wall;
    try {
      for (let i = 0; i < 5; i++) {
        await presence.store.latest(newId()); // Redis holds nothing of the user: the log is read, and fails
        wall += 120_000;
      }
    } finally {
      Date.now = realNow;
      await presence.close();
    }
    assert.deepStrictEqual(warned, ["last seen not written to or read from Cassandra (written: lost only if Redis loses it too)"]);
  });
});
