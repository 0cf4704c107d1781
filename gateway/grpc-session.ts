import { setMaxListeners } from "node:events";
import type { IncomingMessage } from "node:http";
import http2, { type Http2ServerRequest, type ServerHttp2Stream } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type ServiceImpl } from "@connectrpc/connect";
import {
  ClientFrameSchema,
  ConnectResponseSchema,
  ServerFrameSchema,
  SessionService,
  type ClientFrame,
  type ConnectRequest,
  type ConnectResponse,
  type ServerFrame,
} from "../gen/es/chat/v1/session_pb.js";
import { ErrorCode } from "../gen/es/chat/v1/types_pb.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { isChatError } from "../internal/model/errors.js";
import { STRICT_JSON_OPTIONS } from "../internal/wire/json-integers.js";
import { DRAIN_GRACE_MS } from "../internal/observability/lifecycle.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import type { AccessTokenVerifier } from "./auth.js";
import { Reauthenticator } from "./reauth.js";
import type { SessionSlots } from "./session-slots.js";

/** How a session's close code ends a gRPC stream. */
function statusOf(code: number): Code {
  switch (code) {
    case CloseCode.unauthenticated:
    case CloseCode.tokenExpired:
    case CloseCode.loggedOut:
      return Code.Unauthenticated;
    case CloseCode.rateLimited:
    case CloseCode.tooManySessions:
    case CloseCode.tooSlow:
    case CloseCode.tooBig:
      return Code.ResourceExhausted;
    case CloseCode.badFrames:
    case CloseCode.invalidPayload:
      return Code.InvalidArgument;
    case CloseCode.normal:
      return Code.Canceled;
    default:
      return Code.Unavailable;
  }
}

/** The trailer that carries a session's close code on a stream that ended with an error status. */
export const CLOSE_CODE_TRAILER = "chat-close-code";

/**
 * The error status a session's close ends its stream with. The code also
 * rides as a trailer: grpc-js reads grpc-message with decodeURI, which
 * leaves the ":" that Connect encoded as %3A.
 */
function closed(code: number, reason: string): ConnectError {
  // A decoder's reason may quote the client's own input at any length: grpc-message is cut (withSpecGrpcMessages).
  return new ConnectError(`close ${code}: ${reason}`, statusOf(code), { [CLOSE_CODE_TRAILER]: String(code) });
}

/** What a ConnectRequest in JSON adds around its frame's JSON, as Connect writes it: `{"frame":` and `}`. */
const JSON_WRAPPING_BYTES = '{"frame":}'.length;

/**
 * The readMaxBytes of a listener serving SessionService whose sessions take
 * client frames of up to `maxFrameBytes` (the limit the Welcome tells, and a
 * WebSocket's maxPayload): a ConnectRequest is its ClientFrame and, in binary,
 * the field's tag and length, in JSON `{"frame":` and `}`, the larger. At
 * `maxFrameBytes` itself, a frame within the limit the client was told was
 * refused with 1009 (a JSON one up to 6 bytes under it, when this counted
 * the binary wrapping alone). A binary frame past the limit that the JSON
 * room lets through is refused by the session (SessionServiceOptions.maxFrameBytes).
 */
export function readMaxBytesFor(maxFrameBytes: number): number {
  let lengthBytes = 1;
  for (let n = maxFrameBytes; n >= 0x80; n = Math.floor(n / 0x80)) lengthBytes++;
  return maxFrameBytes + Math.max(1 + lengthBytes, JSON_WRAPPING_BYTES);
}

/** connectNodeAdapter's `jsonOptions` for a listener serving SessionService: read as the api's and a WebSocket's JSON (STRICT_JSON_OPTIONS). */
export const SESSION_JSON_OPTIONS = STRICT_JSON_OPTIONS;

const callStreamKey = createContextKey<ServerHttp2Stream | undefined>(undefined, { description: "the call's HTTP/2 stream" });

/**
 * connectNodeAdapter's `contextValues` for a listener that serves
 * SessionService, around the ones it has already: it lets a session reset its
 * call's HTTP/2 stream, which nothing in Connect can do for a handler.
 */
export function withCallStream(
  values?: (req: IncomingMessage | Http2ServerRequest) => ContextValues,
): (req: IncomingMessage | Http2ServerRequest) => ContextValues {
  return (req) => {
    const v = values?.(req) ?? createContextValues();
    return "stream" in req ? v.set(callStreamKey, req.stream) : v;
  };
}

export interface SessionServiceOptions {
  /**
   * How long after a session's close its stream may stay open: for the
   * client to be handed what is queued for it and the status, and to
   * half-close. Then the stream is reset. Needs `withCallStream` on the
   * listener. DRAIN_GRACE_MS by default: as long as a stopping listener
   * waits before cutting its connections, so neither cuts the other short.
   */
  closeGraceMs?: number;
  /**
   * Aborted as the gateway stops: every stream ends with close 1001 at once, as every WebSocket
   * is told, and one opened after is refused so, never placed on a chat server.
   */
  stopping?: AbortSignal;
  /** The process's caps on open sessions per device and account, shared with its WebSocket gateway. */
  slots?: SessionSlots;
  /**
   * The largest client frame taken (the limit the Welcome tells): a binary
   * frame past it is refused with 1009 here, since the listener's
   * readMaxBytesFor leaves room for the larger wrapping of a JSON one.
   */
  maxFrameBytes?: number;
}

/**
 * Client frames that the session answers, by their ref: sends, syncs,
 * heartbeats and new tokens, and a frame of no kind, which is answered with
 * an error.
 */
const KIND_ASKS = ["send", "sync", "heartbeat", "reauthenticate"] as const;
const ASKS = ["kindless", ...KIND_ASKS] as const;
type Ask = (typeof ASKS)[number];
const askOf = (kind: ClientFrame["kind"]["case"]): Ask | undefined =>
  kind === undefined ? "kindless" : KIND_ASKS.find((ask) => ask === kind);

const SYNC_KIND = ClientFrameSchema.field.sync!.number;

/** The ask of each Error.refused_kind: the number of its field in ClientFrame.kind. */
const ASK_OF_KIND = new Map<number, Ask>(KIND_ASKS.map((ask) => [ClientFrameSchema.field[ask]!.number, ask]));

/**
 * The asks a frame may answer, the first pending under its ref taken: none
 * for a frame that answers nothing; for an error, the ask of the kind it
 * refuses (none when it refuses a frame that asks nothing, say a read: with
 * both at ref 0 it is not the answer to a send). An error of kind 0 refuses
 * a frame of no kind, or comes from a chat server too old to say the kind,
 * and then may answer any.
 */
function answered(frame: ServerFrame): readonly Ask[] {
  const { kind } = frame;
  switch (kind.case) {
    case "sendAck":
      return ["send"];
    case "heartbeatAck":
      return ["heartbeat"];
    case "reauthenticated":
      return ["reauthenticate"];
    case "syncBatch":
      return kind.value.hasMore ? [] : ["sync"];
    case "error": {
      if (kind.value.refusedKind === 0) return ASKS; // a frame of no kind first
      const ask = ASK_OF_KIND.get(kind.value.refusedKind);
      return ask ? [ask] : [];
    }
    default:
      return [];
  }
}

/** An ask not answered yet, and how to ask it again. */
interface Asked {
  readonly order: number;
  readonly askAgain: () => void;
  /** A send's client_msg_id, which makes two sends the same under any ref; "" for the other asks. */
  readonly what: string;
  /** Asked of a chat server that went away before it answered: no answer will come unless asked again. */
  lost: boolean;
}

/**
 * Asks not answered yet, by kind and ref. Refs are the client's: they may
 * repeat, and may be 0 (a field left unset), the ref of pushed frames too,
 * so a pushed SyncBatch settles no heartbeat.
 */
class Unanswered {
  private readonly refs = new Map<Ask, Map<bigint, Asked[]>>();
  private count = 0;
  private order = 0;

  get size(): number {
    return this.count;
  }

  /** Returns the ref of the lost ask this one takes the place of, if any. */
  add(ask: Ask, ref: bigint, what: string, askAgain: () => void): bigint | undefined {
    const refs = this.refs.get(ask) ?? new Map<bigint, Asked[]>();
    this.refs.set(ask, refs);
    const asked = refs.get(ref) ?? [];
    refs.set(ref, asked);
    const entry = { order: this.order++, askAgain, what, lost: false };
    // The client asked again what its session's old server left unanswered (it saw the
    // second Welcome): that ask is not ours to repeat. A send only as the same message (its
    // client_msg_id, under any ref: a client that numbers its frames sends again under a new
    // one; with none, under its own): with refs all 0, a new send took the place of the lost
    // one, which then was never sent again. Any other ask takes the place of a lost one of
    // its kind under any ref: the newest heartbeat, sync and token are all the client
    // needs answered (a newer sync supersedes an older one on the chat server too), and the
    // gateway cannot tell one asked again under a new ref from a new one. Kept, each such
    // lost ask stayed for the stream's life, one more with every move, and was asked again
    // at a half-close, answered twice. The caller answers the lost one's ref, which waits on no server now.
    const sameMessage = ask === "send";
    for (const [lostRef, list] of sameMessage && what === "" ? [[ref, asked] as const] : refs) {
      const lost = list.findIndex((a) => a.lost && (!sameMessage || a.what === what));
      if (lost < 0) continue;
      list.splice(lost, 1);
      if (list.length === 0 && lostRef !== ref) refs.delete(lostRef);
      asked.push(entry);
      return lostRef;
    }
    asked.push(entry);
    this.count++;
    return undefined;
  }

  /** Takes `frame` for the answer to the first ask pending under its ref that it may answer; returns that ask's kind. */
  settle(frame: ServerFrame): Ask | undefined {
    for (const kind of answered(frame)) {
      const refs = this.refs.get(kind);
      const asked = refs?.get(frame.ref);
      // A lost ask was asked of no server since the move, so nothing that arrives answers it: taken
      // for the answer to a newer ask under its ref, it was never sent again and that one waited for good.
      const i = asked?.findIndex((a) => !a.lost) ?? -1;
      if (refs === undefined || asked === undefined || i < 0) continue;
      asked.splice(i, 1);
      if (asked.length === 0) refs.delete(frame.ref);
      this.count--;
      return kind;
    }
    return undefined;
  }

  /** The session moved to another chat server: what the old one did not answer it never will. */
  lose(): void {
    for (const refs of this.refs.values()) for (const asked of refs.values()) for (const a of asked) a.lost = true;
  }

  /** Asks again, in the order they were first asked, what was lost in a move. */
  askLostAgain(): void {
    const lost: Asked[] = [];
    for (const refs of this.refs.values()) for (const asked of refs.values()) lost.push(...asked.filter((a) => a.lost));
    lost.sort((x, y) => x.order - y.order);
    for (const a of lost) {
      a.lost = false;
      a.askAgain();
    }
  }
}

/**
 * SessionService.Connect: the realtime session as a gRPC bidi stream for
 * native apps, on the same SessionHost as the WebSocket gateway. The close
 * code of the session ends the stream as a status whose message starts with
 * "close <code>:", so clients can branch exactly as on a WebSocket. A client
 * that half-closes (grpcurl reading frames from a file) is done asking, not
 * listening: the stream ends once the welcome is out and everything it asked
 * is answered. It cannot ask again what a chat server that died left
 * unanswered, as a client that sees the second Welcome does: the gateway
 * does it for it (a send is idempotent by its client_msg_id).
 */
export function sessionService(
  host: SessionHost,
  verifier: AccessTokenVerifier,
  { closeGraceMs = DRAIN_GRACE_MS, stopping, slots, maxFrameBytes }: SessionServiceOptions = {},
): ServiceImpl<typeof SessionService> {
  // Each open stream listens on it: past ten, Node warned of a listener leak that was none.
  if (stopping) setMaxListeners(0, stopping);
  return {
    async *connect(requests: AsyncIterable<ConnectRequest>, ctx): AsyncGenerator<ConnectResponse> {
      const callStream = ctx.values.get(callStreamKey);
      const binary = maxFrameBytes !== undefined && !/json/i.test(ctx.requestHeader.get("content-type") ?? "");
      let resetTimer: NodeJS.Timeout | undefined;
      /**
       * A stream outlives its session by at most closeGraceMs, as a WebSocket
       * its close by 30 s: a client that was sent its status but keeps its
       * side open is held back by flow control (its requests are no longer
       * read) and then reset with NO_ERROR, which RFC 9113 (8.1) lets a
       * server send once its response is complete; one that did not read
       * what was queued is reset with CANCEL, its status never sent.
       */
      const resetAfterGrace = () => {
        if (!callStream || callStream.closed || resetTimer) return;
        resetTimer = setTimeout(() => {
          if (callStream.closed) return;
          callStream.close(callStream.state.localClose ? http2.constants.NGHTTP2_NO_ERROR : http2.constants.NGHTTP2_CANCEL);
          // After NO_ERROR, Node keeps the stream until the request data it holds is read, which
          // nothing will now do: the HTTP/2 session would never see its socket close.
          callStream.destroy();
        }, closeGraceMs);
        resetTimer.unref();
        callStream.once("close", () => clearTimeout(resetTimer));
      };
      const refuse = (code: number, reason: string) => {
        resetAfterGrace();
        return closed(code, reason);
      };

      const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.requestHeader.get("authorization") ?? "");
      if (!m) throw refuse(CloseCode.unauthenticated, 'missing "authorization: Bearer <access token>"');
      let claims;
      try {
        claims = verifier.verify(m[1]!);
      } catch (err) {
        const expired = isChatError(err, "token_expired");
        throw refuse(expired ? CloseCode.tokenExpired : CloseCode.unauthenticated, isChatError(err) ? err.message : "invalid access token");
      }
      if (stopping?.aborted) throw refuse(CloseCode.goingAway, "gateway shutting down");
      const full = slots?.take(claims.userId, claims.deviceId);
      if (full !== undefined) throw refuse(CloseCode.tooManySessions, full);

      /**
       * Frames waiting for the client to read, as the chat server encoded them, decoded again as
       * each is written: the cap (bufferedBytes) counts bytes, and a decoded ServerFrame kept
       * beside them took 9 to 36 times as much (a SyncBatch page, a TypingEvent), so a slow
       * reader held that many times the cap. `ref`: the client's, for a sync's answer. `frame`:
       * the decoded form, kept for the head of the line only.
       */
      const out: { bytes: Uint8Array; ref?: bigint; frame?: ServerFrame }[] = [];
      let buffered = 0;
      let ended: { code: number; reason: string } | undefined;
      let welcomed = false;
      let halfClosed = false;
      const awaiting = new Unanswered();
      let wake: (() => void) | undefined;
      /** While set, the chat server's stream is backed up: the client's next frame is not read until it resolves. */
      let inputHeld: { until: Promise<void>; release: () => void } | undefined;
      const holdInput = (held: boolean) => {
        if (held && !inputHeld) {
          let release!: () => void;
          const until = new Promise<void>((r) => (release = r));
          inputHeld = { until, release };
        } else if (!held && inputHeld) {
          inputHeld.release();
          inputHeld = undefined;
        }
      };
      const notify = () => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        slots?.release(claims.userId, claims.deviceId);
        handle.closed();
      };
      /**
       * Ends the session. A client that stopped reading keeps this generator
       * parked at its yield (Connect's write waits for a drain), so the host
       * lets go of the session now rather than in `finally`.
       */
      const end = (code: number, reason: string) => {
        if (ended) return;
        ended = { code, reason };
        holdInput(false);
        // A host may close a session inside open(), before `handle` is set.
        queueMicrotask(release);
        resetAfterGrace();
        notify();
      };
      const handle = host.open(
        { userId: claims.userId, deviceId: claims.deviceId, tokenExpiresAtMs: claims.expiresAtMs, encoding: "proto" },
        {
          send: (encoded) => {
            const bytes = encoded as Uint8Array;
            let frame: ServerFrame;
            try {
              frame = fromBinary(ServerFrameSchema, bytes);
            } catch (err) {
              // Thrown from here it would break the chat server stream that every other session shares.
              return end(CloseCode.internal, `the chat server sent a frame that is not a ServerFrame: ${(err as Error).message}`);
            }
            // Settled as it arrives, not as it is written: an answer from the old server
            // still queued here when the session moves is no lost ask to repeat.
            const settled = awaiting.settle(frame);
            const { kind } = frame;
            // A chat server too old to say what it refused (refused_kind 0) answers a sync so too: taken
            // for the sync's answer, its ref goes back to the client's, and the gateway's is let go of
            // (kept, one stayed for the stream's life per sync refused).
            const refusesSync = kind.case === "error" && (kind.value.refusedKind === SYNC_KIND || (kind.value.refusedKind === 0 && settled === "sync"));
            const answersSync = kind.case === "syncBatch" || refusesSync;
            const clientRef = answersSync ? syncRefs.get(frame.ref) : undefined;
            if (clientRef !== undefined && (kind.case === "error" || (kind.case === "syncBatch" && !kind.value.hasMore))) syncRefs.delete(frame.ref);
            if (clientRef !== undefined) frame.ref = clientRef;
            // The one a waiting writer takes at once keeps its decoded form (no second decode on the
            // common path); those behind it, a backlog, keep their bytes only.
            out.push(out.length === 0 ? { bytes, frame } : clientRef === undefined ? { bytes } : { bytes, ref: clientRef });
            buffered += bytes.byteLength;
            notify();
          },
          bufferedBytes: () => buffered,
          close: end,
          // HTTP/2 flow control then holds the client back.
          holdInput,
          moved: () => {
            if (ended) return;
            awaiting.lose();
            if (halfClosed) awaiting.askLostAgain();
          },
        },
      );

      /**
       * Each SyncRequest goes to the chat server under a ref of the gateway's, never 0, and its
       * answer comes back under the client's: a catch-up page the server pushes on its own carries
       * ref 0 and says has_more=false as the last page of an answer does, so one that crossed a
       * SyncRequest with ref 0 was taken for its answer, and a half-closed stream ended before it.
       */
      const syncRefs = new Map<bigint, bigint>();
      let nextSyncRef = 1n;
      /** Answers, under the client's ref, an ask lost in a move that a newer one of its kind took the place of. */
      const answerSuperseded = (ref: bigint, ask: Ask) => {
        const refusedKind = ask === "kindless" ? 0 : ClientFrameSchema.field[ask]!.number;
        const message = `the session moved to another chat server before this ${ask === "kindless" ? "frame" : ask} was answered, and a newer one took its place: that one's answer stands for both; no need to ask again or reconnect`;
        const frame = create(ServerFrameSchema, { ref, kind: { case: "error", value: { code: ErrorCode.SUPERSEDED, message, refusedKind } } });
        const bytes = toBinary(ServerFrameSchema, frame);
        out.push(out.length === 0 ? { bytes, frame } : { bytes });
        buffered += bytes.byteLength;
        notify();
      };
      let reauthenticator: Reauthenticator | undefined;
      // Reading the client's frames runs beside writing ours.
      const reading = (async () => {
        try {
          for await (const req of requests) {
            // A closed session takes no more frames, and nothing is read for it: flow control
            // holds the client back until the stream is reset. (Leaving the loop lets go of the
            // request, not of the stream: the status still goes out.)
            if (ended) return;
            // A request with no frame is an empty frame to the session, which counts it against
            // the rate and as a bad frame: skipped here, it let a client flood the stream unchecked.
            const frame = req.frame ?? create(ClientFrameSchema);
            // Encoded again to the bytes the client sent (unknown fields are kept): the listener's
            // limit has room for a JSON request's wrapping, larger than a binary one's.
            const sent = binary ? toBinary(ClientFrameSchema, frame) : undefined;
            if (sent && maxFrameBytes !== undefined && sent.byteLength > maxFrameBytes) {
              throw new ConnectError(`a frame of ${sent.byteLength} bytes is larger than max_frame_bytes (${maxFrameBytes})`, Code.ResourceExhausted);
            }
            let askAgain: () => void;
            let what = "";
            const clientRef = frame.ref;
            if (frame.kind.case === "reauthenticate") {
              reauthenticator ??= new Reauthenticator(verifier, claims);
              // Asked again, the verdict is not checked again: the once-a-second limit would refuse it.
              const verdict = reauthenticator.check({ ref: frame.ref, accessToken: frame.kind.value.accessToken });
              askAgain = () => handle.reauthenticate(verdict);
            } else {
              if (frame.kind.case === "send") what = frame.kind.value.clientMsgId;
              if (frame.kind.case === "sync") {
                syncRefs.set(nextSyncRef, frame.ref);
                frame.ref = nextSyncRef++;
              }
              // A sync's ref was renumbered above: its bytes are not the client's.
              const bytes = sent && frame.kind.case !== "sync" ? sent : toBinary(ClientFrameSchema, frame);
              askAgain = () => handle.receive(bytes);
            }
            const ask = askOf(frame.kind.case);
            const replaced = ask && awaiting.add(ask, frame.ref, what, askAgain);
            if (ask && replaced !== undefined) {
              // The lost ask's answer will never come, nor is it asked again: a client waiting on its ref
              // (one that numbers its frames asked anew under a new one) is told so now. Under the same
              // ref the newer answer is its answer; a send's ack names its message, answering it under any.
              const lostClientRef = frame.kind.case === "sync" ? syncRefs.get(replaced) : replaced;
              if (frame.kind.case === "sync") syncRefs.delete(replaced);
              if (ask !== "send" && lostClientRef !== undefined && lostClientRef !== clientRef) answerSuperseded(lostClientRef, ask);
            }
            askAgain();
            if (inputHeld) await inputHeld.until;
          }
          halfClosed = true;
          if (!ended) awaiting.askLostAgain();
        } catch (err) {
          // A client that went away is seen through ctx.signal; anything else
          // is a frame too large or not a ConnectRequest, and the client must
          // learn it was refused rather than see a normal end.
          if (!ctx.signal.aborted) {
            const refused = ConnectError.from(err);
            if (refused.code === Code.ResourceExhausted) end(CloseCode.tooBig, refused.rawMessage);
            else end(CloseCode.invalidPayload, `not a ConnectRequest: ${refused.rawMessage}`);
          }
        }
        notify();
      })();
      const onAbort = () => end(CloseCode.normal, "client cancelled");
      ctx.signal.addEventListener("abort", onAbort);
      const onStop = () => end(CloseCode.goingAway, "gateway shutting down");
      stopping?.addEventListener("abort", onStop);

      try {
        for (;;) {
          while (out.length > 0) {
            const { bytes, ref, frame: decoded } = out.shift()!;
            buffered -= bytes.byteLength;
            // One kept as bytes was read once as it came: it reads again.
            const frame = decoded ?? fromBinary(ServerFrameSchema, bytes);
            if (ref !== undefined) frame.ref = ref;
            if (frame.kind.case === "welcome") welcomed = true;
            yield create(ConnectResponseSchema, { frame });
            if (buffered === 0) handle.drained();
          }
          if (!ended && halfClosed && welcomed && awaiting.size === 0) ended = { code: CloseCode.normal, reason: "client closed the stream" };
          if (ended) break;
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        stopping?.removeEventListener("abort", onStop);
        holdInput(false);
        release();
        void reading;
      }
      if (ended.code !== CloseCode.normal) {
        throw closed(ended.code, ended.reason);
      }
    },
  };
}
