import http2 from "node:http2";
import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { ConnectResponseSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";

/**
 * gRPC spoken by hand over a bare HTTP/2 stream, for the tests that send what no client library
 * would (bad envelopes, bad bytes, requests past a limit) and read the status as it came.
 */

/** A protobuf varint's bytes. */
export function varint(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    if (v < 0x80n) return [...out, Number(v)];
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
}

/** A gRPC message: flag, length, bytes. */
export function envelope(bytes: Uint8Array, flag = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

export interface RawGrpcCall {
  status?: string;
  message: string;
  /** The chat-error-code header (the API's ErrorCode name), where one came. */
  chatCode?: string;
  /** The chat-close-code header (a session's close code), where one came. */
  closeCode?: string;
  data: Buffer[];
}

/**
 * A gRPC stream on a connection of its own, with application/grpc's headers under `headers`
 * (content-type and authorization are the caller's). Errors of either are left to the caller to
 * see in the stream's end: a test of a server that cuts connections expects them.
 */
export function openRawGrpcStream(url: string, path: string, headers: http2.OutgoingHttpHeaders): { conn: http2.ClientHttp2Session; req: http2.ClientHttp2Stream } {
  const conn = http2.connect(url);
  conn.on("error", () => undefined);
  const req = conn.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
  req.on("error", () => undefined);
  return { conn, req };
}

/**
 * One call on its own connection: `headers` over application/grpc's (content-type and
 * authorization are the caller's), `write` writes the body and ends it or not. `done` settles at
 * the status or the stream's close, and the connection is destroyed then: a session that ended
 * before reading all its requests keeps the stream a grace period (closeGraceMs).
 */
export function rawGrpcCall(url: string, path: string, headers: http2.OutgoingHttpHeaders, write: (req: http2.ClientHttp2Stream) => void): { call: RawGrpcCall; done: Promise<void> } {
  const { conn, req } = openRawGrpcStream(url, path, headers);
  const call: RawGrpcCall = { message: "", data: [] };
  const onStatus = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] === undefined) return;
    call.status = String(h["grpc-status"]);
    call.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
    if (h["chat-error-code"] !== undefined) call.chatCode = String(h["chat-error-code"]);
    if (h["chat-close-code"] !== undefined) call.closeCode = String(h["chat-close-code"]);
  };
  req.on("data", (d: Buffer) => call.data.push(d));
  const done = new Promise<void>((resolve) => {
    const finish = () => (conn.destroy(), resolve());
    req.on("response", (h) => (onStatus(h), call.status !== undefined && finish()));
    req.on("trailers", (h) => (onStatus(h), finish()));
    req.on("close", finish);
  });
  write(req);
  return { call, done };
}

/** The ServerFrames of the ConnectResponses in a gRPC response body, binary or (`json`) in gRPC's JSON framing. */
export function serverFramesOf(data: Buffer[], json = false): ServerFrame[] {
  let buf = Buffer.concat(data);
  const out: ServerFrame[] = [];
  while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
    const len = buf.readUInt32BE(1);
    const body = buf.subarray(5, 5 + len);
    const res = json ? fromJsonString(ConnectResponseSchema, body.toString("utf8")) : fromBinary(ConnectResponseSchema, body);
    if (res.frame) out.push(res.frame);
    buf = buf.subarray(5 + len);
  }
  return out;
}
