import assert from "node:assert/strict";
import http2 from "node:http2";
import { once } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ClientFrameSchema, ConnectRequestSchema, ServerFrameSchema, SessionService } from "../gen/es/chat/v1/session_pb.js";
import { ClientFrame as TsClientFrame } from "../gen/ts-proto/chat/v1/session.js";
import type { Inbox } from "../internal/messages/inbox.js";
import type { MessageSubmitter } from "../internal/messages/submit.js";
import type { SessionHost, SessionSink } from "../internal/chatserver/port.js";
import { ChatServer } from "../internal/chatserver/server.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { waitFor } from "../test/support/wait.js";
import { closeIdleConnections } from "../internal/grpc/idle-connections.js";
import { CLOSE_CODE_TRAILER, SESSION_JSON_OPTIONS, readMaxBytesFor, sessionService, withCallStream } from "./grpc-session.js";
import { nativeClientOn } from "./testing.js";

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
async function nativeSession(
  readMaxBytes = 4096,
  cursorGate?: Promise<void>,
  deps: { inbox?: Inbox; submitter?: MessageSubmitter; revoked?: () => Promise<boolean> } = {},
  maxFrameBytes?: number,
) {
  const chat = new ChatServer({ serverId: "t", inbox: emptyInbox(cursorGate), channels: {} as never, submitter: {} as never, ...deps });
  const { server, client, stream, frames, status, statusWithin, halfClosed } = await nativeClientOn(chat, { readMaxBytes, maxFrameBytes });
  const close = async () => {
    client.close();
    chat.drain();
    await new Promise((r) => server.close(r));
  };
  return { stream, frames, status, statusWithin, close, halfClosed };
}


/**
 * The session service on a bare HTTP/2 server with a 100 ms close grace,
 * and one Connect call opened on it by a raw HTTP/2 client: for what only
 * the stream itself shows (its reset, flow control).
 */
async function rawSessionCall(
  host: SessionHost,
  { contentType = "application/grpc+proto", readMaxBytes, maxFrameBytes }: { contentType?: string; readMaxBytes?: number; maxFrameBytes?: number } = {},
) {
  const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
  const routes = (r: ConnectRouter) => void r.service(SessionService, sessionService(host, verifier, { closeGraceMs: 100, maxFrameBytes }));
  const server = http2.createServer(connectNodeAdapter({ readMaxBytes, jsonOptions: SESSION_JSON_OPTIONS, contextValues: withCallStream(), routes }));
  let serverStreamClosed = false;
  server.on("stream", (st) => st.on("close", () => (serverStreamClosed = true)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const conn = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const req = conn.request({
    ":method": "POST",
    ":path": "/chat.v1.SessionService/Connect",
    "content-type": contentType,
    te: "trailers",
    authorization: "Bearer any",
  });
  req.on("error", () => undefined);
  // The messages' bodies as text, and the status (trailers, or headers alone on an at-once error).
  const messages: string[] = [];
  let pending = Buffer.alloc(0);
  req.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      messages.push(pending.subarray(5, 5 + pending.readUInt32BE(1)).toString("utf8"));
      pending = pending.subarray(5 + pending.readUInt32BE(1));
    }
  });
  let status: http2.IncomingHttpHeaders | undefined;
  const onStatus = (h: http2.IncomingHttpHeaders) => void (h["grpc-status"] !== undefined && (status = h));
  req.on("response", onStatus);
  req.on("trailers", onStatus);
  return {
    req,
    messages: () => messages,
    trailers: () => status,
    serverStreamClosed: () => serverStreamClosed,
    close: async () => {
      conn.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
// For a test that measures what a session keeps: gc() in a new context after this.
setFlagsFromString("--expose-gc");

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

  it("answers a Reauthenticate sent before the half-close, however late its check comes, then ends with OK", async () => {
    // The device's check (is it signed out?) answers only once the session has seen the half-close,
    // as a store read in another process can.
    let halfClosed: Promise<unknown> | undefined;
    const s = await nativeSession(4096, undefined, { revoked: async () => (await halfClosed, false) });
    halfClosed = s.halfClosed;
    s.stream.write({ frame: { ref: 7n, kind: { $case: "heartbeat", value: {} } } });
    s.stream.write({ frame: { ref: 9n, kind: { $case: "reauthenticate", value: { accessToken: "any" } } } });
    s.stream.end();
    const { code } = await s.statusWithin(5_000);
    assert.equal(code, grpc.status.OK);
    assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["heartbeatAck", 7n], ["reauthenticated", 9n]]);
    await s.close();
  });

  it("ends a half-closed stream with OK once a SyncRequest with ref 0 (the field left unset) is answered", async () => {
    const s = await nativeSession(4096);
    s.stream.write({ frame: { ref: 0n, kind: { $case: "sync", value: { afterInboxSeq: 0n, limit: 0 } } } });
    s.stream.end();
    // Not answered, the ask would hold the stream open until the session's idle sweep.
    const { code } = await s.statusWithin(5_000);
    assert.equal(code, grpc.status.OK);
    assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["syncBatch", 0n]]);
    await s.close();
  });

  /**
   * A session whose send is acked only once `accept` is called (`inbox`: the
   * device's inbox, if not an empty one), and a send with ref 0 to write.
   */
  async function sendHeldBack(inbox?: Inbox) {
    let accept!: () => void;
    const accepted = new Promise<void>((r) => (accept = r));
    const submitter = {
      submit: async () => {
        await accepted;
        return { messageId: 10n, duplicate: false };
      },
    } as unknown as MessageSubmitter;
    const s = await nativeSession(4096, undefined, { submitter, ...(inbox && { inbox }) });
    const send = { ref: 0n, kind: { $case: "send" as const, value: { clientMsgId: "a", channelId: 7n, text: "x", editSeq: 0n, deleteSeq: 0n, replyToSeq: 0n, reactSeq: 0n } } };
    /**
     * Once a frame of `kind` with ref 0 came (`what`), lets the send be acked:
     * the half-closed stream must end with OK after that frame and the SendAck.
     */
    const endsAfter = async (kind: "syncBatch" | "error", what: string) => {
      await waitFor(() => s.frames.some((f) => f.kind?.$case === kind), what);
      accept();
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], [kind, 0n], ["sendAck", 0n]]);
      await s.close();
    };
    return { s, send, endsAfter };
  }

  it("takes no pushed page with ref 0 for the answer to a send with ref 0", async () => {
    let welcome!: () => void;
    const entry = { inboxSeq: 1n, message: { messageId: 9n, channelId: 7n, seq: 1n, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: "m", text: "hi", sentAtMs: 0 } };
    const base = emptyInbox(new Promise<void>((r) => (welcome = r)));
    // One entry past the device's cursor: the session pushes it after the welcome, a last page with ref 0.
    const inbox: Inbox = { ...base, head: async () => 1n, readAfter: async (_u, after) => (after < 1n ? [entry] : []) };
    const { s, send, endsAfter } = await sendHeldBack(inbox);
    void s.halfClosed.then(welcome);
    s.stream.write({ frame: send });
    s.stream.end();
    await endsAfter("syncBatch", "the pushed page");
  });

  it("takes no error refusing another kind of frame with ref 0 for the answer to a send with ref 0", async () => {
    const { s, send, endsAfter } = await sendHeldBack();
    s.stream.write({ frame: send });
    // A read receipt naming a channel id past the largest: refused, and asks nothing.
    s.stream.write({ frame: { ref: 0n, kind: { $case: "read", value: { channelId: 2n ** 64n - 1n, seq: 1n } } } });
    s.stream.end();
    await waitFor(() => s.frames.some((f) => f.kind?.$case === "error"), "the read's refusal");
    const refusal = s.frames.find((f) => f.kind?.$case === "error")!;
    assert.equal(refusal.kind?.$case === "error" && refusal.kind.value.refusedKind, 5, "refused_kind names the read (ClientFrame field 5)");
    await endsAfter("error", "the read's refusal");
  });

  it("takes the error refusing a frame of no kind for its answer, not for the answer to a send with the same ref", async () => {
    const { s, send, endsAfter } = await sendHeldBack();
    s.stream.write({ frame: send });
    s.stream.write({ frame: { ref: 0n } });
    s.stream.end();
    await endsAfter("error", "the refusal of the frame of no kind");
  });

  it("hands a sync refused by a chat server too old to say the kind (refused_kind 0) its refusal under the client's ref, and lets go of the gateway's", async () => {
    // An older chat server: it welcomes, then refuses every frame with an error of kind 0 under the ref it came with.
    const host: SessionHost = {
      open: (_identity, sink) => {
        sink.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "welcome", value: {} } })));
        return {
          receive: (bytes) => {
            const { ref } = fromBinary(ClientFrameSchema, bytes as Uint8Array);
            sink.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { ref, kind: { case: "error", value: { message: "unknown frame" } } })));
          },
          reauthenticate: () => undefined,
          drained: () => undefined,
          closed: () => undefined,
        };
      },
    };
    const native = await nativeClientOn(host);
    try {
      for (const ref of [7n, 8n, 9n]) native.stream.write({ frame: { ref, kind: { $case: "sync", value: { afterInboxSeq: 0n, limit: 0 } } } });
      native.stream.end();
      const { code } = await native.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      // Taken for no sync's answer, each refusal came under the gateway's ref (1, 2, 3), whose entry stayed for the stream's life.
      assert.deepEqual(native.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["error", 7n], ["error", 8n], ["error", 9n]]);
    } finally {
      native.client.close();
      await new Promise((r) => native.server.close(r));
    }
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

  it("takes a frame of exactly the size limit the Welcome tells, wrapped in its ConnectRequest, and refuses one byte more with 1009", async () => {
    const maxFrameBytes = 4096;
    /** A send whose ClientFrame is `bytes` long. */
    const frameOf = (bytes: number) => {
      const frame = (text: string): TsClientFrame =>
        ({ ref: 1n, kind: { $case: "send", value: { clientMsgId: "a", channelId: 1n, text, editSeq: 0n, deleteSeq: 0n, replyToSeq: 0n, reactSeq: 0n } } });
      const overhead = TsClientFrame.encode(frame("x".repeat(bytes - 64))).finish().length - (bytes - 64);
      const f = frame("x".repeat(bytes - overhead));
      assert.equal(TsClientFrame.encode(f).finish().length, bytes);
      return f;
    };
    const fits = await nativeSession(readMaxBytesFor(maxFrameBytes), undefined, {}, maxFrameBytes);
    fits.stream.write({ frame: frameOf(maxFrameBytes) });
    await waitFor(() => fits.frames.some((f) => f.ref === 1n), "the answer to the frame", 5_000);
    fits.stream.end();
    assert.notEqual((await fits.statusWithin(5_000)).code, grpc.status.RESOURCE_EXHAUSTED);
    await fits.close();

    const over = await nativeSession(readMaxBytesFor(maxFrameBytes), undefined, {}, maxFrameBytes);
    over.stream.write({ frame: frameOf(maxFrameBytes + 1) });
    const { code, metadata } = await over.statusWithin(5_000);
    assert.equal(code, grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual(metadata.get(CLOSE_CODE_TRAILER), ["1009"]);
    await over.close();
  });

  it("takes a JSON frame (gRPC's JSON framing) of exactly the size limit, wrapped in its ConnectRequest, and refuses one byte more with 1009", async () => {
    const maxFrameBytes = 4096;
    /** A send whose ClientFrame, as compact JSON, is `bytes` long. */
    const frameOf = (bytes: number) => {
      const around = (text: string) => `{"ref":"1","send":{"clientMsgId":"a","channelId":"1","text":"${text}"}}`;
      const json = around("x".repeat(bytes - around("").length));
      assert.equal(Buffer.byteLength(json), bytes);
      return json;
    };
    const session = async (json: string) => {
      const chat = new ChatServer({ serverId: "t", inbox: emptyInbox(), channels: {} as never, submitter: {} as never });
      const call = await rawSessionCall(chat, { contentType: "application/grpc+json", readMaxBytes: readMaxBytesFor(maxFrameBytes), maxFrameBytes });
      const body = Buffer.from(`{"frame":${json}}`);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(body.length, 1);
      call.req.write(Buffer.concat([head, body]));
      return Object.assign(call, { chat });
    };
    const fits = await session(frameOf(maxFrameBytes));
    await waitFor(() => fits.messages().some((m) => /"ref":"1"/.test(m)) || fits.trailers(), "the answer to the frame, or the stream's end", 5_000);
    assert.equal(fits.trailers()?.["grpc-status"], undefined, `not ended: ${JSON.stringify(fits.trailers())}`);
    await fits.close();
    fits.chat.drain();

    const over = await session(frameOf(maxFrameBytes + 1));
    const trailers = await waitFor(() => over.trailers(), "the stream's status", 5_000);
    assert.deepEqual([trailers["grpc-status"], trailers[CLOSE_CODE_TRAILER]], [String(grpc.status.RESOURCE_EXHAUSTED), "1009"]);
    await over.close();
    over.chat.drain();
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

  it("reads no more of a closed session's stream, and resets it after the grace period if its client, sent the status, keeps it open", async () => {
    const chat = new ChatServer({ serverId: "t", inbox: emptyInbox(), channels: {} as never, submitter: {} as never });
    let closedCode: number | undefined;
    let receivedAfterClose = 0;
    const host: SessionHost = {
      open: (identity, sink) => {
        const h = chat.open(identity, { ...sink, close: (code, reason) => ((closedCode = code), sink.close(code, reason)) });
        return {
          receive: (f) => {
            if (closedCode !== undefined) receivedAfterClose++;
            h.receive(f);
          },
          reauthenticate: (v) => h.reauthenticate(v),
          drained: () => h.drained(),
          closed: () => h.closed(),
        };
      },
    };
    const call = await rawSessionCall(host);
    const { req } = call;
    /** A gRPC message: flag byte, length, bytes. */
    const message = (bytes: Uint8Array) => Buffer.concat([Buffer.from([0, 0, 0, 0, bytes.byteLength]), bytes]);
    try {
      req.on("data", () => undefined);
      let trailers: http2.IncomingHttpHeaders | undefined;
      req.on("trailers", (t) => (trailers = t));
      for (let i = 0; i < 10; i++) req.write(message(new Uint8Array(0)));
      await waitFor(() => trailers, "the status");
      assert.equal(trailers![CLOSE_CODE_TRAILER], String(CloseCode.badFrames));
      // The client does not half-close: it goes on sending as fast as HTTP/2 lets it.
      const heartbeat = message(toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { frame: { ref: 1n, kind: { case: "heartbeat", value: {} } } })));
      const writable = () =>
        new Promise<void>((resolve) => {
          const done = () => (req.off("drain", done), req.off("close", done), resolve());
          req.on("drain", done).on("close", done);
        });
      const sending = (async () => {
        while (!req.closed) if (!req.write(heartbeat)) await writable();
      })();
      await waitFor(() => req.closed, "the stream reset", 5_000);
      await sending;
      assert.equal(req.rstCode, http2.constants.NGHTTP2_NO_ERROR, "reset once its status was out");
      assert.equal(receivedAfterClose, 0, "frames handed to a closed session");
      // Gone on the server too, though what the client sent last was never read.
      await waitFor(call.serverStreamClosed, "the server's stream closed", 5_000);
    } finally {
      chat.drain();
      await call.close();
    }
  });

  it("closes a connection that carries no stream for the idle time, never one with a session open however quiet", async () => {
    const sinks: { close(code: number, reason: string): void }[] = [];
    const host: SessionHost = {
      open: (_identity, sink) => {
        sinks.push(sink);
        return { receive: () => undefined, reauthenticate: () => undefined, drained: () => undefined, closed: () => undefined };
      },
    };
    const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
    const routes = (r: ConnectRouter) => void r.service(SessionService, sessionService(host, verifier, { closeGraceMs: 50 }));
    const server = http2.createServer(connectNodeAdapter({ contextValues: withCallStream(), routes }));
    closeIdleConnections(server, 200);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const connections: http2.ClientHttp2Session[] = [];
    const connect = () => {
      const conn = http2.connect(url);
      conn.on("error", () => undefined);
      connections.push(conn);
      return conn;
    };
    try {
      // A device's connection with its session open, sending nothing more.
      const live = connect();
      const req = live.request({ ":method": "POST", ":path": "/chat.v1.SessionService/Connect", "content-type": "application/grpc+proto", te: "trailers", authorization: "Bearer any" });
      req.on("error", () => undefined);
      req.on("data", () => undefined);
      await waitFor(() => sinks.length === 1, "the session opened");
      // A connection that never opens a stream (a client that connected and went, or holds sockets).
      const bare = connect();
      await waitFor(() => bare.closed || bare.destroyed, "the stream-less connection closed", 5_000);
      assert.ok(!live.closed && !live.destroyed, "the connection of an open session was cut");
      // Once its session ended and the stream with it, that connection idles out too.
      sinks[0]!.close(CloseCode.goingAway, "no heartbeat");
      await waitFor(() => live.closed || live.destroyed, "the connection closed once its stream ended", 5_000);
    } finally {
      for (const c of connections) c.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("keeps of the frames a reader that stopped reading has not taken what the cap counts, their bytes, not each decoded too", async () => {
    const gc = runInNewContext("gc") as () => void;
    let sink!: SessionSink;
    const welcome = toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "welcome", value: {} } }));
    const host: SessionHost = {
      open: (_identity, s) => {
        sink = s;
        s.send(welcome);
        return { receive: () => undefined, reauthenticate: () => undefined, drained: () => undefined, closed: () => undefined };
      },
    };
    const call = await rawSessionCall(host);
    try {
      await once(call.req, "data"); // the welcome
      call.req.pause();
      // One TypingEvent (6 bytes), as the chat server encodes a push once for every session it goes to.
      const typing = toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "typing", value: { channelId: 7n, userId: 3n } } }));
      const frames = 200_000;
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < frames; i++) sink.send(typing);
      await waitFor(() => sink.bufferedBytes() < frames * typing.byteLength, "the writer to take what the HTTP/2 window lets through");
      gc();
      const perFrame = (process.memoryUsage().heapUsed - before) / frames;
      // Kept decoded beside its bytes, each took some 290 bytes (50 since), 48 times the 6 the cap counted.
      assert.ok(perFrame < 120, `${perFrame.toFixed(0)} bytes of heap kept for each buffered frame of ${typing.byteLength}`);
      assert.ok(sink.bufferedBytes() > (frames / 2) * typing.byteLength, "most frames still wait");
    } finally {
      await call.close();
    }
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
        return { receive: (f) => h.receive(f), reauthenticate: (v) => h.reauthenticate(v), drained: () => h.drained(), closed: () => ((released = true), h.closed()) };
      },
    };
    const call = await rawSessionCall(host);
    const { req } = call;
    try {
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
      await waitFor(call.serverStreamClosed, "the stream reset", 5000);
    } finally {
      chat.drain();
      await call.close();
    }
  });
});
