import { credentials, type ClientDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import {
  ChatServerServiceClient,
  type SessionRequest,
  type SessionResponse,
} from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import type { Reauthentication, SessionHandle, SessionHost, SessionIdentity, SessionSink } from "../chatserver/port.js";
import { errorCodeOf } from "../chatserver/errors.js";
import type { ErrorCode as WireErrorCode } from "../../gen/ts-proto/chat/v1/types.js";
import { CloseCode } from "../model/close-codes.js";
import { INTERNAL_MESSAGE_LIMITS } from "./message-limits.js";
import type { ServerInfo, ServerWatch } from "../registry/port.js";
import { monotonicNow } from "../model/clock.js";
import { ServerCooldowns } from "./cooldowns.js";

export interface RemoteSessionHostOptions {
  gatewayId: string;
  watch: ServerWatch;
  logger?: Logger;
  /** A device's WebSocket buffer above this pauses its live pushes on the chat server. */
  highWaterBytes?: number;
  /** A device whose WebSocket buffer passes this is closed as too slow. */
  maxBufferedBytes?: number;
  /** Frames a session may queue while it has no chat server (during a move). */
  maxPendingFrames?: number;
  /** Their bytes: with large frames the count alone let one device hold tens of MiB here. */
  maxPendingBytes?: number;
  /**
   * A session with no chat server for this long is closed with 1013 (try
   * again later): one with none to place it on, and one placed that waits its
   * turn to open there (maxOpensInFlight).
   */
  homelessTimeoutMs?: number;
  /**
   * A server whose stream broke, or that refused a session, is not picked
   * again for a while, even if it is the only one: its sessions wait
   * (homeless) rather than bounce off it at network speed. After a first
   * failure for between half of this and all of it; each failure in a row
   * doubles it (ServerCooldowns).
   */
  cooldownMs?: number;
  /** The longest cooldown, however many failures in a row. Default 8 × cooldownMs. */
  maxCooldownMs?: number;
  /**
   * Opens a server has not answered yet, at most, per server: the rest wait
   * their turn here, opened as those are answered. A server that comes back
   * is every homeless session's pick in the one sweep, and got all their
   * opens (each a start read of the store) at once.
   */
  maxOpensInFlight?: number;
  /**
   * How long a stream to a server that left the registry (draining, or its lease lost) may take
   * to end once this gateway half-closed it: the server reads every frame sent before the
   * half-close, then ends it, and only then are its sessions placed elsewhere. Past this it is
   * cancelled, as one that broke.
   */
  retireTimeoutMs?: number;
  /** The monotonic clock cooldowns and waits are timed on (tests). */
  now?: () => number;
  /** Where in its range each cooldown falls, in [0, 1) (tests). */
  random?: () => number;
}

/** What a session sends its chat server: a device's frame, or the verdict on a Reauthenticate. */
type Upward = Uint8Array | string | Reauthentication;

/** What queued frames hold (a string's UTF-16 length is near enough for a cap). */
function bytesOf(frames: readonly Upward[]): number {
  let n = 0;
  for (const f of frames) n += typeof f === "string" ? f.length : f instanceof Uint8Array ? f.byteLength : 64;
  return n;
}

function reauthenticationOf(v: Reauthentication): SessionRequest["kind"] {
  return {
    $case: "reauthentication",
    value:
      "refused" in v
        ? { ref: v.ref, refusedCode: errorCodeOf[v.refused.code] as number as WireErrorCode, refusedReason: v.refused.message, retryAfterMs: v.refused.retryAfterMs ?? 0 }
        : { ref: v.ref, tokenExpiresAt: new Date(v.expiresAtMs), refusedCode: 0, refusedReason: "", retryAfterMs: 0 },
  };
}

// Cooldowns and waits are timed on a clock that never steps: on the wall
// clock, one stepped back an hour (NTP, a restored VM) kept every server that
// had broken a stream or refused a session in the hour before out of reach
// for that hour, the gateway placing nothing when that was all of them.

/** Chat servers say 1013 when they are not taking sessions: the gateway tries another. */
const TRY_ELSEWHERE = 1013;

/**
 * The gateway's SessionHost in the distributed mode: it places each device
 * session on the least-loaded live chat server (from the etcd watch), carries
 * its frames over one multiplexed gRPC stream per chat server, and when that
 * server dies, its lease vanishes or it stops serving, moves the session to
 * another server without closing the device's socket. The moved session
 * resumes from the device's cursor; a send that was in flight gets no ack and
 * the device sends it again under the same client_msg_id.
 */
export class RemoteSessionHost implements SessionHost {
  private readonly links = new Map<string, ServerLink>();
  private readonly homeless = new Set<RemoteSession>();
  private readonly cooldowns: ServerCooldowns;
  private readonly placedSince = new Map<string, number>();
  private readonly publishedLoad = new Map<string, number>();
  /** The registration each server's entry was last seen written by (ServerInfo.registration). */
  private readonly registrations = new Map<string, string | undefined>();
  private nextId = 1n;
  private retryTimer?: NodeJS.Timeout;
  private closed = false;
  readonly options: Required<Omit<RemoteSessionHostOptions, "logger">> & { logger?: Logger };
  private readonly now: () => number;

  constructor(options: RemoteSessionHostOptions) {
    const cooldownMs = options.cooldownMs ?? 2_000;
    this.options = {
      highWaterBytes: 1024 * 1024,
      maxBufferedBytes: 8 * 1024 * 1024,
      maxPendingFrames: 64,
      maxPendingBytes: 4 * 1024 * 1024,
      homelessTimeoutMs: 30_000,
      cooldownMs,
      maxCooldownMs: 8 * cooldownMs,
      maxOpensInFlight: 32,
      retireTimeoutMs: 3_000,
      now: monotonicNow,
      random: Math.random,
      ...options,
    };
    this.now = this.options.now;
    this.cooldowns = new ServerCooldowns({
      firstMs: cooldownMs,
      maxMs: this.options.maxCooldownMs,
      now: this.now,
      random: this.options.random,
    });
    // The figures placements count from: unknown, the first change of any server's figure
    // reset every count, dropping what a reconnecting crowd had just been placed.
    for (const s of options.watch.servers()) {
      this.publishedLoad.set(s.serverId, s.load);
      this.registrations.set(s.serverId, s.registration);
    }
    options.watch.onChange((servers) => this.onServers(servers));
  }

  open(identity: SessionIdentity, sink: SessionSink): SessionHandle {
    const session = new RemoteSession(this, this.nextId++, identity, sink);
    this.place(session, false);
    return session;
  }

  /** @internal How many chat servers this gateway keeps figures for (cooldowns, placements): the live ones at most. */
  get serversTracked(): number {
    return new Set([...this.cooldowns.servers(), ...this.placedSince.keys(), ...this.publishedLoad.keys(), ...this.registrations.keys()]).size;
  }

  get sessionCount(): number {
    let n = this.homeless.size;
    for (const l of this.links.values()) n += l.sessions.size + l.waitingCount;
    return n;
  }

  /** Puts a session on the best live server, or parks it until one shows up. */
  place(session: RemoteSession, resumed: boolean): void {
    if (session.over) return;
    if (this.closed) return session.end(CloseCode.goingAway, "gateway shutting down");
    const server = this.pick();
    if (!server) {
      session.homelessSince ??= this.now();
      this.homeless.add(session);
      this.scheduleRetry();
      return;
    }
    this.homeless.delete(session);
    this.placedSince.set(server.serverId, (this.placedSince.get(server.serverId) ?? 0) + 1);
    this.linkFor(server).attach(session, resumed);
  }

  private pick(): ServerInfo | undefined {
    const now = this.now();
    // A server whose stream just broke or that refused a session is left
    // alone for a while; if every server is in that state the session waits
    // (homeless) instead of bouncing between them at network speed.
    const candidates = this.options.watch.servers().filter((s) => !this.cooldowns.cooling(s.serverId, now));
    let best: ServerInfo[] = [];
    let bestLoad = Infinity;
    for (const s of candidates) {
      // The registry's figure lags; count what we placed since it was published.
      const load = s.load + (this.placedSince.get(s.serverId) ?? 0);
      if (load < bestLoad) {
        best = [s];
        bestLoad = load;
      } else if (load === bestLoad) {
        best.push(s);
      }
    }
    // Ties are broken at random, so gateways that see the same figures do
    // not all pick the same server.
    return best[Math.floor(Math.random() * best.length)];
  }

  private linkFor(server: ServerInfo): ServerLink {
    const link = this.links.get(server.serverId);
    // A link being retired takes nothing new: a server back in the registry gets a stream of its own.
    if (link?.address === server.address && !link.retiring) return link;
    if (link) {
      // Its sessions, placed again as it ends, may already have opened the link to the new address.
      link.fail("server moved to a new address", "moved");
      return this.linkFor(server);
    }
    const fresh = new ServerLink(this, server.serverId, server.address);
    this.links.set(server.serverId, fresh);
    return fresh;
  }

  /**
   * @internal A server refused a session (1013: draining, or its lease
   * lost): the session goes elsewhere, and the server is left alone for the
   * cooldown. The link stays, with whatever other sessions it carries.
   */
  refused(link: ServerLink, session: RemoteSession, reason: string): void {
    const now = this.now();
    const cooldownMs = this.cooldowns.failed(link.serverId);
    // Not taken, so never in a figure it publishes: counted on, the refusals of a lease's lapse
    // (etcd away, its entry kept) kept it looking loaded once it took sessions again.
    const placed = this.placedSince.get(link.serverId) ?? 0;
    if (placed > 0) this.placedSince.set(link.serverId, placed - 1);
    // The wait starts at the first refusal and only an answer ends it: a refusal
    // slower than the cooldown always finds some server free, and would go on for good.
    session.homelessSince ??= now;
    if (now - session.homelessSince > this.options.homelessTimeoutMs) {
      return session.end(TRY_ELSEWHERE, "no chat server could take the session");
    }
    this.options.logger?.info({ serverId: link.serverId, reason, cooldownMs: Math.round(cooldownMs) }, "chat server refused a session; placing it elsewhere");
    this.place(session, true);
  }

  /** @internal A server answered a session placed on it: it is up, and its next failure starts the backoff afresh. */
  answered(link: ServerLink): void {
    this.cooldowns.answered(link.serverId);
  }

  /**
   * @internal the link to a server broke, or the server moved to a new
   * address: its sessions go elsewhere. A move is no failure: the server is
   * up at its new address (a new process there, which its predecessor's
   * failures say nothing of), and its sessions may go straight back to it.
   */
  linkFailed(link: ServerLink, sessions: RemoteSession[], reason: string, why: "failed" | "moved" | "retired"): void {
    if (this.links.get(link.serverId) === link) this.links.delete(link.serverId);
    if (why === "retired") {
      // It left the registry, where its figures went with it; ending the stream asked of it is no failure.
      this.cooldowns.forget(link.serverId);
      if (sessions.length > 0) this.options.logger?.info({ serverId: link.serverId, sessions: sessions.length, reason }, "chat server left the registry; moving its sessions");
      for (const s of sessions) this.place(s, true);
      return;
    }
    if (why === "moved") {
      this.cooldowns.forget(link.serverId);
      if (sessions.length > 0) this.options.logger?.info({ serverId: link.serverId, sessions: sessions.length }, "chat server moved to a new address; moving its sessions");
      for (const s of sessions) this.place(s, true);
      return;
    }
    const cooldownMs = this.cooldowns.failed(link.serverId);
    if (sessions.length > 0) {
      this.options.logger?.warn(
        { serverId: link.serverId, sessions: sessions.length, reason, cooldownMs: Math.round(cooldownMs), failures: this.cooldowns.failures(link.serverId) },
        "chat server link lost; moving sessions",
      );
    }
    for (const s of sessions) this.place(s, true);
  }

  private onServers(servers: ServerInfo[]): void {
    const live = new Map(servers.map((s) => [s.serverId, s]));
    // A server that left is forgotten: it gets a fresh start if it registers
    // again (a new lease), and a restart under a new id (the default) leaves
    // nothing behind, which every notification would otherwise walk.
    for (const figures of [this.placedSince, this.publishedLoad, this.registrations]) {
      for (const id of figures.keys()) if (!live.has(id)) figures.delete(id);
    }
    for (const id of [...this.cooldowns.servers()]) if (!live.has(id)) this.cooldowns.forget(id);
    // Only a server that published a new figure has taken our placements
    // into account (as far as it knows); the others keep their estimates.
    for (const s of servers) {
      // Registered afresh (etcd away for everyone keeps the entry through its lease's loss): serving
      // again, so its refusals while the lease was lost keep it out of reach no longer.
      const seen = this.registrations.get(s.serverId);
      if (seen !== undefined && s.registration !== undefined && seen !== s.registration) this.cooldowns.forget(s.serverId);
      this.registrations.set(s.serverId, s.registration);
      if (this.publishedLoad.get(s.serverId) !== s.load) {
        this.publishedLoad.set(s.serverId, s.load);
        this.placedSince.set(s.serverId, 0);
      }
    }
    // A server whose lease vanished is treated as dead even if its socket
    // still answers: it may be partitioned from etcd and about to stop.
    for (const link of [...this.links.values()]) {
      const info = live.get(link.serverId);
      if (!info) link.retire("server left the registry");
      else if (info.address !== link.address) link.fail("server moved to a new address", "moved");
      // Its failure set a cooldown after the figures were forgotten: a server that lost its
      // lease and registered again (same id) was kept out of reach for it, its sessions homeless.
      if (!info) this.cooldowns.forget(link.serverId);
    }
    if (this.homeless.size > 0) this.retryHomeless();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryHomeless();
    }, 250);
    this.retryTimer.unref();
  }

  private retryHomeless(): void {
    const now = this.now();
    for (const s of [...this.homeless]) {
      if (now - (s.homelessSince ?? now) > this.options.homelessTimeoutMs) {
        s.end(TRY_ELSEWHERE, "no chat server available");
        continue;
      }
      this.place(s, true);
    }
    if (this.homeless.size > 0) this.scheduleRetry();
  }

  /** @internal */
  forget(session: RemoteSession): void {
    this.homeless.delete(session);
  }

  /**
   * Ends every session this gateway holds with 1001 (the edge ends a socket or
   * a native gRPC stream with it, and the device reconnects elsewhere), then
   * the streams to the chat servers.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const sessions = [...this.homeless];
    for (const link of this.links.values()) sessions.push(...link.sessions.values(), ...link.waitingSessions());
    this.homeless.clear();
    for (const s of sessions) s.sink.close(CloseCode.goingAway, "gateway shutting down");
    for (const link of this.links.values()) link.shutdown();
    this.links.clear();
  }
}

/** One gRPC Session stream to one chat server, multiplexing many device sessions. */
class ServerLink {
  readonly sessions = new Map<bigint, RemoteSession>();
  private readonly client: ChatServerServiceClient;
  private readonly stream: ClientDuplexStream<SessionRequest, SessionResponse>;
  private failed = false;
  /** Client frames written to the stream and not yet handed to HTTP/2. */
  private queuedBytes = 0;
  /**
   * The stream is backed up (the chat server reads slowly, or stalled): the
   * sessions on it stop reading their devices' frames until it drains, as
   * DESIGN's write()/drain pitfall asks, rather than grpc-js buffering them all.
   */
  holding = false;
  /** Sessions opened on the server and not yet answered (maxOpensInFlight). */
  private readonly opening = new Set<RemoteSession>();
  /** Sessions placed here waiting for a free open, in order, with whether each resumes. */
  private readonly waiting = new Map<RemoteSession, boolean>();
  /** Closes those that waited past homelessTimeoutMs; set while any waits. */
  private waitTimer?: NodeJS.Timeout;
  /**
   * Half-closed because its server left the registry (retire): nothing more is written to it, and
   * its sessions' frames wait in their queues until the server has ended it.
   */
  retiring = false;
  private retireTimer?: NodeJS.Timeout;

  constructor(
    private readonly host: RemoteSessionHost,
    readonly serverId: string,
    readonly address: string,
  ) {
    this.client = new ChatServerServiceClient(address, credentials.createInsecure(), {
      ...INTERNAL_MESSAGE_LIMITS,
      // Find a silently dead server (no RST) in seconds, not minutes.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
    });
    this.stream = this.client.session();
    this.stream.on("data", (res: SessionResponse) => this.onResponse(res));
    this.stream.on("error", (err) => this.fail(err.message));
    this.stream.on("end", () => this.fail("stream ended"));
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  waitingSessions(): RemoteSession[] {
    return [...this.waiting.keys()];
  }

  /**
   * Opens the session here, or, with maxOpensInFlight unanswered, queues it: until its
   * turn it has no link, and what its device sends waits in its bounded queue as a homeless one's.
   */
  attach(session: RemoteSession, resumed: boolean): void {
    if (this.failed || this.opening.size < this.host.options.maxOpensInFlight) return this.open(session, resumed);
    session.queuedOn = this;
    // Its wait is bounded as a homeless one's: a server that answers none of its opens in
    // flight (stuck on its store) gave the sessions behind them no turn, and no word, for good.
    session.homelessSince ??= this.host.options.now();
    this.waiting.set(session, resumed);
    this.sweepWaitingLater();
  }

  private sweepWaitingLater(): void {
    if (this.waitTimer || this.failed || this.waiting.size === 0) return;
    const { homelessTimeoutMs } = this.host.options;
    this.waitTimer = setTimeout(() => {
      this.waitTimer = undefined;
      const now = this.host.options.now();
      for (const s of [...this.waiting.keys()]) {
        if (now - (s.homelessSince ?? now) > homelessTimeoutMs) s.end(TRY_ELSEWHERE, "no chat server answered in time; try again");
      }
      this.sweepWaitingLater();
    }, Math.min(1_000, homelessTimeoutMs / 4));
    this.waitTimer.unref();
  }

  /** A session waiting its turn closed: it is opened nowhere. */
  unqueue(session: RemoteSession): void {
    this.waiting.delete(session);
  }

  /** The server answered the session, refused it, or it ended: its open is in flight no more. */
  settled(session: RemoteSession): void {
    if (!this.opening.delete(session)) return;
    for (const [next, resumed] of this.waiting) {
      if (this.failed || this.opening.size >= this.host.options.maxOpensInFlight) return;
      this.waiting.delete(next);
      next.queuedOn = undefined;
      this.open(next, resumed);
    }
  }

  private open(session: RemoteSession, resumed: boolean): void {
    this.opening.add(session);
    session.link = this;
    this.sessions.set(session.id, session);
    const { identity } = session;
    this.write({
      sessionId: session.id,
      kind: {
        $case: "open",
        value: {
          userId: identity.userId,
          deviceId: identity.deviceId,
          tokenExpiresAt: new Date(identity.tokenExpiresAtMs),
          resumed,
          encoding: identity.encoding,
          gatewayId: this.host.options.gatewayId,
        },
      },
    });
    // A device still paused on its old server stays paused on the new one.
    if (session.pausedSent) this.write({ sessionId: session.id, kind: { $case: "flow", value: { paused: true } } });
    session.unanswered = [];
    session.droppedUnanswered = false;
    session.placedUnanswered = true;
    session.flushPending();
  }

  write(req: SessionRequest): void {
    if (!this.failed && !this.retiring) this.stream.write(req);
  }

  /** A device's frame, counted towards the stream's backlog. */
  writeFrame(req: SessionRequest, bytes: number): void {
    if (this.failed || this.retiring) return;
    this.queuedBytes += bytes;
    this.stream.write(req, () => {
      this.queuedBytes -= bytes;
      if (this.holding && this.queuedBytes <= this.host.options.highWaterBytes / 2) this.setHolding(false);
    });
    if (!this.holding && this.queuedBytes > this.host.options.highWaterBytes) this.setHolding(true);
  }

  private setHolding(held: boolean): void {
    this.holding = held;
    for (const s of this.sessions.values()) s.holdInput(held);
  }

  private onResponse(res: SessionResponse): void {
    const session = this.sessions.get(res.sessionId);
    if (!session || !res.kind) return;
    if (res.kind.$case === "serverFrame") {
      session.deliver(res.kind.value);
      return;
    }
    this.sessions.delete(res.sessionId);
    session.link = undefined;
    this.settled(session);
    const { code, reason } = res.kind.value;
    if (code === TRY_ELSEWHERE) {
      // What the device sent meanwhile went to a server without its session: it goes along.
      const carried = session.unanswered !== undefined;
      const dropped = session.droppedUnanswered;
      session.takeBackUnanswered();
      if (!carried && dropped) session.lostUnanswered();
      this.host.refused(this, session, reason);
      // Past the cap it was dropped, and will never be answered: the edge is told, as of a move
      // (a half-closed native stream waited for those answers until the session's silence closed it).
      if (!carried) session.sink.moved?.();
    } else {
      session.end(code, reason);
    }
  }

  detach(session: RemoteSession): void {
    if (this.sessions.delete(session.id)) this.write({ sessionId: session.id, kind: { $case: "close", value: { code: 1000 } } });
    this.settled(session);
  }

  /**
   * Its server left the registry (it drains, or lost its lease). Cancelled, the stream lost the
   * frames still on their way to the server or not yet read there (a read receipt, a typing hint,
   * a delivery ack: nothing asks for those again). Half-closed instead, it ends only once the
   * server has read every frame sent before (its sessions end there as the gateway's stream
   * does), and then its sessions move, what their devices sent meanwhile queued for the next
   * server. Bounded: a server that does not end it is taken for one that broke.
   */
  retire(reason: string): void {
    if (this.failed || this.retiring) return;
    this.retiring = true;
    for (const s of this.waiting.keys()) s.queuedOn = undefined;
    const queued = [...this.waiting.keys()];
    this.waiting.clear();
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    this.stream.end();
    this.retireTimer = setTimeout(() => this.fail(`${reason}; its stream did not end in time`), this.host.options.retireTimeoutMs);
    this.retireTimer.unref();
    // Never opened here: they go elsewhere now.
    for (const s of queued) this.host.place(s, true);
  }

  fail(reason: string, why: "failed" | "moved" = "failed"): void {
    if (this.failed) return;
    this.failed = true;
    clearTimeout(this.retireTimer);
    const retired = this.retiring;
    const moved = [...this.sessions.values()];
    this.sessions.clear();
    this.opening.clear();
    for (const s of moved) s.link = undefined;
    // Never opened here: placed again with the rest, with nothing sent to take back or to tell the edge of.
    const queued = [...this.waiting.keys()];
    this.waiting.clear();
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    for (const s of queued) s.queuedOn = undefined;
    // What a session sent before its server said a word went down with the stream, as with a
    // refusal, and its device, which will see only the next server's Welcome, has no cue to send
    // it again: it goes along (a send is idempotent by client_msg_id; the rest repeat harmlessly).
    const carried = new Set(moved.filter((s) => s.unanswered !== undefined));
    const dropped = new Set(moved.filter((s) => s.droppedUnanswered));
    for (const s of carried) s.takeBackUnanswered();
    for (const s of dropped) s.lostUnanswered();
    this.stream.cancel();
    this.client.close();
    this.host.linkFailed(this, [...moved, ...queued], reason, retired && why === "failed" ? "retired" : why);
    // Once placed: what the edge sends again goes straight to the new server, and only a
    // session with none waits with it in its bounded queue. A session whose frames went along
    // lost nothing, and an edge told otherwise would ask the same again.
    for (const s of moved) if (!carried.has(s)) s.sink.moved?.();
  }

  shutdown(): void {
    this.failed = true;
    clearTimeout(this.waitTimer);
    clearTimeout(this.retireTimer);
    this.stream.end();
    this.client.close();
  }
}

class RemoteSession implements SessionHandle {
  private current?: ServerLink;
  /** The server it was placed on, while it waits there for a free open (ServerLink.attach). */
  queuedOn?: ServerLink;
  private inputHeld = false;
  homelessSince?: number;
  /** Frames waiting for a server (a move, a turn to open): made when one waits, as most sessions never have one. */
  private pending: Upward[] | undefined;
  /**
   * Frames sent to the current server before it said anything of the
   * session: a server that then refuses it (1013) dropped them, and they go
   * to the next one. Undefined once the server has answered.
   */
  unanswered: Upward[] | undefined;
  /** Frames its current server had not answered were let go past the cap: a refusal or a break now loses them. */
  droppedUnanswered = false;
  /** Its current server has not answered it yet (kept apart from `unanswered`, which its cap ends). */
  placedUnanswered = false;
  /** This gateway asked the chat server to hold live pushes (the device's socket is backed up). */
  pausedSent = false;
  private ended = false;

  constructor(
    private readonly host: RemoteSessionHost,
    readonly id: bigint,
    readonly identity: SessionIdentity,
    readonly sink: SessionSink,
  ) {}

  /** The stream this session is on; moving it to another takes that stream's state of back-pressure along. */
  get link(): ServerLink | undefined {
    return this.current;
  }

  set link(link: ServerLink | undefined) {
    this.current = link;
    this.holdInput(link?.holding === true);
  }

  /** Reading the device's frames waits while the stream on to its chat server is backed up. */
  holdInput(held: boolean): void {
    if (held === this.inputHeld || this.ended) return;
    this.inputHeld = held;
    this.sink.holdInput?.(held);
  }

  receive(frame: Uint8Array | string): void {
    this.forward(frame);
  }

  reauthenticate(verdict: Reauthentication): void {
    // Kept here too: a move to another server opens the session there with it.
    if ("expiresAtMs" in verdict && verdict.expiresAtMs > this.identity.tokenExpiresAtMs) {
      this.identity.tokenExpiresAtMs = verdict.expiresAtMs;
    }
    this.forward(verdict);
  }

  private forward(frame: Upward): void {
    if (this.ended) return;
    const { maxPendingFrames, maxPendingBytes } = this.host.options;
    // A link being retired takes no more: the frame waits for the next server (ServerLink.retire).
    if (!this.link || this.link.retiring) {
      const pending = (this.pending ??= []);
      if (pending.length >= maxPendingFrames || bytesOf(pending) + bytesOf([frame]) > maxPendingBytes) {
        return this.end(TRY_ELSEWHERE, "chat server unavailable; reconnect later");
      }
      pending.push(frame);
      return;
    }
    if (this.unanswered) {
      // Past the cap they are not kept: a refusal or a break then costs them, and the device is told (lostUnanswered).
      if (this.unanswered.length < maxPendingFrames && bytesOf(this.unanswered) + bytesOf([frame]) <= maxPendingBytes) this.unanswered.push(frame);
      else {
        this.unanswered = undefined;
        this.droppedUnanswered = true;
      }
    }
    if (typeof frame !== "string" && !(frame instanceof Uint8Array)) {
      // Counted like a frame: a device sending Reauthenticates (refused, past one a second, but
      // each still a message) to a stalled chat server was never held back, its verdicts buffered without bound.
      return this.link.writeFrame({ sessionId: this.id, kind: reauthenticationOf(frame) }, bytesOf([frame]));
    }
    // A string is a WebSocket text frame: said so, as its bytes alone do not tell, and a binary
    // session refuses it as chatd's does rather than read a small ASCII text as a ClientFrame.
    if (typeof frame === "string") {
      const bytes = Buffer.from(frame);
      return this.link.writeFrame({ sessionId: this.id, kind: { $case: "clientFrame", value: bytes }, clientFrameText: true }, bytes.byteLength);
    }
    const bytes = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    this.link.writeFrame({ sessionId: this.id, kind: { $case: "clientFrame", value: bytes } }, bytes.byteLength);
  }

  /**
   * Its server refused it or broke before answering, and what the device sent meanwhile was let go
   * past the cap. An edge that can ask again is told as of a move (moved). A WebSocket device
   * cannot be: it sees only the next server's Welcome, its first, so those frames (sends, acks, a
   * Reauthenticate) would wait for answers that never come. Closed with 1013 before it is placed
   * again, it reconnects and sends what is unanswered again (a send is idempotent by client_msg_id).
   */
  lostUnanswered(): void {
    if (!this.sink.moved) this.end(TRY_ELSEWHERE, "frames sent before the welcome were lost with their chat server; reconnect");
  }

  /** Closed: it is placed nowhere again. */
  get over(): boolean {
    return this.ended;
  }

  /** The frames the refusing server dropped, back in front of those waiting for a server. */
  takeBackUnanswered(): void {
    if (this.unanswered?.length) this.pending = [...this.unanswered, ...(this.pending ?? [])];
    this.unanswered = undefined;
  }

  flushPending(): void {
    const frames = this.pending ?? [];
    this.pending = undefined;
    for (const f of frames) this.forward(f);
  }

  /** A frame from the chat server for the device. */
  deliver(frame: Buffer): void {
    this.unanswered = undefined;
    this.droppedUnanswered = false;
    if (this.placedUnanswered) {
      this.placedUnanswered = false;
      if (this.link) {
        this.host.answered(this.link);
        this.link.settled(this);
      }
    }
    // Only a server that answers ends the wait: one that refuses, or breaks
    // first, must not restart the clock, or the 1013 never comes while every
    // server refuses and the session bounces between them for good.
    this.homelessSince = undefined;
    if (this.sink.bufferedBytes() > this.host.options.maxBufferedBytes) {
      return this.end(CloseCode.tooSlow, "client is not reading its socket");
    }
    this.sink.send(this.identity.encoding === "json" ? frame.toString("utf8") : frame);
    if (!this.pausedSent && this.sink.bufferedBytes() > this.host.options.highWaterBytes) {
      this.pausedSent = true;
      this.link?.write({ sessionId: this.id, kind: { $case: "flow", value: { paused: true } } });
    }
  }

  drained(): void {
    if (!this.pausedSent) return;
    this.pausedSent = false;
    this.link?.write({ sessionId: this.id, kind: { $case: "flow", value: { paused: false } } });
  }

  /**
   * Closes the device's end and lets go of the session at once, as the chat
   * server does of one it closes. The edge tells closed() only once the
   * socket is gone, up to 30 s later for a device that does not answer the
   * close (one too slow to read never does): meanwhile its chat server kept
   * it, online and counted as reached (so no push), and a homeless one was
   * still placed on the next server that came up.
   */
  end(code: number, reason: string): void {
    if (this.ended) return;
    // A socket held paused would not read the device's answer to the close.
    this.holdInput(false);
    this.sink.close(code, reason);
    this.closed();
  }

  closed(): void {
    if (this.ended) return;
    this.ended = true;
    this.link?.detach(this);
    this.link = undefined;
    this.queuedOn?.unqueue(this);
    this.queuedOn = undefined;
    this.host.forget(this);
  }
}
