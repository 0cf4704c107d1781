import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, type InboxEntry } from "../../gen/es/chat/v1/types_pb.js";

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export const now = (): number => performance.timeOrigin + performance.now();

/** One session the load generator drives: a device of a user, with its token. */
export interface SessionSpec {
  /** Global index of the session in the run (also names the sender in message keys). */
  g: number;
  userId: string;
  token: string;
}

/** A send this session owes: kept until acked, sent again (same client_msg_id) after a reconnect. */
export interface PendingSend {
  key: number;
  clientMsgId: string;
  channelId: bigint;
  text: string;
  /** When the open-loop schedule wanted it sent: latency is measured from here. */
  t0: number;
  attempts: number;
}

export interface SessionHooks {
  onEntry(s: BenchSession, entry: InboxEntry, at: number): void;
  onAck(s: BenchSession, p: PendingSend, at: number): void;
  onSendError(s: BenchSession, p: PendingSend, code: ErrorCode, message: string): void;
  onClose(s: BenchSession, code: number, wasOpen: boolean): void;
}

export interface ConnectOptions {
  url: string;
  localAddress?: string;
  timeoutMs: number;
  ackDelayMs: number;
}

/**
 * A lightweight device: keeps only its cursor, its unacked sends and what
 * the scenario needs, not every frame (tens of thousands of these share one
 * process). Entries at or below the cursor are repeats and are dropped, as the
 * protocol tells clients to; acks are coalesced the way a real client does.
 */
export class BenchSession {
  ws?: WebSocket;
  open = false;
  cursor = 0n;
  /** head_inbox_seq of the last Welcome: the session is synced once its cursor reaches it. */
  headAtWelcome = 0n;
  welcomeAt = 0;
  syncedAt = 0;
  heartbeatMs = 25_000;
  nextHeartbeatAt = 0;
  lastCloseCode = 0;
  private nextRef = 1n;
  private readonly pending = new Map<bigint, PendingSend>();
  /** Sends waiting for the socket (not connected, or between a drop and the next Welcome). */
  private outbox: PendingSend[] = [];
  private ackTimer?: NodeJS.Timeout;
  private ackDelayMs = 250;

  constructor(
    readonly spec: SessionSpec,
    private readonly hooks: SessionHooks,
  ) {}

  get g(): number {
    return this.spec.g;
  }

  get unacked(): number {
    return this.pending.size + this.outbox.length;
  }

  /** Opens the socket; resolves at the Welcome, rejects if the socket closes first or the timeout passes. */
  connect(o: ConnectOptions): Promise<void> {
    this.ackDelayMs = o.ackDelayMs;
    const ws = new WebSocket(o.url, ["chat.v1.proto", `bearer.${this.spec.token}`], {
      localAddress: o.localAddress,
      perMessageDeflate: false,
      handshakeTimeout: o.timeoutMs,
    });
    this.ws = ws;
    this.open = false;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(new Error("no Welcome in time"));
      }, o.timeoutMs);
      ws.on("message", (data: Buffer) => {
        if (this.ws !== ws) return;
        const frame = fromBinary(ServerFrameSchema, data);
        const at = now();
        switch (frame.kind.case) {
          case "welcome": {
            const w = frame.kind.value;
            this.open = true;
            this.welcomeAt = at;
            this.headAtWelcome = w.headInboxSeq;
            this.heartbeatMs = w.heartbeatIntervalMs || 25_000;
            // Spread heartbeats over the interval so they do not arrive in waves.
            this.nextHeartbeatAt = at + this.heartbeatMs * (0.5 + Math.random() * 0.4);
            this.syncedAt = this.cursor >= this.headAtWelcome ? at : 0;
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              resolve();
            }
            this.flushOutbox();
            return;
          }
          case "sendAck": {
            const p = this.pending.get(frame.ref);
            if (!p) return;
            this.pending.delete(frame.ref);
            this.hooks.onAck(this, p, at);
            return;
          }
          case "message": {
            const e = frame.kind.value.entry;
            if (e) this.entry(e, at);
            return;
          }
          case "syncBatch": {
            for (const e of frame.kind.value.entries) this.entry(e, at);
            return;
          }
          case "error": {
            const err = frame.kind.value;
            const p = this.pending.get(frame.ref);
            if (!p) return;
            this.pending.delete(frame.ref);
            if (err.code === ErrorCode.RATE_LIMITED || err.code === ErrorCode.UNAVAILABLE) {
              // A real client waits and sends again under the same client_msg_id.
              setTimeout(() => this.send(p), Math.max(10, err.retryAfterMs));
              return;
            }
            this.hooks.onSendError(this, p, err.code, err.message);
            return;
          }
          default:
            return;
        }
      });
      ws.on("close", (code) => {
        if (this.ws !== ws) return;
        const wasOpen = this.open;
        this.open = false;
        this.lastCloseCode = code;
        this.requeuePending();
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(new Error(`closed before Welcome: ${code}`));
        }
        this.hooks.onClose(this, code, wasOpen);
      });
      ws.on("error", () => {});
    });
  }

  private entry(e: InboxEntry, at: number): void {
    if (e.inboxSeq <= this.cursor) return;
    this.cursor = e.inboxSeq;
    if (this.syncedAt === 0 && this.cursor >= this.headAtWelcome) this.syncedAt = at;
    this.hooks.onEntry(this, e, at);
    if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = undefined;
        this.frame({ case: "deliveryAck", value: { inboxSeq: this.cursor } });
      }, this.ackDelayMs);
    }
  }

  /** Sends now if the session is open, else keeps it for after the next Welcome. */
  send(p: PendingSend): void {
    if (!this.open || this.ws?.readyState !== WebSocket.OPEN) {
      this.outbox.push(p);
      return;
    }
    p.attempts++;
    const ref = this.frame({ case: "send", value: { clientMsgId: p.clientMsgId, channelId: p.channelId, text: p.text } });
    this.pending.set(ref, p);
  }

  heartbeat(at: number): void {
    if (!this.open || at < this.nextHeartbeatAt) return;
    this.nextHeartbeatAt = at + this.heartbeatMs * 0.9;
    this.frame({ case: "heartbeat", value: {} });
  }

  private frame(kind: NonNullable<MessageInitShape<typeof ClientFrameSchema>["kind"]>): bigint {
    const ref = this.nextRef++;
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind })));
    return ref;
  }

  private flushOutbox(): void {
    const queued = this.outbox;
    this.outbox = [];
    for (const p of queued) this.send(p);
  }

  /** Unacked sends go back to the outbox: their session is gone, the ack will never come on it. */
  private requeuePending(): void {
    if (this.pending.size === 0) return;
    this.outbox.unshift(...this.pending.values());
    this.pending.clear();
  }

  /** Drops the connection abruptly (no close handshake), as a lost network does. */
  drop(): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = undefined;
    this.open = false;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.requeuePending();
    ws.terminate();
  }

  close(): void {
    clearTimeout(this.ackTimer);
    const ws = this.ws;
    this.ws = undefined;
    this.open = false;
    ws?.close(1000);
  }
}
