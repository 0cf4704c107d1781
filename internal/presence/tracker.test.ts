import assert from "node:assert/strict";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { RETRY_AFTER_HEADER, toConnectError } from "../api/errors.js";
import { PushFailedError } from "../delivery/port.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import type { Id } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { MemoryPresenceStore } from "./memory.js";
import type { PresenceStore } from "./port.js";
import { PresenceTracker, type PresenceChange, type PresenceTrackerDeps } from "./tracker.js";

/** Time-controlled tests: the clock only moves when a test moves it. */
describe("PresenceTracker (time-controlled)", () => {
  const GRACE = 30_000;
  let t: number;
  let pushes: { to: Id[]; userId: Id; status: PresenceStatus; lastSeenMs?: number }[];
  let tracker: PresenceTracker;
  const audiences = new Map<Id, Id[]>();

  beforeEach(() => {
    t = 1_700_000_000_000;
    pushes = [];
    audiences.clear();
    tracker = new PresenceTracker({
      store: new MemoryPresenceStore(),
      audience: async (u) => audiences.get(u) ?? [],
      directory: {
        async pushToUsers(to: readonly Id[], frame: ServerFrame) {
          assert.equal(frame.kind.case, "presence");
          const p = frame.kind.case === "presence" ? frame.kind.value.presence! : undefined;
          pushes.push({ to: [...to], userId: p!.userId, status: p!.status, lastSeenMs: p!.lastSeenAt ? timestampMs(p!.lastSeenAt) : undefined });
        },
      },
      graceMs: GRACE,
      sweepIntervalMs: 0,
      now: () => t,
    });
  });

  const advance = async (ms: number) => {
    t += ms;
    await tracker.sweep();
  };
  const presence = async (u: Id) => (await tracker.getPresence([u]))[0]!;
  const settle = () => tracker.idle();

  it("goes online on connect and tells the audience once", async () => {
    audiences.set(1n, [2n, 3n]);
    tracker.deviceConnected(1n, 10n);
    tracker.deviceAlive(1n, 10n);
    tracker.deviceConnected(1n, 11n);
    await settle();
    assert.deepEqual(pushes, [{ to: [2n, 3n], userId: 1n, status: PresenceStatus.ONLINE, lastSeenMs: undefined }]);
    assert.deepEqual(await presence(1n), { userId: 1n, online: true });
  });

  it("stays online through the grace period without heartbeats, then goes offline with last seen", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n);
    await settle();
    const lastHeartbeat = t + 20_000;
    await advance(20_000);
    tracker.deviceAlive(1n, 10n);
    await settle();
    await advance(GRACE - 1); // 1 ms before the grace period ends
    assert.equal((await presence(1n)).online, true);
    assert.equal(pushes.length, 1, "no offline event inside the grace period");
    await advance(1);
    assert.deepEqual(await presence(1n), { userId: 1n, online: false, lastSeenAtMs: lastHeartbeat });
    assert.deepEqual(pushes.at(-1), { to: [2n], userId: 1n, status: PresenceStatus.OFFLINE, lastSeenMs: lastHeartbeat });
    await advance(60_000);
    assert.equal(pushes.length, 2, "offline is announced once");
  });

  it("does not flap when a flaky connection drops and comes back within the grace period", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n);
    await settle();
    await advance(5_000);
    tracker.deviceDisconnected(1n, 10n);
    await settle();
    await advance(GRACE - 1_000);
    tracker.deviceConnected(1n, 10n);
    await settle();
    await advance(GRACE - 1_000);
    assert.equal(pushes.length, 1, "only the first online event");
    assert.equal((await presence(1n)).online, true);
  });

  it("goes offline a grace period after the last session ended", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n);
    await settle();
    await advance(1_000);
    const endedAt = t;
    tracker.deviceDisconnected(1n, 10n);
    await settle();
    await advance(GRACE);
    assert.deepEqual(await presence(1n), { userId: 1n, online: false, lastSeenAtMs: endedAt });
    assert.equal(pushes.at(-1)?.status, PresenceStatus.OFFLINE);
  });

  it("aggregates devices: online while any device is, offline when the last one lapses", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n); // phone
    tracker.deviceConnected(1n, 11n); // web
    await settle();
    await advance(10_000);
    tracker.deviceDisconnected(1n, 10n); // phone drops
    await settle();
    for (let i = 0; i < 5; i++) {
      await advance(10_000);
      tracker.deviceAlive(1n, 11n); // web keeps heartbeating
      await settle();
    }
    assert.equal((await presence(1n)).online, true, "web is still there");
    assert.equal(pushes.length, 1);
    const webLast = t;
    tracker.deviceDisconnected(1n, 11n);
    await settle();
    await advance(GRACE);
    assert.deepEqual(await presence(1n), { userId: 1n, online: false, lastSeenAtMs: webLast });
    assert.deepEqual(
      pushes.map((p) => p.status),
      [PresenceStatus.ONLINE, PresenceStatus.OFFLINE],
    );
  });

  it("takes a logged-out device offline at once, without waiting for the grace period", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n);
    await settle();
    await advance(3_000);
    tracker.deviceDisconnected(1n, 10n); // the api closes the session first...
    tracker.deviceLoggedOut(1n, 10n); // ...and reports the logout
    await settle();
    assert.deepEqual(await presence(1n), { userId: 1n, online: false, lastSeenAtMs: t });
    assert.deepEqual(pushes.at(-1), { to: [2n], userId: 1n, status: PresenceStatus.OFFLINE, lastSeenMs: t });
    await advance(GRACE * 2);
    assert.equal(pushes.length, 2);
  });

  it("keeps the user online when one of two devices logs out", async () => {
    tracker.deviceConnected(1n, 10n);
    tracker.deviceConnected(1n, 11n);
    tracker.deviceLoggedOut(1n, 10n);
    await settle();
    assert.equal((await presence(1n)).online, true);
  });

  it("never revives an expired device when its dead session is finally closed", async () => {
    audiences.set(1n, [2n]);
    tracker.deviceConnected(1n, 10n);
    await settle();
    await advance(GRACE + 1); // a half-open connection: no heartbeats
    assert.equal((await presence(1n)).online, false);
    tracker.deviceDisconnected(1n, 10n); // the server's idle sweep closes it later
    await settle();
    await advance(1);
    assert.equal((await presence(1n)).online, false);
    assert.deepEqual(
      pushes.map((p) => p.status),
      [PresenceStatus.ONLINE, PresenceStatus.OFFLINE],
    );
  });

  it("keeps last seen across later queries and reports never-seen users without it", async () => {
    tracker.deviceConnected(1n, 10n);
    await settle();
    const seen = t;
    await advance(GRACE);
    await advance(24 * 3600 * 1000);
    assert.deepEqual(await tracker.getPresence([1n, 99n]), [
      { userId: 1n, online: false, lastSeenAtMs: seen },
      { userId: 99n, online: false },
    ]);
  });

  it("keeps going when the store fails, and rebuilds from the next heartbeat", async () => {
    const store = new MemoryPresenceStore();
    let broken = true;
    const flaky = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => (broken ? Promise.reject(new Error("store down")) : v.apply(target, args));
      },
    });
    const seen: boolean[] = [];
    const tr = new PresenceTracker({
      store: flaky,
      audience: async () => [2n],
      directory: { pushToUsers: async () => {} },
      graceMs: GRACE,
      sweepIntervalMs: 0,
      now: () => t,
      onChange: (c) => seen.push(c.online),
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    assert.equal(await tr.sweep(), 0, "a failing sweep is survived");
    broken = false;
    tr.deviceAlive(1n, 10n);
    await tr.idle();
    assert.deepEqual(seen, [true]);
    assert.equal((await tr.getPresence([1n]))[0]!.online, true);
  });
});

/** A promise the test opens when it wants: what a slow read or push waits on. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** A store that forwards to `target()` (swappable: a Redis that restarted empty), failing while `down()`. */
function storeOver(target: () => PresenceStore, down: () => boolean = () => false, hooks: Partial<Pick<PresenceStore, "expire" | "touch">> = {}): PresenceStore {
  const guard = <T>(f: () => Promise<T>): Promise<T> => (down() ? Promise.reject(new Error("store down")) : f());
  return {
    touch: (...a) => guard(() => (hooks.touch ?? target().touch.bind(target()))(...a)),
    drop: (...a) => guard(() => target().drop(...a)),
    expire: (...a) => guard(() => (hooks.expire ?? target().expire.bind(target()))(...a)),
    latest: (...a) => guard(() => target().latest(...a)),
    told: (...a) => guard(() => target().told(...a)),
    claimUntold: (...a) => guard(() => target().claimUntold(...a)),
    get: (...a) => guard(() => target().get(...a)),
    ping: () => guard(() => target().ping()),
    close: async () => {},
  };
}

type Heard = { to: Id; userId: Id; online: boolean };

/** A directory that records, per watcher, the presence events as they land. */
function recorder(heard: Heard[], before?: () => Promise<void>) {
  return {
    async pushToUsers(to: readonly Id[], frame: ServerFrame) {
      await before?.();
      const p = frame.kind.case === "presence" ? frame.kind.value.presence! : assert.fail("not a presence frame");
      for (const u of to) heard.push({ to: u, userId: p.userId, online: p.status === PresenceStatus.ONLINE });
    },
  };
}

/** What watcher `to` last heard about `userId`. */
const show = (heard: Heard[]) => heard.map((h) => `${h.userId}:${h.online ? "ON" : "OFF"}`).join(" ");
const lastHeard = (heard: Heard[], to: Id, userId: Id) => heard.filter((h) => h.to === to && h.userId === userId).at(-1)?.online;

describe("PresenceTracker: announcements, failures and recovery", () => {
  const GRACE = 30_000;
  const HEARTBEAT = 25_000;
  let t: number;
  beforeEach(() => {
    t = 1_700_000_000_000;
  });
  const tracker = (deps: Partial<PresenceTrackerDeps> & Pick<PresenceTrackerDeps, "store" | "directory">) =>
    new PresenceTracker({ audience: async () => [99n], graceMs: GRACE, sweepIntervalMs: 0, now: () => t, ...deps });

  // Refused with no retry time: the api answered no chat-retry-after-ms, so a client asked again at once or gave up.
  it("refuses GetPresence and a tell, with the store away, with an engine outage's retry time", async () => {
    const tr = tracker({ store: storeOver(() => new MemoryPresenceStore(), () => true), directory: recorder([]) });
    const retryOnApi = (e: unknown) => toConnectError(e).metadata.get(RETRY_AFTER_HEADER);
    assert.equal(retryOnApi(await tr.getPresence([1n]).catch((e: unknown) => e)), String(ENGINE_RETRY_AFTER_MS), "GetPresence");
    assert.equal(retryOnApi(await tr.tellLatest(1n, [2n]).catch((e: unknown) => e)), String(ENGINE_RETRY_AFTER_MS), "a tell");
  });

  it("does not follow a reconnect made while the sweep still walked the store with a stale OFFLINE", async () => {
    const mem = new MemoryPresenceStore();
    const flipped = gate();
    const walked = gate();
    // expire() flips in one shard, then goes on to the others (a round trip each).
    const store = storeOver(() => mem, undefined, {
      async expire(now, limit) {
        const flips = await mem.expire(now, limit);
        flipped.open();
        await walked.opened;
        return flips;
      },
    });
    const heard: Heard[] = [];
    const tr = tracker({ store, directory: recorder(heard) });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    t += GRACE + 1;
    const sweep = tr.sweep();
    await flipped.opened;
    tr.deviceConnected(1n, 11n); // the phone opens the app meanwhile
    await tr.idle();
    walked.open();
    await sweep;
    await tr.idle();
    assert.equal((await mem.get([1n], t))[0]!.online, true);
    assert.equal(lastHeard(heard, 99n, 1n), true, `heard ${show(heard)}`);
  });

  it("across processes: a sweeper's OFFLINE, slow to read its audience, does not land after the reconnect's ONLINE", async () => {
    const store = new MemoryPresenceStore(); // the shared Redis
    const heard: Heard[] = [];
    const audienceRead = gate();
    const swept: PresenceChange[] = [];
    const sweeper = tracker({ store, directory: recorder(heard), audience: async () => (await audienceRead.opened, [99n]), onChange: (c) => swept.push(c) });
    await sweeper.sweep(); // running since before: past its start's hold-off by the sweep below
    const server = tracker({ store, directory: recorder(heard) });
    server.deviceConnected(1n, 10n);
    await server.idle();
    t += GRACE + 1; // its session died with its old chat server
    const sweep = sweeper.sweep();
    await waitFor(() => swept.length === 1, "the sweep to flip the user offline");
    server.deviceConnected(1n, 10n); // back on another chat server
    await server.idle();
    audienceRead.open();
    await sweep;
    assert.equal(lastHeard(heard, 99n, 1n), true, `heard ${show(heard)}`);
    // Heartbeats flip nothing, so nothing would have corrected it.
    t += 10_000;
    server.deviceAlive(1n, 10n);
    await server.idle();
    assert.equal(lastHeard(heard, 99n, 1n), true);
  });

  it("across processes: a connect's ONLINE, slow to read its audience, does not land after the logout's OFFLINE", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const audienceRead = gate();
    const flips: PresenceChange[] = [];
    const chatServer = tracker({ store, directory: recorder(heard), audience: async () => (await audienceRead.opened, [99n]), onChange: (c) => flips.push(c) });
    const api = tracker({ store, directory: recorder(heard) });
    chatServer.deviceConnected(1n, 10n);
    await waitFor(() => flips.length === 1, "the connect to flip the user online");
    api.deviceLoggedOut(1n, 10n);
    await api.idle();
    audienceRead.open();
    await chatServer.idle();
    assert.equal((await store.get([1n], t))[0]!.online, false);
    assert.equal(lastHeard(heard, 99n, 1n), false, `heard ${show(heard)}`);
  });

  it("tells the latest state again when a later flip's event may have landed while its own push was on the way", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const delivered = gate();
    let first = true;
    // The sweeper's first push is slow to land (a batch window, a Deliver call).
    const sweeper = tracker({
      store,
      directory: recorder(heard, async () => {
        if (first) (first = false), await delivered.opened;
      }),
    });
    await sweeper.sweep(); // running since before: past its start's hold-off by the sweep below
    const server = tracker({ store, directory: recorder(heard) });
    server.deviceConnected(1n, 10n);
    await server.idle();
    t += GRACE + 1;
    const sweep = sweeper.sweep();
    await waitFor(() => !first, "the sweeper's OFFLINE to be on its way");
    server.deviceConnected(1n, 10n);
    await server.idle();
    assert.equal(lastHeard(heard, 99n, 1n), true, "the reconnect's ONLINE landed first");
    delivered.open(); // ...and the OFFLINE after it
    await sweep;
    assert.deepEqual(
      heard.map((h) => h.online),
      [true, true, false, true],
    );
  });

  it("tells a flip whose maker died before announcing it, from a sweep a grace period later, once", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const never = gate(); // the dying process never gets past reading the audience
    const dying = tracker({ store, directory: recorder(heard), audience: async () => (await never.opened, [99n]) });
    const sweeper = tracker({ store, directory: recorder(heard) });
    dying.deviceConnected(1n, 10n);
    sweeper.deviceConnected(2n, 20n); // told as usual: never told again
    await sweeper.idle();
    assert.equal(show(heard), "2:ON");
    t += GRACE / 2;
    sweeper.deviceAlive(1n, 10n); // its session moved here: no flip, so no announcement of its own
    sweeper.deviceAlive(2n, 20n);
    await sweeper.idle();
    await sweeper.sweep();
    assert.equal(show(heard), "2:ON", "not yet: its maker may still be telling it");
    t += GRACE / 2;
    await sweeper.sweep();
    assert.equal(show(heard), "2:ON 1:ON");
    for (const step of [1, 2, 3]) {
      t += GRACE / 2;
      sweeper.deviceAlive(1n, 10n);
      sweeper.deviceAlive(2n, 20n);
      await sweeper.idle();
      await sweeper.sweep();
      assert.equal(show(heard), "2:ON 1:ON", `told once (sweep ${step} after)`);
    }
  });

  it("leaves a flip to its maker for 15 s however short the grace period: a cold process still telling it is not doubled", async () => {
    const SHORT = 1_000;
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const slow = gate(); // a freshly started process's first read of the audience
    const maker = tracker({ store, graceMs: SHORT, directory: recorder(heard), audience: async () => (await slow.opened, [99n]) });
    const sweeper = tracker({ store, graceMs: SHORT, directory: recorder(heard) });
    maker.deviceConnected(1n, 10n);
    await waitFor(async () => (await store.latest(1n)).version > 0, "the flip made");
    for (let waited = 0; waited < 14_000; waited += SHORT / 2) {
      t += SHORT / 2;
      sweeper.deviceAlive(1n, 10n); // the device stays online: no flip of the sweeper's own
      await sweeper.idle();
      await sweeper.sweep();
    }
    assert.equal(show(heard), "", "still its maker's to tell, 14 grace periods on");
    slow.open();
    await maker.idle();
    assert.equal(show(heard), "1:ON");
    t += 20_000;
    sweeper.deviceAlive(1n, 10n);
    await sweeper.idle();
    await sweeper.sweep();
    assert.equal(show(heard), "1:ON", "told once");
  });

  it("tells nothing again for a flip whose maker died after its push landed, once a later flip is told", async () => {
    const SHORT = 1_000;
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const never = gate(); // killed between the push landing and saying so
    const dying = tracker({ store: { ...storeOver(() => store), told: () => never.opened }, graceMs: SHORT, directory: recorder(heard) });
    const sweeper = tracker({ store, graceMs: SHORT, directory: recorder(heard) });
    dying.deviceConnected(1n, 10n);
    await waitFor(() => heard.length === 1, "the ONLINE landed");
    t += SHORT / 2;
    dying.deviceAlive(1n, 10n); // its last heartbeat before it was killed
    await waitFor(async () => (await store.get([1n], t + SHORT - 1))[0]!.online, "the heartbeat stored");
    for (let waited = 0; waited < 20_000; waited += SHORT / 4) {
      t += SHORT / 4;
      await sweeper.sweep();
    }
    assert.equal(show(heard), "1:ON 1:OFF");
  });

  it("tells OFFLINE to one who left the audience while its ONLINE was on the way (a narrower setting, an unfriending)", async () => {
    const heard: Heard[] = [];
    let audience = [98n, 99n];
    const tr = tracker({
      store: new MemoryPresenceStore(),
      audience: async () => audience,
      directory: recorder(heard, async () => {
        if (audience.length === 2) {
          // Meanwhile 1 set "friends only": 99, a group member, is left out and told OFFLINE, which lands first.
          audience = [98n];
          heard.push({ to: 99n, userId: 1n, online: false });
        }
      }),
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    assert.equal(lastHeard(heard, 98n, 1n), true, `heard ${show(heard)}`);
    assert.equal(lastHeard(heard, 99n, 1n), false, `heard ${show(heard)}`);
  });

  it("reads the audience again at each retry: one left out meanwhile (a block, a narrower setting) is never told ONLINE", async () => {
    const heard: Heard[] = [];
    let pushes = 0;
    let audience = [98n, 99n];
    const tr = tracker({
      store: new MemoryPresenceStore(),
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 3 },
      audience: async () => audience,
      directory: recorder(heard, async () => {
        if (++pushes === 1) {
          audience = [98n]; // 99 was blocked while the routing table was away
          throw new Error("routing table away");
        }
      }),
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    // The failed push may have reached 99 in part: it is told OFFLINE after.
    assert.deepEqual(
      heard.map((h) => [h.to, h.online]),
      [
        [98n, true],
        [99n, false],
      ],
    );
  });

  it("tells, from a later sweep, a flip whose announcement gave up", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    let down = true;
    const maker = tracker({
      store,
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 2 },
      directory: recorder(heard, async () => {
        if (down) throw new Error("routing table away");
      }),
    });
    maker.deviceConnected(1n, 10n);
    await maker.idle();
    assert.equal(show(heard), "", "given up");
    down = false;
    t += GRACE / 2;
    maker.deviceAlive(1n, 10n);
    await maker.idle();
    t += GRACE / 2;
    await maker.sweep();
    await maker.idle();
    assert.equal(show(heard), "1:ON");
  });

  it("tells a newcomer to the audience the latest state, again when a flip it was not yet told of overtook the push", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const delivered = gate();
    let first = true;
    // The api tells 99 (a new friend, a new member of a shared group) that user 1 is online; the push is slow to land.
    const api = tracker({
      store,
      directory: recorder(heard, async () => {
        if (first) (first = false), await delivered.opened;
      }),
    });
    // The chat server read user 1's audience before 99 was in it.
    const server = tracker({ store, directory: recorder(heard), audience: async () => [] });
    server.deviceConnected(1n, 10n);
    await server.idle();
    const telling = api.tellLatest(1n, [99n]);
    await waitFor(() => !first, "the api's ONLINE to be on its way");
    server.deviceLoggedOut(1n, 10n);
    await server.idle();
    delivered.open();
    await telling;
    assert.equal(show(heard), "1:ON 1:OFF");
    assert.equal(lastHeard(heard, 99n, 1n), false);

    // A user never seen is told offline; nobody to tell, nothing pushed.
    heard.length = 0;
    await api.tellLatest(2n, [99n]);
    await api.tellLatest(1n, []);
    assert.equal(show(heard), "2:OFF");
  });

  it("after the store lost its data, announces OFFLINE for a device whose session ended before its next heartbeat", async () => {
    let mem = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const tr = tracker({ store: storeOver(() => mem), directory: recorder(heard) });
    tr.deviceConnected(1n, 10n);
    tr.deviceConnected(2n, 20n);
    await tr.idle();
    const lastFrame = t;
    mem = new MemoryPresenceStore(); // Redis restarted empty
    t += 5_000;
    tr.deviceDisconnected(1n, 10n, lastFrame);
    await tr.idle();
    // A half-open connection closed long after its last frame: not brought back.
    t += GRACE;
    tr.deviceDisconnected(2n, 20n, lastFrame);
    await tr.idle();
    t += GRACE;
    await tr.sweep();
    assert.equal(lastHeard(heard, 99n, 1n), false, `heard ${show(heard)}`);
    assert.deepEqual(await mem.get([2n], t), [{ userId: 2n, online: false }], "the silent device was not written");
    assert.equal(lastHeard(heard, 99n, 2n), false, `its watchers told it is offline all the same: heard ${show(heard)}`);
  });

  it("after a restart that lost the data, announces OFFLINE for a device whose session had ended before it, in its grace period", async () => {
    let mem = new MemoryPresenceStore();
    const resets: (() => void)[] = [];
    const heard: Heard[] = [];
    const tr = tracker({ store: { ...storeOver(() => mem), onReset: (l) => resets.push(l) }, directory: recorder(heard) });
    tr.deviceConnected(1n, 10n);
    tr.deviceConnected(2n, 20n);
    await tr.idle();
    t += 1_000;
    tr.deviceDisconnected(1n, 10n, t); // its grace period runs: still online to its watchers
    tr.deviceDisconnected(2n, 20n, t);
    await tr.idle();
    t += 5_000;
    tr.deviceConnected(2n, 20n); // back before the restart: its live session is touched again by the chat server
    await tr.idle();
    mem = new MemoryPresenceStore(); // Redis restarted empty
    for (const reset of resets) reset();
    await tr.idle();
    for (let i = 0; i < 3; i++) {
      t += GRACE;
      await tr.sweep();
      await tr.idle();
    }
    assert.equal(lastHeard(heard, 99n, 1n), false, `its watchers hear it go: heard ${show(heard)}`);
    assert.deepEqual(await mem.get([2n], t), [{ userId: 2n, online: false }], "a device back meanwhile is not ended again here");
  });

  it("after a restart that lost the data mid-grace, ends the session again as of its end: last seen and the grace period are not moved to the restart", async () => {
    let mem = new MemoryPresenceStore();
    const resets: (() => void)[] = [];
    const heard: Heard[] = [];
    const tr = tracker({ store: { ...storeOver(() => mem), onReset: (l) => resets.push(l) }, directory: recorder(heard), heartbeatIntervalMs: HEARTBEAT });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    t += 1_000;
    const ended = t;
    tr.deviceDisconnected(1n, 10n, ended);
    await tr.idle();
    t += GRACE / 2;
    mem = new MemoryPresenceStore(); // Redis restarted empty, mid-grace
    for (const reset of resets) reset();
    await tr.idle();
    t = ended + GRACE;
    assert.deepEqual(await tr.getPresence([1n]), [{ userId: 1n, online: false, lastSeenAtMs: ended }], "its grace period ended where it would have");
  });

  it("after a restart that lost the data, keeps the grace period of a device whose session ended here though another device of the user lives on here: its logout flips nobody offline", async () => {
    let mem = new MemoryPresenceStore();
    const resets: (() => void)[] = [];
    const heard: Heard[] = [];
    const tr = tracker({ store: { ...storeOver(() => mem), onReset: (l) => resets.push(l) }, directory: recorder(heard), heartbeatIntervalMs: HEARTBEAT });
    // The chat server: the laptop's session lives on, and is touched again when the store resets.
    tr.onStoreRecovered(() => tr.deviceAlive(1n, 10n, t));
    tr.deviceConnected(1n, 10n); // the laptop
    tr.deviceConnected(1n, 11n); // the phone
    await tr.idle();
    t += 1_000;
    tr.deviceDisconnected(1n, 11n, t); // the phone's network dropped: its grace period runs
    await tr.idle();
    t += GRACE / 2;
    mem = new MemoryPresenceStore(); // Redis restarted empty
    for (const reset of resets) reset();
    await tr.idle();
    t += 1_000;
    tr.deviceLoggedOut(1n, 10n);
    await tr.idle();
    assert.deepEqual(await tr.getPresence([1n]), [{ userId: 1n, online: true }], "the phone is still in its grace period");
    assert.equal(lastHeard(heard, 99n, 1n), true, `heard ${show(heard)}`);
  });

  it("ends again, once the store answers, a session that ended while it failed: the watchers hear the user go, whatever the store kept", async () => {
    for (const lostData of [false, true]) {
      let mem = new MemoryPresenceStore();
      let down = false;
      const heard: Heard[] = [];
      const tr = tracker({ store: storeOver(() => mem, () => down), directory: recorder(heard) });
      tr.deviceConnected(1n, 10n);
      await tr.idle();
      down = true;
      t += 1_000;
      tr.deviceDisconnected(1n, 10n, t);
      await tr.idle();
      t += 2 * GRACE; // a long outage
      if (lostData) mem = new MemoryPresenceStore();
      down = false;
      await tr.sweep(); // finds the store answering again
      await tr.idle();
      t += GRACE;
      await tr.sweep();
      await tr.idle();
      assert.equal(lastHeard(heard, 99n, 1n), false, `${lostData ? "data lost" : "data kept"}: heard ${show(heard)}`);
    }
  });

  it("across processes: a session found silent on one server, its device back on another meanwhile, flips nobody offline", async () => {
    const store = new MemoryPresenceStore(); // the shared Redis
    const heard: Heard[] = [];
    const a = tracker({ store, directory: recorder(heard) });
    const b = tracker({ store, directory: recorder(heard) });
    a.deviceConnected(1n, 10n);
    await a.idle();
    const lastFrameOnA = t;
    t += 5_000; // the device's network changed without a FIN: it reconnects, to b
    b.deviceConnected(1n, 10n);
    for (let i = 0; i < 3; i++) {
      t += HEARTBEAT;
      b.deviceAlive(1n, 10n);
      await b.idle();
    }
    a.deviceDisconnected(1n, 10n, lastFrameOnA, true); // a heard nothing for three heartbeat intervals
    await a.idle();
    await a.sweep();
    await b.sweep();
    await Promise.all([a.idle(), b.idle()]);
    assert.deepEqual(heard.filter((h) => h.to === 99n).map((h) => h.online), [true], `heard ${show(heard)}`);
    assert.equal((await b.getPresence([1n]))[0]!.online, true);
  });

  /** A tracker of device 10 of user 1, connected, over a store slow to answer that first touch until `slow` opens; every touch it is asked. */
  async function slowToAnswerTheFirstTouch() {
    const store = new MemoryPresenceStore();
    const slow = gate();
    const touches: { deviceId: Id; atMs: number }[] = [];
    const tr = tracker({
      store: storeOver(() => store, () => false, {
        touch: async (userId, deviceId, atMs, expiresAtMs, options) => {
          touches.push({ deviceId, atMs });
          if (touches.length === 1) await slow.opened;
          return store.touch(userId, deviceId, atMs, expiresAtMs, options);
        },
      }),
      directory: recorder([]),
    });
    tr.deviceConnected(1n, 10n);
    await waitFor(() => touches.length === 1, "the connect's touch under way");
    return { tr, touches, slow };
  }

  it("queues no more than one touch of a device behind a slow store call, however many heartbeats come meanwhile, and keeps the order of other calls", async () => {
    const { tr, touches, slow } = await slowToAnswerTheFirstTouch();
    // A session sending heartbeats as fast as it may (each frame one), and one re-touch as of its last frame.
    for (let i = 0; i < 1_000; i++) {
      t += 10;
      tr.deviceAlive(1n, 10n);
    }
    tr.deviceAlive(1n, 10n, t - 5_000);
    const heartbeatsUntil = t;
    tr.deviceConnected(1n, 11n); // another device: after them, not joined to them
    tr.deviceAlive(1n, 10n); // joins the device's touch queued before: only touches are queued after it
    slow.open();
    await tr.idle();
    assert.deepEqual(
      touches.map((x) => `${x.deviceId}@${x.atMs - heartbeatsUntil}`),
      [`10@${-10_000}`, "10@0", "11@0"],
      "the connect's touch, one for the heartbeats (as of the latest), then the other device's",
    );
  });

  it("queues no more than one touch per device behind a slow store call when two devices of the user heartbeat in turn", async () => {
    const { tr, touches: timed, slow } = await slowToAnswerTheFirstTouch();
    // Two sessions of the user's, each sending heartbeats as fast as it may: their frames interleave.
    for (let i = 0; i < 1_000; i++) {
      t += 10;
      tr.deviceAlive(1n, 10n);
      tr.deviceAlive(1n, 11n);
    }
    slow.open();
    await tr.idle();
    assert.deepEqual(timed.map((x) => x.deviceId), [10n, 10n, 11n], "the connect's touch, then one per device");
    assert.deepEqual((await tr.getPresence([1n]))[0], { userId: 1n, online: true });
  });

  it("drops again, once the store answers, a device logged out while it failed: the watchers hear the user go, and never come back", async () => {
    for (const lostData of [false, true]) {
      for (const ended of ["before", "during", "not"] as const) {
        let mem = new MemoryPresenceStore();
        let down = false;
        const heard: Heard[] = [];
        const tr = tracker({ store: storeOver(() => mem, () => down), directory: recorder(heard) });
        const what = `${lostData ? "data lost" : "data kept"}, session ended ${ended === "not" ? "not at all (closed by the logout)" : `${ended} the outage`}`;
        tr.deviceConnected(1n, 10n);
        await tr.idle();
        if (ended === "before") {
          t += 1_000;
          tr.deviceDisconnected(1n, 10n, t); // its grace period runs
          await tr.idle();
        }
        down = true;
        if (ended === "during") {
          t += 1_000;
          tr.deviceDisconnected(1n, 10n, t);
          await tr.idle();
        }
        t += 1_000;
        const loggedOutAt = t;
        tr.deviceLoggedOut(1n, 10n);
        await tr.idle();
        t += 1_000; // a short outage: the device's grace period outlives it
        if (lostData) mem = new MemoryPresenceStore();
        down = false;
        for (let i = 0; i < 3; i++) {
          await tr.sweep(); // the first finds the store answering again
          await tr.idle();
          t += GRACE;
        }
        assert.deepEqual(heard.filter((h) => h.to === 99n).map((h) => h.online), [true, false], `${what}: heard ${show(heard)}`);
        const [p] = await tr.getPresence([1n]);
        assert.equal(p!.online, false, what);
        if (!lostData) assert.equal(p!.lastSeenAtMs, loggedOutAt, `${what}: last seen at the logout`);
        await tr.stop();
      }
    }
  });

  it("tells a flip whose announcement outlived the store's data (a restart mid-retry), not drops it as overtaken", async () => {
    let mem = new MemoryPresenceStore();
    let down = false;
    let refusals = 0;
    // Redis answers again, empty, after refusing two calls: within the retries, whatever the timers' pace.
    const isDown = () => {
      if (down && ++refusals > 2) (mem = new MemoryPresenceStore()), (down = false);
      return down;
    };
    const heard: Heard[] = [];
    let sweeping = false;
    let refused = false;
    const tr = tracker({
      store: storeOver(() => mem, isDown),
      directory: recorder(heard),
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 5 },
      audience: async () => {
        // The sweep's announcement finds Redis gone.
        if (sweeping && !refused) refused = down = true;
        return [99n];
      },
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    t += GRACE + 1;
    sweeping = true;
    await tr.sweep();
    await tr.idle();
    assert.equal(lastHeard(heard, 99n, 1n), false, `heard ${show(heard)}`);
  });

  it("does not flap everyone after a store outage longer than the grace period less a heartbeat interval", async () => {
    const mem = new MemoryPresenceStore();
    let down = false;
    const heard: Heard[] = [];
    const tr = tracker({ store: storeOver(() => mem, () => down), directory: recorder(heard) });
    const users = [1n, 2n, 3n];
    for (const u of users) tr.deviceConnected(u, 10n);
    await tr.idle();
    const start = t;
    // A second at a time, as the sweep timer runs, with each device heartbeating at its interval.
    const runUntil = async (ms: number) => {
      while (t < start + ms) {
        t += 1_000;
        if ((t - start) % HEARTBEAT === 0) for (const u of users) tr.deviceAlive(u, 10n);
        await tr.sweep();
      }
    };
    down = true;
    await runUntil(35_000); // the heartbeats at 25 s fail: none stored for longer than the grace period
    down = false;
    await runUntil(4 * HEARTBEAT);
    await tr.idle();
    assert.deepEqual(
      heard.map((h) => h.online),
      [true, true, true],
      "only the first ONLINE of each",
    );
  });

  it("after a store outage, sweeps again two heartbeat intervals after it answers, not a (longer) grace period: a dead device goes, a live one never flaps", async () => {
    const LONG_GRACE = 120_000;
    const mem = new MemoryPresenceStore();
    let down = false;
    const heard: Heard[] = [];
    const tr = tracker({ store: storeOver(() => mem, () => down), directory: recorder(heard), graceMs: LONG_GRACE, heartbeatIntervalMs: HEARTBEAT });
    tr.deviceConnected(1n, 10n); // heartbeats throughout
    tr.deviceConnected(2n, 20n); // its chat server dies in the outage: never heard of again
    await tr.idle();
    const start = t;
    const run = async (untilMs: number) => {
      while (t < start + untilMs) {
        t += 1_000;
        if ((t - start) % HEARTBEAT === 0) tr.deviceAlive(1n, 10n);
        await tr.sweep();
      }
      await tr.idle();
    };
    down = true;
    await run(LONG_GRACE + 10_000); // both devices' last stored touches expired meanwhile
    down = false;
    const answeredAt = t + 1_000; // the next sweep's ping
    await run(answeredAt - start + 2 * HEARTBEAT - 1_000);
    assert.equal(show(heard), "1:ON 2:ON", "nobody is swept before two heartbeat intervals have passed");
    await run(answeredAt - start + 2 * HEARTBEAT);
    assert.equal(show(heard), "1:ON 2:ON 2:OFF", "the dead device goes two heartbeat intervals after the store answers; the live one never flaps");
  });

  it("a sweeper that starts as Redis comes back from a snapshot sweeps nobody for two heartbeat intervals after the store first answers: live devices are touched again first", async () => {
    const LONG_GRACE = 120_000;
    const redis = new MemoryPresenceStore(); // what the snapshot kept
    const heard: Heard[] = [];
    const before = tracker({ store: redis, directory: recorder([]), graceMs: LONG_GRACE, heartbeatIntervalMs: HEARTBEAT });
    before.deviceConnected(1n, 10n); // its chat server touches it again once Redis is back
    before.deviceConnected(2n, 20n); // its chat server died meanwhile
    await before.idle();
    t += LONG_GRACE + 60_000; // Redis was away: both stored touches expired
    const sweeper = tracker({ store: redis, directory: recorder(heard), graceMs: LONG_GRACE, heartbeatIntervalMs: HEARTBEAT });
    const start = t;
    const server = tracker({ store: redis, directory: recorder(heard), graceMs: LONG_GRACE, heartbeatIntervalMs: HEARTBEAT });
    const run = async (untilMs: number) => {
      while (t < start + untilMs) {
        await sweeper.sweep();
        await sweeper.idle();
        t += 1_000;
        if (t - start === 12_000) server.deviceAlive(1n, 10n, t); // its reconnect to Redis: every live session re-touched
        await server.idle();
      }
    };
    await run(2 * HEARTBEAT);
    assert.equal(show(heard), "", "nobody is swept before two heartbeat intervals after the store first answered");
    await run(2 * HEARTBEAT + 1_000);
    assert.equal(show(heard), "2:OFF", "the dead device goes then; the live one, touched again meanwhile, never flaps");
  });

  it("holds sweeps off two heartbeat intervals by the monotonic clock: a wall clock stepped back an hour after the store answered (NTP at boot) sweeps nobody offline for that hour", async () => {
    let mono = 0;
    const mem = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const tr = tracker({ store: mem, directory: recorder(heard), heartbeatIntervalMs: HEARTBEAT, monotonicNow: () => mono });
    await tr.getPresence([2n]); // the store's first answer: sweeps held off from here
    t -= 3_600_000; // NTP sets the clock right, an hour back
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    tr.deviceDisconnected(1n, 10n, t); // its grace period runs on the clock as it now is
    await tr.idle();
    for (let i = 0; i < 3; i++) {
      t += GRACE;
      mono += GRACE;
      await tr.sweep();
      await tr.idle();
    }
    assert.equal(show(heard), "1:ON 1:OFF", "the device goes a grace period after its session ended, not an hour later");
  });

  it("logs a store failure again 10 s later by the monotonic clock, with the wall clock stepped back an hour meanwhile", async () => {
    let mono = 0;
    const warned: string[] = [];
    const logger = { warn: (_: unknown, msg: string) => warned.push(msg), info: () => {}, debug: () => {}, error: () => {} } as unknown as Logger;
    const tr = tracker({ store: storeOver(() => new MemoryPresenceStore(), () => true), directory: recorder([]), logger, monotonicNow: () => mono });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    assert.equal(warned.length, 1, "the first failure logged");
    t -= 3_600_000; // NTP sets the clock right, an hour back
    mono += 11_000;
    tr.deviceAlive(1n, 10n);
    await tr.idle();
    assert.equal(warned.length, 2, "a failure 11 s later logged too, not held back for the hour");
  });

  it("chatd: a chat.db whose last seens cannot be read holds no sweep off and fails no GetPresence (its memory store lost nothing)", async () => {
    const heard: Heard[] = [];
    const store = new MemoryPresenceStore({ lastSeenLog: { record: async () => {}, read: () => Promise.reject(new Error("disk I/O error")) } });
    const tr = tracker({ store, directory: recorder(heard) });
    let recovered = 0;
    tr.onStoreRecovered(() => recovered++);
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    // A user the store holds nothing of: their last seen is read from chat.db.
    assert.deepEqual(await tr.getPresence([2n]), [{ userId: 2n, online: false }]);
    t += GRACE;
    await tr.sweep();
    await tr.idle();
    assert.equal(show(heard), "1:ON 1:OFF", "swept offline when the grace period ran out, not a grace period later");
    assert.equal(recovered, 0, "no session was touched again");
  });

  it("tells its listeners once when the store answers again after failing (the chat server touches its sessions)", async () => {
    let down = false;
    const tr = tracker({ store: storeOver(() => new MemoryPresenceStore(), () => down), directory: recorder([]) });
    let recovered = 0;
    tr.onStoreRecovered(() => recovered++);
    tr.deviceAlive(1n, 10n);
    await tr.idle();
    assert.equal(recovered, 0);
    down = true;
    tr.deviceAlive(1n, 10n);
    await tr.sweep();
    await tr.idle();
    assert.equal(recovered, 0);
    down = false;
    await tr.sweep();
    tr.deviceAlive(1n, 10n);
    await tr.idle();
    assert.equal(recovered, 1);
  });

  it("retries an announcement whose audience read or push failed, telling the latest state", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    let failAudience = 0;
    let failPush = 0;
    const tr = tracker({
      store,
      audience: async () => {
        if (failAudience-- > 0) throw new Error("cassandra timeout");
        return [99n];
      },
      directory: recorder(heard, async () => {
        if (failPush-- > 0) throw new Error("redis away");
      }),
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 5 },
    });
    tr.deviceConnected(1n, 10n);
    tr.deviceConnected(2n, 20n);
    await tr.idle();
    failAudience = 2;
    t += GRACE + 1;
    await tr.sweep();
    failPush = 1;
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    assert.equal(lastHeard(heard, 99n, 1n), true);
    assert.equal(lastHeard(heard, 99n, 2n), false, `heard ${show(heard)}`);
  });

  it("tells again, with backoff, those of the audience whose chat server did not take a push, and only them, until it does", async () => {
    const store = new MemoryPresenceStore();
    const heard: Heard[] = [];
    const pushedTo: Id[][] = [];
    let refusing = 0;
    const tr = tracker({
      store,
      audience: async () => [98n, 99n],
      directory: {
        async pushToUsers(to: readonly Id[], frame: ServerFrame) {
          pushedTo.push([...to]);
          const p = frame.kind.case === "presence" ? frame.kind.value.presence! : assert.fail("not a presence frame");
          // 99's chat server is frozen; the error names users of other pushes batched with this one too.
          if (refusing-- > 0) throw new PushFailedError(new Set([99n, 7n]));
          for (const u of to) heard.push({ to: u, userId: p.userId, online: p.status === PresenceStatus.ONLINE });
        },
      },
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 5 },
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    pushedTo.length = 0;
    refusing = 2;
    t += GRACE + 1;
    await tr.sweep();
    await tr.idle();
    assert.equal(lastHeard(heard, 99n, 1n), false, `heard ${show(heard)}`);
    assert.deepStrictEqual(pushedTo, [[98n, 99n], [99n], [99n]]);
  });

  it("tells a user gone from the audience offline, without last seen, again with backoff to whoever's chat server did not take it, until it does", async () => {
    const pushedTo: Id[][] = [];
    const heard: Heard[] = [];
    let refusing = 2;
    const tr = tracker({
      store: new MemoryPresenceStore(),
      audience: async () => [],
      directory: {
        async pushToUsers(to: readonly Id[], frame: ServerFrame) {
          pushedTo.push([...to]);
          const p = frame.kind.case === "presence" ? frame.kind.value.presence! : assert.fail("not a presence frame");
          assert.equal(p.lastSeenAt, undefined, "no last seen for one who may no longer see it");
          // 99's chat server is frozen for two tries.
          if (refusing-- > 0) throw new PushFailedError(new Set([99n]));
          for (const u of to) heard.push({ to: u, userId: p.userId, online: p.status === PresenceStatus.ONLINE });
        },
      },
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 5 },
    });
    await tr.tellGone(1n, [98n, 99n]);
    await tr.idle();
    assert.deepStrictEqual(pushedTo, [[98n, 99n], [99n], [99n]]);
    assert.deepStrictEqual(heard, [{ to: 99n, userId: 1n, online: false }]);
  });

  it("tells a retry of a user gone from the audience no one who came back into it meanwhile", async () => {
    const pushedTo: Id[][] = [];
    let audience: Id[] = [];
    const tr = tracker({
      store: new MemoryPresenceStore(),
      audience: async () => audience,
      directory: {
        async pushToUsers(to: readonly Id[]) {
          pushedTo.push([...to]);
          // Friends again before the retry: the new friendship tells them the latest state.
          audience = [99n];
          throw new PushFailedError(new Set([98n, 99n]));
        },
      },
      retry: { firstDelayMs: 1, maxDelayMs: 1, attempts: 5 },
    });
    await tr.tellGone(1n, [98n, 99n]);
    await tr.idle();
    assert.deepStrictEqual(pushedTo.slice(0, 2), [[98n, 99n], [98n]]);
    assert.ok(pushedTo.every((to, i) => i === 0 || !to.includes(99n)), `pushed ${JSON.stringify(pushedTo.map(String))}`);
  });

  it("counts a sweep once its announcements were tried, without waiting for their retries", async () => {
    let swept = 0;
    let failing = false;
    const tr = tracker({
      store: new MemoryPresenceStore(),
      audience: async () => {
        if (failing) throw new Error("cassandra down");
        return [99n];
      },
      directory: recorder([]),
      retry: { firstDelayMs: 3_600_000, maxDelayMs: 3_600_000, attempts: 100 },
      onSwept: () => swept++,
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    failing = true;
    t += GRACE + 1;
    assert.equal(await tr.sweep(), 1);
    assert.equal(swept, 1);
    await tr.stop();
  });

  it("stop() waits for a sweep under way, its announcements told before the directory closes", async () => {
    const mem = new MemoryPresenceStore();
    const slow = gate();
    let expiring!: () => void;
    const expireCalled = new Promise<void>((r) => (expiring = r));
    const heard: Heard[] = [];
    let stopped = false;
    const tr = tracker({
      store: storeOver(() => mem, undefined, {
        async expire(...a) {
          expiring();
          await slow.opened; // a Redis round trip under way at SIGTERM
          return mem.expire(...a);
        },
      }),
      directory: recorder(heard, async () => {
        if (stopped) throw new Error("directory closed");
      }),
    });
    tr.deviceConnected(1n, 10n);
    await tr.idle();
    t += GRACE + 1;
    const sweeping = tr.sweep();
    await expireCalled;
    const stopping = tr.stop().then(() => (stopped = true));
    slow.open();
    await Promise.all([stopping, sweeping]);
    assert.equal(lastHeard(heard, 99n, 1n), false, `told before stop() returned: heard ${show(heard)}`);
  });

  it("gives a failing announcement up at stop()", async () => {
    const tr = tracker({
      store: new MemoryPresenceStore(),
      audience: () => Promise.reject(new Error("cassandra down")),
      directory: recorder([]),
      retry: { firstDelayMs: 3_600_000, maxDelayMs: 3_600_000, attempts: 100 },
    });
    tr.deviceConnected(1n, 10n);
    await waitFor(async () => (await tr.getPresence([1n]))[0]!.online, "online");
    await tr.stop();
  });

  it("finishes a sweep (and counts it) while other users' updates are still in flight", async function () {
    this.timeout(5_000);
    const mem = new MemoryPresenceStore();
    const held = gate();
    const store = storeOver(() => mem, undefined, {
      async touch(...a) {
        if (a[0] === 2n) await held.opened; // a slow store call, or a queue that never empties on a busy server
        return mem.touch(...a);
      },
    });
    const heard: Heard[] = [];
    let swept = 0;
    const tr = tracker({ store, directory: recorder(heard), onSwept: () => swept++ });
    tr.deviceConnected(1n, 10n);
    await waitFor(() => heard.length === 1, "user 1 online");
    tr.deviceConnected(2n, 20n);
    t += GRACE + 1;
    assert.equal(await tr.sweep(), 1);
    assert.equal(swept, 1);
    assert.equal(lastHeard(heard, 99n, 1n), false, "its own announcement was awaited");
    held.open();
    await tr.idle();
  });
});
