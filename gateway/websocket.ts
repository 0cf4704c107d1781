import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import { Counter, Gauge, type Registry } from "prom-client";
import type { FrameEncoding, SessionHandle, SessionHost, SessionIdentity, SessionSink } from "../internal/chatserver/port.js";
import { CloseCode } from "../internal/model/close-codes.js";
import { ChatError, isChatError } from "../internal/model/errors.js";
import { monotonicNow } from "../internal/model/clock.js";
import { cutToUtf8Bytes } from "../internal/model/types.js";
import { countedFromZero } from "../internal/observability/metrics.js";
import type { AccessTokenVerifier } from "./auth.js";
import { Reauthenticator, reauthenticateIn } from "./reauth.js";
import type { SessionSlots } from "./session-slots.js";

export const PROTO_SUBPROTOCOL = "chat.v1.proto";
export const JSON_SUBPROTOCOL = "chat.v1.json";
/** Browsers cannot set headers on a WebSocket: the token may ride as a sub-protocol "bearer.<token>". */
const BEARER_PREFIX = "bearer.";

/**
 * Why a handshake was refused, each a series of gateway_handshakes_rejected_total at 0 from the
 * start: a bad URL, an origin not allowed, no framing offered, a token expired or otherwise refused.
 */
export const HANDSHAKE_REJECTIONS = ["url", "origin", "subprotocol", "expired", "token"] as const;
type HandshakeRejection = (typeof HANDSHAKE_REJECTIONS)[number];

export interface WebSocketGatewayOptions {
  path: string;
  verifier: AccessTokenVerifier;
  /** The chat server side: a local ChatServer in chatd, a gRPC stream otherwise. */
  host: SessionHost;
  maxFrameBytes: number;
  /** Browser origins allowed to connect; empty allows any (tokens are not cookies, so CSRF does not apply). */
  allowedOrigins?: readonly string[];
  logger?: Logger;
  registry?: Registry;
  /** The process's caps on open sessions per device and account, shared with its gRPC session service. */
  slots?: SessionSlots;
}

/**
 * The edge: terminates device WebSockets, authenticates them at the
 * handshake without a round trip, and attaches each to a chat server session.
 * Frames pass through as they are; the gateway never decodes them.
 */
export class WebSocketGateway {
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<WebSocket>();
  /**
   * Sockets refused after the upgrade (4001, 4002, 1001 while stopping), until they are gone: one whose
   * device never answers the close ws keeps 30 s, and with it the HTTP server's close, the stop.
   */
  private readonly refused = new Set<WebSocket>();
  /** Stopping: upgrades still answered are told 1001 at once, never placed on a chat server. */
  private closing = false;
  private readonly metrics?: { connections: Gauge; rejected: { inc(labels: { reason: HandshakeRejection }): void } };

  constructor(private readonly options: WebSocketGatewayOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
      WebSocket: DeviceSocket,
      // The client lists its sub-protocols by preference (RFC 6455 4.1): one offering both framings
      // was given JSON, the debugging one, even when it asked for binary first. The constant, not the
      // offered string: that is a slice of the whole header, which the socket then kept for its life,
      // bearer token and all (about 290 bytes a session).
      handleProtocols: (protocols) => {
        const picked = [...protocols].find((p) => p === PROTO_SUBPROTOCOL || p === JSON_SUBPROTOCOL);
        return picked === undefined ? false : picked === PROTO_SUBPROTOCOL ? PROTO_SUBPROTOCOL : JSON_SUBPROTOCOL;
      },
    });
    if (options.registry) {
      this.metrics = {
        connections: new Gauge({ name: "gateway_connections", help: "Open device WebSockets", registers: [options.registry] }),
        rejected: countedFromZero(
          new Counter({
            name: "gateway_handshakes_rejected_total",
            help: "WebSocket handshakes refused",
            labelNames: ["reason"],
            registers: [options.registry],
          }),
          "reason",
          HANDSHAKE_REJECTIONS,
        ),
      };
    }
  }

  /** Takes over upgrade requests for the gateway path on an HTTP server. */
  attach(server: Server): void {
    server.on("upgrade", (req, socket, head) => {
      // Node takes its own error listener off a socket before 'upgrade': until
      // ws adds one (or for a refused socket, for good) a reset by the client
      // would be an uncaught error, the end of the process.
      socket.on("error", destroyOnError);
      const url = parseRequestUrl(req.url);
      if (url === undefined) {
        this.metrics?.rejected.inc({ reason: "url" });
        refuse(socket, "400 Bad Request");
        return;
      }
      if (url.pathname !== this.options.path) {
        refuse(socket, "404 Not Found");
        return;
      }
      this.upgrade(req, socket, head, url);
    });
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const origin = req.headers.origin;
    const allowed = this.options.allowedOrigins ?? [];
    if (origin && allowed.length > 0 && !allowed.includes(origin)) {
      this.metrics?.rejected.inc({ reason: "origin" });
      refuse(socket, "403 Forbidden");
      return;
    }
    const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "");
    // A client that offers sub-protocols fails a socket that picks none of them (RFC 6455 4.1), so
    // one that offers neither framing (only its bearer token) would open a session it drops at once.
    if (offered.length > 0 && !offered.includes(PROTO_SUBPROTOCOL) && !offered.includes(JSON_SUBPROTOCOL)) {
      this.metrics?.rejected.inc({ reason: "subprotocol" });
      refuse(socket, "400 Bad Request", `offer the sub-protocol ${PROTO_SUBPROTOCOL} or ${JSON_SUBPROTOCOL} beside the bearer token`);
      return;
    }
    const token = offered.find((p) => p.startsWith(BEARER_PREFIX))?.slice(BEARER_PREFIX.length) ?? url.searchParams.get("access_token") ?? "";
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off("error", destroyOnError);
      // The socket is upgraded even when the token is bad, so that browsers,
      // which cannot read a refused handshake, see why in the close code.
      let claims;
      try {
        if (!token) throw new ChatError("unauthenticated", `missing access token (offer the sub-protocol ${BEARER_PREFIX}<token>)`);
        claims = this.options.verifier.verify(token);
      } catch (err) {
        const expired = isChatError(err, "token_expired");
        this.metrics?.rejected.inc({ reason: expired ? "expired" : "token" });
        // The verifier's words (missing, malformed, signed by an unknown key) tell a client
        // pointed at a gateway of another cluster what is wrong; they name no secret. A close
        // reason holds at most 123 bytes.
        const why = isChatError(err) && Buffer.byteLength(err.message) <= 123 ? err.message : "invalid access token";
        this.refuseSocket(ws, expired ? CloseCode.tokenExpired : CloseCode.unauthenticated, expired ? "access token expired" : why);
        return;
      }
      if (this.closing) {
        // Not placed on a chat server only to be cut: told, as every other device, to go elsewhere.
        this.refuseSocket(ws, CloseCode.goingAway, "gateway shutting down");
        return;
      }
      // Upgraded and then closed, as a bad token is, so a browser can read why: a handshake refused with 429 it cannot.
      const full = this.options.slots?.take(claims.userId, claims.deviceId);
      if (full !== undefined) {
        this.refuseSocket(ws, CloseCode.tooManySessions, full);
        return;
      }
      const encoding: FrameEncoding = ws.protocol === JSON_SUBPROTOCOL ? "json" : "proto";
      this.accept(ws, req, { ...claims, encoding });
    });
  }

  private refuseSocket(ws: WebSocket, code: number, reason: string): void {
    this.refused.add(ws);
    ws.once("close", () => this.refused.delete(ws));
    ws.close(code, reason);
  }

  private accept(
    ws: WebSocket,
    req: IncomingMessage,
    who: { userId: bigint; deviceId: bigint; expiresAtMs: number; encoding: FrameEncoding },
  ): void {
    const device = ws as DeviceSocket;
    this.sockets.add(device);
    this.metrics?.connections.inc();
    // The listeners keep this object, which the session keeps anyway, rather than `who` (the token's
    // claims): tens of thousands of idle sessions would each pay for a copy held for the rare Reauthenticate.
    const identity: SessionIdentity = { userId: who.userId, deviceId: who.deviceId, tokenExpiresAtMs: who.expiresAtMs, encoding: who.encoding };
    const handle = this.options.host.open(identity, new WebSocketSink(device, req.socket));
    device.gateway = this;
    device.handle = handle;
    device.identity = identity;
    // ws has no drain event of its own; the TCP socket underneath does. Bound, not a closure: no context kept.
    req.socket.on("drain", handle.drained.bind(handle));
    device.on("message", WebSocketGateway.onMessage);
    device.on("error", WebSocketGateway.onError);
    device.on("close", WebSocketGateway.onClose);
  }

  // The listeners of every accepted socket, shared (`this` is the socket): closures made per session
  // cost about 300 bytes each idle session, for four functions and the context they shared.

  private static onMessage(this: DeviceSocket, data: RawData, isBinary: boolean): void {
    const { gateway, handle, identity } = this;
    const bytes = data as Buffer;
    const frame = isBinary ? bytes : bytes.toString("utf8");
    const reauthenticate = reauthenticateIn(frame, identity!.encoding);
    if (!reauthenticate) return handle!.receive(frame);
    this.reauthenticator ??= new Reauthenticator(gateway!.options.verifier, identity!);
    handle!.reauthenticate(this.reauthenticator.check(reauthenticate));
  }

  private static onError(this: DeviceSocket, err: Error): void {
    this.gateway!.options.logger?.debug({ err }, "websocket error");
  }

  private static onClose(this: DeviceSocket): void {
    const gateway = this.gateway!;
    gateway.sockets.delete(this);
    gateway.metrics?.connections.dec();
    gateway.options.slots?.release(this.identity!.userId, this.identity!.deviceId);
    this.handle!.closed();
  }

  get maxFrameBytes(): number {
    return this.options.maxFrameBytes;
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Closes every socket with 1001 (clients reconnect) and stops accepting. */
  async close(): Promise<void> {
    this.closing = true;
    for (const ws of this.sockets) ws.close(CloseCode.goingAway, "gateway shutting down");
    // On the monotonic clock: a wall clock stepped back (NTP) meanwhile held the stop until every
    // device answered, or ws gave up on it after 30 s.
    const deadline = monotonicNow() + 2000;
    while (this.sockets.size + this.refused.size > 0 && monotonicNow() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const ws of [...this.sockets, ...this.refused]) ws.terminate();
    this.wss.close();
  }
}

/**
 * The WebSocket of a device placed on a chat server (ws makes every socket of
 * the gateway one): what its shared listeners need. Unset on a socket refused
 * after the upgrade, which has none of them.
 */
class DeviceSocket extends WebSocket {
  gateway?: WebSocketGateway;
  handle?: SessionHandle;
  identity?: SessionIdentity;
  /** Made on the session's first Reauthenticate only, so an idle session pays nothing for it. */
  reauthenticator?: Reauthenticator;

  /**
   * ws closes a socket whose frame breaks its rules with the code alone (receiverOnError), before
   * its error says why: the device was told 1009 or 1007 and not what it did wrong.
   */
  override close(code?: number, reason?: string | Buffer): void {
    const why = reason === undefined && code !== undefined ? socketLayerReason(code, this.gateway) : undefined;
    super.close(code, why ?? reason);
  }
}

/** The reason of a close ws makes for a frame it refuses (1002, 1007, 1008, 1009), as the close code table tells it. */
function socketLayerReason(code: number, gateway: WebSocketGateway | undefined): string | undefined {
  switch (code) {
    case 1002:
      return "the frame breaks the WebSocket protocol";
    case 1007:
      return "a text frame that is not UTF-8";
    case 1008:
      return "a message in too many fragments";
    case 1009:
      return `a frame larger than max_frame_bytes (${gateway?.maxFrameBytes ?? "the limit"})`;
    default:
      return undefined;
  }
}

/**
 * A device's socket as the session sees it. A class rather than an object of
 * three closures: one object per session instead of four, and under tsx
 * (which keeps function names) each named closure would also carry its own
 * property store, about 0.9 KB per session in all.
 */
class WebSocketSink implements SessionSink {
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
  ) {}

  send(frame: Uint8Array | string): void {
    this.ws.send(frame);
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  close(code: number, reason: string): void {
    // A chat server's close (another build's, say) is no reason for ws to throw, out of a stream's
    // listener: that was the end of the gateway and of every socket on it.
    this.ws.close(sendableCode(code), cutToUtf8Bytes(reason, MAX_CLOSE_REASON_BYTES));
  }

  holdInput(held: boolean): void {
    // TCP then holds the device back: its frames wait in the kernel's buffers, and then in its own.
    if (held) this.ws.pause();
    else this.ws.resume();
  }

  holdWrites(): void {
    if (held.has(this.socket)) return;
    // Writes to a corked socket queue up and leave in one writev on uncork;
    // a system call per frame is the largest single cost of a delivery.
    this.socket.cork();
    held.add(this.socket);
    // A tick queued now runs once the microtasks drain, after the deliveries' tick the commit queued
    // before the acks: an immediate held the frames back a whole turn of the event loop.
    if (held.size === 1) process.nextTick(releaseHeld);
  }
}

/** A close frame's reason is at most 123 bytes (RFC 6455 5.5): a longer one is cut, between characters. */
const MAX_CLOSE_REASON_BYTES = 123;

/** A code a close frame may carry (RFC 6455 7.4), as ws checks it; any other is sent as 1011. */
function sendableCode(code: number): number {
  const valid = (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
  return Number.isInteger(code) && valid ? code : CloseCode.internal;
}

/** Sockets corked by holdWrites, all uncorked by one tick queued after the deliveries they wait for. */
const held = new Set<Duplex>();

function releaseHeld(): void {
  for (const socket of held) socket.uncork();
  held.clear();
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** Answers an upgrade request it will not take with a bare status, and lets the socket go. */
function refuse(socket: Duplex, status: string, why = ""): void {
  const body = why && `${why}\n`;
  const head = body ? `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : "";
  // The HTTP server's sockets are half-open capable: end() alone sent our FIN and then waited for
  // the client's, so a client that never closed its side held the socket (a descriptor) for good.
  socket.once("finish", () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\n${head}Connection: close\r\n\r\n${body}`);
}

/** The request's URL, or undefined for a target no URL parser takes (`//[`): a bad request, never a thrown error. */
function parseRequestUrl(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? "/", "http://localhost");
  } catch {
    return undefined;
  }
}
