import assert from "node:assert/strict";
import net from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { signUp } from "../support/api.js";
import { scrapeMetric } from "../support/metrics.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/**
 * A WebSocket device that never answers the gateway's close (a phone gone to sleep mid-close): its
 * socket reads all that comes, notes a close frame, and sends nothing back, so the gateway waits
 * its 2 s for the answer before it cuts the socket.
 */
function silentDevice(port: number, token: string): { closeFrameSeen: () => boolean; closed: () => boolean; welcomed: () => boolean; socket: net.Socket } {
  const socket = net.connect(port, "127.0.0.1");
  let buf = Buffer.alloc(0);
  let upgraded = false;
  let closeFrame = false;
  let welcomed = false;
  let closed = false;
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      assert.match(buf.subarray(0, end).toString(), /^HTTP\/1\.1 101 /);
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    // Server frames are not masked: opcode, length (7 bits, or 16 or 64 more), payload.
    while (buf.length >= 2) {
      const opcode = buf[0]! & 0x0f;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + len) return;
      if (opcode === 0x8) closeFrame = true;
      else welcomed = true; // its first frame is the Welcome
      buf = buf.subarray(at + len);
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => (closed = true));
  socket.write(
    [
      `GET /ws?access_token=${token} HTTP/1.1`,
      "Host: 127.0.0.1",
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Protocol: chat.v1.proto",
      "",
      "",
    ].join("\r\n"),
  );
  return { closeFrameSeen: () => closeFrame, closed: () => closed, welcomed: () => welcomed, socket };
}

// A rolling restart of the gateways: on SIGTERM every device is told to go elsewhere at once. The
// native gRPC streams were told only after the WebSocket devices had all answered their close (up
// to 2 s): meanwhile their sessions stayed open on the chat servers, and a native app connecting
// then was welcomed, its inbox read, and cut a moment later.
describe("gateway: SIGTERM with a WebSocket device that never answers the close", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwstop");

  it("ends the native gRPC streams and their sessions on the chat servers at once, and welcomes no native stream opened during the stop", async () => {
    const { api, chatServer, gateway: gw } = await startEdge({ ...deployment.env, CHAT_OPS_PORT: "0" });
    const chatMetrics = `http://127.0.0.1:${String(chatServer.info.ops)}/metrics`;
    const user = await signUp(String(api.info.http), "gwstop");
    const token = user.devices[0]!.token;

    const native = createClient(SessionService, createGrpcTransport({ baseUrl: String(gw.info.grpc) }));
    const releases: Array<() => void> = [];
    /** A native stream that keeps its half open: its frames, and how it ended (with whether the silent socket was still open then). */
    const openNative = () => {
      const held = new Promise<void>((r) => releases.push(r));
      async function* noFrames() {
        await held;
      }
      const frames: ServerFrame[] = [];
      const ended = (async () => {
        try {
          for await (const res of native.connect(noFrames(), { headers: { authorization: `Bearer ${token}` } })) frames.push(res.frame!);
          return { err: undefined, silentOpen: !silent.closed() };
        } catch (e) {
          return { err: ConnectError.from(e), silentOpen: !silent.closed() };
        }
      })();
      return { frames, ended };
    };

    let silent!: ReturnType<typeof silentDevice>;
    try {
      const first = openNative();
      await waitFor(() => first.frames[0]?.kind.case === "welcome", "the welcome over gRPC");
      silent = silentDevice(Number(new URL(String(gw.info.http)).port), token);
      await waitFor(() => silent.welcomed(), "the silent device's welcome");
      await waitFor(async () => (await scrapeMetric(chatMetrics, "chat_sessions")) === 2, "both sessions on the chat server");

      gw.child.kill("SIGTERM");
      await waitFor(() => silent.closeFrameSeen(), "the gateway's close to the WebSocket device");
      // Opened at once: the stop's wait for the silent device's answer (2 s) is the window it falls in.
      const late = openNative();

      const a = await first.ended;
      assert.ok(a.err, "the gRPC stream ended without a status");
      assert.equal(a.err.code, Code.Unavailable);
      assert.match(a.err.rawMessage, /^close 1001: gateway shutting down/);
      assert.ok(a.silentOpen, "the native stream was told only once the gateway had cut the WebSocket that never answered");

      // The native session is let go of at once; the WebSocket's stays until its device answers the
      // close, or is cut: what it sent before it saw the close (a read) still reaches its chat server.
      await waitFor(async () => ((await scrapeMetric(chatMetrics, "chat_sessions")) ?? 2) <= 1 || silent.closed(), "the chat server to let the native session go");
      assert.equal(silent.closed(), false, "the chat server kept the native session until the gateway cut the silent socket");

      const b = await late.ended;
      assert.ok(b.silentOpen, "the late stream was opened and ended while the gateway was stopping");
      assert.deepEqual(late.frames.map((f) => f.kind.case), [], "a stream opened during the stop was welcomed");
      assert.ok(b.err);
      assert.equal(b.err.code, Code.Unavailable);
      assert.match(b.err.rawMessage, /^close 1001: gateway shutting down/);

      await waitFor(() => gw.child.exitCode !== null, "the gateway to exit", 30_000);
      assert.equal(gw.child.exitCode, 0, gw.output.slice(-5).join("\n"));
      assert.ok(silent.closed(), "the silent socket was cut");
    } finally {
      for (const r of releases) r();
      silent?.socket.destroy();
    }
  });
});
