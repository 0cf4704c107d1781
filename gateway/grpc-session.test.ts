import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { SessionService } from "../gen/es/chat/v1/session_pb.js";
import { SessionServiceClient, type ConnectResponse, type ServerFrame } from "../gen/ts-proto/chat/v1/session.js";
import type { Inbox } from "../internal/messages/inbox.js";
import { ChatServer } from "../internal/chatserver/server.js";
import { CLOSE_CODE_TRAILER, sessionService } from "./grpc-session.js";

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
  const server = http2.createServer(connectNodeAdapter({ readMaxBytes, routes: (r) => void r.service(SessionService, sessionService(chat, verifier)) }));
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
});
