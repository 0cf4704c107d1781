import type { ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { fromBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import {
  ChatServerServiceService,
  type ChatServerServiceServer,
  type DeliverStreamRequest,
  type DeliverStreamResponse,
  type SessionRequest,
  type SessionResponse,
} from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import type { SessionHandle, SessionSink } from "../chatserver/port.js";
import type { ChatServer } from "../chatserver/server.js";
import { fromTsProto } from "./frames.js";
import { errorNameOf } from "../chatserver/errors.js";
import { ChatError } from "../model/errors.js";
import { DELIVER_STREAM_BATCHES_IN_FLIGHT, INTERNAL_MESSAGE_LIMITS } from "./message-limits.js";

/** Lenient: a text frame's bytes were checked on the device's socket, and a throw here would end the gateway's whole stream. */
const TEXT = new TextDecoder("utf-8");

export { ChatServerServiceService };

/**
 * The chat server's gRPC server options. It pings every connection (a
 * gateway's, a delivery stream's) and drops one that does not answer: the
 * sessions of a gateway whose host died or was cut off (no FIN) otherwise
 * lived on here until their silence closed them (three heartbeat intervals,
 * 75 s by default), online and counted as reached, so no push, and the
 * gateway's stream, once empty, for good.
 */
export function chatServerGrpcOptions({ keepaliveMs = 10_000, keepaliveTimeoutMs = 5_000 } = {}) {
  return {
    ...INTERNAL_MESSAGE_LIMITS,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.keepalive_time_ms": keepaliveMs,
    "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
    "grpc.max_concurrent_streams": CHAT_SERVER_MAX_CONCURRENT_STREAMS,
  };
}

/**
 * Calls one connection may have open on a chat server at once (HTTP/2's
 * SETTINGS_MAX_CONCURRENT_STREAMS; RFC 9113 asks for no fewer than 100).
 * Node's default is no limit: a sender flooding Deliver calls (or any unary
 * call) had them all read and handled at once, each message up to 64 MiB.
 * A client past it waits for a call to end before it starts the next (its
 * deadline running), so a busy sender is slowed, not failed. A connection
 * carries one long-lived stream: a gateway's Session or a sender's DeliverStream.
 */
export const CHAT_SERVER_MAX_CONCURRENT_STREAMS = 100;

/**
 * Batches of one DeliverStream handled at once (shared with the sender, in
 * message-limits.ts): a batch mostly lands at once, but without a bound a
 * pipeline sending on to a server held up piled up batches here, every
 * frame of each: the sender's timeout ends its stream, not the work it
 * started here.
 */
export { DELIVER_STREAM_BATCHES_IN_FLIGHT };

/**
 * How long a draining chat server waits for the gateways to end their streams (they do once they see
 * it leave the registry) before it ends them itself: inside stopGrpcServer's and the process's stop.
 */
export const GATEWAY_STREAMS_GRACE_MS = 3_000;

type GatewayStream = ServerDuplexStream<SessionRequest, SessionResponse>;
type DeliveryCall = ServerDuplexStream<DeliverStreamRequest, DeliverStreamResponse>;

/**
 * A gateway's stream and the bytes written to it that grpc-js has not yet
 * handed to HTTP/2. Counted here because the stream is in object mode: its
 * own writableLength counts messages, which says nothing about memory.
 */
class GatewayLink {
  /** The stream's sessions by the gateway's id for them. */
  readonly sessions = new Map<bigint, StreamedSession>();
  queuedBytes = 0;
  /**
   * A session saw the backlog past its high-water mark (and so may have
   * stalled): it is woken once the backlog is down to half of it. grpc-js's
   * own 'drain' comes only after a write it refused, which a few large
   * frames (a sync page of long texts) never cause. Not once it is gone:
   * the frames that are never held back (answers, receipts, heartbeat acks
   * of thousands of sessions) can keep a busy stream from ever being empty
   * at a write's end, and the stalled sessions waited for good.
   */
  wantsDrain = false;

  constructor(
    readonly call: GatewayStream,
    private readonly highWaterBytes: number,
    private readonly drained: () => void,
  ) {}

  write(res: SessionResponse, bytes: number): void {
    const { call } = this;
    if (call.writableEnded || call.destroyed) return;
    // grpc-js buffers past the high-water mark; sessions see the backlog
    // through paused() and stall their live pushes until it drains.
    this.queuedBytes += bytes;
    call.write(res, () => {
      this.queuedBytes -= bytes;
      if (this.wantsDrain && this.queuedBytes <= this.highWaterBytes / 2) {
        this.wantsDrain = false;
        this.drained();
      }
    });
  }

  /** Whether the backlog is past the high-water mark, as a session asks before it sends or stalls. */
  backedUp(): boolean {
    if (this.queuedBytes <= this.highWaterBytes) return false;
    this.wantsDrain = true;
    return true;
  }
}

/**
 * One device session carried on a gateway's stream: the sink its Session
 * writes to. A class rather than closures, because a chat server holds tens
 * of thousands of these and one small object each is what an idle session
 * should cost here.
 */
class StreamedSession implements SessionSink {
  handle!: SessionHandle;
  /** The gateway's buffer towards the device is full (FlowControl). */
  holding = false;

  constructor(
    private readonly link: GatewayLink,
    readonly id: bigint,
  ) {}

  send(frame: Uint8Array | string): void {
    const bytes = typeof frame === "string" ? Buffer.from(frame) : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    this.link.write({ sessionId: this.id, kind: { $case: "serverFrame", value: bytes } }, bytes.byteLength);
  }

  /**
   * None of its own: the device's backlog is the gateway's, which closes it
   * with 4009. The stream's backlog is shared by every session on it, so it
   * only pauses them (paused), never closes one as too slow.
   */
  bufferedBytes(): number {
    return 0;
  }

  /** The gateway's buffer towards the device is full, or the stream's backlog is past its high-water mark. */
  paused(): boolean {
    return this.holding || this.link.backedUp();
  }

  close(code: number, reason: string): void {
    this.link.sessions.delete(this.id);
    this.link.write({ sessionId: this.id, kind: { $case: "closed", value: { code, reason } } }, reason.length + 16);
  }
}

/**
 * The chat server's side of the internal contract. A gateway multiplexes its
 * sessions over one Session stream; every session keeps its own state in the
 * ChatServer, and the stream only carries frames. When the stream breaks,
 * the sessions on it end here, and the gateway opens them again elsewhere.
 */
export function chatServerService(
  chat: ChatServer,
  logger?: Logger,
  { gatewayStreamsGraceMs = GATEWAY_STREAMS_GRACE_MS } = {},
): ChatServerServiceServer & { endAll(): Promise<void> } {
  const streams = new Set<GatewayStream>();
  /** Set while endAll waits for the gateways to end their streams: called as each goes. */
  let streamGone: (() => void) | undefined;
  const deliveryStreams = new Map<DeliveryCall, { batches: number; ending: boolean }>();
  const endDeliveryStream = (call: DeliveryCall) => {
    deliveryStreams.delete(call);
    if (!call.writableEnded && !call.destroyed) call.end();
  };
  return {
    session(call) {
      streams.add(call);
      const drainAll = () => {
        for (const s of sessions.values()) if (!s.holding) s.handle.drained();
      };
      const link = new GatewayLink(call, chat.limits.highWaterBytes, drainAll);
      const { sessions } = link;
      call.on("drain", drainAll);
      call.on("data", (req: SessionRequest) => {
        const id = req.sessionId;
        const kind = req.kind;
        if (!kind) return;
        switch (kind.$case) {
          case "open": {
            if (sessions.has(id)) return;
            if (!chat.accepting) {
              link.write({ sessionId: id, kind: { $case: "closed", value: { code: 1013, reason: "server is not taking sessions" } } }, 48);
              return;
            }
            const o = kind.value;
            const session = new StreamedSession(link, id);
            sessions.set(id, session);
            session.handle = chat.open(
              {
                userId: o.userId,
                deviceId: o.deviceId,
                tokenExpiresAtMs: o.tokenExpiresAt ? o.tokenExpiresAt.getTime() : 0,
                encoding: o.encoding === "json" ? "json" : "proto",
              },
              session,
            );
            return;
          }
          case "clientFrame": {
            // A binary frame as bytes, for JSON too: the session reads them as strict UTF-8, as chatd's does
            // a binary WebSocket frame (which the socket does not check); a toString here put U+FFFD in for
            // bad bytes. A text frame as the string chatd's session is handed, which a binary session refuses.
            const frame = req.clientFrameText === true ? TEXT.decode(kind.value) : kind.value;
            sessions.get(id)?.handle.receive(frame);
            return;
          }
          case "reauthentication": {
            const v = kind.value;
            sessions.get(id)?.handle.reauthenticate(
              v.tokenExpiresAt
                ? { ref: v.ref, expiresAtMs: v.tokenExpiresAt.getTime() }
                : { ref: v.ref, refused: new ChatError(errorNameOf.get(v.refusedCode) ?? "unauthenticated", v.refusedReason, v.retryAfterMs || undefined) },
            );
            return;
          }
          case "flow": {
            const s = sessions.get(id);
            if (!s) return;
            s.holding = kind.value.paused;
            if (!s.holding) s.handle.drained();
            return;
          }
          case "close": {
            const s = sessions.get(id);
            sessions.delete(id);
            s?.handle.closed();
            return;
          }
        }
      });
      const endAllSessions = () => {
        streams.delete(call);
        for (const s of sessions.values()) s.handle.closed();
        sessions.clear();
        streamGone?.();
      };
      call.on("end", () => {
        endAllSessions();
        call.end();
      });
      call.on("error", (err) => {
        logger?.debug({ err }, "gateway stream failed");
        endAllSessions();
      });
      call.on("cancelled", endAllSessions);
    },

    deliver(call, callback) {
      let sessions = 0;
      const work = call.request.deliveries.map(async (d) => {
        if (!d.frame) return;
        const frame = fromTsProto(d.frame);
        const n = await chat.deliverChecked(d.userId, d.deviceIds, frame);
        sessions += n;
      });
      Promise.all(work).then(
        () => callback(null, { sessions }),
        (err) => callback({ code: status.INTERNAL, details: String(err) }),
      );
    },

    deliverStream(call) {
      const state = { batches: 0, ending: false };
      deliveryStreams.set(call, state);
      call.on("data", (req: DeliverStreamRequest) => {
        if (++state.batches === DELIVER_STREAM_BATCHES_IN_FLIGHT) call.pause();
        let sessions = 0;
        const missed: bigint[] = [];
        // Every batch is answered: a delivery that fails counts no session
        // (its devices catch up from their cursors) and spares the others.
        const work = req.deliveries.map(async (d) => {
          let n = 0;
          try {
            n = await chat.deliverChecked(d.userId, d.deviceIds, fromBinary(ServerFrameSchema, d.serverFrame), d.serverFrame);
          } catch (err) {
            logger?.warn({ err, userId: String(d.userId) }, "delivery failed");
          }
          sessions += n;
          if (n === 0) missed.push(d.userId);
        });
        void Promise.all(work).then(() => {
          if (!call.writableEnded && !call.destroyed) call.write({ batchId: req.batchId, sessions, missedUserIds: missed });
          if (--state.batches === 0 && state.ending) endDeliveryStream(call);
          else if (state.batches === DELIVER_STREAM_BATCHES_IN_FLIGHT - 1) call.resume();
        });
      });
      call.on("end", () => {
        state.ending = true;
        if (state.batches === 0) endDeliveryStream(call);
      });
      call.on("error", (err) => {
        logger?.debug({ err }, "delivery stream failed");
        deliveryStreams.delete(call);
      });
      call.on("cancelled", () => deliveryStreams.delete(call));
    },

    closeDeviceSessions(call, callback) {
      const { userId, deviceId, code, reason } = call.request;
      chat.closeDevice(userId, deviceId, code, reason).then(
        (sessions) => callback(null, { sessions }),
        (err) => callback({ code: status.INTERNAL, details: String(err) }),
      );
    },

    forgetBlocks(call, callback) {
      for (const { userId, otherUserId } of call.request.pairs) chat.forgetBlock(userId, otherUserId);
      callback(null, {});
    },

    /**
     * Ends every delivery stream once its batches are answered (the grpc-js
     * server's shutdown waits for open calls), and lets the gateways end
     * theirs, up to `gatewayStreamsGraceMs`: a gateway that sees this server leave the
     * registry half-closes its stream, and every frame it sent before is
     * handled here before the stream ends (an UNAVAILABLE at once lost the
     * ones not yet read: a read receipt, a typing hint, a delivery ack,
     * which nothing sends again). Then the rest end with UNAVAILABLE, so
     * their gateways move the sessions elsewhere.
     */
    endAll() {
      for (const [call, state] of [...deliveryStreams]) {
        state.ending = true;
        if (state.batches === 0) endDeliveryStream(call);
      }
      return new Promise<void>((resolve) => {
        const breakRest = () => {
          clearTimeout(timer);
          streamGone = undefined;
          for (const call of [...streams]) {
            streams.delete(call);
            // grpc-js turns an emitted error into the stream's final status.
            call.emit("error", { code: status.UNAVAILABLE, details: "chat server stopped serving" });
          }
          resolve();
        };
        const timer = setTimeout(breakRest, gatewayStreamsGraceMs);
        streamGone = () => {
          if (streams.size === 0) breakRest();
        };
        streamGone();
      });
    },
  };
}
