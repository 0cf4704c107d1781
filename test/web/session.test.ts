import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorCode, type InboxEntry } from "../../gen/es/chat/v1/types_pb.js";
import type { RealtimeSession as Session, SessionHandlers } from "../../web/src/session.js";
import { waitFor } from "../support/wait.js";
import { ScriptedSocket, fakeLocalStorage, settle } from "./fake-browser.js";

// The web client's realtime session in Node, on a scripted WebSocket.
const stored = new Map<string, string>();
/** The callbacks of window.setInterval, which never fire by themselves: a test calls them. */
const intervals: (() => void)[] = [];
const browserGlobals = {
  localStorage: fakeLocalStorage(stored),
  window: { addEventListener() {}, removeEventListener() {}, setTimeout, clearTimeout, setInterval: (f: () => void) => -intervals.push(f) },
  location: { href: "http://127.0.0.1/", protocol: "http:", host: "127.0.0.1", origin: "http://127.0.0.1" },
  WebSocket: ScriptedSocket,
};
let RealtimeSession: typeof Session;

const entry = (inboxSeq: bigint) => ({ inboxSeq, message: { channelId: 1n, seq: inboxSeq } });

/** What a session gets from Auth: a device signed in (or none), its token, and for some tests a refresh. */
interface TestAuth {
  current?: { deviceId: string; accessToken: string; accessIssuedAtMs?: number; accessExpiresAtMs?: number };
  accessToken(): Promise<string>;
  refresh?(): Promise<unknown>;
}

interface Started {
  session: Session;
  /** The sockets it opened, oldest first. */
  sockets(): ScriptedSocket[];
  /** Its `n`th socket (1: the first), once opened. */
  socket(n?: number): Promise<ScriptedSocket>;
  /** Its `n`th socket, once opened, welcomed (at cursor 0 of an empty inbox unless `welcome` says otherwise). */
  welcomed(n?: number, welcome?: { deviceCursor?: bigint; headInboxSeq?: bigint; heartbeatIntervalMs?: number }): Promise<ScriptedSocket>;
}

/** Sessions started and not stopped: stopped after their test, so that none reconnects into the next one. */
const running = new Set<Session>();

/**
 * Starts a RealtimeSession on a scripted socket, as device `deviceId` with the
 * token "t" unless `auth` is given; handlers not given do nothing.
 */
function startSession({ deviceId = "9", auth, handlers = {} }: { deviceId?: string; auth?: TestAuth; handlers?: Partial<SessionHandlers> } = {}): Started {
  auth ??= { current: { deviceId, accessToken: "t" }, accessToken: async () => "t" };
  const all = new Proxy(handlers, { get: (given, name) => given[name as keyof SessionHandlers] ?? (() => undefined) }) as SessionHandlers;
  const session = new RealtimeSession(auth as never, all, "ws://127.0.0.1/ws");
  // A stop of its own (or an end) is its last: a second would store the cursor again.
  const stop = session.stop.bind(session);
  session.stop = () => {
    running.delete(session);
    stop();
  };
  running.add(session);
  const first = ScriptedSocket.all.length;
  const sockets = () => ScriptedSocket.all.slice(first);
  const socket = async (n = 1) => {
    await waitFor(() => sockets().length >= n, n === 1 ? "the socket" : `socket ${n}`, 5_000);
    return sockets()[n - 1]!;
  };
  session.start();
  return {
    session,
    sockets,
    socket,
    welcomed: async (n = 1, welcome = {}) => {
      const s = await socket(n);
      s.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 0n, ...welcome } } });
      return s;
    },
  };
}

describe("web: the realtime session", () => {
  before(async () => {
    Object.assign(globalThis, browserGlobals);
    ({ RealtimeSession } = await import("../../web/src/session.js"));
  });
  afterEach(() => {
    for (const session of running) session.stop();
  });
  after(() => {
    for (const name of Object.keys(browserGlobals)) delete (globalThis as Record<string, unknown>)[name];
  });

  it("asks again from its own position when another tab of the device moved the device's cursor on while it was away", async () => {
    const taken: bigint[] = [];
    const { welcomed } = startSession({ handlers: { entries: (es: InboxEntry[]) => taken.push(...es.map((e) => e.inboxSeq)) } });
    const first = await welcomed();
    first.push({ kind: { case: "message", value: { entry: entry(1n) } } });
    first.onclose!({ code: 1006, reason: "" });
    // Meanwhile another tab took 2 to 5 and acked them: the device's cursor is 5.
    const socket = await welcomed(2, { deviceCursor: 5n, headInboxSeq: 6n });
    const sync = socket.frames().find((f) => f.kind.case === "sync");
    assert.ok(sync && sync.kind.case === "sync", "a SyncRequest");
    assert.equal(sync.kind.value.afterInboxSeq, 1n);
    // The server's own catch-up from the device's cursor, sent before it read the request, is left for the answer.
    socket.push({ kind: { case: "syncBatch", value: { entries: [entry(6n)], hasMore: false } } });
    socket.push({ kind: { case: "message", value: { entry: entry(7n) } } });
    socket.push({ ref: sync.ref, kind: { case: "syncBatch", value: { entries: [2n, 3n, 4n, 5n, 6n, 7n].map(entry), hasMore: false } } });
    socket.push({ kind: { case: "message", value: { entry: entry(8n) } } });
    assert.deepEqual(taken, [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
  });

  it("gives up on a connection that answers none of three heartbeats, and connects again", async () => {
    const states: string[] = [];
    const { welcomed, socket: nth } = startSession({ deviceId: "10", handlers: { state: (s) => states.push(s) } });
    const socket = await welcomed(1, { heartbeatIntervalMs: 1000 });
    const beat = () => intervals.at(-1)!();
    const heartbeats = () => socket.frames().filter((f) => f.kind.case === "heartbeat").length;
    beat();
    beat();
    beat();
    // Any frame says the connection lives: here the ack of the last heartbeat.
    socket.push({ kind: { case: "heartbeatAck", value: {} } });
    beat();
    beat();
    beat();
    assert.equal(heartbeats(), 6);
    assert.equal(socket.readyState, ScriptedSocket.OPEN, "closed while the server answered");
    beat();
    assert.notEqual(socket.readyState, ScriptedSocket.OPEN, "a dead connection kept");
    assert.equal(states.at(-1), "offline");
    await nth(2);
  });

  it("heartbeats on a worker's clock where there are workers (a hidden tab's own timers wake once a minute), one worker per socket, none left after a stop", async () => {
    /** A dedicated Worker as heartbeat-worker.ts is: `tick` is its interval firing. */
    class FakeWorker {
      static all: FakeWorker[] = [];
      onmessage?: (ev: { data: unknown }) => void;
      onerror?: () => void;
      every = 0;
      terminated = false;
      constructor(readonly url: URL) {
        FakeWorker.all.push(this);
      }
      postMessage(data: { every: number }): void {
        this.every = data.every;
      }
      terminate(): void {
        this.terminated = true;
      }
      tick(): void {
        if (!this.terminated && this.every > 0) this.onmessage?.({ data: "tick" });
      }
    }
    const g = globalThis as Record<string, unknown>;
    g.Worker = FakeWorker;
    try {
      const windowIntervals = intervals.length;
      const { session, welcomed, socket: nth } = startSession({ deviceId: "11" });
      const socket = await welcomed(1, { heartbeatIntervalMs: 2000 });
      assert.equal(FakeWorker.all.length, 1, "workers started");
      const worker = FakeWorker.all[0]!;
      assert.match(worker.url.pathname, /heartbeat-worker\.ts$/);
      assert.equal(worker.every, 2000);
      assert.equal(intervals.length, windowIntervals, "a heartbeat on the window's timer");
      const heartbeats = (s: ScriptedSocket) => s.frames().filter((f) => f.kind.case === "heartbeat").length;
      worker.tick();
      worker.tick();
      assert.equal(heartbeats(socket), 2);

      // The dead-connection check rides on the same clock: the fourth tick unanswered gives up.
      worker.tick();
      worker.tick();
      assert.notEqual(socket.readyState, ScriptedSocket.OPEN, "a dead connection kept");
      assert.ok(worker.terminated, "the closed socket's worker left running");
      const next = await nth(2);
      next.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 0n, heartbeatIntervalMs: 2000 } } });
      assert.equal(FakeWorker.all.length, 2);
      FakeWorker.all[1]!.tick();
      assert.equal(heartbeats(next), 1);

      session.stop();
      assert.ok(FakeWorker.all.every((w) => w.terminated), "a worker left running after the stop");
      assert.equal(intervals.length, windowIntervals, "a heartbeat on the window's timer");
    } finally {
      delete g.Worker;
    }
  });

  it("keeps its cursor under the device it started as when another tab signed in as another device", async () => {
    const auth: TestAuth = { current: { deviceId: "20", accessToken: "t" }, accessToken: async () => "t" };
    const { session, welcomed } = startSession({ auth });
    const socket = await welcomed();
    socket.push({ kind: { case: "message", value: { entry: entry(1n) } } });
    socket.push({ kind: { case: "message", value: { entry: entry(2n) } } });
    // The other tab stored its device; this one stops (ChatApp.destroy) before its ack was flushed.
    auth.current = { deviceId: "21", accessToken: "u" };
    session.stop();
    assert.equal(stored.get("chat.cursor.21"), undefined, "the new device's cursor moved by this tab");
    // Device 20 is no longer this browser's: its cursor would stay for good.
    assert.equal(stored.get("chat.cursor.20"), undefined, "the old device's cursor left behind");
  });

  it("leaves no cursor of a device signed out behind: dropped at sign-out, after another tab's, and at the next sign-in", async () => {
    const auth: TestAuth = { accessToken: async () => "t" };
    const run = async (device: string) => {
      auth.current = { deviceId: device, accessToken: "t" };
      const { session, welcomed } = startSession({ auth });
      (await welcomed()).push({ kind: { case: "message", value: { entry: entry(1n) } } });
      await waitFor(() => stored.get(`chat.cursor.${device}`) === "1", "the cursor stored");
      return session;
    };
    const cursors = () => [...stored.keys()].filter((k) => k.startsWith("chat.cursor.")).sort();

    // Signed out here (logout, or the server said so).
    (await run("50")).end();
    assert.equal(stored.get("chat.cursor.50"), undefined, "the signed-out device's cursor left behind");

    // Signed out in another tab: this tab stops with the device gone.
    const other = await run("51");
    auth.current = undefined;
    other.stop();
    assert.equal(stored.get("chat.cursor.51"), undefined, "the cursor of a device signed out in another tab left behind");

    // Left by a page that closed signed in, its device then signed out from elsewhere: gone at the next sign-in.
    stored.set("chat.cursor.52", "7");
    stored.set("chat.cursor.none", "3");
    stored.set("chat.other", "kept");
    const next = await run("53");
    try {
      assert.deepEqual(cursors(), ["chat.cursor.53"], "cursors of devices this browser no longer holds");
      assert.equal(stored.get("chat.other"), "kept");
    } finally {
      next.end();
      stored.delete("chat.other");
    }
  });

  it("hands the socket a fresh token before its own expires, asks again after a refusal for now, and gives up after one for good", async () => {
    const life = (accessToken: string, lifeMs: number) => ({ deviceId: "40", accessToken, accessIssuedAtMs: Date.now(), accessExpiresAtMs: Date.now() + lifeMs });
    let refreshes = 0;
    // A token that Auth still finds fresh enough for a call: the session must have it refreshed.
    const auth = {
      current: life("t0", 1000),
      accessToken: async () => auth.current.accessToken,
      refresh: async () => (auth.current = life(`t${++refreshes}`, 60_000)),
    };
    // The page's timers, kept track of: at the end, every one still planned is run at once, as if its time had come.
    const planned = new Map<unknown, () => void>();
    const { setTimeout: realSetTimeout, clearTimeout: realClearTimeout } = browserGlobals.window;
    browserGlobals.window.setTimeout = ((f: () => void, ms?: number) => {
      const id = realSetTimeout(() => (planned.delete(id), f()), ms);
      planned.set(id, f);
      return id;
    }) as typeof setTimeout;
    browserGlobals.window.clearTimeout = ((id: NodeJS.Timeout) => (planned.delete(id), realClearTimeout(id))) as typeof clearTimeout;
    try {
      const socket = await startSession({ auth }).welcomed();
      const asks = () => socket.frames().flatMap((f) => (f.kind.case === "reauthenticate" ? [{ ref: f.ref, token: f.kind.value.accessToken }] : []));
      await waitFor(() => asks().length === 1, "a Reauthenticate before the token's expiry", 5_000);
      assert.equal(asks()[0]!.token, "t1");

      socket.push({ ref: asks()[0]!.ref, kind: { case: "error", value: { code: ErrorCode.RATE_LIMITED, refusedKind: 8, retryAfterMs: 200 } } });
      await waitFor(() => asks().length === 2, "the Reauthenticate again", 5_000);
      assert.equal(asks()[1]!.token, "t1", "the token it had refreshed, not another");

      // Taken: the session now runs on t1 until the time the server says, and is handed the next before then.
      socket.push({ ref: asks()[1]!.ref, kind: { case: "reauthenticated", value: { tokenExpiresAt: timestampFromMs(Date.now() + 1500) } } });
      await waitFor(() => asks().length === 3, "the next Reauthenticate", 5_000);
      assert.equal(asks()[2]!.token, "t2");

      socket.push({ ref: asks()[2]!.ref, kind: { case: "error", value: { code: ErrorCode.PERMISSION_DENIED, refusedKind: 8 } } });
      // Past when it would ask again, whenever that is (the token it runs on ends within the second): the 4002 close at that expiry takes over.
      for (const [id, f] of [...planned]) {
        realClearTimeout(id as NodeJS.Timeout);
        planned.delete(id);
        f();
      }
      await settle();
      assert.equal(asks().length, 3);
      assert.equal(refreshes, 2);
    } finally {
      browserGlobals.window.setTimeout = realSetTimeout;
      browserGlobals.window.clearTimeout = realClearTimeout;
    }
  });

  it("keeps at most 32 sends out at once, sends the rest of the outbox as they are acked, in order, and retries a rate-limited one as told", async () => {
    const { session, socket: first, welcomed } = startSession({ deviceId: "30" });
    for (let i = 0; i < 100; i++) session.send(1n, `offline ${i}`, `k${i}`); // written while the socket was not welcomed
    const socket = await first();
    const sends = () => socket.frames().flatMap((f) => (f.kind.case === "send" ? [f.kind.value.clientMsgId] : []));
    assert.deepEqual(sends(), [], "nothing goes out before the welcome");
    await welcomed();
    assert.deepEqual(sends(), Array.from({ length: 32 }, (_, i) => `k${i}`));

    const ack = (id: string) => socket.push({ kind: { case: "sendAck", value: { clientMsgId: id } } });
    ack("k0");
    ack("k1");
    assert.deepEqual(sends().slice(32), ["k32", "k33"], "one more out for each ack, in the outbox's order");
    const refused = socket.frames().find((f) => f.kind.case === "send" && f.kind.value.clientMsgId === "k2")!;
    socket.push({ ref: refused.ref, kind: { case: "error", value: { code: ErrorCode.RATE_LIMITED, clientMsgId: "k2", retryAfterMs: 250 } } });
    assert.equal(sends().length, 34, "a send waiting to retry still holds its place");
    await waitFor(() => sends().length === 35, "the retry");
    assert.equal(sends()[34], "k2");
  });

  it("fails a send larger than the frame the server takes (its Welcome's max_frame_bytes), saying so, instead of sending it to be closed 1009 at every reconnect", async () => {
    const failed: { id: string; code: ErrorCode; message: string }[] = [];
    const { session, socket: first } = startSession({ deviceId: "31", handlers: { failed: (id, err) => failed.push({ id, code: err.code, message: err.message }) } });
    const socket = await first();
    socket.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 0n, maxFrameBytes: 2048 } } });
    session.send(1n, "é".repeat(1500), "big"); // 1,500 code points, 3,000 bytes as UTF-8
    session.send(1n, "small", "small");
    const sends = () => socket.frames().flatMap((f) => (f.kind.case === "send" ? [f.kind.value.clientMsgId] : []));
    assert.deepEqual(sends(), ["small"], "only what the server can take goes out");
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.id, "big");
    assert.equal(failed[0]!.code, ErrorCode.FRAME_TOO_LARGE);
    assert.match(failed[0]!.message, /too long for this server/);
    assert.equal(session.has("big"), false, "out of the outbox: a reconnect does not send it");
  });

  it("shows a refusal for too many sessions (4029) and waits at least 10 s before trying again, where another close waits under a second", async () => {
    const waits: number[] = [];
    const realSetTimeout = browserGlobals.window.setTimeout;
    // Recorded, not run: the wait is what is checked, and no socket opens behind the test's back.
    browserGlobals.window.setTimeout = ((f: () => void, ms?: number) => (waits.push(ms ?? 0), 0)) as unknown as typeof setTimeout;
    try {
      const shown: [string, string | undefined][] = [];
      const { socket } = startSession({ handlers: { state: (s, detail) => shown.push([s, detail]) } });
      const why = "too many sessions of this device (at most 8, CHAT_MAX_SESSIONS_PER_DEVICE)";
      (await socket()).onclose!({ code: 4029, reason: why });
      await waitFor(() => waits.length > 0, "a try planned");
      assert.deepEqual(shown.at(-1), ["offline", why]);
      assert.ok(waits.at(-1)! >= 10_000 && waits.at(-1)! <= 20_000, `waits ${waits.at(-1)} ms`);

      const other = startSession({ deviceId: "11" });
      const before = waits.length;
      (await other.socket()).onclose!({ code: 1011, reason: "" });
      await waitFor(() => waits.length > before, "a try planned");
      assert.ok(waits.at(-1)! < 1_000, `waits ${waits.at(-1)} ms`);
    } finally {
      browserGlobals.window.setTimeout = realSetTimeout;
    }
  });

  it("shows itself offline, not connecting, while it cannot get a token to connect with (the refresh cannot reach the server)", async () => {
    let asked = 0;
    const auth = {
      current: { deviceId: "9", accessToken: "t" },
      accessToken: async () => {
        asked++;
        throw new TypeError("Failed to fetch");
      },
    };
    const states: string[] = [];
    const { session } = startSession({ auth, handlers: { state: (s) => states.push(s) } });
    await waitFor(() => asked >= 1, "a token asked for");
    await waitFor(() => states.at(-1) === "offline", `offline (states: ${states.join(", ")})`, 2_000).catch(() => assert.fail(`shown ${states.at(-1)}: ${states.join(", ")}`));
    assert.equal(session.state, "offline");
  });

  it("opens one socket when the browser says it is online again while a token for the next one is on its way", async () => {
    let give!: (token: string) => void;
    const auth = { current: { deviceId: "9", accessToken: "t" }, accessToken: () => new Promise<string>((r) => (give = r)) };
    const { session, sockets, socket } = startSession({ auth });
    await waitFor(() => give !== undefined, "a token asked for");
    const asked = give;
    // The window's "online" event, as the browser fires it when the network comes back.
    (session as unknown as { onOnline: () => void }).onOnline();
    await settle();
    asked("t");
    if (give !== asked) give("t");
    await socket();
    await settle();
    assert.equal(sockets().length, 1, "sockets opened");
  });

  it("connects at once when the browser is back online while a socket opened offline is still connecting, its backoff started over", async () => {
    const { session, socket, sockets } = startSession({ deviceId: "12" });
    const hopeless = await socket();
    // Opened while offline: no network answers it, and it would fail only when the browser gives up on it.
    hopeless.readyState = ScriptedSocket.CONNECTING;
    // Failed tries while offline grew the backoff to its most (15 s).
    (session as unknown as { attempts: number }).attempts = 10;
    (session as unknown as { onOnline: () => void }).onOnline();
    // At once: no timer of the backoff's has run within these few turns of the loop (its first step is 250 ms at the least).
    await settle();
    assert.equal(sockets().length, 2, "a socket at once, not after the hopeless one failed and the backoff");
    assert.notEqual(hopeless.readyState, ScriptedSocket.OPEN, "the hopeless socket left open");
    // The next failure waits the first step of the backoff, not 15 s: read from the wait the session asks of its
    // timer, not timed by the clock, which a busy machine's late timers would make say too much.
    const waits: number[] = [];
    const realSetTimeout = browserGlobals.window.setTimeout;
    browserGlobals.window.setTimeout = ((f: () => void, ms?: number) => (waits.push(ms ?? 0), realSetTimeout(f, ms))) as typeof setTimeout;
    try {
      sockets()[1]!.drop();
      await waitFor(() => waits.length > 0, "the next try's timer");
    } finally {
      browserGlobals.window.setTimeout = realSetTimeout;
    }
    assert.ok(waits[0]! <= 1_000, `the next try ${waits[0]} ms away: the backoff's first step is at most a second, its most 15 s`);
    await waitFor(() => sockets().length === 3, "the next try");
  });

  it("connects at once when the browser is back online while the token for a try begun offline is on its way, once that fails", async () => {
    let fail!: (err: Error) => void;
    let asked = 0;
    const auth = {
      current: { deviceId: "13", accessToken: "t" },
      accessToken: () => (++asked === 1 ? new Promise<string>((_, reject) => (fail = reject)) : Promise.resolve("t")),
    };
    const { session, socket } = startSession({ auth });
    await waitFor(() => fail !== undefined, "a token asked for");
    (session as unknown as { attempts: number }).attempts = 10;
    (session as unknown as { onOnline: () => void }).onOnline();
    // Its refresh, sent while offline, fails: Auth shares it with any other ask, so the try is not given up before.
    fail(new TypeError("Failed to fetch"));
    // At once: the backoff's first step, started over, is 250 ms at the least.
    await settle();
    assert.equal(asked, 2, "a token asked for again at once");
    await socket();
  });
});
