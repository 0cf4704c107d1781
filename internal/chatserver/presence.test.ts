import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { BlockCache } from "../accounts/blocks.js";
import { presenceFrame } from "../presence/tracker.js";
import { stubInbox } from "../../test/support/inbox.js";
import type { Id } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { ChatServer, type PresenceHooks } from "./server.js";
import { HEARTBEAT_BURST } from "./session.js";

const emptyInbox = stubInbox();

/** PresenceHooks that record each call, and keep the store-recovered listener for the test to call. */
function recordingHooks() {
  const calls: { hook: string; userId: Id; deviceId: Id; atMs?: number; silent?: boolean }[] = [];
  let recovered: (() => void) | undefined;
  const hooks: PresenceHooks = {
    deviceConnected: (userId, deviceId) => void calls.push({ hook: "connected", userId, deviceId }),
    deviceAlive: (userId, deviceId, atMs) => void calls.push({ hook: "alive", userId, deviceId, atMs }),
    deviceDisconnected: (userId, deviceId, atMs, silent) => void calls.push({ hook: "disconnected", userId, deviceId, atMs, silent }),
    onStoreRecovered: (listener) => void (recovered = listener),
  };
  return { hooks, calls, storeRecovered: () => recovered?.() };
}

describe("chat server presence hooks", () => {
  it("touches every started session again, as of its last frame, when the presence store recovers", async () => {
    const { hooks, calls, storeRecovered } = recordingHooks();
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, presence: hooks });
    const sink = { send: () => {}, bufferedBytes: () => 0, close: () => {} };
    const before = Date.now();
    const handles = [1n, 2n].map((userId) =>
      server.open({ userId, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink),
    );
    await waitFor(() => calls.filter((c) => c.hook === "connected").length === 2, "both sessions started");
    handles[0]!.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "heartbeat", value: {} } })));
    calls.length = 0;
    storeRecovered();
    assert.deepEqual(
      calls.map(({ hook, userId, deviceId }) => ({ hook, userId, deviceId })),
      [
        { hook: "alive", userId: 1n, deviceId: 7n },
        { hook: "alive", userId: 2n, deviceId: 7n },
      ],
    );
    for (const c of calls) assert.ok(c.atMs !== undefined && c.atMs >= before && c.atMs <= Date.now(), `as of the session's last frame: ${c.atMs}`);
    server.drain();
  });

  it("tells the session's last frame when it ends (the store may have lost the device with its data)", async () => {
    const { hooks, calls } = recordingHooks();
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, presence: hooks });
    const handle = server.open(
      { userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" },
      { send: () => {}, bufferedBytes: () => 0, close: () => {} },
    );
    await waitFor(() => calls.some((c) => c.hook === "connected"), "the session started");
    const before = Date.now();
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "heartbeat", value: {} } })));
    handle.closed();
    const ended = calls.find((c) => c.hook === "disconnected");
    assert.ok(ended?.atMs !== undefined && ended.atMs >= before, `last frame ${ended?.atMs}`);
    server.drain();
  });
});

describe("chat server presence: a device with two sessions here", () => {
  it("tells, when its stale session is closed as silent after its newer one ended, when the device was last there: not the stale session's last frame", async () => {
    const { hooks, calls } = recordingHooks();
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, presence: hooks, limits: { heartbeatIntervalMs: 1_000 } });
    const sink = { send: () => {}, bufferedBytes: () => 0, close: () => {} };
    const identity = () => ({ userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" as const });
    // The old socket died without a FIN; the device reconnected to this server, chatted, and closed the app.
    server.open(identity(), sink);
    await waitFor(() => calls.filter((c) => c.hook === "connected").length === 1, "the first session started");
    const staleSince = Date.now();
    await waitFor(() => Date.now() > staleSince + 20, "a moment to pass");
    const fresh = server.open(identity(), sink);
    await waitFor(() => calls.filter((c) => c.hook === "connected").length === 2, "the second session started");
    const lastThere = Date.now();
    fresh.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "heartbeat", value: {} } })));
    fresh.closed();
    assert.deepEqual(calls.filter((c) => c.hook === "disconnected"), [], "the stale session still holds the device");
    const monoNow = performance.now.bind(performance);
    try {
      performance.now = () => monoNow() + 3_001; // the stale session's silence is found
      (server as unknown as { sweep(): void }).sweep();
    } finally {
      performance.now = monoNow;
    }
    const ended = calls.filter((c) => c.hook === "disconnected");
    assert.equal(ended.length, 1);
    assert.ok(ended[0]!.atMs! >= lastThere, `last there at ${ended[0]!.atMs}, not at the stale session's last frame (${staleSince} or before): its grace period and last seen run from then`);
    server.drain();
  });
});

describe("chat server presence: a device found signed out by a Reauthenticate", () => {
  /**
   * A server holding device 7 of user 1, which `signOut` signs out; with
   * `held`, the reads that find it so wait for the function it returns.
   */
  function signOutRig() {
    const { hooks, calls } = recordingHooks();
    const loggedOut: Id[] = [];
    hooks.deviceLoggedOut = (_userId, deviceId) => void loggedOut.push(deviceId);
    let signedOut = false;
    let reading: Promise<void> | undefined;
    const revoked = async () => {
      await reading;
      return signedOut;
    };
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, presence: hooks, revoked });
    const closes: number[][] = [[], []];
    const open = (codes: number[]) =>
      server.open({ userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: () => {}, bufferedBytes: () => 0, close: (code) => void codes.push(code) });
    const signOut = ({ held = false } = {}): (() => void) => {
      signedOut = true;
      if (!held) return () => {};
      let answer!: () => void;
      reading = new Promise<void>((r) => (answer = r));
      return answer;
    };
    const started = (n: number) => waitFor(() => calls.filter((c) => c.hook === "connected").length === n, `${n} session(s) started`);
    return { server, closes, open, signOut, started, loggedOut };
  }

  it("is offline at once (as at a logout), and its other sessions here are closed with 4003 too", async () => {
    const { server, closes, open, signOut, started, loggedOut } = signOutRig();
    const first = open(closes[0]!);
    open(closes[1]!);
    await started(2);
    // Signed out through a process whose close never reached this one (the routing table was down).
    signOut();
    first.reauthenticate({ ref: 1n, expiresAtMs: Date.now() + 900_000 });
    await waitFor(() => closes[0]!.length > 0, "the close");
    assert.deepEqual(closes, [[4003], [4003]]);
    assert.deepEqual(loggedOut, [7n], "offline at once, not a grace period after its last heartbeat");
    assert.equal(server.sessionCount, 0);
    server.drain();
  });

  it("closes the device's other sessions here even when the one that asked closed while the device was read", async () => {
    const { server, closes, open, signOut, started, loggedOut } = signOutRig();
    const asking = open(closes[0]!);
    open(closes[1]!);
    await started(2);
    const answer = signOut({ held: true });
    asking.reauthenticate({ ref: 1n, expiresAtMs: Date.now() + 900_000 });
    // The tab that asked goes away before the answer: the device's other tab is still signed out.
    asking.closed();
    answer();
    await waitFor(() => closes[1]!.length > 0, "the other session's close");
    assert.deepEqual(closes, [[], [4003]]);
    assert.deepEqual(loggedOut, [7n]);
    assert.equal(server.sessionCount, 0);
    server.drain();
  });

  it("closes the device's sessions already open here when a new one finds it signed out as it starts, even if that one closed meanwhile", async () => {
    const { server, closes, open, signOut, started, loggedOut } = signOutRig();
    open(closes[0]!);
    await started(1);
    const answer = signOut({ held: true });
    // Another tab of the device connects and is gone again before its reads are answered.
    open(closes[1]!).closed();
    answer();
    await waitFor(() => closes[0]!.length > 0, "the first session's close");
    assert.deepEqual(closes, [[4003], []]);
    assert.deepEqual(loggedOut, [7n]);
    assert.equal(server.sessionCount, 0);
    server.drain();
  });

  it("closes the device's sessions already open here when a new one of it finds it signed out as it starts", async () => {
    const { server, closes, open, signOut, started, loggedOut } = signOutRig();
    open(closes[0]!);
    await started(1);
    // Signed out through a process whose close never reached this one; another tab of the device reconnects.
    signOut();
    open(closes[1]!);
    await waitFor(() => closes[1]!.length > 0, "the new session refused");
    assert.deepEqual(closes, [[4003], [4003]]);
    assert.deepEqual(loggedOut, [7n]);
    assert.equal(server.sessionCount, 0);
    server.drain();
  });
});

/**
 * The chat server's view of a BlockCache, with `settled()`: resolves once every
 * check asked so far has answered and the server handled its answer (its
 * handler came first). Events held by a check are not awaited by their caller.
 */
function settling(cache: BlockCache) {
  const asked: Promise<unknown>[] = [];
  const blocks = {
    blockersBetween: (a: Id, b: Id) => {
      const answer = cache.blockersBetween(a, b);
      asked.push(answer.catch(() => undefined));
      return answer;
    },
    forget: (a: Id, b: Id) => cache.forget(a, b),
  };
  return { blocks: blocks as unknown as BlockCache, settled: () => Promise.all(asked) };
}

describe("chat server presence events across a block", () => {
  it("drops an ONLINE about someone lately blocked (either way) that arrives after the block's OFFLINE, and passes them again after an unblock", async () => {
    let blocked = false;
    const { blocks, settled } = settling(new BlockCache({ blockersBetween: async () => (blocked ? [2n] : []), getUser: async () => undefined }));
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, blocks });
    const sent: Uint8Array[] = [];
    server.open({ userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: (b: Uint8Array) => void sent.push(b), bufferedBytes: () => 0, close: () => {} });
    await waitFor(() => sent.length > 0, "the welcome");
    const heard = () => sent.map((b) => fromBinary(ServerFrameSchema, b)).flatMap((f) => (f.kind.case === "presence" ? [f.kind.value.presence!.status] : []));
    // The audience of user 2's ONLINE was read before the block; ONLINE is read from the cache now.
    await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: true }));
    blocked = true;
    server.forgetBlock(2n, 1n);
    await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: false }));
    await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: true }));
    await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: false, lastSeenAtMs: 5 }));
    await settled();
    assert.deepEqual(heard(), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "the block's OFFLINE, then nothing that tells");
    blocked = false;
    server.forgetBlock(1n, 2n);
    await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: true }));
    await settled();
    assert.deepEqual(heard(), [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.ONLINE]);
    server.drain();
  });

  it("keeps checking the pair for its minute of real time, whatever the wall clock does meanwhile", async () => {
    const { blocks, settled } = settling(new BlockCache({ blockersBetween: async () => [2n], getUser: async () => undefined }));
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, blocks });
    const sent: Uint8Array[] = [];
    server.open({ userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 3_600_000, encoding: "proto" }, { send: (b: Uint8Array) => void sent.push(b), bufferedBytes: () => 0, close: () => {} });
    await waitFor(() => sent.length > 0, "the welcome");
    const heard = () => sent.map((b) => fromBinary(ServerFrameSchema, b)).flatMap((f) => (f.kind.case === "presence" ? [f.kind.value.presence!.status] : []));
    server.forgetBlock(2n, 1n);
    const wallNow = Date.now;
    try {
      Date.now = () => wallNow() + 120_000; // NTP steps the clock two minutes on; no time passed
      await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: true }));
    } finally {
      Date.now = wallNow;
    }
    await settled();
    assert.deepEqual(heard(), [], "an ONLINE read before the block still lands after its OFFLINE");
    server.drain();
  });
});

/**
 * A chat server whose block checks wait for the test: each is kept by the
 * pair it asks about ("to>about") until answered (blockers) or failed, with
 * the promise it returned (the server's handler runs before whoever awaits it next).
 */
async function heldChecksRig(recipients: readonly Id[]) {
  const checks = new Map<string, { answer: (blockers?: Id[]) => void; fail: () => void; done: Promise<unknown> }[]>();
  const blocks = {
    blockersBetween: (a: Id, b: Id) => {
      let answer!: (blockers?: Id[]) => void;
      let fail!: () => void;
      const done = new Promise<readonly Id[]>((resolve, reject) => {
        answer = (blockers = []) => resolve(blockers);
        fail = () => reject(new Error("block store unavailable"));
      });
      const key = `${a}>${b}`;
      checks.set(key, [...(checks.get(key) ?? []), { answer, fail, done: done.catch(() => undefined) }]);
      return done;
    },
    forget: () => {},
  };
  const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, blocks: blocks as never });
  const sent = new Map<Id, Uint8Array[]>();
  for (const userId of recipients) {
    const frames: Uint8Array[] = [];
    sent.set(userId, frames);
    server.open({ userId, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: (b: Uint8Array) => void frames.push(b), bufferedBytes: () => 0, close: () => {} });
    await waitFor(() => frames.length > 0, "the welcome");
  }
  /** What `userId` heard of presence, as "<subject> online|offline|seen" (seen: offline with a last seen). */
  const heard = (userId: Id) =>
    sent.get(userId)!.flatMap((b) => {
      const f = fromBinary(ServerFrameSchema, b);
      if (f.kind.case !== "presence") return [];
      const p = f.kind.value.presence!;
      return [`${p.userId} ${p.status === PresenceStatus.ONLINE ? "online" : p.lastSeenAt ? "seen" : "offline"}`];
    });
  const check = (to: Id, about: Id, nth = 0) => checks.get(`${to}>${about}`)?.[nth];
  return { server, heard, check };
}

describe("chat server presence events held by a block check", () => {
  // In each, the pairs' block changed a moment ago (forgetBlock): an event that tells something of the other waits for a check.

  it("lets the caller go on at once: the rest of an announcement's audience hears it while one recipient's check waits", async () => {
    const { server, heard, check } = await heldChecksRig([1n, 4n]);
    server.forgetBlock(1n, 2n);
    try {
      // chatd: the tracker pushes user 2's ONLINE to their audience, user 1 first.
      const pushed = server.pushToUsers([1n, 4n], presenceFrame({ userId: 2n, online: true }));
      await waitFor(() => heard(4n).length > 0, "user 4 told while user 1's check waits", 2_000);
      await pushed;
      assert.deepEqual(heard(1n), []);
      check(1n, 2n)!.answer();
      await check(1n, 2n)!.done;
      assert.deepEqual(heard(1n), ["2 online"]);
    } finally {
      server.drain();
    }
  });

  it("drops an event whose check fails, and the rest of the audience still hears it", async () => {
    const { server, heard, check } = await heldChecksRig([1n, 4n]);
    server.forgetBlock(1n, 2n);
    server.forgetBlock(4n, 2n);
    try {
      const pushed = server.pushToUsers([1n, 4n], presenceFrame({ userId: 2n, online: true }));
      await waitFor(() => check(1n, 2n), "user 1's check");
      check(1n, 2n)!.fail();
      await pushed;
      await waitFor(() => check(4n, 2n), "user 4's check", 2_000);
      check(4n, 2n)!.answer();
      await Promise.all([check(1n, 2n)!.done, check(4n, 2n)!.done]);
      assert.deepEqual(heard(1n), [], "not shown to one who may have just been blocked");
      assert.deepEqual(heard(4n), ["2 online"]);
    } finally {
      server.drain();
    }
  });

  it("keeps a failure handing on a held event to itself: logged, not an unhandled rejection", async () => {
    const checks: { answer: () => void; done: Promise<unknown> }[] = [];
    const blocks = {
      blockersBetween: () => {
        let answer!: () => void;
        const done = new Promise<readonly Id[]>((resolve) => (answer = () => resolve([])));
        checks.push({ answer, done });
        return done;
      },
      forget: () => {},
    };
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warned.push(msg) };
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, blocks: blocks as never, logger: logger as never });
    let welcomed = false;
    server.open(
      { userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" },
      {
        send: () => {
          if (welcomed) throw new Error("the transport broke");
          welcomed = true;
        },
        bufferedBytes: () => 0,
        close: () => {},
      },
    );
    await waitFor(() => welcomed, "the welcome");
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    server.forgetBlock(1n, 2n);
    try {
      await server.pushToUsers([1n], presenceFrame({ userId: 2n, online: true }));
      checks[0]!.answer();
      await waitFor(() => warned.length > 0, "the failure logged", 2_000);
      await new Promise((r) => setImmediate(r)); // where Node reports a rejection nobody handled
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      server.drain();
    }
  });

  it("holds back no event about anyone else: each subject's events wait only for their own check", async () => {
    const { server, heard, check } = await heldChecksRig([1n]);
    server.forgetBlock(1n, 2n);
    server.forgetBlock(1n, 3n);
    try {
      const pushed = [
        server.pushMany([{ userId: 1n, frame: presenceFrame({ userId: 2n, online: true }) }]),
        server.pushMany([{ userId: 1n, frame: presenceFrame({ userId: 3n, online: true }) }]),
      ];
      await waitFor(() => check(1n, 3n), "user 3's check");
      check(1n, 3n)!.answer();
      await check(1n, 3n)!.done;
      assert.deepEqual(heard(1n), ["3 online"], "user 3's event, checked, waits not for user 2's check");
      check(1n, 2n)!.answer();
      await Promise.all(pushed);
      await check(1n, 2n)!.done;
      assert.deepEqual(heard(1n), ["3 online", "2 online"]);
    } finally {
      server.drain();
    }
  });

  it("of one subject's events, ends with the one that came last: a newer one replaces the one still held, checked or not", async () => {
    const { server, heard, check } = await heldChecksRig([1n]);
    server.forgetBlock(1n, 2n);
    const push = (online: boolean, lastSeenAtMs?: number) => server.pushMany([{ userId: 1n, frame: presenceFrame({ userId: 2n, online, lastSeenAtMs }) }]);
    const pushed: Promise<unknown>[] = [];
    try {
      // A newer event that needs a check goes once its own check answers, not after the older one's; the older goes nowhere.
      pushed.push(push(true), push(false, 5));
      await waitFor(() => check(1n, 2n, 1), "both checks asked");
      check(1n, 2n, 1)!.answer();
      await check(1n, 2n, 1)!.done;
      assert.deepEqual(heard(1n), ["2 seen"]);
      check(1n, 2n, 0)!.answer();
      await check(1n, 2n, 0)!.done;
      assert.deepEqual(heard(1n), ["2 seen"], "the older ONLINE never lands after it");
      // One that tells nothing (OFFLINE without last seen: an unfriending, a block) needs no check: it goes at once, and replaces the held one.
      pushed.push(push(true), push(false));
      assert.deepEqual(heard(1n), ["2 seen", "2 offline"]);
      check(1n, 2n, 2)!.answer();
      await Promise.all(pushed);
      await check(1n, 2n, 2)!.done;
      assert.deepEqual(heard(1n), ["2 seen", "2 offline"], "user 1's screen ends with the event that came last");
    } finally {
      server.drain();
    }
  });
});

describe("chat server presence: a session at its frame rate", () => {
  const hb = (ref: bigint) => toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind: { case: "heartbeat", value: {} } }));
  const typing = (ref: bigint) => toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind: { case: "typing", value: { channelId: 7n } } }));

  /** One started session whose frame rate allows a frame a second, bursts of two, and what it is sent, closed with and told presence. */
  async function limitedSession() {
    const { hooks, calls } = recordingHooks();
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, presence: hooks, limits: { framesPerSecond: 1, frameBurst: 2 } });
    const sent: ServerFrame[] = [];
    const closes: number[] = [];
    const handle = server.open(
      { userId: 1n, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" },
      { send: (f) => void sent.push(fromBinary(ServerFrameSchema, f as Uint8Array)), bufferedBytes: () => 0, close: (code) => void closes.push(code) },
    );
    await waitFor(() => calls.some((c) => c.hook === "connected"), "the session started");
    const answer = (ref: bigint) => sent.find((f) => f.ref === ref);
    const limited = (f: ServerFrame | undefined) => f?.kind.case === "error" && f.kind.value.code === ErrorCode.RATE_LIMITED;
    return { server, handle, calls, closes, answer, limited };
  }

  it("keeps the device present and answers its heartbeat while its other frames are refused for the rate", async () => {
    const { server, handle, calls, closes, answer, limited } = await limitedSession();
    try {
      // Typing hints past the frame rate (a chatty client): the third is refused.
      for (let ref = 1n; ref <= 3n; ref++) handle.receive(typing(ref));
      await waitFor(() => answer(3n), "the third hint's refusal");
      assert.ok(limited(answer(3n)), "the frame rate is reached");
      handle.receive(hb(10n));
      await waitFor(() => answer(10n), "the heartbeat's answer");
      assert.equal(answer(10n)!.kind.case, "heartbeatAck");
      assert.deepEqual(calls.filter((c) => c.hook === "alive").length, 1, "the device touched");
      // The heartbeat took no frame: the next frame is still refused, told a turn as before.
      handle.receive(typing(11n));
      await waitFor(() => answer(11n), "the next hint's answer");
      assert.ok(limited(answer(11n)));
      assert.deepEqual(closes, []);
    } finally {
      server.drain();
    }
  });

  it("bounds heartbeats by an allowance of their own: past its burst they are refused for the rate, touch nothing, and a flood of them is closed", async () => {
    // The allowance's monotonic clock moves only when the test moves it: a timer of retry_after_ms,
    // timed from the event loop's cached time, can fire before that much has passed on this clock.
    const monoNow = performance.now.bind(performance);
    let now = monoNow();
    performance.now = () => now;
    const { server, handle, calls, closes, answer, limited } = await limitedSession();
    try {
      const refs = Array.from({ length: HEARTBEAT_BURST + 3 }, (_, i) => BigInt(i + 1));
      for (const ref of refs) handle.receive(hb(ref));
      await waitFor(() => refs.every((r) => answer(r)), "an answer to each heartbeat");
      assert.deepEqual(refs.map((r) => answer(r)!.kind.case === "heartbeatAck"), refs.map((_, i) => i < HEARTBEAT_BURST));
      assert.ok(refs.slice(HEARTBEAT_BURST).every((r) => limited(answer(r))));
      assert.equal(calls.filter((c) => c.hook === "alive").length, HEARTBEAT_BURST);
      assert.deepEqual(closes, []);
      // Back after the wait it was told, a heartbeat finds its allowance again.
      const told = answer(refs.at(-1)!)!;
      const wait = told.kind.case === "error" ? told.kind.value.retryAfterMs : 0;
      assert.ok(wait > 0 && wait <= 3_000, `told to come back in ${wait} ms`);
      now += wait;
      handle.receive(hb(50n));
      await waitFor(() => answer(50n), "the later heartbeat's answer");
      assert.equal(answer(50n)!.kind.case, "heartbeatAck");
      for (let ref = 100n; ref < 400n && closes.length === 0; ref++) handle.receive(hb(ref));
      assert.deepEqual(closes, [4008], "a flood of heartbeats is a flood");
    } finally {
      performance.now = monoNow;
      server.drain();
    }
  });
});

describe("chat server presence events whose block check fails", () => {
  // During a block store outage every held event of every recipient failed its check: a line each.
  it("warns once, not once per event dropped", async () => {
    let checks = 0;
    const blocks = { blockersBetween: () => (checks++, Promise.reject(new Error("block store unavailable"))), forget: () => {} };
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warned.push(msg), error: () => {}, info: () => {}, debug: () => {} };
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, blocks: blocks as never, logger: logger as never });
    const recipients = Array.from({ length: 20 }, (_, i) => BigInt(i + 10));
    let welcomed = 0;
    for (const userId of recipients) {
      server.open({ userId, deviceId: 7n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: () => void welcomed++, bufferedBytes: () => 0, close: () => {} });
      server.forgetBlock(userId, 2n);
    }
    await waitFor(() => welcomed >= recipients.length, "every welcome");
    await server.pushToUsers(recipients, presenceFrame({ userId: 2n, online: true }));
    await waitFor(() => checks >= recipients.length, "every event's check");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warned.filter((m) => m.startsWith("presence event held for a block check dropped")).length, 1);
    server.drain();
  });
});
