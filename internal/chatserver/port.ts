import type { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";

/**
 * How a transport (the gateway's WebSocket, the native gRPC stream, or the
 * internal gateway-to-chat-server stream) attaches a device's session to a
 * chat server. Frames cross this boundary encoded, as the device sent them,
 * so a gateway never decodes and re-encodes them.
 */
export type FrameEncoding = "proto" | "json";

export interface SessionIdentity {
  userId: Id;
  deviceId: Id;
  /**
   * When the session's access token expires: the session ends then, unless
   * the device hands it a fresh one first (Reauthenticate), which moves this.
   */
  tokenExpiresAtMs: number;
  encoding: FrameEncoding;
}

/** What the transport offers the session. */
export interface SessionSink {
  /** Encoded ServerFrame: bytes for "proto", a string for "json". */
  send(frame: Uint8Array | string): void;
  /** Bytes queued towards the device and not yet written to the network. */
  bufferedBytes(): number;
  close(code: number, reason: string): void;
  /**
   * Optional: the device's own buffer further down (the gateway's socket) is
   * full. Live pushes wait until drained(); it is not a reason to close, as
   * the holder of that buffer enforces its cap itself.
   */
  paused?(): boolean;
  /**
   * Optional: holds this session's writes until the ticks queued so far have
   * run (`process.nextTick`, after the microtasks), so that frames sent close
   * together (a send's ack, then its own inbox copy, pushed in the commit's
   * delivery tick) leave in one write call, in the same turn of the event loop.
   */
  holdWrites?(): void;
  /**
   * Optional: the way on from here is backed up (the gateway's stream to the
   * chat server): stop reading the device's frames (true) until it drains
   * (false), so that the transport's own flow control holds the device back
   * instead of a buffer here growing without bound.
   */
  holdInput?(held: boolean): void;
  /**
   * Optional: the session's chat server went away and the session has been
   * opened on another, or waits for one (the gateway's failover). What the
   * device sent that the old server had not answered will never be
   * answered: a device that cannot send it again (a half-closed native gRPC
   * stream) needs its transport to.
   */
  moved?(): void;
}

/**
 * The gateway's verdict on a Reauthenticate frame: the gateway holds the
 * keys and checks the token; the session answers the device in its order.
 */
export type Reauthentication = { ref: bigint } & ({ expiresAtMs: number } | { refused: ChatError });

/** What the session offers the transport. */
export interface SessionHandle {
  /** One encoded ClientFrame (never a Reauthenticate: that comes checked, through reauthenticate). */
  receive(frame: Uint8Array | string): void;
  /** A Reauthenticate frame, checked by the transport. */
  reauthenticate(verdict: Reauthentication): void;
  /** The sink's buffer went back under its low-water mark. */
  drained(): void;
  /** The transport is gone (the device disconnected or the sink was closed). */
  closed(): void;
}

export interface SessionHost {
  open(identity: SessionIdentity, sink: SessionSink): SessionHandle;
}
