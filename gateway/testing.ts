import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { SessionService } from "../gen/es/chat/v1/session_pb.js";
import { SessionServiceClient, type ConnectResponse, type ServerFrame } from "../gen/ts-proto/chat/v1/session.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import { waitFor } from "../test/support/wait.js";
import { sessionService, withCallStream } from "./grpc-session.js";

/**
 * For tests: SessionService on `host` over a bare HTTP/2 listener, with a
 * verifier that takes any token as user 1's device 1, and one grpc-js
 * native client's stream opened on it. `ended` is the stream's status once
 * it has one.
 */
export async function nativeClientOn(host: SessionHost, { readMaxBytes }: { readMaxBytes?: number } = {}) {
  const verifier = { verify: () => ({ userId: 1n, deviceId: 1n, expiresAtMs: Date.now() + 60_000 }) };
  const server = http2.createServer(
    connectNodeAdapter({ readMaxBytes, contextValues: withCallStream(), routes: (r) => void r.service(SessionService, sessionService(host, verifier)) }),
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
