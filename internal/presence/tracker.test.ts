import assert from "node:assert/strict";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import type { Id } from "../model/types.js";
import { MemoryPresenceStore } from "./memory.js";
import { PresenceTracker } from "./tracker.js";

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
