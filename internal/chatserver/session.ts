import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { ChannelEventKind, ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ChatError, isChatError } from "../model/errors.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { CloseCode } from "../model/close-codes.js";
import { atMostMaxId, MAX_TEXT_CODE_POINTS } from "../model/types.js";
import { expiredThrough } from "../messages/inbox.js";
import { PAGE_TEXT_BYTES, withinTextBytes } from "../messages/page-bytes.js";
import { inboxEntryToProto } from "../wire/messages.js";
import { encodeSendAckFrame } from "../wire/message-bytes.js";
import { decodeClientFrame, encodeServerFrame, type EncodedFrame, type FrameBytes } from "./codec.js";
import { errorCodeOf } from "./errors.js";
import { namesChannel, refusedUncharged } from "./validate.js";
import type { Reauthentication, SessionHandle, SessionIdentity, SessionSink } from "./port.js";
import { TokenBucket } from "../throttle/token-bucket.js";
import { textCost } from "../throttle/text-budget.js";
import type { ChatServer } from "./server.js";

const SYNC_PAGE = 200;
const MAX_SYNC_PAGE = 1000;
const BAD_FRAMES_BEFORE_CLOSE = 10;
/** Rate-limited frames at once after which the session is closed as a flood (see `refusals`). */
const FLOOD_FRAMES_BEFORE_CLOSE = 200;
/**
 * Heartbeats take from an allowance of their own, not the frame rate's: a
 * client busy at its frame rate must still show present (a refused heartbeat
 * touched no presence, and the device went offline to its friends while
 * chatting). A client heartbeats once an interval (25 s); this is ample for
 * that and for a few probes of a doubtful connection, and keeps a flood of
 * heartbeats from writing presence dozens of times a second.
 */
const HEARTBEAT_EVERY_MS = 1000;
export const HEARTBEAT_BURST = 5;
/** Failed inbox reads in a row after which a session gives up, and the first pause between them (doubling): for the pump and for the start. */
const READ_ATTEMPTS = 4;
const READ_RETRY_MS = 500;
/** The retry time told a send refused while the session's sends wait on the queue. */
const SENDS_BACKED_UP_RETRY_MS = 1_000;
/**
 * The pause after `failures` failed reads in a row: READ_RETRY_MS doubling, anywhere in its upper
 * half. The sessions a failover brings at once fail at once; each paused the same 500 ms, 1 s, 2 s,
 * and all read again together, as often as the store failed them, till all closed together.
 */
function retryPause(failures: number): number {
  const span = READ_RETRY_MS * 2 ** (failures - 1);
  return span / 2 + Math.random() * (span / 2);
}

/**
 * How long past its token's expiry a session waits for a Reauthenticate the
 * gateway took to be checked (held for the welcome, or reading whether the
 * device was signed out): a device refreshes near the expiry by design, and
 * closed meanwhile it reconnects for nothing. Bounded, so a check that hangs
 * (a store timing out, a start retrying its reads) keeps no expired session.
 */
export const REAUTH_GRACE_MS = 10_000;

/**
 * What an Error frame names of the frame it refuses: the client's ref, which
 * may repeat, the kind (Error.refused_kind: the number of the field the frame
 * set in ClientFrame.kind, 0 for none) and a send's client_msg_id.
 */
interface Refused {
  ref: bigint;
  kind: number;
  clientMsgId: string;
}

const refusalOf = (frame: ClientFrame): Refused => ({
  ref: frame.ref,
  kind: frame.kind.case === undefined ? 0 : ClientFrameSchema.field[frame.kind.case]!.number,
  clientMsgId: frame.kind.case === "send" ? frame.kind.value.clientMsgId : "",
});

/** Shared frames kept for a session until its welcome is out (typing in half of them; presence apart, the latest per user); past these a start that slow loses hints and superseded updates, or reconnects, never a change. */
const HELD_SHARED_FRAMES = 64;

/**
 * Whether `later` makes `earlier` stale: both UPDATED events of one channel, the later one carrying it
 * whole. One naming a user (a group's new owner) tells what the channel does not, so only the same
 * user's, or none, is stale.
 */
function replacesUpdate(later: ServerFrame, earlier: ServerFrame): boolean {
  if (later.kind.case !== "channel" || earlier.kind.case !== "channel") return false;
  const [a, b] = [later.kind.value, earlier.kind.value];
  if (a.kind !== ChannelEventKind.UPDATED || b.kind !== ChannelEventKind.UPDATED || a.channel === undefined) return false;
  return a.channel.channelId === b.channel?.channelId && (b.userId === 0n || b.userId === a.userId);
}

/** A frame that could not be decoded: no ref, no kind. */
const UNREADABLE: Refused = { ref: 0n, kind: 0, clientMsgId: "" };
const SYNC_KIND = ClientFrameSchema.field.sync!.number;
const REAUTHENTICATE_KIND = ClientFrameSchema.field.reauthenticate!.number;

/**
 * What a session needs only while it starts, dropped at the welcome (which
 * `ready` reads): as fields of the session, every one held six for good.
 */
interface Starting {
  /**
   * Frames that arrive before the welcome is out wait here, up to the rate
   * limit's burst and two largest frames of bytes; those past it are
   * answered RATE_LIMITED once the welcome is out, as they would have been
   * after it.
   */
  early: (Uint8Array | string | Reauthentication)[];
  earlyBytes: number;
  /** Frames past the early buffer, answered once the welcome is out: RATE_LIMITED, or `unreadable`'s error for one that could not be decoded. */
  earlyRefused: Array<Refused & { unreadable?: unknown }> | undefined;
  /**
   * Shared frames (typing, receipts, presence) pushed while the session
   * starts: sent after the welcome, which is every session's first frame
   * (a gateway takes any frame as the server's answer), and never to a
   * device the start finds signed out.
   */
  heldShared: EncodedFrame[] | undefined;
  /** A live entry came before the welcome was out: the pump reads it after. */
  missedLive: boolean;
  /**
   * A frame is held in `early`: counted on the server as frame work until the start ends, so a drain
   * waits for the reads that hand it on (the stores close after the drain).
   */
  held: boolean;
}

/**
 * One device's live session on this chat server. It keeps `sentUpTo`, the
 * highest inbox seq this device has been sent, and never sends out of order:
 * a live entry that is not the next one (the device is still catching up, or
 * its socket was too full to take more) wakes the pump, which reads what is
 * missing from the inbox. So every device sees every entry once, in order,
 * whatever the timing of live pushes and catch-up.
 */
export class Session implements SessionHandle {
  sentUpTo = 0n;
  /** Until the welcome is out; undefined after (ready). */
  private starting: Starting | undefined = { early: [], earlyBytes: 0, earlyRefused: undefined, heldShared: undefined, missedLive: false, held: false };
  private announced = false;
  private open = true;
  private pumping = false;
  private pumpAgain = false;
  private stalled = false;
  /**
   * Presence events that came while the transport was backed up, the
   * latest per user it is about, sent once it drains. Presence is soft
   * state: a device needs each user's last status, not every flip, and
   * in busy groups the flips alone could fill a slow reader's buffer to
   * its cap (4009). Typing hints are dropped meanwhile: stale by the
   * time they would arrive. Everything else (entries, receipts, channel
   * events, answers) is queued as ever.
   */
  private heldPresence: Map<bigint, EncodedFrame> | undefined;
  /** Inbox reads of the pump that failed in a row; it tries again after a pause, and gives up past READ_ATTEMPTS. */
  private pumpFailures = 0;
  private pumpRetry: ReturnType<typeof setTimeout> | undefined;
  private badFrames = 0;
  /**
   * What the session may refuse before it is a flood: FLOOD_FRAMES_BEFORE_CLOSE
   * at once, then twice the frame rate. A client that waits as told is
   * refused about once for each frame it sends new (each refusal is told
   * its own turn), which the frame rate bounds; one that does not wait runs
   * through this in a moment.
   */
  private refusals: TokenBucket | undefined;
  /** Wall clock: when the device was last heard from, for presence's last seen. */
  private lastFrameAtMs: number;
  /**
   * The same on the monotonic clock (performance.now), for the silence
   * sweep: a wall clock stepped forward would make every session look
   * silent and close them all.
   */
  private lastFrameAtMono: number;
  /**
   * The frame rate's bucket, made at the first frame it counts (see frameRate): until then it would be
   * full whenever asked, and a session that only heartbeats (an idle one) never needs it.
   */
  private frames: TokenBucket | undefined;
  /**
   * Heartbeats' allowance, apart from the frame rate (HEARTBEAT_BURST), as the
   * cell rate algorithm keeps it: when the next heartbeat is due (monotonic ms),
   * one number in the session where a TokenBucket was an object of its own for
   * every idle session held.
   */
  private heartbeatDueAt = 0;
  /**
   * A SyncRequest that came while the pump was running: its ref is answered
   * by the next page. Refs are the client's, 0 (a field left unset) as well,
   * so "none" is undefined.
   */
  private syncRef: bigint | undefined;
  private syncLimit = SYNC_PAGE;
  /**
   * The SyncRequest the pump's pages answer (undefined: none) and its page
   * size. They outlive a pump that stalls, so the one drained() starts answers on.
   */
  private pumpRef: bigint | undefined;
  private pumpLimit = SYNC_PAGE;
  /**
   * SyncRequests reading head. Meanwhile the pump sends nothing: a last page
   * of its own with ref 0 would look like the answer to a request with ref 0
   * (a native gRPC stream that half-closed would end before the real one).
   */
  private syncsStarting = 0;
  /** SyncRequests received, and the number of the newest that took effect: one whose head read answers after a newer one's is superseded by it. */
  private syncsAsked = 0;
  private syncTaken = 0;
  /** The pump stopped for a starting SyncRequest: if that fails, it must run again. */
  private pumpHeld = false;
  /** The last page sent said has_more: the pump owes the device a last page, even an empty one. */
  private moreToCome = false;
  /** Reauthenticates with a token the gateway took, not yet checked here (held for the welcome, or reading): see tokenExpired. */
  private reauthsInFlight = 0;
  /** Sends handed to the submitter and not yet answered by it (limits.maxSendsInFlight). */
  private sendsInFlight = 0;
  /** A cursor write is out (see acked), and the newest ack that came meanwhile, to be written after it. */
  private ackWriting = false;
  private ackWaiting: { seq: bigint; frame: ClientFrame } | undefined;

  constructor(
    private readonly server: ChatServer,
    readonly identity: SessionIdentity,
    private readonly sink: SessionSink,
  ) {
    this.lastFrameAtMs = Date.now();
    this.lastFrameAtMono = performance.now();
  }

  private frameRate(): TokenBucket {
    const { limits } = this.server;
    return (this.frames ??= new TokenBucket(limits.framesPerSecond, limits.frameBurst));
  }

  /**
   * Takes one from `refusals`, made at the first refusal (it would be full by
   * then anyway): most sessions are never refused, and an idle one should not
   * carry a second bucket.
   */
  private refused(): number {
    this.refusals ??= new TokenBucket(2 * this.server.limits.framesPerSecond, FLOOD_FRAMES_BEFORE_CLOSE);
    return this.refusals.take();
  }

  /**
   * A frame heard after the welcome, counted against the frame rate (or the
   * heartbeats' allowance): the wait the limit asks (0 for none), or undefined
   * when the session was closed as a flood.
   */
  private admit(heartbeat = false): number | undefined {
    this.lastFrameAtMs = Date.now();
    this.lastFrameAtMono = performance.now();
    const retryAfterMs = heartbeat ? this.takeHeartbeat(this.lastFrameAtMono) : this.frameRate().take();
    if (retryAfterMs > 0 && this.refused() > 0) {
      this.close(CloseCode.rateLimited, "too many frames: rate limit exceeded");
      return undefined;
    }
    return retryAfterMs;
  }

  /** 0 when a heartbeat is within its allowance, else the milliseconds until one is. */
  private takeHeartbeat(now: number): number {
    const due = Math.max(this.heartbeatDueAt, now);
    const early = due - now - (HEARTBEAT_BURST - 1) * HEARTBEAT_EVERY_MS;
    if (early > 0) return Math.ceil(early);
    this.heartbeatDueAt = due + HEARTBEAT_EVERY_MS;
    return 0;
  }

  /** The welcome is out: frames go to the device, not into `starting`. */
  private get ready(): boolean {
    return this.starting === undefined;
  }

  get userId() {
    return this.identity.userId;
  }

  get deviceId() {
    return this.identity.deviceId;
  }

  /** Welcomed: it passed its checks (a session closed before never said its device was online). */
  get started(): boolean {
    return this.announced;
  }

  get idleSinceMs() {
    return this.lastFrameAtMs;
  }

  /**
   * Whether the session's token has expired at `now` (wall clock): not yet
   * while a fresh token is being checked, for up to REAUTH_GRACE_MS past it.
   */
  tokenExpired(now: number): boolean {
    const end = this.identity.tokenExpiresAtMs;
    return end <= now && (this.reauthsInFlight === 0 || end + REAUTH_GRACE_MS <= now);
  }

  /** How long since the device's last frame, on the monotonic clock at `nowMono`. */
  silentForMs(nowMono: number): number {
    return nowMono - this.lastFrameAtMono;
  }

  /** Sends the welcome, then catches the device up from its cursor. */
  async start(): Promise<void> {
    const starting = this.starting!;
    try {
      await this.begin();
    } finally {
      // After begin handed the held frames on, whose handlers count themselves: a drain sees no gap.
      if (starting.held) this.server.frameWorkDone();
    }
  }

  private async begin(): Promise<void> {
    const { limits } = this.server;
    // Later expiry is the server's once-a-second sweep: one timer per
    // session would cost more memory than the rest of an idle session.
    if (this.tokenExpired(Date.now())) return this.close(CloseCode.tokenExpired, "access token expired");
    const read = await this.readStart();
    if (!read) return;
    const { head, signedOut } = read;
    // As a logout does, and for any of the device's sessions here whose close was missed (see extendToken),
    // also when this one closed during the reads.
    if (signedOut) {
      await this.server.closeDevice(this.userId, this.deviceId, CloseCode.loggedOut, closeReasonOf(signedOut));
      return;
    }
    if (!this.open) return this.handleHeld(this.starting!.early);
    // Never past the head, as a SyncRequest: a cursor further on (an inbox put
    // back by a restore) would drop the next entries as sent already, and a
    // client taking the welcome's cursor as its own would drop them too. An
    // entry acked by another session of this device since head was read is
    // sent again, which devices drop as a repeat.
    const cursor = read.cursor < head ? read.cursor : head;
    this.announced = true;
    this.server.sessionStarted(this);
    this.sentUpTo = cursor;
    this.send(
      create(ServerFrameSchema, {
        kind: {
          case: "welcome",
          value: {
            userId: this.userId,
            deviceId: this.deviceId,
            sessionId: `${this.server.serverId}:${this.userId}:${this.deviceId}:${Date.now()}`,
            serverTime: timestampNow(),
            heartbeatIntervalMs: limits.heartbeatIntervalMs,
            headInboxSeq: head,
            deviceCursor: cursor,
            maxFrameBytes: limits.maxFrameBytes,
            maxTextCodePoints: MAX_TEXT_CODE_POINTS - 1,
          },
        },
      }),
    );
    const { heldShared, early, earlyRefused, missedLive } = this.starting!;
    this.starting = undefined;
    for (const f of heldShared ?? []) this.sendShared(f);
    if (this.heldPresence !== undefined && !this.isBackedUp()) this.sendHeldPresence();
    for (const f of early) {
      if (typeof f === "string" || f instanceof Uint8Array) this.receive(f);
      else {
        if ("expiresAtMs" in f) this.reauthsInFlight--;
        this.reauthenticate(f);
      }
    }
    for (const refused of earlyRefused ?? []) {
      this.sendError(refused, refused.unreadable ?? new ChatError("rate_limited", "too many frames before the welcome; retry later", this.frameRate().later()));
    }
    if (head > cursor || missedLive) this.pump();
  }

  /**
   * The session closed while it started, as its stream ended (the gateway moved it: its server left the
   * registry or drains) or its drain closed it, and its device was found not signed out: the read receipts
   * it held are handled all the same, as they would have been after the welcome, or they were lost, as
   * nothing sends them again. The rest are not: a send unacked is sent again; an ack moves the cursor no
   * further than it was, a sync and typing are this session's; a heartbeat would touch a device it never
   * said was online.
   */
  private handleHeld(early: Starting["early"]): void {
    for (const f of early) {
      if (typeof f !== "string" && !(f instanceof Uint8Array)) continue;
      let frame: ClientFrame;
      try {
        frame = decodeClientFrame(f, this.identity.encoding);
      } catch {
        continue;
      }
      if (frame.kind.case === "read") void this.handle(frame);
    }
  }

  /**
   * The reads a start needs, tried again after a pause when one fails (a
   * store timing out in a failover surge, when many sessions move at once).
   * Past READ_ATTEMPTS the session closes with 1013 (try again), not 1011, which a
   * gateway would pass on and so cost a session being moved its socket.
   */
  private async readStart(): Promise<{ cursor: bigint; head: bigint; signedOut: boolean | string } | undefined> {
    const { inbox, revoked } = this.server;
    for (let attempt = 1; ; attempt++) {
      try {
        const [cursor, head, signedOut] = await Promise.all([
          inbox.getCursor(this.userId, this.deviceId),
          inbox.head(this.userId),
          revoked?.(this.userId, this.deviceId) ?? false,
        ]);
        return { cursor, head, signedOut };
      } catch (err) {
        this.server.startReadFailed.warn({ err, userId: String(this.userId), attempt });
        if (attempt >= READ_ATTEMPTS) {
          this.close(CloseCode.tryAgain, "could not read the session's state; try again");
          return undefined;
        }
        await new Promise((r) => setTimeout(r, retryPause(attempt)).unref());
        if (!this.open) return undefined;
      }
    }
  }

  receive(data: Uint8Array | string): void {
    if (!this.open) return;
    if (this.starting) return this.receiveEarly(this.starting, data);
    // Decoded before it is counted, as a heartbeat is counted apart; a frame refused is decoded all the same, for its ref.
    let frame: ClientFrame | undefined;
    let unreadable: unknown;
    try {
      frame = decodeClientFrame(data, this.identity.encoding);
    } catch (err) {
      unreadable = err;
    }
    const retryAfterMs = this.admit(frame?.kind.case === "heartbeat");
    if (retryAfterMs === undefined) return;
    if (frame === undefined) {
      if (++this.badFrames >= BAD_FRAMES_BEFORE_CLOSE) return this.close(CloseCode.badFrames, "too many malformed frames");
      return this.sendError(UNREADABLE, unreadable);
    }
    if (retryAfterMs > 0) {
      // Answered with its ref, so a client knows which send to retry; a flood
      // gets at most FLOOD_FRAMES_BEFORE_CLOSE answers before it is closed.
      return this.sendError(refusalOf(frame), new ChatError("rate_limited", "too many frames; retry later", retryAfterMs));
    }
    // A frame of no kind this server knows (empty, or from a newer client) is as bad as an
    // undecodable one: answered, and closed after BAD_FRAMES_BEFORE_CLOSE in a row.
    if (frame.kind.case === undefined) {
      if (++this.badFrames >= BAD_FRAMES_BEFORE_CLOSE) return this.close(CloseCode.badFrames, "too many malformed frames");
      return this.sendError(refusalOf(frame), new ChatError("invalid_frame", "frame has no known kind"));
    }
    this.badFrames = 0;
    if (frame.kind.case === "send") {
      const refusal = refusedUncharged(frame.kind.value);
      if (refusal) return this.sendError(refusalOf(frame), refusal);
      // Before the rates: a send refused for the queue's pace takes nothing from them.
      if (this.sendsInFlight >= this.server.limits.maxSendsInFlight) {
        return this.sendError(refusalOf(frame), new ChatError("unavailable", "too many sends waiting for their acks; send again later", SENDS_BACKED_UP_RETRY_MS));
      }
      // Refused, not closed: a client that waits as told sends on. Not counted as a flood either,
      // as the frame rate bounds these refusals. Counted first: a send refused for the count
      // takes no text bytes.
      const sendWaitMs = this.server.takeSend(this.userId);
      if (sendWaitMs > 0) {
        return this.sendError(refusalOf(frame), new ChatError("rate_limited", "too many messages sent; retry later", sendWaitMs));
      }
      const textWaitMs = this.server.takeText(this.userId, textCost(frame.kind.value.text));
      if (textWaitMs > 0) {
        return this.sendError(refusalOf(frame), new ChatError("rate_limited", "too much text sent; retry later", textWaitMs));
      }
    }
    // A delivery ack (about one a message) is a cursor write with no answer: not worth an async function's frame.
    if (frame.kind.case === "deliveryAck") this.acked(frame.kind.value.inboxSeq, frame);
    else void this.handle(frame);
  }

  /**
   * A DeliveryAck: the device's cursor moves to `inboxSeq`, or to what it was sent if less.
   * Only the newest cursor matters, so while one write is out the acks that come
   * meanwhile wait as one, the highest: with the store slow, writes one per ack
   * would pile up at the frame rate. A failed write is answered to the ack whose
   * cursor it wrote; the ones it covered asked for no more than it did.
   */
  private acked(inboxSeq: bigint, frame: ClientFrame): void {
    // A device can only acknowledge what it has been sent.
    const seq = inboxSeq < this.sentUpTo ? inboxSeq : this.sentUpTo;
    if (this.ackWaiting === undefined || seq > this.ackWaiting.seq) this.ackWaiting = { seq, frame };
    if (!this.ackWriting) this.writeCursor();
  }

  /** Writes the waiting cursor, then the one that came meanwhile; also after the session closed, so its last ack is kept. */
  private writeCursor(): void {
    const ack = this.ackWaiting;
    if (ack === undefined) return;
    this.ackWaiting = undefined;
    this.ackWriting = true;
    this.server.frameWorkStarted();
    let write: Promise<void>;
    try {
      write = this.server.inbox.advanceCursor(this.userId, this.deviceId, ack.seq);
    } catch (err) {
      write = Promise.reject(err);
    }
    write
      .catch((err) => this.sendError(refusalOf(ack.frame), err))
      .finally(() => {
        this.ackWriting = false;
        // The next write counts itself before this one is done: a drain sees no gap between them.
        this.writeCursor();
        this.server.frameWorkDone();
      });
  }

  /**
   * A Reauthenticate the gateway checked. It counts as a frame, and is
   * answered in the session's order (after the welcome, like any frame).
   */
  reauthenticate(verdict: Reauthentication): void {
    if (!this.open) return;
    const refused: Refused = { ref: verdict.ref, kind: REAUTHENTICATE_KIND, clientMsgId: "" };
    const { starting } = this;
    if (starting) {
      if (starting.early.length < this.server.limits.frameBurst) {
        starting.early.push(verdict);
        if ("expiresAtMs" in verdict) this.reauthsInFlight++;
      } else if (this.refused() > 0) this.close(CloseCode.rateLimited, "too many frames: rate limit exceeded");
      else (starting.earlyRefused ??= []).push(refused);
      return;
    }
    const retryAfterMs = this.admit();
    if (retryAfterMs === undefined) return;
    if (retryAfterMs > 0) return this.sendError(refused, new ChatError("rate_limited", "too many frames; retry later", retryAfterMs));
    // A well-formed frame, whatever the verdict on its token: it ends a run of malformed ones.
    this.badFrames = 0;
    if ("refused" in verdict) return this.sendError(refused, verdict.refused);
    this.reauthsInFlight++;
    this.server.frameWorkStarted();
    this.extendToken(verdict.ref, verdict.expiresAtMs)
      .catch((err) => this.sendError(refused, err))
      .finally(() => {
        this.reauthsInFlight--;
        this.server.frameWorkDone();
        // A check that failed leaves the session on the token it had: expired meanwhile, it ends now.
        if (this.tokenExpired(Date.now())) this.close(CloseCode.tokenExpired, "access token expired");
      });
  }

  private async extendToken(ref: bigint, expiresAtMs: number): Promise<void> {
    let signedOut: boolean | string;
    try {
      signedOut = await (this.server.revoked?.(this.userId, this.deviceId) ?? false);
    } catch (err) {
      this.server.logger?.warn({ err, userId: String(this.userId) }, "reauthenticate: could not read the device");
      throw new ChatError("unavailable", "could not check the device now; try again shortly", ENGINE_RETRY_AFTER_MS);
    }
    // A token signed before the device was signed out stays valid until it
    // expires; a session whose close was missed (the routing table down)
    // must not live on with it. As a logout does: every session of the device
    // here is closed, and presence told at once (a session's own 4003 close
    // tells it nothing, leaving the device online a grace period past its last heartbeat).
    // Also when this session closed while the device was read: the device's other sessions here are signed out all the same.
    if (signedOut) {
      await this.server.closeDevice(this.userId, this.deviceId, CloseCode.loggedOut, closeReasonOf(signedOut));
      return;
    }
    if (!this.open) return;
    if (expiresAtMs > this.identity.tokenExpiresAtMs) this.identity.tokenExpiresAtMs = expiresAtMs;
    this.send(
      create(ServerFrameSchema, {
        ref,
        kind: { case: "reauthenticated", value: { tokenExpiresAt: timestampFromMs(this.identity.tokenExpiresAtMs) } },
      }),
    );
  }

  private receiveEarly(starting: Starting, data: Uint8Array | string): void {
    const { frameBurst, maxFrameBytes } = this.server.limits;
    const bytes = typeof data === "string" ? data.length : data.byteLength;
    if (starting.early.length < frameBurst && starting.earlyBytes + bytes <= 2 * maxFrameBytes) {
      if (!starting.held) this.server.frameWorkStarted();
      starting.held = true;
      starting.early.push(data);
      starting.earlyBytes += bytes;
      return;
    }
    if (this.refused() > 0) return this.close(CloseCode.rateLimited, "too many frames: rate limit exceeded");
    try {
      const frame = decodeClientFrame(data, this.identity.encoding);
      (starting.earlyRefused ??= []).push(refusalOf(frame));
    } catch (err) {
      // Answered as one after the welcome is (INVALID_FRAME): unanswered, a client never learnt why.
      if (++this.badFrames >= BAD_FRAMES_BEFORE_CLOSE) this.close(CloseCode.badFrames, "too many malformed frames");
      else (starting.earlyRefused ??= []).push({ ...UNREADABLE, unreadable: err });
    }
  }

  /**
   * A frame's work; whatever fails in it is answered here (an Error frame naming it), so the caller keeps no
   * promise of it. Counted on the server till it is done, also once the session closed: a drain waits for it.
   */
  private async handle(frame: ClientFrame): Promise<void> {
    const { kind, ref } = frame;
    this.server.frameWorkStarted();
    try {
      switch (kind.case) {
        case "send": {
          const { clientMsgId, channelId, editSeq, deleteSeq, replyToSeq, reactSeq } = kind.value;
          // The identity as the sender and the decoded frame as the command, not copies of them for every
          // send: the submitter only reads them (the SendMessage has SendCommand's fields, no others).
          this.sendsInFlight++;
          let result;
          try {
            result = await this.server.submitter.submit(this.identity, kind.value);
          } finally {
            this.sendsInFlight--;
          }
          // A resend of one accepted before (a lost ack, a move to another chat server) was counted then,
          // maybe on another server: counted again, every failover inflated the sends' rate.
          if (!result.duplicate) {
            this.server.metrics?.messagesIn.inc();
            this.server.metrics?.sendsByKind[editSeq ? "edit" : deleteSeq ? "delete" : reactSeq ? "reaction" : replyToSeq ? "reply" : "message"].inc();
          }
          // The message's own inbox copy follows in the next immediate
          // (live delivery): both frames then cost one write.
          if (!result.duplicate) this.sink.holdWrites?.();
          // Written by hand for binary sessions: one frame per message, and the generic encoder's objects cost more than the bytes.
          const ack = this.identity.encoding === "proto" ? encodeSendAckFrame(ref, clientMsgId, result.messageId, channelId, result.duplicate) : undefined;
          if (ack !== undefined) return this.sendEncoded(ack);
          this.send(
            create(ServerFrameSchema, {
              ref,
              kind: { case: "sendAck", value: { clientMsgId, channelId, messageId: result.messageId, duplicate: result.duplicate } },
            }),
          );
          return;
        }
        case "sync": {
          const limit = Math.min(kind.value.limit || SYNC_PAGE, MAX_SYNC_PAGE);
          // The device says what it has; it may have less than we thought
          // (a reinstall) or more (acks we have not seen), but never more than
          // the inbox holds: its delivery acks are bounded by this.
          const sentBefore = this.sentUpTo;
          const asked = ++this.syncsAsked;
          this.syncsStarting++;
          let head: bigint | undefined;
          let overtaken = false;
          try {
            head = await this.server.inbox.head(this.userId);
            // Reads may answer out of order (a store's pool of connections): a newer request already
            // answering supersedes this one, which must not end it and answer from its own cursor.
            overtaken = asked < this.syncTaken;
          } finally {
            // A request whose read failed gets an error and no pages, one overtaken only its last page: the pump it held back runs now.
            if (--this.syncsStarting === 0 && (head === undefined || overtaken) && this.pumpHeld) this.catchUp();
          }
          if (!this.open) return;
          if (overtaken) {
            this.send(create(ServerFrameSchema, { ref, kind: { case: "syncBatch", value: { entries: [], headInboxSeq: this.sentUpTo, hasMore: false } } }));
            return;
          }
          this.syncTaken = asked;
          const after = kind.value.afterInboxSeq < head ? kind.value.afterInboxSeq : head;
          // Live entries sent while head was read came after the request, so
          // the device gets them before the batch: unless it asked to go back
          // further than it had been sent, they are not sent again. Pages of
          // an answer this request supersedes are no such entries.
          const superseded = this.endAnswers();
          this.sentUpTo = !superseded && after >= sentBefore && this.sentUpTo > after ? this.sentUpTo : after;
          this.pump(ref, limit);
          return;
        }
        case "deliveryAck":
          return this.acked(kind.value.inboxSeq, frame);
        case "read": {
          namesChannel(kind.value.channelId);
          // A seq past any there can be reads as "everything", as the store caps it at the newest.
          await this.server.markRead(this.userId, kind.value.channelId, atMostMaxId(kind.value.seq));
          return;
        }
        case "heartbeat": {
          this.server.heartbeat(this);
          this.send(create(ServerFrameSchema, { ref, kind: { case: "heartbeatAck", value: { serverTime: timestampNow() } } }));
          return;
        }
        case "typing": {
          namesChannel(kind.value.channelId);
          await this.server.typing(this.userId, kind.value.channelId);
          return;
        }
        case "reauthenticate":
          // The keys are the gateway's: a Reauthenticate reaches a session only as its verdict.
          throw new ChatError("unauthenticated", "a Reauthenticate frame must come through a gateway");
        default:
          throw new ChatError("invalid_frame", "frame has no known kind");
      }
    } catch (err) {
      this.sendError(refusalOf(frame), err);
    } finally {
      this.server.frameWorkDone();
    }
  }

  /**
   * A new inbox entry for this user, pushed live by the pipeline. The frame
   * comes encoded (at most once per encoding, shared by the user's sessions);
   * it is sent only if it is the very next entry.
   */
  deliverLive(inboxSeq: bigint, encoded: FrameBytes): void {
    if (!this.open) return;
    if (this.starting) {
      // The cursor and head being read may be from before this entry.
      this.starting.missedLive = true;
      return;
    }
    if (inboxSeq <= this.sentUpTo) return;
    if (this.pumping || this.stalled || inboxSeq !== this.sentUpTo + 1n || this.isBackedUp()) {
      this.pump();
      return;
    }
    this.sentUpTo = inboxSeq;
    this.server.metrics?.entriesOut.inc();
    this.sendEncoded(encoded.bytes(this.identity.encoding));
  }

  /** Re-reads the inbox after sentUpTo: for entries whose live push may have been lost. */
  catchUp(): void {
    if (this.ready && this.open) this.pump();
  }

  /** Sends everything after sentUpTo as SyncBatch frames until caught up; with a ref, as the answer to that SyncRequest. */
  private pump(ref?: bigint, limit = SYNC_PAGE): void {
    if (ref !== undefined) {
      this.syncRef = ref;
      this.syncLimit = limit;
    }
    // Nor while a failed read's pause runs (its timer pumps): a live push or a
    // SyncRequest would read again at once, and a busy device's pushes ran
    // through READ_ATTEMPTS in a moment, closing it in a blip of the store.
    if (this.pumping || this.pumpRetry !== undefined) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.pumpLoop()
      .then(
        () => {
          // A pump held for a SyncRequest read nothing: no sign the inbox is back.
          if (!this.pumpHeld) this.pumpFailures = 0;
        },
        (err) => this.pumpFailed(err),
      )
      .finally(() => {
        this.pumping = false;
        if (this.pumpAgain && this.open && !this.stalled && this.pumpRetry === undefined) {
          this.pumpAgain = false;
          this.pump();
        }
      });
  }

  /**
   * An inbox read failed (the store timed out, say). A SyncRequest waiting
   * on it is told so, and the pump tries again after a pause, so entries
   * still reach the device; past READ_ATTEMPTS the session is closed, and
   * the device reconnects and syncs from its cursor, as after any outage.
   */
  private pumpFailed(err: unknown): void {
    this.server.syncFailed.warn({ err, userId: String(this.userId) });
    if (!this.open) return;
    const ref = this.syncRef ?? this.pumpRef;
    this.syncRef = this.pumpRef = undefined;
    this.pumpLimit = SYNC_PAGE;
    if (ref !== undefined) this.sendError({ ref, kind: SYNC_KIND, clientMsgId: "" }, new ChatError("unavailable", "could not read the inbox; sync again", READ_RETRY_MS));
    if (++this.pumpFailures >= READ_ATTEMPTS) return this.close(CloseCode.internal, "could not read the inbox; reconnect");
    clearTimeout(this.pumpRetry);
    this.pumpRetry = setTimeout(() => {
      this.pumpRetry = undefined;
      this.catchUp();
    }, retryPause(this.pumpFailures));
    this.pumpRetry.unref?.();
  }

  private async pumpLoop(): Promise<void> {
    const { inbox } = this.server;
    for (;;) {
      this.pumpAgain = false;
      if (!this.open) return;
      if (this.isBackedUp()) {
        this.stalled = true;
        return;
      }
      // The pages that follow a SyncRequest carry its ref.
      if (this.syncRef !== undefined) {
        this.pumpRef = this.syncRef;
        this.pumpLimit = this.syncLimit;
        this.syncRef = undefined;
      }
      if (this.holdForSync()) return;
      const ref = this.pumpRef;
      const limit = this.pumpLimit;
      const from = this.sentUpTo;
      const read = await inbox.readAfter(this.userId, from, limit, PAGE_TEXT_BYTES);
      if (!this.open || this.holdForSync()) return;
      // sentUpTo may have moved while we read, or a newer SyncRequest come: read again.
      if (this.sentUpTo !== from || this.syncRef !== undefined) continue;
      // Nothing new, nobody asked and no last page owed: stay quiet.
      if (read.length === 0 && ref === undefined && !this.moreToCome && !this.pumpAgain) return;
      const entries = withinTextBytes(read, (e) => e.message);
      const hasMore = entries.length < read.length || read.length === limit;
      const last = entries.length > 0 ? entries[entries.length - 1]!.inboxSeq : from;
      this.sentUpTo = last;
      this.moreToCome = hasMore || this.pumpAgain;
      this.server.metrics?.entriesOut.inc(entries.length);
      this.send(
        create(ServerFrameSchema, {
          ref: ref ?? 0n,
          kind: {
            case: "syncBatch",
            value: {
              entries: entries.map(inboxEntryToProto),
              headInboxSeq: last,
              hasMore: this.moreToCome,
              // Entries right after the cursor that the inbox no longer keeps:
              // the device fills them from channel history.
              expiredThrough: expiredThrough(from, entries),
            },
          },
        }),
      );
      if (!this.moreToCome) {
        this.pumpRef = undefined;
        this.pumpLimit = SYNC_PAGE;
        return;
      }
    }
  }

  /**
   * Whether the pump must stop for a SyncRequest reading head: that
   * request's pages follow from where it says, or, if it fails, the pump
   * runs again then.
   */
  private holdForSync(): boolean {
    this.pumpHeld = this.syncsStarting > 0;
    return this.pumpHeld;
  }

  /**
   * A newer SyncRequest supersedes those still being answered: each gets its
   * last page now, so a client waiting for it (a native one that half-closed)
   * is not left hanging. Returns whether there was one.
   */
  private endAnswers(): boolean {
    const refs = [this.pumpRef, this.syncRef].filter((r) => r !== undefined);
    this.pumpRef = this.syncRef = undefined;
    this.pumpLimit = SYNC_PAGE;
    for (const ref of refs) {
      this.send(create(ServerFrameSchema, { ref, kind: { case: "syncBatch", value: { entries: [], headInboxSeq: this.sentUpTo, hasMore: false } } }));
    }
    return refs.length > 0;
  }

  private isBackedUp(): boolean {
    return this.sink.paused?.() === true || this.sink.bufferedBytes() > this.server.limits.highWaterBytes;
  }

  drained(): void {
    // Not before the welcome (a gateway stream drains all its sessions at once, started or not): start() sends what is held after it.
    if (this.heldPresence !== undefined && this.ready && this.open && !this.isBackedUp()) this.sendHeldPresence();
    if (this.stalled) {
      this.stalled = false;
      this.pump();
    }
  }

  send(frame: ServerFrame): void {
    if (!this.open) return;
    this.sendEncoded(encodeServerFrame(frame, this.identity.encoding));
  }

  /** A frame that other sessions get too, encoded once for all of them. */
  sendShared(encoded: EncodedFrame): void {
    if (!this.open) return;
    const { kind } = encoded.frame;
    if (this.starting) {
      // A slow start in a busy group (a failover's surge) must not spend the held frames on
      // chatter and lose a channel event past them: presence keeps the latest per user, as for a
      // backed-up socket, and typing hints take at most half the room.
      if (kind.case === "presence") return this.holdPresence(encoded);
      const held = (this.starting.heldShared ??= []);
      if (kind.case === "typing") {
        if (held.length < HELD_SHARED_FRAMES / 2) held.push(encoded);
        return;
      }
      if (held.length >= HELD_SHARED_FRAMES) {
        // Receipts alone could fill the room in a busy group, and a channel event past them (a removal,
        // a new title) is news the client has no other live word of: the oldest hint gives way instead,
        // typing first, then a receipt (later ones supersede it, and clients read positions on welcome).
        // Then a channel's UPDATED that a newer one of the same channel replaces (each carries the whole
        // channel). A join, a leave or a new title past all that is state the client would not learn
        // live: with nothing superseded to give way, the session closes 1013 to reconnect and resync
        // (the newest was dropped, and the client kept its old view of the channel for good).
        let i = held.findIndex((f) => f.frame.kind.case === "typing");
        if (i < 0) i = held.findIndex((f) => f.frame.kind.case === "receipt");
        if (i < 0) i = held.findIndex((f, at) => replacesUpdate(encoded.frame, f.frame) || held.some((later, j) => j > at && replacesUpdate(later.frame, f.frame)));
        // A receipt past all that is the hint to give way, not a reason to reconnect.
        if (i < 0 && kind.case === "receipt") return;
        if (i < 0) return this.close(CloseCode.tryAgain, "too many channel events while the session started; reconnect to read them");
        held.splice(i, 1);
      }
      held.push(encoded);
      return;
    }
    if (kind.case === "typing" || kind.case === "presence") {
      if (this.isBackedUp()) {
        if (kind.case === "typing") return;
        return this.holdPresence(encoded);
      }
      // Room again before drained() said so: what is held goes first, or an older status would follow this one.
      if (this.heldPresence !== undefined) this.sendHeldPresence();
    }
    this.sendEncoded(encoded.bytes(this.identity.encoding));
  }

  private holdPresence(encoded: EncodedFrame): void {
    const about = encoded.frame.kind.case === "presence" ? (encoded.frame.kind.value.presence?.userId ?? 0n) : 0n;
    const held = (this.heldPresence ??= new Map());
    // Re-inserted, so the held events go out in the order of their latest flips.
    held.delete(about);
    held.set(about, encoded);
  }

  private sendHeldPresence(): void {
    const held = this.heldPresence;
    this.heldPresence = undefined;
    for (const f of held?.values() ?? []) this.sendEncoded(f.bytes(this.identity.encoding));
  }

  private sendEncoded(bytes: Uint8Array | string): void {
    if (!this.open) return;
    if (this.sink.bufferedBytes() > this.server.limits.maxBufferedBytes) {
      return this.close(CloseCode.tooSlow, "client is not reading its socket");
    }
    this.sink.send(bytes);
  }

  sendError({ ref, kind, clientMsgId }: Refused, err: unknown): void {
    // An engine's timeout or lost connection untranslated by its store (SQLite's locked file, a Redis or
    // Kafka error) is retryable: INTERNAL told the client to give the frame up, a send included.
    const outage = isChatError(err) ? undefined : this.server.frameEngineFailed.refusal(err, { userId: String(this.userId) });
    const e = isChatError(err) ? err : outage ?? new ChatError("internal", "internal error");
    this.server.metrics?.refused.inc({ code: e.code });
    if (!outage && !isChatError(err)) this.server.logger?.error({ err, userId: String(this.userId) }, "session frame failed");
    this.send(
      create(ServerFrameSchema, {
        ref,
        kind: {
          case: "error",
          value: { code: errorCodeOf[e.code], message: e.message, clientMsgId, retryAfterMs: e.retryAfterMs ?? 0, refusedKind: kind },
        },
      }),
    );
  }

  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    // Refused (signed out, a flood, a token expired, its reads failed): what it held is not handled. A drain's
    // close is no refusal: its device reconnects elsewhere, and nothing sends those frames again (handleHeld).
    if (this.starting && code !== CloseCode.goingAway) this.starting.early = [];
    clearTimeout(this.pumpRetry);
    this.server.detach(this, code);
    this.sink.close(code, reason);
  }

  closed(): void {
    if (!this.open) return;
    this.open = false;
    clearTimeout(this.pumpRetry);
    this.server.detach(this);
  }
}

/** The close reason of a device signed out: the one `revoked` gave (its account was deleted), or the usual one. */
const closeReasonOf = (signedOut: true | string): string => (typeof signedOut === "string" ? signedOut : "this device is signed out; sign in again");
