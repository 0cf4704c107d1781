import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import WebSocket from "ws";
import type { SessionHandle, SessionSink } from "../internal/chatserver/port.js";
import { ChatError } from "../internal/model/errors.js";
import { waitFor } from "../test/support/wait.js";
import { Registry } from "prom-client";
import { seriesAt, seriesOf } from "../test/support/series.js";
import { HANDSHAKE_REJECTIONS, JSON_SUBPROTOCOL, PROTO_SUBPROTOCOL, WebSocketGateway } from "./websocket.js";

/** A gateway on loopback whose host hands each session's sink to the test. */
async function gatewayWithSinks(): Promise<{ server: Server; url: string; sinks: SessionSink[]; gateway: WebSocketGateway }> {
  const sinks: SessionSink[] = [];
  const handle: SessionHandle = { receive: () => undefined, reauthenticate: () => undefined, drained: () => undefined, closed: () => undefined };
  const gateway = new WebSocketGateway({
    path: "/ws",
    verifier: { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) },
    host: {
      open: (_identity, sink) => {
        sinks.push(sink);
        return handle;
      },
    },
    maxFrameBytes: 64 * 1024,
  });
  const server = createServer();
  gateway.attach(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`, sinks, gateway };
}

/** Counts the write calls that reach the socket's handle (one per system call). */
function countWrites(socket: Duplex): { calls: number } {
  const count = { calls: 0 };
  const s = socket as Duplex & { _writev?: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
  for (const name of ["_write", "_writev"] as const) {
    const original = s[name];
    if (!original) continue;
    s[name] = function (this: unknown, ...args: unknown[]) {
      count.calls++;
      return original.apply(this, args);
    };
  }
  return count;
}

describe("websocket gateway", () => {
  it("scrapes every reason of gateway_handshakes_rejected_total at 0 before any handshake: a process's first refusal moves increase()", async () => {
    const registry = new Registry();
    const gateway = new WebSocketGateway({
      path: "/ws",
      verifier: { verify: () => assert.fail("no handshake") },
      host: { open: () => assert.fail("no session") },
      maxFrameBytes: 64 * 1024,
      registry,
    });
    try {
      assert.deepEqual(await seriesOf(registry, "gateway_handshakes_rejected_total", ["reason"]), seriesAt(0, { reason: HANDSHAKE_REJECTIONS }));
    } finally {
      await gateway.close();
    }
  });

  it("sends a held session's frames and the deliveries of a tick queued before the hold in one write, before the next immediate", async () => {
    const { server, url, sinks, gateway } = await gatewayWithSinks();
    const client = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
    const received: Buffer[] = [];
    const all = new Promise<void>((resolve) =>
      client.on("message", (data: Buffer) => {
        received.push(data);
        if (received.length === 4) resolve();
      }),
    );
    await new Promise((r) => client.once("open", r));
    const sink = sinks[0]!;
    const writes = countWrites((sink as unknown as { socket: Duplex }).socket);

    // Held: the ack now and the delivery of the commit's tick (queued before the ack) leave together,
    // in this turn: an immediate would have let the next turn's input be read first.
    let writtenByNextImmediate = -1;
    setImmediate(() => (writtenByNextImmediate = writes.calls));
    process.nextTick(() => sink.send(new Uint8Array([2])));
    sink.holdWrites!();
    sink.send(new Uint8Array([1]));
    await new Promise((r) => setImmediate(r));
    assert.equal(writes.calls, 1);
    assert.equal(writtenByNextImmediate, 1, "written before the next immediate");

    // Not held: a write call per frame.
    process.nextTick(() => sink.send(new Uint8Array([4])));
    sink.send(new Uint8Array([3]));
    await new Promise((r) => setImmediate(r));
    assert.equal(writes.calls, 3);

    await all;
    assert.deepStrictEqual(received.map((b) => b[0]), [1, 2, 3, 4]);
    client.close();
    await gateway.close();
    await new Promise((r) => server.close(r));
  });

  it("tells a device that connects while it stops 1001 at once, without opening a session for it", async () => {
    const { server, url, sinks, gateway } = await gatewayWithSinks();
    const dial = () =>
      new Promise<{ ws: WebSocket; closed: Promise<number> }>((resolve, reject) => {
        const ws = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
        const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
        ws.once("open", () => resolve({ ws, closed }));
        ws.once("error", reject);
      });
    const first = await dial();
    // A device that never answers the close handshake holds the stop for its full wait.
    (first.ws as unknown as { _receiver: { removeAllListeners(e: string): void } })._receiver.removeAllListeners("conclude");
    const stopping = gateway.close();
    const late = await dial();
    assert.equal(await late.closed, 1001);
    assert.equal(sinks.length, 1, "no session opened for the late device");
    await stopping;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  for (const [what, protocol, code] of [
    ["refused for its token (4001)", PROTO_SUBPROTOCOL, 4001],
    ["told 1001 while it stops", `${PROTO_SUBPROTOCOL}, bearer.x`, 1001],
  ] as const) {
    it(`lets go of a socket ${what} whose device never answers the close, once the gateway stops: ws would hold it, and the server's close, 30 s`, async () => {
      const { server, url, gateway } = await gatewayWithSinks();
      let stopping: Promise<void> | undefined;
      if (code === 1001) {
        // A device on a session, not answering the close either, holds the stop 2 s: the time to be told 1001.
        const first = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
        first.on("error", () => undefined);
        await new Promise((r) => first.once("open", r));
        (first as unknown as { _receiver: { removeAllListeners(e: string): void } })._receiver.removeAllListeners("conclude");
        stopping = gateway.close();
      }
      // A device that reads the close and never answers it, nor closes its side.
      const device = connect({ port: (server.address() as AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
      device.on("error", () => undefined);
      let heard = Buffer.alloc(0);
      device.on("data", (d: Buffer) => (heard = Buffer.concat([heard, d])));
      device.write(
        `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
      );
      // The close frame after the 101: 0x88, its length, then the code.
      const at = await waitFor(() => { const i = heard.indexOf("\r\n\r\n"); return i >= 0 && heard.length >= i + 6 ? i + 4 : undefined; }, "the close", 5_000);
      assert.equal(heard[at], 0x88);
      assert.equal(heard.readUInt16BE(at + 2), code);
      let closed = false;
      try {
        await (stopping ?? gateway.close());
        server.closeAllConnections();
        server.close(() => (closed = true));
        await waitFor(() => closed, "the server's close", 5_000);
      } finally {
        device.destroy();
        await waitFor(() => closed, "the server's close once the device went", 5_000);
      }
    });
  }

  it("waits at most 2 s for devices to answer its close, timed on the monotonic clock: a wall clock stepped back meanwhile does not hold the stop", async function () {
    this.timeout(15_000);
    const { server, url, gateway } = await gatewayWithSinks();
    const ws = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
    ws.on("error", () => undefined);
    await new Promise((r) => ws.once("open", r));
    // A device that never answers the close handshake (ws would give up on it after 30 s).
    (ws as unknown as { _receiver: { removeAllListeners(e: string): void } })._receiver.removeAllListeners("conclude");
    const wall = Date.now;
    try {
      let stopped = false;
      const start = performance.now();
      const stopping = gateway.close().then(() => (stopped = true));
      // Stepped back an hour once the stop has begun.
      Date.now = () => wall() - 3_600_000;
      await waitFor(() => stopped, "the stop", 5_000);
      assert.ok(performance.now() - start >= 1_900, "it still waited for the device");
      await stopping;
    } finally {
      Date.now = wall;
      ws.terminate();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("closes a socket with a reason too long for a close frame, cut between characters, and a code no frame may carry as 1011, never throwing", async () => {
    const { server, url, sinks, gateway } = await gatewayWithSinks();
    const dial = async () => {
      const ws = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
      const closed = new Promise<{ code: number; reason: string }>((r) => ws.once("close", (code, reason) => r({ code, reason: reason.toString() })));
      await new Promise((r) => ws.once("open", r));
      return { closed, sink: sinks[sinks.length - 1]! };
    };
    try {
      const long = await dial();
      // 140 bytes of two-byte characters, as a chat server (of another build) may send.
      long.sink.close(4003, "é".repeat(70));
      assert.deepStrictEqual(await long.closed, { code: 4003, reason: "é".repeat(61) });
      const odd = await dial();
      odd.sink.close(1006, "abnormal");
      assert.deepStrictEqual(await odd.closed, { code: 1011, reason: "abnormal" });
    } finally {
      await gateway.close();
      await new Promise((r) => server.close(r));
    }
  });

  it("says in its 4001 close why a token was refused: missing, or signed by a key it does not know (a gateway reading another cluster's keys)", async () => {
    const gateway = new WebSocketGateway({
      path: "/ws",
      verifier: {
        verify: () => {
          throw new ChatError("unauthenticated", "access token signed by an unknown key");
        },
      },
      host: { open: () => assert.fail("no session for a refused token") },
      maxFrameBytes: 64 * 1024,
    });
    const server = createServer();
    gateway.attach(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`;
    const closeOf = (protocols: string[]) =>
      new Promise<[number, string]>((resolve) => new WebSocket(url, protocols).on("close", (code, reason) => resolve([code, reason.toString()])));
    assert.deepEqual(await closeOf([JSON_SUBPROTOCOL, "bearer.x"]), [4001, "access token signed by an unknown key"]);
    assert.deepEqual(await closeOf([JSON_SUBPROTOCOL]), [4001, "missing access token (offer the sub-protocol bearer.<token>)"]);
    await gateway.close();
    await new Promise((r) => server.close(r));
  });

  it("takes the framing the client offers first when it offers both", async () => {
    const { server, url, gateway } = await gatewayWithSinks();
    const picked = async (protocols: string[]) => {
      const ws = new WebSocket(url, [...protocols, "bearer.x"]);
      await new Promise((r) => ws.once("open", r));
      ws.close();
      return ws.protocol;
    };
    try {
      assert.equal(await picked([PROTO_SUBPROTOCOL, JSON_SUBPROTOCOL]), PROTO_SUBPROTOCOL);
      assert.equal(await picked([JSON_SUBPROTOCOL, PROTO_SUBPROTOCOL]), JSON_SUBPROTOCOL);
    } finally {
      await gateway.close();
      await new Promise((r) => server.close(r));
    }
  });

  it("closes with the socket layer's own codes a frame that breaks the protocol (1002), a text frame that is not UTF-8 (1007) and a message in too many fragments (1008), as documented", async () => {
    const { server, url, gateway } = await gatewayWithSinks();
    const closedAfter = async (misbehave: (ws: WebSocket) => void) => {
      const ws = new WebSocket(url, [PROTO_SUBPROTOCOL, "bearer.x"]);
      ws.on("error", () => undefined);
      await new Promise((r) => ws.once("open", r));
      const code = new Promise<number>((r) => ws.once("close", (c) => r(c)));
      misbehave(ws);
      return code;
    };
    try {
      // A client's frame must be masked.
      assert.equal(await closedAfter((ws) => (ws as unknown as { _socket: Socket })._socket.write(Buffer.from([0x82, 0x01, 0x00]))), 1002);
      assert.equal(await closedAfter((ws) => ws.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: false })), 1007);
      const fragmented = (ws: WebSocket) => {
        for (let i = 0; i <= 16_384; i++) ws.send(Buffer.from([0]), { fin: false });
      };
      assert.equal(await closedAfter(fragmented), 1008);
    } finally {
      await gateway.close();
      await new Promise((r) => server.close(r));
    }
  });

  describe("refuses an upgrade it will not take with a status, and lives on", () => {
    const upgrade = (target: string, origin = "", protocols = "") =>
      `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${origin ? `Origin: ${origin}\r\n` : ""}` +
      `${protocols ? `Sec-WebSocket-Protocol: ${protocols}\r\n` : ""}` +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    async function refusedGateway() {
      const gateway = new WebSocketGateway({
        path: "/ws",
        verifier: { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) },
        host: { open: () => ({ receive: () => undefined, reauthenticate: () => undefined, drained: () => undefined, closed: () => undefined }) },
        maxFrameBytes: 64 * 1024,
        allowedOrigins: ["https://ok.example"],
      });
      const server = createServer();
      const accepted: Socket[] = [];
      server.on("connection", (s) => accepted.push(s));
      gateway.attach(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return { server, gateway, accepted, port: (server.address() as AddressInfo).port };
    }

    /** Sends one upgrade request and answers with the status line it gets back. */
    async function ask(port: number, request: string, then: (client: Socket) => void = (c) => c.end()): Promise<string> {
      const client = connect(port, "127.0.0.1");
      client.on("error", () => undefined);
      client.write(request);
      const answer = await new Promise<string>((resolve) => client.once("data", (d: Buffer) => resolve(d.toString().split("\r\n")[0]!)));
      then(client);
      return answer;
    }

    for (const [what, request, status] of [
      ["a target no URL parser takes", upgrade("//["), "HTTP/1.1 400 Bad Request"],
      ["another path", upgrade("/nope"), "HTTP/1.1 404 Not Found"],
      ["an origin not allowed", upgrade("/ws", "https://evil.example"), "HTTP/1.1 403 Forbidden"],
      ["sub-protocols offered, none a framing (a bearer token alone)", upgrade("/ws", "", "bearer.token"), "HTTP/1.1 400 Bad Request"],
    ] as const) {
      it(`${what}: ${status.slice(9)}, and a client resetting the refused socket is no uncaught error`, async () => {
        const { server, gateway, accepted, port } = await refusedGateway();
        assert.equal(await ask(port, request), status);
        // Reset right after the answer: the server's half-open socket reads ECONNRESET, which needs a listener.
        assert.equal(await ask(port, request, (c) => c.resetAndDestroy()), status);
        await Promise.all(accepted.map((s) => (s.destroyed ? undefined : new Promise((r) => s.once("close", r)))));
        assert.equal(await ask(port, upgrade("/nope")), "HTTP/1.1 404 Not Found", "still serving");
        await gateway.close();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      });

      it(`${what}: lets the socket go once answered, though the client keeps its side open`, async () => {
        const { server, gateway, accepted, port } = await refusedGateway();
        const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
        client.on("error", () => undefined);
        client.write(request);
        try {
          await new Promise((r) => client.once("data", r));
          // A half-open socket held for good is a descriptor a client could take by the thousand.
          await waitFor(() => accepted.length === 1 && accepted[0]!.destroyed, "the server's socket closed", 2_000);
        } finally {
          client.destroy();
          await gateway.close();
          server.closeAllConnections();
          await new Promise((r) => server.close(r));
        }
      });
    }
  });
});

