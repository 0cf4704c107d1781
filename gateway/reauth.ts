import { ChatError, isChatError } from "../internal/model/errors.js";
import type { FrameEncoding, Reauthentication } from "../internal/chatserver/port.js";
import { ClientFrameSchema } from "../gen/es/chat/v1/session_pb.js";
import { decodeClientFrame } from "../internal/chatserver/codec.js";
import { clientFrameKind } from "../internal/wire/client-frame-kind.js";
import type { AccessTokenVerifier } from "./auth.js";

/** A session checks at most one new token in this long: a signature check is the dearest thing a frame can ask of a gateway. */
export const REAUTHENTICATE_INTERVAL_MS = 1000;

/** A rate is timed on a clock that never steps: a wall clock stepped back an hour (NTP, a restored VM) refused every new token for that hour. */
const monotonicNow = (): number => performance.now();

const REAUTHENTICATE_KIND = ClientFrameSchema.field.reauthenticate!.number;
/** The field numbers of ClientFrame.kind, and 0 for none. */
const KINDS = new Set([0, ...ClientFrameSchema.oneofs.find((o) => o.name === "kind")!.fields.map((f) => f.number)]);

export interface ReauthenticateAsk {
  ref: bigint;
  accessToken: string;
}

/**
 * The Reauthenticate in a device's frame, if that is what the frame is. Any
 * other frame, or one that cannot be read, is the chat server's to answer,
 * so it is passed on undecoded: a binary frame's kind is read from its
 * top-level tags, and only a JSON text that may name the kind is parsed here.
 */
export function reauthenticateIn(data: Uint8Array | string, encoding: FrameEncoding): ReauthenticateAsk | undefined {
  if (encoding === "json") {
    const text = typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
    // A letter of the key may be written as a \u escape, which the chat server's
    // decoder reads as the letter: it would refuse the frame as one that came round the gateway.
    if (!text.includes("reauthenticate") && !text.includes("\\u")) return undefined;
  } else if (typeof data === "string") {
    return undefined;
  } else {
    const kind = clientFrameKind(data);
    // The last length-delimited field names the kind only if it is one of the kind's: a field of a newer
    // ClientFrame after the kind (which the chat server's decoder skips) leaves it to the decoder to say.
    if (kind === undefined || (KINDS.has(kind) && kind !== REAUTHENTICATE_KIND)) return undefined;
  }
  try {
    const frame = decodeClientFrame(data, encoding);
    return frame.kind.case === "reauthenticate" ? { ref: frame.ref, accessToken: frame.kind.value.accessToken } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks the new access tokens of one session's device. Made on a session's
 * first Reauthenticate only, so an idle session pays nothing for it.
 */
export class Reauthenticator {
  private lastAtMs = -Infinity;

  constructor(
    private readonly verifier: AccessTokenVerifier,
    private readonly who: { userId: bigint; deviceId: bigint },
    private readonly now: () => number = monotonicNow,
  ) {}

  check({ ref, accessToken }: ReauthenticateAsk): Reauthentication {
    const now = this.now();
    const waitMs = this.lastAtMs + REAUTHENTICATE_INTERVAL_MS - now;
    if (waitMs > 0) return { ref, refused: new ChatError("rate_limited", "at most one Reauthenticate a second", Math.ceil(waitMs)) };
    this.lastAtMs = now;
    let claims;
    try {
      claims = this.verifier.verify(accessToken);
    } catch (err) {
      return { ref, refused: isChatError(err) ? err : new ChatError("unauthenticated", "invalid access token") };
    }
    if (claims.userId !== this.who.userId || claims.deviceId !== this.who.deviceId) {
      return { ref, refused: new ChatError("permission_denied", "the access token is another device's: a session keeps the device it was opened for") };
    }
    return { ref, expiresAtMs: claims.expiresAtMs };
  }
}
