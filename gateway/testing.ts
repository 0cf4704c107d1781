import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ClientFrameSchema, ServerFrameSchema, SessionService } from "../gen/es/chat/v1/session_pb.js";
import { ChatServerServiceService, type SessionRequest, type SessionResponse } from "../gen/ts-proto/chat/internal/v1/chat_server.js";
import { SessionServiceClient, type ConnectResponse, type ServerFrame } from "../gen/ts-proto/chat/v1/session.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import { INTERNAL_MESSAGE_LIMITS } from "../internal/cluster/message-limits.js";
import { waitFor } from "../test/support/wait.js";
import { sessionService, withCallStream } from "./grpc-session.js";

/**
 * For tests: SessionService on `host` over a bare HTTP/2 listener, with a
 * verifier that takes any token as user 1's device 1, and one grpc-js
 * native client's stream opened on it. `ended` is the stream's status once
 * it has one.
 */
export async function nativeClientOn(host: SessionHost, { readMaxBytes, maxFrameBytes }: { readMaxBytes?: number; maxFrameBytes?: number } = {}) {
  const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
  const server = http2.createServer(
    connectNodeAdapter({ readMaxBytes, contextValues: withCallStream(), routes: (r) => void r.service(SessionService, sessionService(host, verifier, { maxFrameBytes })) }),
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
  const native = { server, client, stream, frames, halfClosed, ended: undefined as grpc.StatusObject | undefined };
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
  void status.then((s) => (native.ended = s));
  /** The status, failing past `ms`: for a stream that should have ended by then. */
  const statusWithin = (ms: number) => waitFor(() => native.ended, "the stream's status", ms);
  return Object.assign(native, { status, statusWithin });
}

/**
 * A stand-in chat server that speaks real ServerFrames: a Welcome on every
 * open, and, while `answering`, a SendAck or HeartbeatAck for each ask (a
 * silent one keeps its sends in flight, as one about to die does).
 */
export class FramedChatServer {
  readonly server = new grpc.Server(INTERNAL_MESSAGE_LIMITS);
  readonly streams = new Set<grpc.ServerDuplexStream<SessionRequest, SessionResponse>>();
  /** The client_msg_id of every send that reached this server. */
  readonly sends: string[] = [];
  /** The sessions opened here. */
  readonly opened: bigint[] = [];
  /** The ref of every SyncRequest that reached this server, for the test to answer. */
  readonly syncs: bigint[] = [];
  /** The ref of every heartbeat that reached this server. */
  readonly heartbeats: bigint[] = [];

  address = "";
  /** Opens are left unanswered, for refuseAll to refuse (1013) once the test has seen what it needs. */
  refusing = false;

  constructor(
    readonly id: string,
    public answering: boolean,
  ) {
    this.server.addService(ChatServerServiceService, {
      session: (call: grpc.ServerDuplexStream<SessionRequest, SessionResponse>) => {
        this.streams.add(call);
        const reply = (sessionId: bigint, frame: Parameters<typeof create<typeof ServerFrameSchema>>[1]) =>
          call.write({ sessionId, kind: { $case: "serverFrame", value: Buffer.from(toBinary(ServerFrameSchema, create(ServerFrameSchema, frame))) } });
        call.on("data", (req: SessionRequest) => {
          const k = req.kind; 
          if (k?.$case === "open") this.opened.push(req.sessionId);
          if (k?.$case === "open" && !this.refusing) reply(req.sessionId, { kind: { case: "welcome", value: { sessionId: this.id } } });
          if (k?.$case !== "clientFrame") return;
          const frame = fromBinary(ClientFrameSchema, k.value);
          if (frame.kind.case === "send") this.sends.push(frame.kind.value.clientMsgId);
          if (frame.kind.case === "sync") this.syncs.push(frame.ref);
          if (frame.kind.case === "heartbeat") this.heartbeats.push(frame.ref);
          if (!this.answering) return;
          if (frame.kind.case === "send") reply(req.sessionId, { ref: frame.ref, kind: { case: "sendAck", value: { clientMsgId: frame.kind.value.clientMsgId } } });
          if (frame.kind.case === "heartbeat") reply(req.sessionId, { ref: frame.ref, kind: { case: "heartbeatAck", value: {} } });
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
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  /** Refuses every session opened here (1013), as a server whose start reads kept failing does. */
  refuseAll(): void {
    for (const s of this.streams) for (const sessionId of this.opened) s.write({ sessionId, kind: { $case: "closed", value: { code: 1013, reason: "try again" } } });
  }

  /** Ends every gateway stream with UNAVAILABLE, as a chat server that dies does. */
  breakStreams(): void {
    for (const s of this.streams) s.emit("error", { code: grpc.status.UNAVAILABLE, details: "gone" });
    this.streams.clear();
  }
}
