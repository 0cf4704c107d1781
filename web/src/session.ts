import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ErrorSchema,
  ServerFrameSchema,
  type ChannelEvent,
  type ReceiptEvent,
  type SendAck,
  type ServerFrame,
  type TypingEvent,
  type Welcome,
  type Error as ErrorFrame,
} from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, type InboxEntry, type Presence } from "../../gen/es/chat/v1/types_pb.js";
import type { Auth } from "./auth.js";
import { tsMs } from "./format.js";

// Close codes the server uses (internal/model/close-codes.ts).
const CLOSE_UNAUTHENTICATED = 4001;
const CLOSE_TOKEN_EXPIRED = 4002;
const CLOSE_LOGGED_OUT = 4003;
/** The device (its other tabs, say) or the account holds its most open sessions on the gateway. */
const CLOSE_TOO_MANY_SESSIONS = 4029;
/**
 * The least wait before trying again after 4029: a slot frees only when another of its sessions
 * closes, which the usual backoff's first steps (0.5 s, 1 s, 2 s) would not wait for, each try
 * counted on the gateway as refused. Jittered up to twice it, so a browser's tabs spread out.
 */
const TOO_MANY_SESSIONS_WAIT_MS = 10_000;

export type ConnectionState = "connecting" | "open" | "offline";

export interface SessionHandlers {
  state(state: ConnectionState, detail?: string): void;
  welcome(w: Welcome): void;
  /** New inbox entries, in inbox order, repeats already dropped. `live` is false during catch-up. */
  entries(entries: InboxEntry[], live: boolean): void;
  /**
   * Catch-up after (re)connecting is complete. `missed`: the server no
   * longer kept some of the entries it should have brought (older than the
   * inbox's retention window), so what they said must be read from history.
   * Also said, with `missed`, after such a batch outside a catch-up (the
   * backlog of a session that stalled).
   */
  caughtUp(missed: boolean): void;
  sent(clientMsgId: string, ack: SendAck): void;
  /** The server refused the send for good: it left the outbox. */
  failed(clientMsgId: string, error: ErrorFrame): void;
  /**
   * The server refused the send as unavailable UNAVAILABLE_TRIES times in a
   * row on this connection: it is not sent again on it, but stays in the
   * outbox and goes again after the next reconnect, or at once when sent
   * anew (`send` with the same id); `discard` forgets it.
   */
  stalled(clientMsgId: string, error: ErrorFrame): void;
  /** The server refused a read receipt (`read`): the read position it carried did not move. */
  readRefused(channelId: bigint, seq: bigint, error: ErrorFrame): void;
  presence(p: Presence): void;
  channel(ev: ChannelEvent): void;
  typing(ev: TypingEvent): void;
  receipt(ev: ReceiptEvent): void;
  /** The device was signed out (logout elsewhere, revoked, refresh refused). */
  signedOut(): void;
}

/**
 * What an outgoing send refers to: an edit or delete of, or a reaction to, an
 * earlier message (which then adds no message), or the message a new one
 * replies to. At most one is set.
 */
export interface SendTarget {
  editSeq?: bigint;
  deleteSeq?: bigint;
  replyToSeq?: bigint;
  reactSeq?: bigint;
}

interface Outgoing extends SendTarget {
  channelId: bigint;
  text: string;
  /** The ref of the frame that carried it last, to match errors without a client_msg_id. */
  ref?: bigint;
  /** Refused as unavailable so many times in a row on this connection. */
  refusals: number;
}

/**
 * The realtime session over a WebSocket with binary protobuf frames
 * (sub-protocol "chat.v1.proto"; the access token rides as "bearer.<token>",
 * since browsers cannot set headers on a WebSocket).
 *
 * It reconnects with backoff, resumes from the device cursor (the server
 * replays what the device missed as SyncBatch frames), drops repeats by
 * inbox_seq, acknowledges what it has taken, heartbeats, and keeps unacked
 * sends in an outbox that it sends again, with the same client_msg_id, after
 * a reconnect (the server drops a resend it already has); one the server
 * keeps refusing as unavailable waits there for the next one (`stalled`).
 */
/** A session up this long counts as steady: the reconnect backoff starts over. */
const STEADY_MS = 30_000;
/**
 * Sends out at once; the rest of the outbox waits for their acks. An outbox
 * filled while offline, sent whole, would be refused past the server's burst
 * and close the session as a flood, again at every reconnect.
 */
const SENDS_IN_FLIGHT = 32;
/**
 * A send refused as unavailable (the server cannot take messages now) is
 * tried again with backoff, from UNAVAILABLE_BACKOFF_MS, this many times in
 * all on one connection; then the user is told it is not sent, and it waits
 * for the next connection or their retry.
 */
const UNAVAILABLE_TRIES = 5;
const UNAVAILABLE_BACKOFF_MS = 250;
/** ClientFrame's field number of Reauthenticate, as an Error's refused_kind names it. */
const REAUTHENTICATE_KIND = ClientFrameSchema.field.reauthenticate!.number;
const READ_KIND = ClientFrameSchema.field.read!.number;
/**
 * Read receipts sent on a socket, by ref, kept to match a refusal to: the
 * server answers none that it takes, so only the latest are kept.
 */
const READS_KEPT = 64;
/** A fresh token that could not be had, or that the server could not take now, is tried again after this. */
const REAUTHENTICATE_RETRY_MS = 3_000;

/** An access token's life, by this browser's clock. */
interface TokenLife {
  issuedMs: number;
  expiresMs: number;
}

/**
 * When to hand the session a fresh token: once 80% of the token's life is
 * gone, or a minute before it ends if that is sooner (a background tab's
 * timers may run a minute late), but not before half its life, nor at once.
 * A token of a minute or less (CHAT_ACCESS_TOKEN_TTL_S goes down to 10) has
 * no minute to spare: the minute before its end is its start, and every
 * token was refreshed and handed over a second after the last.
 */
function reauthenticateAt(life: TokenLife, now = Date.now()): number {
  const span = life.expiresMs - life.issuedMs;
  const at = Math.min(life.issuedMs + 0.8 * span, life.expiresMs - 60_000);
  return Math.max(now + 1000, life.issuedMs + 0.5 * span, at);
}

export class RealtimeSession {
  private ws?: WebSocket;
  private cursor = 0n;
  private acked = 0n;
  private nextRef = 1n;
  private readonly outbox = new Map<string, Outgoing>();
  /** Of the outbox, what went out on this socket and is not answered yet (a send waiting to retry counts). */
  private readonly inFlight = new Set<string>();
  /** Of the outbox, what this socket refused as unavailable too often (`stalled`): not sent on it again. */
  private readonly parked = new Set<string>();
  /** The read receipts sent on this socket (the last READS_KEPT), by ref. */
  private readonly reads = new Map<bigint, { channelId: bigint; seq: bigint }>();
  private heartbeatTimer?: number;
  /** The worker whose clock drives the heartbeat, when this browser has workers; the window's timer otherwise. */
  private heartbeatWorker?: Worker;
  private reconnectTimer?: number;
  private steadyTimer?: number;
  private ackTimer?: number;
  private reauthTimer?: number;
  private attempts = 0;
  /**
   * A connect() waits for its token: one more (the browser back online, a
   * timer) would open a second socket, and the first would stay open unread.
   */
  private connecting = false;
  /** The browser came back online while connect() waited for its token: if that fails, the next try is at once. */
  private backOnline = false;
  private stopped = true;
  private catchingUp = false;
  /**
   * A batch skipped entries past the inbox's retention window, and the app
   * has not been told yet. Kept over a reconnect: the entries taken after
   * them may have been acked, and the next catch-up would not say it again.
   */
  private missed = false;
  /**
   * The SyncRequest this tab sent because its own position was behind the
   * device's (another tab of this browser, the same device, took and acked
   * entries while this one was away): until its pages come, frames after
   * the device's position are dropped, since its pages bring them in order.
   */
  private resync?: bigint;
  /** The access token the current socket runs on: the one it was opened with, or the last the server took since. */
  private usedToken = "";
  /** That token's life; undefined when not known, and then the socket is not handed new ones. */
  private tokenLife?: TokenLife;
  /** The Reauthenticate this socket waits for the answer to. */
  private reauth?: { ref: bigint; token: string; life?: TokenLife };
  /** The server's clock less this browser's, as the last Welcome told. */
  private skewMs = 0;
  /**
   * Where the cursor is stored: under the device signed in when the session
   * started. Another tab signing in stores a new device before this session
   * stops, and this tab's cursor must not become the new device's.
   */
  private cursorKey = "";
  private cursorDevice?: string;
  /** Heartbeats sent since the last frame came: the server answers each one. */
  private unanswered = 0;
  /** Sessions welcomed so far (1 after the first connect). */
  sessions = 0;
  state: ConnectionState = "offline";
  welcomeFrame?: Welcome;

  constructor(
    private readonly auth: Auth,
    private readonly handlers: SessionHandlers,
    private readonly url = defaultUrl(),
  ) {}

  /**
   * Back online: connect at once, with the backoff started over, since it grew
   * on a network that was gone. A socket still connecting was opened offline,
   * and the browser gives up on it only when its connect times out: left for
   * dead. A token on its way cannot be dropped (Auth shares its refresh with
   * any other ask), so its failure is followed at once.
   */
  private readonly onOnline = () => {
    this.attempts = 0;
    const ws = this.ws;
    if (ws?.readyState === WebSocket.CONNECTING) {
      this.ws = undefined;
      ws.close();
    }
    if (this.connecting) this.backOnline = true;
    this.reconnectSoon(0);
  };
  /**
   * Left for dead at once: a close starts the closing handshake, which a
   * network that is gone never answers, and the browser tells of the close
   * only when that times out (a minute in Chromium). Until then the page
   * showed itself online, and coming back online connected nothing.
   */
  private readonly onOffline = () => this.abandon("the browser is offline");

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.cursorDevice = this.auth.current?.deviceId;
    this.cursorKey = `${CURSOR_PREFIX}${this.cursorDevice ?? "none"}`;
    this.cursor = BigInt(localStorage.getItem(this.cursorKey) ?? "0");
    dropCursorsBut(this.cursorKey);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.steadyTimer);
    clearTimeout(this.reauthTimer);
    this.stopHeartbeat();
    // The device is no longer this browser's (another tab signed out, or in as
    // another): its cursor would stay stored for good, under a device never seen again.
    if (this.auth.current?.deviceId === this.cursorDevice) this.flushAck();
    else this.dropCursor();
    this.ws?.close(1000, "bye");
    this.ws = undefined;
    this.setState("offline");
  }

  /** Stops for good: the device signed out (here, or the server said so), and its cursor goes with it. */
  end(): void {
    this.stop();
    this.dropCursor();
  }

  private dropCursor(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    localStorage.removeItem(this.cursorKey);
  }

  /**
   * Queues a text (with `target`, a reply, or an edit or delete of, or a
   * reaction to, an earlier message); it is sent now if the socket is open and again after
   * every reconnect until acked.
   */
  send(channelId: bigint, text: string, clientMsgId: string, target: SendTarget = {}): void {
    const out: Outgoing = { channelId, text, editSeq: target.editSeq, deleteSeq: target.deleteSeq, replyToSeq: target.replyToSeq, reactSeq: target.reactSeq, refusals: 0 };
    this.outbox.set(clientMsgId, out);
    // Sent anew (a retry): out at once, though it was out already or stalled; the server keeps a key once.
    this.inFlight.delete(clientMsgId);
    this.parked.delete(clientMsgId);
    this.sendMore();
  }

  /** Forgets a queued text (the user gave up on a failed send). */
  discard(clientMsgId: string): void {
    this.outbox.delete(clientMsgId);
    this.inFlight.delete(clientMsgId);
    this.parked.delete(clientMsgId);
    this.sendMore();
  }

  /** Now by the server's clock, as the last Welcome told it: what the server's times (a last seen) are measured against. */
  serverNow(): number {
    return Date.now() + this.skewMs;
  }

  /** Whether the send is still in the outbox: not acked, nor refused for good, nor discarded. */
  has(clientMsgId: string): boolean {
    return this.outbox.has(clientMsgId);
  }

  typing(channelId: bigint): void {
    this.frame({ kind: { case: "typing", value: { channelId } } });
  }

  /** Moves the read position (and tells the other members); false when the socket is not open. */
  read(channelId: bigint, seq: bigint): boolean {
    const ref = this.frame({ kind: { case: "read", value: { channelId, seq } } });
    if (ref === undefined) return false;
    this.reads.set(ref, { channelId, seq });
    if (this.reads.size > READS_KEPT) this.reads.delete(this.reads.keys().next().value!);
    return true;
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting) return;
    this.setState("connecting");
    let token: string;
    this.connecting = true;
    this.backOnline = false;
    try {
      token = await this.auth.accessToken();
    } catch {
      this.connecting = false;
      if (!this.auth.current) return this.handlers.signedOut();
      if (this.stopped) return;
      // No token to connect with (its refresh could not reach the server): offline until the next try, not "Connecting…" all along.
      this.setState("offline", "the server cannot be reached");
      return this.reconnectSoon(this.backOnline ? 0 : undefined);
    }
    this.connecting = false;
    if (this.stopped) return;
    this.usedToken = token;
    this.tokenLife = this.lifeOf(token);
    const ws = new WebSocket(this.url, ["chat.v1.proto", `bearer.${token}`]);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.unanswered = 0;
      if (!(ev.data instanceof ArrayBuffer)) return;
      let frame: ServerFrame;
      try {
        frame = fromBinary(ServerFrameSchema, new Uint8Array(ev.data));
      } catch {
        return; // a newer server's frame we cannot read: skip it
      }
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.stopHeartbeat();
      clearTimeout(this.steadyTimer);
      clearTimeout(this.reauthTimer);
      void this.onClose(ev.code, ev.reason);
    };
  }

  private async onClose(code: number, reason: string): Promise<void> {
    if (this.stopped) return;
    if (code === CLOSE_LOGGED_OUT) {
      this.stopped = true;
      this.setState("offline", "signed out");
      return this.handlers.signedOut();
    }
    if (code === CLOSE_TOKEN_EXPIRED || code === CLOSE_UNAUTHENTICATED) {
      // The server closes a socket when the token it was opened with
      // expires: reconnect at once with a fresh token (refreshing it here
      // unless that already happened while the socket was open).
      this.setState("connecting", reason || undefined);
      if (this.auth.current?.accessToken === this.usedToken) {
        try {
          await this.auth.refresh(true);
        } catch {
          if (!this.auth.current) return this.handlers.signedOut();
        }
      }
      return this.reconnectSoon(this.attempts === 0 ? 0 : undefined);
    }
    if (code === CLOSE_TOO_MANY_SESSIONS) {
      this.setState("offline", reason || "too many sessions open on this device or account: close another tab");
      return this.reconnectSoon(TOO_MANY_SESSIONS_WAIT_MS * (1 + Math.random()));
    }
    this.setState("offline", reason || undefined);
    this.reconnectSoon();
  }

  private reconnectSoon(delayMs?: number): void {
    if (this.stopped || this.ws || this.connecting) return;
    clearTimeout(this.reconnectTimer);
    const backoff = Math.min(15_000, 500 * 2 ** this.attempts++);
    const wait = delayMs ?? backoff / 2 + Math.random() * (backoff / 2);
    this.reconnectTimer = window.setTimeout(() => void this.connect(), wait);
  }

  private onFrame(frame: ServerFrame): void {
    const k = frame.kind;
    switch (k.case) {
      case "welcome": {
        // Backoff starts over only for a session that stays up: one the server
        // welcomes and then closes (it cannot read the inbox) keeps backing off.
        clearTimeout(this.steadyTimer);
        this.steadyTimer = window.setTimeout(() => (this.attempts = 0), STEADY_MS);
        const again = this.sessions++ > 0;
        this.welcomeFrame = k.value;
        this.acked = k.value.deviceCursor;
        this.resync = undefined;
        this.reads.clear();
        if (again && k.value.deviceCursor > this.cursor) {
          // What this tab shows stops at its own position: ask from there.
          this.resync = this.frame({ kind: { case: "sync", value: { afterInboxSeq: this.cursor } } });
          this.catchingUp = true;
        } else {
          // The server replays from its copy of our cursor; never go below what we already took.
          if (k.value.deviceCursor > this.cursor) this.cursor = k.value.deviceCursor;
          this.catchingUp = k.value.headInboxSeq > k.value.deviceCursor;
        }
        this.setState("open");
        this.unanswered = 0;
        this.startHeartbeat(Math.max(1000, k.value.heartbeatIntervalMs || 25_000));
        this.skewMs = k.value.serverTime ? tsMs(k.value.serverTime)! - Date.now() : 0;
        this.reauth = undefined;
        this.scheduleReauthenticate();
        this.handlers.welcome(k.value);
        // A new connection: the whole outbox goes again, what the last one refused too.
        this.inFlight.clear();
        this.parked.clear();
        for (const out of this.outbox.values()) out.refusals = 0;
        this.sendMore();
        if (this.cursor > this.acked) this.flushAck();
        if (!this.catchingUp) this.caughtUp();
        return;
      }
      case "syncBatch":
        if (this.resync !== undefined) {
          if (frame.ref !== this.resync) return;
          if (!k.value.hasMore) this.resync = undefined;
        }
        // Past the tab's own position only: what it took before is not missed.
        if (k.value.expiredThrough > this.cursor) this.missed = true;
        this.take(k.value.entries, !this.catchingUp);
        // Once the last page is in: after a catch-up always; outside one (a stalled session's backlog) when some expired.
        if (k.value.hasMore || !(this.catchingUp || this.missed)) return;
        this.catchingUp = false;
        this.caughtUp();
        return;
      case "message":
        if (k.value.entry && this.resync === undefined) this.take([k.value.entry], true);
        return;
      case "sendAck":
        this.outbox.delete(k.value.clientMsgId);
        this.inFlight.delete(k.value.clientMsgId);
        this.sendMore();
        this.handlers.sent(k.value.clientMsgId, k.value);
        return;
      case "reauthenticated":
        return this.onReauthenticated(frame.ref, tsMs(k.value.tokenExpiresAt));
      case "error":
        if (k.value.refusedKind === REAUTHENTICATE_KIND) return this.onReauthenticateRefused(frame.ref, k.value);
        if (k.value.refusedKind === READ_KIND) return this.onReadRefused(frame.ref, k.value);
        if (this.resync !== undefined && frame.ref === this.resync) {
          // The server could not read the inbox: the next session asks again.
          this.resync = undefined;
          this.ws?.close();
          return;
        }
        return this.onError(frame.ref, k.value);
      case "presence":
        if (k.value.presence) this.handlers.presence(k.value.presence);
        return;
      case "channel":
        return this.handlers.channel(k.value);
      case "typing":
        return this.handlers.typing(k.value);
      case "receipt":
        return this.handlers.receipt(k.value);
      default:
        return;
    }
  }

  /**
   * Heartbeats every `every` ms from now on, on a worker's clock: a hidden
   * tab's own timers may wake once a minute, and the server ends a session
   * silent for three heartbeat intervals. The window's timer where there are
   * no workers, or the worker cannot be had (its script not loaded).
   */
  private startHeartbeat(every: number): void {
    this.stopHeartbeat();
    if (typeof Worker !== "undefined") {
      try {
        const worker = new Worker(new URL("./heartbeat-worker.ts", import.meta.url), { type: "module" });
        worker.onmessage = () => this.heartbeatWorker === worker && this.heartbeat();
        worker.onerror = () => {
          if (this.heartbeatWorker !== worker) return;
          this.stopHeartbeat();
          this.heartbeatTimer = window.setInterval(() => this.heartbeat(), every);
        };
        worker.postMessage({ every });
        this.heartbeatWorker = worker;
        return;
      } catch {
        // Not allowed here (a Content-Security-Policy of the page's host): the window's timer.
      }
    }
    this.heartbeatTimer = window.setInterval(() => this.heartbeat(), every);
  }

  /** No heartbeat until the next welcome, and no worker left behind: one per welcomed socket. */
  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.heartbeatWorker?.terminate();
    this.heartbeatWorker = undefined;
  }

  private heartbeat(): void {
    // Three heartbeats and not a frame back: the connection is dead without the browser
    // knowing (a network that changed, a laptop that slept), and a close would wait for it.
    if (this.unanswered++ >= 3) return this.abandon("no answer from the server");
    this.frame({ kind: { case: "heartbeat", value: {} } });
  }

  /** Leaves the current socket for dead and connects again, as if it had closed. */
  private abandon(reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = undefined;
    this.stopHeartbeat();
    clearTimeout(this.steadyTimer);
    clearTimeout(this.reauthTimer);
    ws.close();
    void this.onClose(1006, reason);
  }

  /**
   * Hands the open socket a fresh token before the one it runs on expires,
   * so the server does not close it then (4002) and it goes on without a
   * reconnect and a catch-up.
   */
  private scheduleReauthenticate(delayMs?: number): void {
    clearTimeout(this.reauthTimer);
    const ws = this.ws;
    if (!ws || !this.tokenLife) return;
    const wait = Math.max(1000, delayMs ?? reauthenticateAt(this.tokenLife) - Date.now());
    this.reauthTimer = window.setTimeout(() => void this.reauthenticate(ws), wait);
  }

  private async reauthenticate(ws: WebSocket): Promise<void> {
    let token: string;
    try {
      token = await this.auth.accessToken();
      // Auth finds the socket's own token fresh enough for a call, but the socket needs one that outlives it.
      if (token === this.usedToken) token = (await this.auth.refresh(true)).accessToken;
    } catch {
      // Signed out: Auth tells the app. Otherwise the server may be back before the token runs out.
      if (this.ws === ws && this.auth.current) this.scheduleReauthenticate(REAUTHENTICATE_RETRY_MS);
      return;
    }
    if (this.ws !== ws) return;
    const life = this.lifeOf(token);
    const ref = this.frame({ kind: { case: "reauthenticate", value: { accessToken: token } } });
    if (ref !== undefined) this.reauth = { ref, token, life };
  }

  private onReauthenticated(ref: bigint, expiresAtMs: number | undefined): void {
    const asked = this.reauth;
    if (!asked || ref !== asked.ref) return;
    this.reauth = undefined;
    this.usedToken = asked.token;
    // The server's word on when the session ends now, on this browser's clock.
    const expiresMs = expiresAtMs === undefined ? asked.life?.expiresMs : expiresAtMs - this.skewMs;
    this.tokenLife = expiresMs === undefined ? undefined : { issuedMs: asked.life?.issuedMs ?? Date.now(), expiresMs };
    this.scheduleReauthenticate();
  }

  private onReauthenticateRefused(ref: bigint, err: ErrorFrame): void {
    if (!this.reauth || ref !== this.reauth.ref) return;
    this.reauth = undefined;
    // Refused for good (a token the server does not take): the session ends
    // at its token's expiry (4002), and the reconnect then brings a fresh one.
    if (err.code === ErrorCode.RATE_LIMITED || err.code === ErrorCode.UNAVAILABLE) {
      this.scheduleReauthenticate(err.retryAfterMs || REAUTHENTICATE_RETRY_MS);
    }
  }

  private onReadRefused(ref: bigint, err: ErrorFrame): void {
    const read = this.reads.get(ref);
    if (!read) return;
    this.reads.delete(ref);
    this.handlers.readRefused(read.channelId, read.seq, err);
  }

  /** The life of `token` as Auth stored it, if it is the stored one. */
  private lifeOf(token: string): TokenLife | undefined {
    const c = this.auth.current;
    if (c?.accessToken !== token || !Number.isFinite(c.accessExpiresAtMs)) return undefined;
    return { issuedMs: c.accessIssuedAtMs ?? Date.now(), expiresMs: c.accessExpiresAtMs };
  }

  private caughtUp(): void {
    const missed = this.missed;
    this.missed = false;
    this.handlers.caughtUp(missed);
  }

  private onError(ref: bigint, err: ErrorFrame): void {
    let id = err.clientMsgId;
    if (!id && ref !== 0n) id = [...this.outbox].find(([, o]) => o.ref === ref)?.[0] ?? "";
    const out = id ? this.outbox.get(id) : undefined;
    if (!out) return;
    // A frame of this send's that is not its last (a retry crossed the answer), or of one sent anew since: no news.
    if (!this.inFlight.has(id) || (ref !== 0n && out.ref !== undefined && ref !== out.ref)) return;
    if (err.code === ErrorCode.UNAVAILABLE && ++out.refusals >= UNAVAILABLE_TRIES) {
      // The server cannot take it now: the user is told, and the next connection (or their retry) sends it again.
      this.inFlight.delete(id);
      this.parked.add(id);
      this.sendMore();
      return this.handlers.stalled(id, err);
    }
    if (err.code === ErrorCode.RATE_LIMITED || err.code === ErrorCode.UNAVAILABLE) {
      // Same key again after the hint: the server keeps it exactly once. A new socket's welcome sent it already.
      const ws = this.ws;
      const backoff = err.code === ErrorCode.UNAVAILABLE ? UNAVAILABLE_BACKOFF_MS * 2 ** (out.refusals - 1) : 200;
      window.setTimeout(() => this.ws === ws && this.outbox.get(id) === out && this.inFlight.has(id) && this.transmit(id, out), Math.max(backoff, err.retryAfterMs));
      return;
    }
    this.outbox.delete(id);
    this.inFlight.delete(id);
    this.sendMore();
    this.handlers.failed(id, err);
  }

  private take(entries: InboxEntry[], live: boolean): void {
    const fresh = entries.filter((e) => e.inboxSeq > this.cursor);
    if (fresh.length === 0) return;
    this.cursor = fresh[fresh.length - 1]!.inboxSeq;
    this.handlers.entries(fresh, live);
    // Acks are coalesced so a burst does not eat the frame rate.
    if (this.ackTimer === undefined) this.ackTimer = window.setTimeout(() => this.flushAck(), 100);
  }

  private flushAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.cursor <= this.acked) return;
    localStorage.setItem(this.cursorKey, this.cursor.toString());
    if (this.frame({ kind: { case: "deliveryAck", value: { inboxSeq: this.cursor } } }) !== undefined) this.acked = this.cursor;
  }

  /** Sends the outbox's next texts, in the order they were queued, while fewer than SENDS_IN_FLIGHT are out. */
  private sendMore(): void {
    for (const [id, out] of this.outbox) {
      if (this.inFlight.size >= SENDS_IN_FLIGHT) return;
      if (this.inFlight.has(id) || this.parked.has(id)) continue;
      if (this.tooLarge(id, out)) continue;
      if (!this.transmit(id, out)) return;
      this.inFlight.add(id);
    }
  }

  /**
   * Fails a send whose frame is larger than the server takes (the Welcome's
   * max_frame_bytes, CHAT_MAX_FRAME_BYTES): sent, it closed the socket 1009,
   * and every reconnect sent it again, for good. The composer's limit is in
   * code points, which a server with a smaller frame does not hold.
   */
  private tooLarge(clientMsgId: string, out: Outgoing): boolean {
    const max = this.welcomeFrame?.maxFrameBytes ?? 0;
    if (max === 0) return false;
    const { channelId, text, editSeq = 0n, deleteSeq = 0n, replyToSeq = 0n, reactSeq = 0n } = out;
    const send = { clientMsgId, channelId, text, editSeq, deleteSeq, replyToSeq, reactSeq };
    const bytes = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: this.nextRef, kind: { case: "send", value: send } })).length;
    if (bytes <= max) return false;
    this.outbox.delete(clientMsgId);
    const message = `too long for this server (${bytes.toLocaleString("en-US")} bytes; it takes at most ${max.toLocaleString("en-US")})`;
    this.handlers.failed(clientMsgId, create(ErrorSchema, { code: ErrorCode.FRAME_TOO_LARGE, message, clientMsgId }));
    return true;
  }

  /** False when the socket is not open and welcomed. */
  private transmit(clientMsgId: string, out: Outgoing): boolean {
    const { channelId, text, editSeq = 0n, deleteSeq = 0n, replyToSeq = 0n, reactSeq = 0n } = out;
    out.ref = this.frame({ kind: { case: "send", value: { clientMsgId, channelId, text, editSeq, deleteSeq, replyToSeq, reactSeq } } });
    return out.ref !== undefined;
  }

  private frame(init: MessageInitShape<typeof ClientFrameSchema>): bigint | undefined {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.welcomeFrame) return undefined;
    const ref = this.nextRef++;
    ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ...init, ref })));
    return ref;
  }

  private setState(state: ConnectionState, detail?: string): void {
    // Frames go out only on a welcomed socket.
    if (state !== "open") this.welcomeFrame = undefined;
    this.state = state;
    this.handlers.state(state, detail);
  }
}

/** The device's cursor is stored under this and its id, shared by the tabs of the browser. */
const CURSOR_PREFIX = "chat.cursor.";

/**
 * Drops the cursors of devices other than `key`'s: the browser holds one
 * device at a time (every tab shares it), and one left by a device signed
 * out without this page (closed first, or an older client) would stay for good.
 */
function dropCursorsBut(key: string): void {
  const stale: string[] = [];
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k?.startsWith(CURSOR_PREFIX) && k !== key) stale.push(k);
  }
  for (const k of stale) localStorage.removeItem(k);
}

function defaultUrl(): string {
  const u = new URL("/ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}
