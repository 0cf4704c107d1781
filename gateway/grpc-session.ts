import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ClientFrameSchema,
  ConnectResponseSchema,
  ServerFrameSchema,
  SessionService,
  type ConnectRequest,
  type ConnectResponse,
} from "../gen/es/chat/v1/session_pb.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { isChatError } from "../internal/model/errors.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import type { AccessTokenVerifier } from "./auth.js";

/** How a session's close code ends a gRPC stream. */
function statusOf(code: number): Code {
  switch (code) {
    case CloseCode.unauthenticated:
    case CloseCode.tokenExpired:
    case CloseCode.loggedOut:
      return Code.Unauthenticated;
    case CloseCode.rateLimited:
    case CloseCode.tooSlow:
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

/**
 * SessionService.Connect: the realtime session as a gRPC bidi stream for
 * native apps, on the same SessionHost as the WebSocket gateway. The close
 * code of the session ends the stream as a status whose message starts with
 * "close <code>:", so clients can branch exactly as on a WebSocket.
 */
export function sessionService(
  host: SessionHost,
  verifier: AccessTokenVerifier,
): ServiceImpl<typeof SessionService> {
  return {
    async *connect(requests: AsyncIterable<ConnectRequest>, ctx): AsyncGenerator<ConnectResponse> {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.requestHeader.get("authorization") ?? "");
      if (!m) throw new ConnectError('missing "authorization: Bearer <access token>"', Code.Unauthenticated);
      let claims;
      try {
        claims = verifier.verify(m[1]!);
      } catch (err) {
        throw new ConnectError(isChatError(err) ? err.message : "invalid access token", Code.Unauthenticated);
      }

      const out: Uint8Array[] = [];
      let buffered = 0;
      let ended: { code: number; reason: string } | undefined;
      let wake: (() => void) | undefined;
      const notify = () => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const handle = host.open(
        { userId: claims.userId, deviceId: claims.deviceId, tokenExpiresAtMs: claims.expiresAtMs, encoding: "proto" },
        {
          send: (frame) => {
            const bytes = frame as Uint8Array;
            out.push(bytes);
            buffered += bytes.byteLength;
            notify();
          },
          bufferedBytes: () => buffered,
          close: (code, reason) => {
            ended ??= { code, reason };
            notify();
          },
        },
      );

      // Reading the client's frames runs beside writing ours.
      const reading = (async () => {
        try {
          for await (const req of requests) {
            if (!req.frame) continue;
            handle.receive(toBinary(ClientFrameSchema, req.frame));
          }
        } catch {
          // the client went away; the writer below sees ctx.signal
        }
        ended ??= { code: CloseCode.normal, reason: "client closed the stream" };
        notify();
      })();
      const onAbort = () => {
        ended ??= { code: CloseCode.normal, reason: "client cancelled" };
        notify();
      };
      ctx.signal.addEventListener("abort", onAbort);

      try {
        for (;;) {
          while (out.length > 0) {
            const bytes = out.shift()!;
            buffered -= bytes.byteLength;
            yield create(ConnectResponseSchema, { frame: fromBinary(ServerFrameSchema, bytes) });
            if (buffered === 0) handle.drained();
          }
          if (ended) break;
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        handle.closed();
        void reading;
      }
      if (ended.code !== CloseCode.normal) {
        throw new ConnectError(`close ${ended.code}: ${ended.reason}`, statusOf(ended.code));
      }
    },
  };
}
