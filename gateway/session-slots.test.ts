import assert from "node:assert/strict";
import { createServer } from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import WebSocket from "ws";
import { SessionService } from "../gen/es/chat/v1/session_pb.js";
import type { SessionHandle, SessionHost, SessionIdentity } from "../internal/chatserver/port.js";
import { RemoteSessionHost } from "../internal/cluster/remote-host.js";
import { EnvReader } from "../internal/config/env.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { MemoryServerRegistry } from "../internal/registry/memory.js";
import { seriesAt, seriesOf } from "../test/support/series.js";
import { waitFor } from "../test/support/wait.js";
import { CLOSE_CODE_TRAILER, sessionService, withCallStream } from "./grpc-session.js";
import { readSessionCaps, SESSION_CAP_LIMITS, SessionSlots, type SessionCaps } from "./session-slots.js";
import { FramedChatServer } from "./testing.js";
import { PROTO_SUBPROTOCOL, WebSocketGateway } from "./websocket.js";

/** Takes a token "<user>.<device>" as that user's device: tests open sessions of several. */
const verifier = {
  verify: (token: string) => {
    const [user, device] = token.split(".");
    return { userId: BigInt(user!), deviceId: BigInt(device!), expiresAtMs: Date.now() + 60_000 };
  },
};

/**
 * A gateway process in miniature: the WebSocket gateway and the gRPC session service on `host`
 * (by default one that opens every session and keeps it), sharing one SessionSlots, as cmd/gateway
 * and cmd/chatd wire them.
 */
async function gatewayWith(caps: SessionCaps, host?: SessionHost) {
  const registry = new Registry();
  const slots = new SessionSlots(caps, registry);
  const opened: SessionIdentity[] = [];
  const handle: SessionHandle = { receive: () => undefined, reauthenticate: () => undefined, drained: () => undefined, closed: () => undefined };
  const sessions: SessionHost = host ?? {
    open: (identity) => {
      opened.push(identity);
      return handle;
    },
  };
  const gateway = new WebSocketGateway({ path: "/ws", verifier, host: sessions, maxFrameBytes: 64 * 1024, registry, slots });
  const httpServer = createServer();
  gateway.attach(httpServer);
  const grpcServer = http2.createServer(
    connectNodeAdapter({ contextValues: withCallStream(), routes: (r) => void r.service(SessionService, sessionService(sessions, verifier, { slots })) }),
  );
  // Node's HTTP/2 server lists no sessions of its own: kept here to end at close, whose server side
  // otherwise holds the client's (idle, unref'd) connection open and mocha with it.
  const grpcSessions = new Set<http2.ServerHttp2Session>();
  grpcServer.on("session", (s) => grpcSessions.add(s));
  await new Promise<void>((r) => httpServer.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => grpcServer.listen(0, "127.0.0.1", r));
  const wsUrl = `ws://127.0.0.1:${(httpServer.address() as AddressInfo).port}/ws`;
  const native = createClient(SessionService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${(grpcServer.address() as AddressInfo).port}` }));
  const sockets: WebSocket[] = [];
  const aborts: AbortController[] = [];

  /** A WebSocket of the device, once it is open; `closed` has its close code and reason once it closes. */
  const openSocket = async (token: string) => {
    const ws = new WebSocket(wsUrl, [PROTO_SUBPROTOCOL, `bearer.${token}`]);
    sockets.push(ws);
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return { ws, closed };
  };
  /** A WebSocket of the device that the gateway placed on the host. */
  const accepted = async (token: string) => {
    const before = opened.length;
    const s = await openSocket(token);
    await waitFor(() => opened.length > before, `the session of ${token} opened`);
    return s;
  };
  /** A WebSocket of the device that the gateway refuses: its close. */
  const refusedSocket = async (token: string) => {
    const before = opened.length;
    const { closed } = await openSocket(token);
    const c = await closed;
    assert.equal(opened.length, before, "never placed on the host");
    return c;
  };
  /** A native stream of the device: `ended` settles with the error it ended with (undefined for none). */
  const openStream = (token: string) => {
    const abort = new AbortController();
    aborts.push(abort);
    async function* noFrames() {
      await new Promise((r) => abort.signal.addEventListener("abort", r));
    }
    const ended = (async () => {
      try {
        for await (const _ of native.connect(noFrames(), { headers: { authorization: `Bearer ${token}` }, signal: abort.signal }));
        return undefined;
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    return { abort, ended };
  };
  const close = async () => {
    for (const a of aborts) a.abort();
    for (const ws of sockets) ws.terminate();
    await gateway.close();
    await new Promise((r) => httpServer.close(r));
    grpcServer.close();
    for (const s of grpcSessions) s.destroy();
  };
  return { slots, registry, opened, openSocket, accepted, refusedSocket, openStream, close };
}

/** Runs `test` on a gatewayWith(caps), closed after it whatever it did. */
async function onGateway(caps: SessionCaps, test: (g: Awaited<ReturnType<typeof gatewayWith>>) => Promise<void>): Promise<void> {
  const g = await gatewayWith(caps);
  try {
    await test(g);
  } finally {
    await g.close();
  }
}

describe("session caps per device and per account (gateway/session-slots.ts)", function () {
  this.timeout(20_000);

  it("refuses a device's WebSocket past CHAT_MAX_SESSIONS_PER_DEVICE with 4029 naming the limit, and takes one again once a session of it closed", () =>
    onGateway({ maxPerDevice: 2, maxPerAccount: 10 }, async (g) => {
      const first = await g.accepted("1.1");
      await g.accepted("1.1");
      const refused = await g.refusedSocket("1.1");
      assert.equal(refused.code, CloseCode.tooManySessions);
      assert.equal(refused.code, 4029);
      assert.match(refused.reason, /at most 2, CHAT_MAX_SESSIONS_PER_DEVICE/);
      // The refused one is not the oldest closed: both first sessions stay.
      assert.equal(g.slots.ofDevice(1n, 1n), 2);

      first.ws.close(1000);
      await first.closed;
      await waitFor(() => g.slots.ofDevice(1n, 1n) === 1, "the closed session's slot released");
      await g.accepted("1.1");
      assert.equal(g.slots.ofDevice(1n, 1n), 2);
      // Another device of the same account is not held to this one's cap.
      await g.accepted("1.2");
    }));

  it("refuses an account's session past CHAT_MAX_SESSIONS_PER_ACCOUNT over two devices, while another account opens", () =>
    onGateway({ maxPerDevice: 2, maxPerAccount: 3 }, async (g) => {
      await g.accepted("1.1");
      await g.accepted("1.1");
      const other = await g.accepted("1.2");
      const refused = await g.refusedSocket("1.2");
      assert.equal(refused.code, CloseCode.tooManySessions);
      assert.match(refused.reason, /account \(at most 3, CHAT_MAX_SESSIONS_PER_ACCOUNT\)/);
      await g.accepted("2.1");
      other.ws.close(1000);
      await other.closed;
      await waitFor(() => g.slots.ofDevice(1n, 2n) === 0, "device 2's slot released");
      await g.accepted("1.2");
    }));

  it("ends a native stream past the cap with RESOURCE_EXHAUSTED naming the limit, counting WebSockets and streams together, and releases a stream's slot at its end", () =>
    onGateway({ maxPerDevice: 2, maxPerAccount: 10 }, async (g) => {
      await g.accepted("1.1");
      const stream = g.openStream("1.1");
      await waitFor(() => g.opened.length === 2, "the native session opened");
      const past = await g.openStream("1.1").ended;
      assert.ok(past, "refused");
      assert.equal(past.code, Code.ResourceExhausted);
      assert.match(past.rawMessage, /^close 4029: too many sessions of this device \(at most 2, CHAT_MAX_SESSIONS_PER_DEVICE\)/);
      assert.equal(past.metadata.get(CLOSE_CODE_TRAILER), "4029");
      // And a WebSocket past it, the stream holding the second slot.
      assert.equal((await g.refusedSocket("1.1")).code, 4029);

      stream.abort.abort();
      await stream.ended;
      await waitFor(() => g.slots.ofDevice(1n, 1n) === 1, "the stream's slot released");
      await g.accepted("1.1");
    }));

  it("counts gateway_sessions_refused_total from 0 for each limit, and by the limit that refused", () =>
    onGateway({ maxPerDevice: 1, maxPerAccount: 2 }, async (g) => {
      assert.deepEqual(await seriesOf(g.registry, "gateway_sessions_refused_total", ["limit"]), seriesAt(0, { limit: SESSION_CAP_LIMITS }));
      await g.accepted("1.1");
      await g.refusedSocket("1.1");
      await g.accepted("1.2");
      await g.refusedSocket("1.3");
      await g.openStream("1.3").ended;
      const series = await seriesOf(g.registry, "gateway_sessions_refused_total", ["limit"]);
      assert.deepEqual(series, new Map([['limit="device"', 1], ['limit="account"', 2]]));
    }));

  it("keeps no entry for an account once all its sessions closed, however many opened and were refused", () =>
    onGateway({ maxPerDevice: 2, maxPerAccount: 3 }, async (g) => {
      const open = [await g.accepted("1.1"), await g.accepted("1.1"), await g.accepted("1.2")];
      await g.refusedSocket("1.2");
      const stream = g.openStream("2.1");
      await waitFor(() => g.slots.accountCount === 2, "both accounts counted");
      for (const s of open) s.ws.close(1000);
      stream.abort.abort();
      await Promise.all(open.map((s) => s.closed));
      await waitFor(() => g.slots.accountCount === 0, "every slot released, no account left");
    }));

  it("counts a session moved to another chat server (failover) once: still one slot after the move, none after its close", async () => {
    const a = new FramedChatServer("a", false);
    const b = new FramedChatServer("b", false);
    await Promise.all([a.start(), b.start()]);
    const servers = new MemoryServerRegistry();
    await servers.register({ serverId: a.id, address: a.address, load: 0 });
    const host = new RemoteSessionHost({ gatewayId: "gw", watch: await servers.watch(), cooldownMs: 60_000 });
    const g = await gatewayWith({ maxPerDevice: 1, maxPerAccount: 10 }, host);
    try {
      const ws = await g.openSocket("1.1");
      await waitFor(() => a.opened.length === 1 && host.sessionCount === 1, "the session on a");
      await servers.register({ serverId: b.id, address: b.address, load: 0 });
      a.breakStreams();
      await waitFor(() => b.opened.length === 1, "the session moved to b");
      assert.equal(g.slots.ofDevice(1n, 1n), 1, "one slot, as before the move");
      const refused = await new Promise<number>((resolve) => {
        void g.openSocket("1.1").then(({ closed }) => closed.then((c) => resolve(c.code)));
      });
      assert.equal(refused, CloseCode.tooManySessions, "still at the cap after the move");
      ws.ws.close(1000);
      await ws.closed;
      await waitFor(() => g.slots.ofDevice(1n, 1n) === 0, "the moved session's slot released at its close");
      const again = await g.openSocket("1.1");
      await waitFor(() => b.opened.length === 2, "a new session of the device placed");
      assert.equal(g.slots.ofDevice(1n, 1n), 1);
      again.ws.close(1000);
      await again.closed;
    } finally {
      await g.close();
      await host.close();
      a.server.forceShutdown();
      b.server.forceShutdown();
      await servers.close();
    }
  });
});

describe("SessionSlots: an account's count as its devices come and go", () => {
  it("keeps each device's count and cap through a second device's arrival and departure", () => {
    const slots = new SessionSlots({ maxPerDevice: 2, maxPerAccount: 5 });
    const [user, a, b] = [1n, 10n, 20n];
    assert.equal(slots.take(user, a), undefined);
    assert.equal(slots.take(user, a), undefined);
    assert.match(slots.take(user, a) ?? "", /CHAT_MAX_SESSIONS_PER_DEVICE/);
    assert.equal(slots.take(user, b), undefined);
    assert.deepEqual([slots.ofDevice(user, a), slots.ofDevice(user, b)], [2, 1]);
    slots.release(user, b);
    // Back to one device: its count and its cap as they were.
    assert.deepEqual([slots.ofDevice(user, a), slots.ofDevice(user, b)], [2, 0]);
    assert.match(slots.take(user, a) ?? "", /CHAT_MAX_SESSIONS_PER_DEVICE/);
    slots.release(user, a);
    assert.equal(slots.take(user, b), undefined);
    assert.deepEqual([slots.ofDevice(user, a), slots.ofDevice(user, b)], [1, 1]);
    // A release of a device with no session takes nothing from the others.
    slots.release(user, 30n);
    slots.release(2n, a);
    assert.deepEqual([slots.ofDevice(user, a), slots.ofDevice(user, b)], [1, 1]);
    slots.release(user, a);
    slots.release(user, b);
    assert.equal(slots.accountCount, 0);
  });
});

describe("CHAT_MAX_SESSIONS_PER_DEVICE and CHAT_MAX_SESSIONS_PER_ACCOUNT", () => {
  const read = (env: NodeJS.ProcessEnv) => {
    const r = new EnvReader(env);
    const caps = readSessionCaps(r);
    return { caps, problems: r.problems };
  };

  it("default to 8 a device (a browser's tabs share one) and 200 an account", () => {
    assert.deepEqual(read({}), { caps: { maxPerDevice: 8, maxPerAccount: 200 }, problems: [] });
    assert.deepEqual(read({ CHAT_MAX_SESSIONS_PER_DEVICE: "3", CHAT_MAX_SESSIONS_PER_ACCOUNT: "3" }).caps, { maxPerDevice: 3, maxPerAccount: 3 });
  });

  it("refuse a value that is no whole number in range, naming the variable", () => {
    for (const [name, values] of [
      ["CHAT_MAX_SESSIONS_PER_DEVICE", ["0", "-1", "10001", "1.5", "many"]],
      ["CHAT_MAX_SESSIONS_PER_ACCOUNT", ["0", "1000001", "2e3", "lots"]],
    ] as const) {
      for (const value of values) {
        const { problems } = read({ CHAT_MAX_SESSIONS_PER_DEVICE: "1", [name]: value });
        assert.equal(problems.length, 1, `${name}=${value}: ${problems.join("; ")}`);
        assert.ok(problems[0]!.startsWith(`${name}=`), problems[0]);
      }
    }
  });

  it("refuse an account cap below the device cap, naming both", () => {
    const { problems } = read({ CHAT_MAX_SESSIONS_PER_DEVICE: "10", CHAT_MAX_SESSIONS_PER_ACCOUNT: "5" });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^CHAT_MAX_SESSIONS_PER_ACCOUNT=5: must be at least CHAT_MAX_SESSIONS_PER_DEVICE=10/);
  });
});
