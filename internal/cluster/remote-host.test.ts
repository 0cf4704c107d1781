import assert from "node:assert/strict";
import { Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import {
  ChatServerServiceService,
  type SessionRequest,
  type SessionResponse,
} from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { MemoryServerRegistry } from "../registry/memory.js";
import type { Registration, ServerInfo } from "../registry/port.js";
import { waitFor } from "../../test/support/wait.js";
import { INTERNAL_MESSAGE_LIMITS } from "./message-limits.js";
import { RemoteSessionHost } from "./remote-host.js";
import { ChatError } from "../model/errors.js";
import { ErrorCode } from "../../gen/ts-proto/chat/v1/types.js";

/**
 * A stand-in chat server on loopback: it records what the gateway sends and
 * answers every client frame by echoing it back, so the tests can see which
 * server a session is on and what reached it.
 */
class FakeChatServer {
  readonly opens: { sessionId: bigint; resumed: boolean; tokenExpiresAtMs?: number }[] = [];
  readonly frames: string[] = [];
  /** Opens ("open <id>") and client frames ("frame <text>") in the order they arrived. */
  readonly seen: string[] = [];
  /** Each open is answered at once with a frame, as a chat server's welcome. */
  welcomeOpens = false;
  /** Sessions the gateway said it closed. */
  readonly closes: bigint[] = [];
  readonly streams = new Set<ServerDuplexStream<SessionRequest, SessionResponse>>();
  // The limits a real chat server runs with (cmd/chat-server).
  private server = new Server(INTERNAL_MESSAGE_LIMITS);
  address = "";
  refuseOpens = false;
  /** How long a refusal takes (a server that tried to read the session's state first). */
  refuseAfterMs = 0;

  constructor(readonly id: string) {
    this.server.addService(ChatServerServiceService, {
      session: (call: ServerDuplexStream<SessionRequest, SessionResponse>) => {
        this.streams.add(call);
        call.on("data", (req: SessionRequest) => {
          const k = req.kind;
          if (k?.$case === "open") {
            this.opens.push({ sessionId: req.sessionId, resumed: k.value.resumed, tokenExpiresAtMs: k.value.tokenExpiresAt?.getTime() });
            this.seen.push(`open ${req.sessionId}`);
            if (this.welcomeOpens) call.write({ sessionId: req.sessionId, kind: { $case: "serverFrame", value: Buffer.from("welcome") } });
            if (this.refuseOpens) {
              const refuse = () => call.write({ sessionId: req.sessionId, kind: { $case: "closed", value: { code: 1013, reason: "draining" } } });
              if (this.refuseAfterMs > 0) setTimeout(refuse, this.refuseAfterMs);
              else refuse();
            }
          }
          if (k?.$case === "close") this.closes.push(req.sessionId);
          if (k?.$case === "reauthentication") {
            const v = k.value;
            this.frames.push(`reauth ${v.ref} ${v.tokenExpiresAt?.getTime() ?? `refused ${v.refusedCode} ${v.refusedReason} ${v.retryAfterMs}`}`);
          }
          if (k?.$case === "clientFrame") {
            this.frames.push(k.value.toString());
            this.seen.push(`frame ${k.value}`);
            call.write({ sessionId: req.sessionId, kind: { $case: "serverFrame", value: Buffer.from(`${this.id}:${k.value}`) } });
          }
        });
        call.on("error", () => {});
        call.on("end", () => call.end());
      },
      deliver: (_c: unknown, cb: (e: null, r: object) => void) => cb(null, { sessions: 0 }),
      closeDeviceSessions: (_c: unknown, cb: (e: null, r: object) => void) => cb(null, { sessions: 0 }),
    });
  }

  async start(): Promise<void> {
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  /** Answers every session opened so far with a frame, as its welcome. */
  welcome(): void {
    for (const call of this.streams) for (const o of this.opens) call.write({ sessionId: o.sessionId, kind: { $case: "serverFrame", value: Buffer.from("welcome") } });
  }

  /** Stops (or starts again) reading the gateway streams, as a chat server in a long pause. */
  stall(stalled: boolean): void {
    for (const s of this.streams) {
      if (stalled) s.pause();
      else s.resume();
    }
  }

  /** Ends every gateway stream with status OK, no error: the gateway must still move its sessions. */
  endStreams(): void {
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  /** Ends every gateway stream with UNAVAILABLE, as a chat server that stops serving does. */
  breakStreams(): void {
    for (const s of this.streams) s.emit("error", { code: status.UNAVAILABLE, details: "gone" });
    this.streams.clear();
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

function fakeSink() {
  const sink = {
    sent: [] as string[],
    closed: undefined as { code: number; reason: string } | undefined,
    send: (f: Uint8Array | string) => void sink.sent.push(Buffer.from(f as Uint8Array).toString()),
    bufferedBytes: () => 0,
    close: (code: number, reason: string) => void (sink.closed = { code, reason }),
    held: [] as boolean[],
    holdInput: (held: boolean) => void sink.held.push(held),
  };
  return sink;
}

const identity = (n: number) => ({ userId: BigInt(n), deviceId: BigInt(100 + n), tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" as const });

describe("RemoteSessionHost (the gateway's side of the session stream)", function () {
  this.timeout(20_000);
  let registry: MemoryServerRegistry;
  let servers: FakeChatServer[];
  let regs: Registration[];
  let host: RemoteSessionHost;

  beforeEach(async () => {
    registry = new MemoryServerRegistry();
    servers = [new FakeChatServer("a"), new FakeChatServer("b")];
    await Promise.all(servers.map((s) => s.start()));
    regs = await Promise.all(servers.map((s) => registry.register({ serverId: s.id, address: s.address, load: 0 })));
    host = new RemoteSessionHost({ gatewayId: "gw", watch: await registry.watch(), homelessTimeoutMs: 1500, cooldownMs: 60_000 });
  });
  afterEach(async () => {
    await host.close();
    for (const s of servers) s.stop();
    await registry.close();
  });

  it("closes with 1013 a session with no chat server that queues more bytes than the cap, fewer frames than it", async () => {
    for (const r of regs) await r.close();
    const capped = new RemoteSessionHost({ gatewayId: "gw5", watch: await registry.watch(), maxPendingBytes: 1000, homelessTimeoutMs: 60_000 });
    try {
      const sink = fakeSink();
      const handle = capped.open(identity(10), sink);
      const closedWith = () => sink.closed?.code;
      handle.receive(new Uint8Array(600));
      assert.equal(closedWith(), undefined, "600 bytes fit");
      handle.receive(new Uint8Array(600));
      assert.equal(closedWith(), 1013);
    } finally {
      await capped.close();
    }
  });

  it("lets go of a session it closed with 1013 for queuing too much, though its device has not answered the close: no server takes it later", async () => {
    for (const r of regs) await r.close();
    const capped = new RemoteSessionHost({ gatewayId: "gw6", watch: await registry.watch(), maxPendingFrames: 2, homelessTimeoutMs: 60_000 });
    try {
      const sink = fakeSink();
      // The edge tells closed() only once the device's socket is gone, which this one never is.
      const handle = capped.open(identity(10), sink);
      for (let i = 0; i < 3; i++) handle.receive(new Uint8Array(10));
      assert.equal(sink.closed?.code, 1013);
      assert.equal(capped.sessionCount, 0, "the closed session is still waiting for a server");
      const late = new FakeChatServer("late");
      await late.start();
      servers.push(late);
      await registry.register({ serverId: late.id, address: late.address, load: 0 });
      // Opened after the server registered, so after the sessions waiting for one were placed.
      capped.open(identity(11), fakeSink());
      await waitFor(() => late.opens.length > 0, "a session opened on the server that came up");
      assert.deepStrictEqual(late.opens.map((o) => o.sessionId), [2n], "the session closed before was opened on the server");
    } finally {
      await capped.close();
    }
  });

  it("ends a session on its chat server as soon as it closes its device as too slow (4009), not once the socket is gone", async () => {
    const sink = fakeSink();
    const handle = host.open(identity(1), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const on = servers.find((s) => s.opens.length === 1)!;
    // The device stopped reading: its socket's buffer is past the cap when the chat server's answer comes.
    sink.bufferedBytes = () => host.options.maxBufferedBytes + 1;
    handle.receive(new TextEncoder().encode("ping"));
    await waitFor(() => sink.closed, "the device closed");
    assert.equal(sink.closed!.code, 4009);
    await waitFor(() => on.closes.length === 1, "the session ended on its chat server", 5_000);
    assert.deepStrictEqual(on.closes, [on.opens[0]!.sessionId]);
    assert.equal(host.sessionCount, 0);
  });

  it("times a server's cooldown on the monotonic clock: a wall clock stepped back an hour keeps no server out of reach", async () => {
    await regs[1]!.close();
    const a = servers[0]!;
    const stepped = new RemoteSessionHost({ gatewayId: "gw7", watch: await registry.watch(), cooldownMs: 1_000, homelessTimeoutMs: 60_000 });
    const wall = Date.now;
    try {
      const sink = fakeSink();
      stepped.open(identity(1), sink);
      await waitFor(() => a.opens.length === 1, "placed on the one server");
      a.breakStreams();
      // The only server is cooling down, so the session waits for it.
      await waitFor(() => (stepped as unknown as { homeless: Set<unknown> }).homeless.size === 1, "the session waiting");
      Date.now = () => wall() - 3_600_000;
      await waitFor(() => a.opens.length === 2, "placed on the server again once its cooldown was over", 5_000);
      assert.equal(sink.closed, undefined);
    } finally {
      Date.now = wall;
      await stepped.close();
    }
  });

  it("backs off a server that keeps failing, doubling its cooldown each time up to the cap, and starts afresh once it answers a session", async () => {
    // A server whose streams keep breaking, next to a busier one that stays up: sessions go to the first unless it cools down.
    const listing = new MemoryServerRegistry();
    const [flaky, spare] = servers as [FakeChatServer, FakeChatServer];
    await listing.register({ serverId: flaky.id, address: flaky.address, load: 0 });
    await listing.register({ serverId: spare.id, address: spare.address, load: 1000 });
    let now = 0;
    // Each cooldown three quarters of its step: steps of 1, 2, 4 s, then the cap, 4 s.
    const h = new RemoteSessionHost({ gatewayId: "gw8", watch: await listing.watch(), cooldownMs: 1_000, maxCooldownMs: 4_000, now: () => now, random: () => 0.5 });
    let n = 0;
    /** Opens a session and waits for the server that takes it. */
    const place = async () => {
      const sink = fakeSink();
      const id = BigInt(++n);
      const handle = h.open(identity(n), sink);
      const on = await waitFor(() => servers.find((s) => s.opens.some((o) => o.sessionId === id)), `session ${n} placed`);
      return { on, id, handle, sink };
    };
    /** The flaky server breaks the stream of the session it took, which moves to the spare. */
    const fail = async (id: bigint) => {
      flaky.breakStreams();
      await waitFor(() => spare.opens.some((o) => o.sessionId === id), `session ${id} moved to the spare`);
    };
    const tried = async (what: string) => {
      const placed = await place();
      assert.equal(placed.on, flaky, what);
      return placed;
    };
    const spared = async (what: string) => assert.equal((await place()).on, spare, what);
    try {
      await fail((await tried("the least-loaded server")).id); // 1st failure: 750 ms
      now += 1_001;
      await fail((await tried("tried again after the first cooldown")).id); // 2nd in a row: 1.5 s
      now += 1_001;
      await spared("still cooling down: the second cooldown is twice the first");
      now += 500;
      await fail((await tried("tried again after the second cooldown")).id); // 3rd: 3 s
      now += 3_001;
      await fail((await tried("tried again after the third cooldown")).id); // 4th: the 4 s cap, 3 s
      now += 2_999;
      await spared("cooling down for three quarters of the capped step");
      now += 2;
      const { id, handle, sink } = await tried("the cap held: no longer than its step");
      // It answers a session: up again, so its next failure waits the first step only.
      handle.receive(new TextEncoder().encode("hi"));
      await waitFor(() => sink.sent.includes(`${flaky.id}:hi`), "the flaky server answered");
      await fail(id);
      now += 751;
      await tried("the backoff started afresh after the server answered");
    } finally {
      await h.close();
      await listing.close();
    }
  });

  it("spreads sessions over the least-loaded servers and carries frames both ways", async () => {
    const sinks = [fakeSink(), fakeSink(), fakeSink(), fakeSink()];
    const handles = sinks.map((sink, i) => host.open(identity(i), sink));
    await waitFor(() => servers[0]!.opens.length + servers[1]!.opens.length === 4, "four opens");
    assert.equal(servers[0]!.opens.length, 2);
    assert.equal(servers[1]!.opens.length, 2);
    handles[0]!.receive(new TextEncoder().encode("hello"));
    await waitFor(() => sinks[0]!.sent.length === 1, "the echo");
    assert.match(sinks[0]!.sent[0]!, /^[ab]:hello$/);
  });

  async function movesWhenItsStream(end: (server: FakeChatServer) => void): Promise<void> {
    const sink = fakeSink();
    const handle = host.open(identity(1), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const first = servers.findIndex((s) => s.opens.length === 1);
    const other = servers[1 - first]!;
    end(servers[first]!);
    await waitFor(() => other.opens.length === 1, "reopened on the other server");
    assert.equal(other.opens[0]!.resumed, true);
    handle.receive(new TextEncoder().encode("after"));
    await waitFor(() => sink.sent.includes(`${other.id}:after`), "served by the other server");
    assert.equal(sink.closed, undefined);
  }

  it("passes a Reauthenticate's verdict on in the frames' order, and opens a moved session with the new token's expiry", async () => {
    const sink = fakeSink();
    const opened = identity(1);
    const handle = host.open(opened, sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const first = servers.findIndex((s) => s.opens.length === 1);
    const [on, other] = [servers[first]!, servers[1 - first]!];
    const renewedTo = opened.tokenExpiresAtMs + 900_000;
    handle.receive(new TextEncoder().encode("before"));
    handle.reauthenticate({ ref: 3n, refused: new ChatError("rate_limited", "at most one a second", 250) });
    handle.reauthenticate({ ref: 4n, expiresAtMs: renewedTo });
    handle.receive(new TextEncoder().encode("after"));
    await waitFor(() => on.frames.length === 4, "all four on the server");
    assert.deepStrictEqual(on.frames, ["before", `reauth 3 refused ${ErrorCode.ERROR_CODE_RATE_LIMITED} at most one a second 250`, `reauth 4 ${renewedTo}`, "after"]);
    on.breakStreams();
    await waitFor(() => other.opens.length === 1, "reopened on the other server");
    assert.equal(other.opens[0]!.tokenExpiresAtMs, renewedTo);
  });

  it("moves a session to another server when its stream breaks, without closing the device", async () => {
    await movesWhenItsStream((s) => s.breakStreams());
  });

  it("moves a session to another server when its stream ends with status OK, as if it broke", async () => {
    await movesWhenItsStream((s) => s.endStreams());
  });

  it("stops reading the devices' frames while the stream to their chat server is backed up, and reads them again once it drains", async () => {
    const sink = fakeSink();
    const handle = host.open(identity(1), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const server = servers.find((s) => s.opens.length === 1)!;
    server.stall(true);
    // A device that keeps sending 64 KiB frames (rate limits are the chat server's, which reads nothing now).
    const frame = new Uint8Array(64 * 1024).fill(120);
    for (let i = 0; i < 200 && !sink.held.includes(true); i++) handle.receive(frame);
    assert.deepEqual(sink.held, [true], "input held once the stream's backlog passed the high-water mark");
    server.stall(false);
    await waitFor(() => sink.held.at(-1) === false, "input read again once the stream drained");
    assert.equal(sink.closed, undefined);
  });

  it("counts a Reauthenticate's verdicts towards a backed-up stream's backlog: a device sending nothing else is held back too", async () => {
    const sink = fakeSink();
    const handle = host.open(identity(1), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const server = servers.find((s) => s.opens.length === 1)!;
    server.stall(true);
    // Each refused at the gateway (at most one a second), and each still a message to the chat server, which reads none now.
    const refused = { ref: 1n, refused: new ChatError("rate_limited", "at most one Reauthenticate a second", 1000) };
    for (let i = 0; i < 100_000 && !sink.held.includes(true); i++) handle.reauthenticate(refused);
    assert.deepEqual(sink.held, [true], "input held once the stream's backlog passed the high-water mark");
    server.stall(false);
    await waitFor(() => sink.held.at(-1) === false, "input read again once the stream drained", 15_000);
  });

  it("carries a frame over grpc's 4 MiB default both ways without moving the session", async () => {
    const sink = fakeSink();
    const handle = host.open(identity(1), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const big = "x".repeat(6 * 1024 * 1024);
    handle.receive(new TextEncoder().encode(big));
    await waitFor(() => sink.sent.length === 1, "the echo of the large frame");
    assert.equal(sink.sent[0]!.length, big.length + 2);
    assert.equal(servers[0]!.opens.length + servers[1]!.opens.length, 1, "never moved");
    assert.equal(sink.closed, undefined);
  });

  it("moves sessions when a server's lease vanishes, even though its socket still answers", async () => {
    const sink = fakeSink();
    host.open(identity(2), sink);
    await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
    const first = servers.findIndex((s) => s.opens.length === 1);
    await regs[first]!.close(); // leaves the registry
    await waitFor(() => servers[1 - first]!.opens.length === 1, "moved");
    assert.equal(sink.closed, undefined);
  });

  it("forgets chat servers that left the registry (restarts under new ids), so its figures do not grow with each", async () => {
    for (let i = 0; i < 20; i++) {
      // A restarted server registers under a new id; this one's port is closed, so its link fails at once.
      const reg = await registry.register({ serverId: `gone-${i}`, address: "127.0.0.1:1", load: 0 });
      await reg.close();
    }
    await waitFor(() => host.serversTracked <= 2, `only the two live servers tracked (${host.serversTracked})`);
  });

  it("places sessions at once on a server that lost its lease and registered again: it left, so it starts afresh, cooldown and all", async () => {
    const relisting = new MemoryServerRegistry({ regainAfterMs: 200 });
    const only = servers[0]!;
    await relisting.register({ serverId: only.id, address: only.address, load: 0 });
    // The cooldown (60 s) is longer than the homeless timeout (1.5 s): a session kept off the server for it is closed.
    const h = new RemoteSessionHost({ gatewayId: "gw2", watch: await relisting.watch(), homelessTimeoutMs: 1500, cooldownMs: 60_000 });
    try {
      const sink = fakeSink();
      h.open(identity(1), sink);
      await waitFor(() => only.opens.length === 1, "placed");
      relisting.expire(only.id);
      await waitFor(() => only.opens.length === 2, "placed again once the server registered again", 1_000);
      assert.equal(only.opens[1]!.resumed, true);
      assert.equal(sink.closed, undefined);
    } finally {
      await h.close();
      await relisting.close();
    }
  });

  /** A watch whose list the test sets; `notify` tells the listeners, as a registry does after a change. */
  function listedWatch(servers: ServerInfo[]) {
    let listed = servers;
    const listeners: ((s: ServerInfo[]) => void)[] = [];
    const watch = { servers: () => listed.map((s) => ({ ...s })), onChange: (l: (s: ServerInfo[]) => void) => void listeners.push(l), close: async () => {} };
    const set = (next: ServerInfo[], notify = true) => {
      listed = next;
      if (notify) for (const l of listeners) l(watch.servers());
    };
    return { watch, set };
  }

  for (const seen of ["in the watch's change", "by a placement before the watch's change"]) {
    it(`moves the sessions of a server that moved to a new address there at once, seen ${seen}: a move is no failure, so no cooldown`, async () => {
      const [old, moved] = servers as [FakeChatServer, FakeChatServer];
      const { watch, set } = listedWatch([{ serverId: "a", address: old.address, load: 0 }]);
      // The cooldown (60 s) is longer than the homeless timeout (1.5 s): a session kept off the server for it is closed.
      const h = new RemoteSessionHost({ gatewayId: "gw9", watch, homelessTimeoutMs: 1500, cooldownMs: 60_000 });
      try {
        const sink = fakeSink();
        h.open(identity(1), sink);
        await waitFor(() => old.opens.length === 1, "placed");
        // Started again elsewhere under the same id (a rescheduled pod): the registry shows its new address in one change.
        const notify = seen === "in the watch's change";
        set([{ serverId: "a", address: moved.address, load: 0 }], notify);
        if (!notify) h.open(identity(2), fakeSink());
        await waitFor(() => moved.opens.some((o) => o.sessionId === 1n), "the session moved to the server's new address", 1_000);
        assert.equal(moved.opens.find((o) => o.sessionId === 1n)!.resumed, true);
        assert.equal(sink.closed, undefined);
        await waitFor(() => moved.opens.length === (notify ? 1 : 2), "every session on the new address");
        assert.equal(moved.streams.size, 1, "one stream to the new address");
      } finally {
        await h.close();
      }
    });
  }

  it("counts no session a server refused towards its load: once it takes sessions again (its lease regained) it is the least loaded", async () => {
    const [lapsed, busy] = servers as [FakeChatServer, FakeChatServer];
    // The registry kept the lapsed server's entry (etcd away, its lease alive there), figure and all: only its own refusals tell.
    const { watch, set } = listedWatch([
      { serverId: "a", address: lapsed.address, load: 0 },
      { serverId: "b", address: busy.address, load: 1 },
    ]);
    let now = 0;
    const h = new RemoteSessionHost({ gatewayId: "gw10", watch, cooldownMs: 1_000, now: () => now, random: () => 0.5 });
    try {
      lapsed.refuseOpens = true;
      for (let n = 1; n <= 3; n++) {
        h.open(identity(n), fakeSink());
        await waitFor(() => lapsed.opens.length === n && busy.opens.length === n, `session ${n} refused by a, placed on b`);
        now += 60_000; // past any cooldown
      }
      // b publishes what it holds now (two of those sessions ended meanwhile); a never held any.
      set([
        { serverId: "a", address: lapsed.address, load: 0 },
        { serverId: "b", address: busy.address, load: 2 },
      ]);
      lapsed.refuseOpens = false;
      h.open(identity(4), fakeSink());
      await waitFor(() => lapsed.opens.length + busy.opens.length === 7, "the next session placed");
      assert.equal(lapsed.opens.at(-1)!.sessionId, 4n, "placed on the server holding no session, not on the one holding two");
    } finally {
      await h.close();
    }
  });

  it("keeps counting its placements on a server whose figure did not change when another's did, from its very first change", async () => {
    const [placed, other] = servers as [FakeChatServer, FakeChatServer];
    const { watch, set } = listedWatch([
      { serverId: "a", address: placed.address, load: 0 },
      { serverId: "b", address: other.address, load: 6 },
    ]);
    const h = new RemoteSessionHost({ gatewayId: "gw11", watch });
    try {
      // A freshly started gateway's devices all reconnecting at once: a is the least loaded for 6.
      for (let n = 1; n <= 5; n++) h.open(identity(n), fakeSink());
      await waitFor(() => placed.opens.length === 5, "five sessions placed on a");
      // b's figure drops before a has published its own: a holds 5 as far as this gateway knows.
      set([
        { serverId: "a", address: placed.address, load: 0 },
        { serverId: "b", address: other.address, load: 4 },
      ]);
      h.open(identity(6), fakeSink());
      await waitFor(() => placed.opens.length + other.opens.length === 6, "the next session placed");
      assert.equal(other.opens.length, 1, "placed on b (4), not on a (0 published, 5 placed since)");
    } finally {
      await h.close();
    }
  });

  it("places sessions at once on a server that registered afresh though its entry never left (etcd away: it refused them, its lease lost, meanwhile)", async () => {
    const only = servers[0]!;
    const { watch, set } = listedWatch([{ serverId: "a", address: only.address, load: 0, registration: "1" }]);
    // The cooldown (60 s) is longer than the homeless timeout (30 s): a session kept off the server for it is closed.
    // Both far past the wait below, so a loaded machine slow between the refusal and the new entry is no failure.
    const h = new RemoteSessionHost({ gatewayId: "gw12", watch, homelessTimeoutMs: 30_000, cooldownMs: 60_000 });
    try {
      only.refuseOpens = true;
      const sink = fakeSink();
      h.open(identity(1), sink);
      await waitFor(() => only.opens.length === 1, "refused once");
      await waitFor(() => (h as unknown as { homeless: Set<unknown> }).homeless.size === 1, "the session waiting");
      // etcd is back: the server wrote its entry under a new lease, and takes sessions again.
      only.refuseOpens = false;
      set([{ serverId: "a", address: only.address, load: 0, registration: "2" }]);
      await waitFor(() => only.opens.length === 2, "placed again once the server registered afresh", 10_000);
      assert.equal(sink.closed, undefined);
    } finally {
      await h.close();
    }
  });

  it("opens at most maxOpensInFlight sessions at once on a server that comes back, the rest as those are answered", async () => {
    await Promise.all(regs.map((r) => r.close()));
    const h = new RemoteSessionHost({ gatewayId: "gw-burst", watch: await registry.watch(), homelessTimeoutMs: 60_000, maxOpensInFlight: 4 });
    try {
      const sinks = Array.from({ length: 20 }, () => fakeSink());
      const handles = sinks.map((sink, i) => h.open(identity(200 + i), sink));
      const back = servers[0]!;
      await registry.register({ serverId: back.id, address: back.address, load: 0 });
      await waitFor(() => back.opens.length >= 4, "the first opens, at once");
      // A frame of a session already opened goes on the stream after every open written before it:
      // each homeless session's open was, in the sweep that placed them all, so 20 came at once.
      handles[0]!.receive(new TextEncoder().encode("probe"));
      await waitFor(() => back.seen.includes("frame probe"), "the probe");
      const before = back.seen.slice(0, back.seen.indexOf("frame probe")).filter((e) => e.startsWith("open"));
      assert.equal(before.length, 4, `${before.length} opens at once`);
      // One waiting its turn that closes meanwhile is never opened.
      handles[19]!.closed();
      back.welcomeOpens = true;
      back.welcome();
      await waitFor(() => back.opens.length === 19, "the rest, as the first were answered");
      await waitFor(() => sinks.slice(0, 19).every((s) => s.sent.includes("welcome")), "every session answered");
      assert.ok(sinks.every((s) => s.closed === undefined));
      assert.equal(new Set(back.opens.map((o) => o.sessionId)).size, 19);
      assert.equal(h.sessionCount, 19);
    } finally {
      await h.close();
    }
  });

  // A server that took its first opens and answered none held every session after them waiting
  // for good: each device's socket open, its frames queued, its session counted, with no word.
  it("closes with 1013 a session that waited its turn to open past the homeless timeout, and opens it nowhere", async () => {
    const [a] = servers as [FakeChatServer];
    await regs[1]!.close();
    const h = new RemoteSessionHost({ gatewayId: "gw-burst3", watch: await registry.watch(), homelessTimeoutMs: 300, maxOpensInFlight: 2 });
    try {
      await waitFor(() => h.options.watch.servers().length === 1, "one server seen");
      const sinks = Array.from({ length: 6 }, () => fakeSink());
      sinks.forEach((sink, i) => h.open(identity(400 + i), sink));
      await waitFor(() => a.opens.length === 2, "the first two");
      await waitFor(() => sinks.slice(2).every((s) => s.closed !== undefined), "those waiting their turn closed", 5_000);
      assert.deepEqual(sinks.slice(2).map((s) => s.closed!.code), [1013, 1013, 1013, 1013]);
      assert.match(sinks[2]!.closed!.reason, /try again|reconnect/);
      assert.equal(h.sessionCount, 2, "only the two opens in flight held");
      // Their turn never comes: the server answering the first two opens no more.
      a.welcomeOpens = true;
      a.welcome();
      await waitFor(() => sinks.slice(0, 2).every((s) => s.sent.includes("welcome")), "the first two answered");
      const probe = fakeSink();
      h.open(identity(499), probe);
      await waitFor(() => probe.sent.includes("welcome"), "a later session opened and answered");
      assert.equal(a.opens.length, 3);
      assert.ok(sinks.slice(0, 2).every((s) => s.closed === undefined));
    } finally {
      await h.close();
    }
  });

  it("places elsewhere the sessions waiting their turn on a server whose stream breaks", async () => {
    const [a, b] = servers as [FakeChatServer, FakeChatServer];
    await regs[1]!.close();
    const h = new RemoteSessionHost({ gatewayId: "gw-burst2", watch: await registry.watch(), homelessTimeoutMs: 60_000, cooldownMs: 60_000, maxOpensInFlight: 2 });
    try {
      const sinks = Array.from({ length: 6 }, () => fakeSink());
      sinks.forEach((sink, i) => h.open(identity(300 + i), sink));
      await waitFor(() => a.opens.length === 2, "the first two");
      b.welcomeOpens = true;
      await registry.register({ serverId: b.id, address: b.address, load: 0 });
      await waitFor(() => h.options.watch.servers().length === 2, "the second server seen");
      a.breakStreams();
      await waitFor(() => b.opens.length === 6, "every session on the other server");
      await waitFor(() => sinks.every((s) => s.sent.includes("welcome")), "every session answered");
      assert.ok(sinks.every((s) => s.closed === undefined));
    } finally {
      await h.close();
    }
  });

  it("keeps a homeless session's frames until a server appears, then delivers them in order", async () => {
    await Promise.all(regs.map((r) => r.close()));
    const sink = fakeSink();
    const handle = host.open(identity(3), sink);
    handle.receive(new TextEncoder().encode("one"));
    handle.receive(new TextEncoder().encode("two"));
    await registry.register({ serverId: servers[0]!.id, address: servers[0]!.address, load: 0 });
    await waitFor(() => servers[0]!.frames.length === 2, "the queued frames");
    assert.deepEqual(servers[0]!.frames, ["one", "two"]);
  });

  it("closes a session with 1013 when no server shows up in time", async () => {
    await Promise.all(regs.map((r) => r.close()));
    const sink = fakeSink();
    host.open(identity(4), sink);
    await waitFor(() => sink.closed, "the close", 10_000);
    assert.equal(sink.closed!.code, 1013);
  });

  it("tries another server when one refuses the session, and waits rather than bouncing when all do", async () => {
    servers[0]!.refuseOpens = true;
    const sink = fakeSink();
    const handle = host.open(identity(5), sink);
    await waitFor(() => servers[1]!.opens.length === 1, "placed on the server that takes sessions");
    handle.receive(new TextEncoder().encode("x"));
    await waitFor(() => servers[1]!.frames.includes("x"), "served by the server that takes sessions");
    assert.equal(sink.closed, undefined);

    servers[1]!.refuseOpens = true;
    const lonely = fakeSink();
    host.open(identity(6), lonely);
    await waitFor(() => lonely.closed, "given up after the homeless timeout", 10_000);
    assert.equal(lonely.closed!.code, 1013);
    const tries = servers.reduce((n, s) => n + s.opens.filter((o) => o.sessionId !== servers[1]!.opens[0]!.sessionId).length, 0);
    assert.ok(tries <= 3, `tried ${tries} times in the cooldown: it bounced`);
  });

  it("closes with 1013 a session every server keeps refusing, even with a cooldown shorter than the homeless timeout", async () => {
    servers[0]!.refuseOpens = true;
    servers[1]!.refuseOpens = true;
    // Each cooldown ends long before the homeless timeout: the session is offered again and again.
    const refusing = new RemoteSessionHost({ gatewayId: "gw3", watch: await registry.watch(), homelessTimeoutMs: 1000, cooldownMs: 100 });
    try {
      const sink = fakeSink();
      refusing.open(identity(8), sink);
      await waitFor(() => sink.closed, "given up after the homeless timeout", 5000);
      assert.equal(sink.closed!.code, 1013);
      assert.ok(servers.every((s) => s.opens.length >= 2), "offered again after the cooldowns");
    } finally {
      await refusing.close();
    }
  });

  it("closes with 1013 a session every server refuses, each after longer than the cooldown, so that some server always looks free", async () => {
    for (const s of servers) {
      s.refuseOpens = true;
      s.refuseAfterMs = 150;
    }
    const refusing = new RemoteSessionHost({ gatewayId: "gw4", watch: await registry.watch(), homelessTimeoutMs: 1000, cooldownMs: 100 });
    try {
      const sink = fakeSink();
      refusing.open(identity(9), sink);
      await waitFor(() => sink.closed, "given up once refused for longer than the homeless timeout", 5000);
      assert.equal(sink.closed!.code, 1013);
    } finally {
      await refusing.close();
      for (const s of servers) s.refuseAfterMs = 0;
    }
  });

  it("closes with 1013 a WebSocket session whose server refused it after more frames than it carries over: the device would wait for their answers for good", async () => {
    for (const s of servers) s.refuseOpens = true;
    const capped = new RemoteSessionHost({ gatewayId: "gw7", watch: await registry.watch(), maxPendingFrames: 2, homelessTimeoutMs: 60_000, cooldownMs: 60_000 });
    try {
      const sink = fakeSink();
      const handle = capped.open(identity(8), sink);
      for (const f of ["one", "two", "three"]) handle.receive(new TextEncoder().encode(f));
      await waitFor(() => sink.closed !== undefined || servers.every((s) => s.opens.length >= 1), "closed, or placed on the next server");
      assert.deepEqual(sink.closed?.code, 1013);
      assert.equal(servers.reduce((n, s) => n + s.opens.length, 0), 1, "not placed again");
    } finally {
      await capped.close();
    }
  });

  it("closes with 1013 a WebSocket session whose server broke before answering it, after more frames than it carries over", async () => {
    const capped = new RemoteSessionHost({ gatewayId: "gw8", watch: await registry.watch(), maxPendingFrames: 2, homelessTimeoutMs: 60_000 });
    try {
      const sink = fakeSink();
      const handle = capped.open(identity(9), sink);
      await waitFor(() => servers.some((s) => s.opens.length === 1), "placed");
      const first = servers.find((s) => s.opens.length === 1)!;
      const other = servers.find((s) => s !== first)!;
      // A server in a long pause: it answers none of them.
      first.stall(true);
      for (const f of ["one", "two", "three"]) handle.receive(new TextEncoder().encode(f));
      first.breakStreams();
      await waitFor(() => sink.closed !== undefined || other.opens.length >= 1, "closed, or moved to the other server");
      assert.deepEqual(sink.closed?.code, 1013);
      assert.deepEqual(sink.sent, []);
    } finally {
      await capped.close();
    }
  });

  it("hands what the device sent to a server that then refused the session to the next one, on the one stream it keeps to the refusing server", async () => {
    servers[0]!.refuseOpens = true;
    servers[1]!.refuseOpens = true;
    // A short cooldown: each new session is refused by both before it waits.
    const refusing = new RemoteSessionHost({ gatewayId: "gw2", watch: await registry.watch(), homelessTimeoutMs: 60_000, cooldownMs: 50 });
    try {
      const first = fakeSink();
      const handle = refusing.open(identity(7), first);
      // Sent at once, before any server has answered the open.
      handle.receive(new TextEncoder().encode("hello"));
      handle.receive(new TextEncoder().encode("again"));
      await waitFor(() => servers.every((s) => s.opens.length >= 3), "refused by both, several times");
      servers[1]!.refuseOpens = false;
      await waitFor(() => first.sent.length === 2, "both frames served by the server that now takes the session");
      assert.deepEqual(first.sent, ["b:hello", "b:again"]);
      assert.ok(servers.every((s) => s.streams.size === 1), `streams: ${servers.map((s) => s.streams.size)}: one link per server, not one per refusal`);
    } finally {
      await refusing.close();
    }
  });
});
