import assert from "node:assert/strict";
import http2 from "node:http2";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ServerFrameSchema, SessionService } from "../gen/es/chat/v1/session_pb.js";
import { SessionServiceClient, type ConnectResponse, type ServerFrame } from "../gen/ts-proto/chat/v1/session.js";
import type { Inbox } from "../internal/messages/inbox.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import { ChatServer } from "../internal/chatserver/server.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { waitFor } from "../test/support/wait.js";
import { CLOSE_CODE_TRAILER, sessionService, withCallStream } from "./grpc-session.js";

/** An empty inbox whose cursor read waits for `cursorGate`. */
const emptyInbox = (cursorGate?: Promise<void>): Inbox => ({
  append: () => Promise.reject(new Error("not in this test")),
  readAfter: async () => [],
  head: async () => 0n,
  getCursor: async () => {
    await cursorGate;
    return 0n;
  },
  advanceCursor: async () => {},
  dropCursor: async () => {},
  emptyTexts: async () => {},
});

/** SessionService on loopback over HTTP/2, and a native client's stream to it that collects frames and the final status. */
async function nativeSession(readMaxBytes = 4096, cursorGate?: Promise<void>) {
  const chat = new ChatServer({ serverId: "t", inbox: emptyInbox(cursorGate), channels: {} as never, submitter: {} as never });
  const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
  const server = http2.createServer(
    connectNodeAdapter({ readMaxBytes, contextValues: withCallStream(), routes: (r) => void r.service(SessionService, sessionService(chat, verifier)) }),
  );
  // The client's half-close as HTTP/2 saw it, a turn later (when the stream's reader has had it).
  const halfClosed = new Promise<void>((resolve) => server.on("stream", (st) => st.on("end", () => setImmediate(resolve))));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client = new SessionServiceClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("authorization", "Bearer any");
  const stream = client.connect(md);
  const frames: ServerFrame[] = [];
  stream.on("data", (res: ConnectResponse) => res.frame && frames.push(res.frame));
  stream.on("error", () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
  const close = async () => {
    client.close();
    chat.drain();
    await new Promise((r) => server.close(r));
  };
  return { stream, frames, status, close, halfClosed };
}

describe("native gRPC session (SessionService.Connect)", () => {
  it("answers what a client asked before it half-closed, then ends with OK", async () => {
    let welcome!: () => void;
    // The welcome waits until the session has seen the half-close: what was asked is still answered.
    const s = await nativeSession(4096, new Promise<void>((r) => (welcome = r)));
    void s.halfClosed.then(welcome);
    s.stream.write({ frame: { ref: 7n, kind: { $case: "heartbeat", value: {} } } });
    s.stream.write({ frame: { ref: 8n, kind: { $case: "heartbeat", value: {} } } });
    s.stream.end();
    const { code } = await s.status;
    assert.equal(code, grpc.status.OK);
    assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["heartbeatAck", 7n], ["heartbeatAck", 8n]]);
    await s.close();
  });

  it("counts requests with no frame as bad frames, and ends a stream of them with close 4400", async () => {
    const s = await nativeSession(4096);
    for (let i = 0; i < 50; i++) s.stream.write({});
    const { code, metadata } = await s.status;
    assert.deepEqual(metadata.get(CLOSE_CODE_TRAILER), [String(CloseCode.badFrames)]);
    assert.equal(code, grpc.status.INVALID_ARGUMENT);
    assert.ok(s.frames.some((f) => f.kind?.$case === "error"), "told what was wrong before the close");
    await s.close();
  });

  it("ends with RESOURCE_EXHAUSTED and close 1009 on a frame past the size limit", async () => {
    const s = await nativeSession(4096);
    const text = "x".repeat(10_000);
    s.stream.write({ frame: { ref: 1n, kind: { $case: "send", value: { clientMsgId: "a", channelId: 1n, text, editSeq: 0n, deleteSeq: 0n, replyToSeq: 0n, reactSeq: 0n } } } });
    const { code, details, metadata } = await s.status;
    assert.equal(code, grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual(metadata.get(CLOSE_CODE_TRAILER), ["1009"]);
    // grpc-js leaves the %3A that Connect's percent-encoding of grpc-message made of ":" (it decodes with decodeURI).
    assert.match(decodeURIComponent(details), /^close 1009: message size \d+ is larger than configured readMaxBytes 4096/);
    await s.close();
  });

  it("lets go of a session closed while its client stopped reading at once, and resets the stream after the grace period", async () => {
    const chat = new ChatServer({
      serverId: "t",
      inbox: emptyInbox(),
      channels: {} as never,
      submitter: {} as never,
      limits: { maxBufferedBytes: 64 * 1024, highWaterBytes: 16 * 1024 },
    });
    let closedCode: number | undefined;
    let released = false;
    // The chat server as a host, noting when the stream lets go of its session.
    const host: SessionHost = {
      open: (identity, sink) => {
        const h = chat.open(identity, { ...sink, close: (code, reason) => ((closedCode = code), sink.close(code, reason)) });
        return { receive: (f) => h.receive(f), drained: () => h.drained(), closed: () => ((released = true), h.closed()) };
      },
    };
    const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
    const routes = (r: ConnectRouter) => void r.service(SessionService, sessionService(host, verifier, { closeGraceMs: 100 }));
    const server = http2.createServer(connectNodeAdapter({ contextValues: withCallStream(), routes }));
    let streamClosed = false;
    server.on("stream", (st) => st.on("close", () => (streamClosed = true)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const conn = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const req = conn.request({
        ":method": "POST",
        ":path": "/chat.v1.SessionService/Connect",
        "content-type": "application/grpc+proto",
        te: "trailers",
        authorization: "Bearer any",
      });
      req.on("error", () => undefined);
      await once(req, "data"); // the welcome
      req.pause();
      // Pushes pile up behind the full HTTP/2 window until the session is closed as too slow.
      const push = create(ServerFrameSchema, { kind: { case: "error", value: { message: "x".repeat(4000) } } });
      while (chat.sessionCount > 0) {
        chat.deliverLocal(1n, [], push);
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(closedCode, CloseCode.tooSlow);
      assert.ok(released, "the session is let go of as soon as it is closed");
      await waitFor(() => streamClosed, "the stream reset", 5000);
    } finally {
      conn.destroy();
      chat.drain();
      await new Promise((r) => server.close(r));
    }
  });
});
