import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { BlockCache } from "../accounts/blocks.js";
import { PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { ChannelMembers } from "../channels/members.js";
import type { ChannelStore } from "../channels/store.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Inbox } from "../messages/inbox.js";
import type { MessageLog } from "../messages/log.js";
import { sentAfter } from "../messages/own-messages.js";
import type { MessageSubmitter } from "../messages/submit.js";
import { ChatError } from "../model/errors.js";
import { CloseCode } from "../model/close-codes.js";
import type { Id, InboxEntry, StoredMessage } from "../model/types.js";
import { LruMap } from "../cache/lru-map.js";
import { EncodedFrame, EntryFrame, StoredMessageBytes } from "./codec.js";
import type { SessionHandle, SessionHost, SessionIdentity, SessionSink } from "./port.js";
import { Session } from "./session.js";
import type { ChatServerMetrics } from "./metrics.js";
import type { SessionRoutes } from "../routing/port.js";
import { monotonicNow } from "../model/clock.js";
import { KeyedBuckets } from "../throttle/keyed-buckets.js";
import { EngineOutageWarning, ThrottledWarning } from "../observability/outage-log.js";
import { DEFAULT_TEXT_BUDGET } from "../throttle/text-budget.js";
import { DEFAULT_SEND_RATE, SendRateLimiter } from "../throttle/send-rate.js";

const ALL_DEVICES: readonly Id[] = [];
const NOBODY: ReadonlySet<Id> = new Set();

/** How long presence events between a pair are checked against blocks after the pair's block changed: past any announcement in flight. */
const BLOCK_CHANGE_WATCH_MS = 60_000;
/**
 * A user's typing hints in one channel go out at most this often: clients
 * send one every few seconds while typing (the web client every 3 s, each
 * shown for 6), and each goes to every member, from any of up to a thousand
 * sessions of 50 frames a second.
 */
const TYPING_HINT_INTERVAL_MS = 1_000;
// That watch is timed on the monotonic clock: a wall clock stepped forward ended it at once, and let a stale ONLINE through the block.
const pairKey = (a: Id, b: Id) => (a < b ? `${a}:${b}` : `${b}:${a}`);
/** One subject's presence events to one user (to some of their devices, when named). */
const presenceKey = (to: Id, about: Id, deviceIds: readonly Id[]) => `${to}>${about}${deviceIds.length > 0 ? `/${deviceIds.join(",")}` : ""}`;
/** The idle sweep's ticks a second, each looking at that fraction of the users. */
const SWEEP_SLICES = 10;
/**
 * How long a drain waits for its routes to be removed: each Redis command
 * gives up after a second, and a user's changes land one after another.
 * Well inside the process's stop timeout.
 */
export const DRAIN_ROUTES_MS = 5_000;
/**
 * How long a drain waits for the work its sessions' frames started (a read receipt's two store
 * writes, a send being checked and published, a cursor write): the owner closes the stores after
 * the drain, and that work then failed, a receipt or a cursor lost (a send is sent again by its
 * client, a receipt never). Waited beside the routes, so a drain takes no longer at worst, and
 * well inside the process's 25 s stop.
 */
export const DRAIN_FRAMES_MS = 5_000;

export interface SessionLimits {
  /** Frames a session may send per second, sustained. */
  framesPerSecond: number;
  frameBurst: number;
  maxFrameBytes: number;
  heartbeatIntervalMs: number;
  /** Live pushes stop above this many buffered bytes; the session catches up once drained. */
  highWaterBytes: number;
  /** A session whose buffer passes this is closed as too slow. */
  maxBufferedBytes: number;
  /** A user's sessions on this server past which a new one is refused as a flood (4008). */
  maxSessionsPerUser: number;
  /** Text bytes (UTF-8) a user's sessions on this server may send per second, together (internal/throttle/text-budget.ts). */
  textBytesPerSecond: number;
  textBurstBytes: number;
  /** Sends a user's sessions on this server may make per second, together; 0: no limit (internal/throttle/send-rate.ts). */
  sendsPerSecond: number;
  sendBurst: number;
  /**
   * A session's sends waiting for their acks (the queue slow to take them) past which the next
   * is refused UNAVAILABLE with a retry time: the rates alone let them pile up, each with its
   * text, for as long as the queue held them.
   */
  maxSendsInFlight: number;
}

export const defaultLimits: SessionLimits = {
  framesPerSecond: 50,
  frameBurst: 100,
  maxFrameBytes: 512 * 1024,
  heartbeatIntervalMs: 25_000,
  highWaterBytes: 1024 * 1024,
  maxBufferedBytes: 8 * 1024 * 1024,
  // A hundred devices (an account's most) with ten tabs each.
  maxSessionsPerUser: 1000,
  ...DEFAULT_TEXT_BUDGET,
  ...DEFAULT_SEND_RATE,
  // Twice the web client's own cap (web/src/session.ts): a device that waits for its acks never meets it.
  maxSendsInFlight: 64,
};

export interface PresenceHooks {
  deviceConnected(userId: Id, deviceId: Id): void;
  /** A heartbeat; with `atMs`, the re-touch of a live session as of its last frame. */
  deviceAlive(userId: Id, deviceId: Id, atMs?: number): void;
  /**
   * The session ended; `lastAliveMs` is its last frame. `silent`: it had sent
   * nothing for three heartbeat intervals, so its end says nothing of the
   * device (a network gone without a FIN): it was last alive at `lastAliveMs`.
   */
  deviceDisconnected(userId: Id, deviceId: Id, lastAliveMs?: number, silent?: boolean): void;
  /** Logout or revocation (close code 4003): offline at once, no grace period. */
  deviceLoggedOut?(userId: Id, deviceId: Id): void;
  /**
   * Called when the presence store answers again after failing, or may have
   * lost its state: the sessions held here are touched again at once.
   */
  onStoreRecovered?(listener: () => void): void;
}

export interface ChatServerDeps {
  serverId: string;
  inbox: Inbox;
  channels: ChannelStore;
  submitter: MessageSubmitter;
  /** Records which users have sessions here (distributed mode); chatd needs none. */
  routes?: SessionRoutes;
  /** How often this server re-asserts its routes (they expire if it dies). */
  routesRefreshMs?: number;
  /** Where events for other users go: this server in chatd, the routing table when distributed. */
  directory?: SessionDirectory;
  presence?: PresenceHooks;
  /**
   * Whether a device was signed out. An access token outlives its device's
   * logout by up to its lifetime; asked as a session opens (beside its other
   * reads), so such a token opens nothing. Without it, every token that
   * verifies is let in. True, or what to tell the device (its account was
   * deleted), when it was.
   */
  revoked?: (userId: Id, deviceId: Id) => Promise<boolean | string>;
  /** Blocks between a direct chat's pair: typing there goes nowhere. Without it they are not checked. */
  blocks?: BlockCache;
  /**
   * The reader's own newest message, for a receipt's audience (see markRead). Without it every receipt
   * that moves the stored position goes to all the members.
   */
  log?: Pick<MessageLog, "latest" | "lastSentBy">;
  /**
   * Told once each time a user's read mark moves (publishReadMarks): the notifier drops the pushes it
   * still holds of what was read. Without it none are.
   */
  readMoved?: (userId: Id, channelId: Id, seq: bigint) => Promise<void>;
  limits?: Partial<SessionLimits>;
  logger?: Logger;
  metrics?: ChatServerMetrics;
}

/**
 * The chat server holds live sessions: it validates and submits what devices
 * send, and hands them what the pipeline delivers. It is the SessionHost the
 * gateway attaches devices to, and the local SessionDirectory.
 */
export class ChatServer implements SessionHost, SessionDirectory {
  readonly serverId: string;
  readonly inbox: Inbox;
  readonly submitter: MessageSubmitter;
  readonly limits: SessionLimits;
  readonly logger?: Logger;
  /**
   * Its sessions' read failures, warned of together: an inbox outage fails
   * every session in the same second, a line each (ThrottledWarning).
   */
  readonly startReadFailed: ThrottledWarning;
  readonly syncFailed: ThrottledWarning;
  /** As those: the routing store away fails every session's route as it opens and closes. */
  private readonly routeChangeFailed: Record<"add" | "remove", ThrottledWarning>;
  /** And every read receipt's fan-out. */
  private readonly receiptPushFailed: ThrottledWarning;
  private readonly readMarkPublishFailed: ThrottledWarning;
  /** And every frame whose store did not answer (answered UNAVAILABLE). */
  readonly frameEngineFailed: EngineOutageWarning;
  /** And every moved receipt's read of the reader's own newest message, the message log away. */
  private readonly receiptOwnReadFailed: ThrottledWarning;
  /** And every presence event held for a block check, the block store away. */
  private readonly heldPresenceDropped: ThrottledWarning;
  readonly metrics?: ChatServerMetrics;
  readonly revoked?: (userId: Id, deviceId: Id) => Promise<boolean | string>;
  /**
   * The sessions of each user held here, copy-on-write: a session opening or
   * closing replaces its user's list, so whoever iterates a list (a delivery,
   * the sweep) needs no copy of it. Most users have one session on a server,
   * and a list of one costs a fraction of a Set.
   */
  private readonly byUser = new Map<Id, readonly Session[]>();
  /**
   * Each user's text budget and send rate, shared by their sessions here:
   * per session, the thousand a user may hold would each bring their own.
   * Kept past the user's last session (least recently used dropped first),
   * so that reconnecting does not refill them.
   */
  private readonly textBudgets: KeyedBuckets;
  private readonly sendRates: SendRateLimiter;
  /**
   * Each user's route changes still under way, as the last of a chain: they
   * land in the order they were made (a remove sent beside a pending add
   * could land first and leave a stale route; an add beside a pending remove,
   * no route for a live session), and a session opening meanwhile starts
   * only after them, as its route is not visible before.
   */
  private readonly routeChanges = new Map<Id, Promise<void>>();
  /**
   * Users whose route could not be added: live entries for them found no
   * route and were not pushed here, so once a refresh restores it their
   * sessions read what they missed.
   */
  private readonly unrouted = new Set<Id>();
  /**
   * Users no longer held here whose route could not be removed: until it
   * expires it names this server, so the inbox writer takes them for online
   * and sends them no push. Removed again at the next refresh.
   */
  private readonly unremoved = new Set<Id>();
  /**
   * Pairs whose block changed lately ("a:b" with a < b, until when on the monotonic clock): a
   * presence event about one, its audience read before the block, may still
   * be on its way to the other after the block's OFFLINE, and would leave a
   * blocked user seeing "online". Only these pairs are checked.
   */
  private readonly blockChanged = new LruMap<string, number>(10_000);
  /** When each user's last typing hint in each channel went out here (monotonic), for TYPING_HINT_INTERVAL_MS. */
  private readonly typedAt = new LruMap<Id, Map<Id, number>>(100_000);
  /**
   * Read positions stored here whose fan-out never started ("channel:user"): a read after the write
   * (the member list, a block) failed and the receipt was refused. Its retry moves nothing, so without
   * this it went to the reader alone and the other members were never told.
   */
  private readonly untoldReads = new LruMap<string, true>(10_000);
  /**
   * Presence events waiting for their block check, by recipient and subject
   * (presenceKey): the one of each pair that came last. A newer event about
   * the same subject takes its place, and the older one, once checked, goes
   * nowhere: presence is a state, only the latest counts. At most one per
   * pair watched (blockChanged), and empty but for checks under way.
   */
  private readonly presenceHeld = new Map<string, object>();
  /**
   * Devices ("user/device") one of whose started sessions here ended while
   * another stayed: when the device was last there then. A stale session (a
   * socket gone without a FIN) can outlive the device's newer one; when it is
   * closed as silent, the device is reported gone as of this, not as of the
   * stale session's last frame (a "last seen" up to three heartbeat intervals
   * early, and offline at once instead of a grace period after it left).
   */
  private readonly endedBefore = new Map<string, number>();
  private readonly members: ChannelMembers;
  private readonly idleSweep: NodeJS.Timeout;
  /** Where the sliced sweep goes on from (a Map's iterator sees deletions and additions made after it). */
  private sweepFrom?: Iterator<readonly Session[]>;
  private readonly routesRefresh?: NodeJS.Timeout;
  /** The route refresh under way, and the one that runs after it for those who asked meanwhile. */
  private refreshing?: Promise<void>;
  /** When the last refresh that landed started (monotonic ms): every route held here was written since. */
  private routesWrittenAt = monotonicNow();
  private refreshAgain?: Promise<void>;
  private count = 0;
  /**
   * Frames' work under way (frameWorkStarted), of sessions still open or closed meanwhile: a
   * session closed with its stream leaves it running. A count, not a set of promises: it is
   * taken for every frame.
   */
  private framesInFlight = 0;
  /** Drains waiting for framesInFlight to reach 0. */
  private framesSettled: (() => void)[] = [];
  /** False while this server must not take new sessions (lost its registration, or draining). */
  accepting = true;

  constructor(private readonly deps: ChatServerDeps) {
    this.serverId = deps.serverId;
    this.inbox = deps.inbox;
    this.submitter = deps.submitter;
    this.limits = { ...defaultLimits, ...deps.limits };
    this.textBudgets = new KeyedBuckets(this.limits.textBytesPerSecond, this.limits.textBurstBytes);
    this.sendRates = new SendRateLimiter(this.limits);
    this.logger = deps.logger;
    this.startReadFailed = new ThrottledWarning({ logger: deps.logger, message: "session start: a read failed" });
    this.syncFailed = new ThrottledWarning({ logger: deps.logger, message: "sync failed" });
    this.routeChangeFailed = {
      add: new ThrottledWarning({ logger: deps.logger, message: "could not add a route" }),
      remove: new ThrottledWarning({ logger: deps.logger, message: "could not remove a route" }),
    };
    this.receiptPushFailed = new ThrottledWarning({ logger: deps.logger, message: "receipt push failed" });
    this.readMarkPublishFailed = new ThrottledWarning({ logger: deps.logger, message: "read mark not told to the notifier: held pushes of what was read may still go" });
    this.frameEngineFailed = new EngineOutageWarning({ logger: deps.logger, message: "session frame refused: a store did not answer" });
    this.receiptOwnReadFailed = new ThrottledWarning({ logger: deps.logger, message: "receipt: could not read the reader's own newest message" });
    this.heldPresenceDropped = new ThrottledWarning({
      logger: deps.logger,
      message: "presence event held for a block check dropped: the check or its delivery failed",
    });
    this.metrics = deps.metrics;
    this.revoked = deps.revoked;
    this.members = new ChannelMembers(deps.channels, undefined, deps.blocks);
    // A session that sent nothing for three heartbeat intervals is gone
    // (a half-open TCP connection): close it so its device shows offline.
    // The same sweep ends sessions whose access token expired. A tick looks at
    // a slice of the users, each about once a second in all: one pass over
    // every session held the event loop ~2.5 ms a second at 10,000 of them,
    // every message arriving meanwhile waiting behind it.
    this.idleSweep = setInterval(() => this.sweep(), 1000 / SWEEP_SLICES);
    this.idleSweep.unref();
    // Heartbeats that failed while the presence store was away, or were lost
    // with its data, are not waited for: every session here is alive again.
    deps.presence?.onStoreRecovered?.(() => this.retouchPresence());
    if (deps.routes) {
      this.routesRefresh = setInterval(() => void this.refreshRoutes(), deps.routesRefreshMs ?? 20_000);
      this.routesRefresh.unref();
      deps.routes.onReset?.(() => {
        this.logger?.info("session routes were reset: re-asserting them and catching sessions up");
        void this.refreshRoutes().then(() => {
          for (const list of this.byUser.values()) for (const s of list) s.catchUp();
        });
      });
    }
  }

  /**
   * Re-asserts the route of every user held here (also after the routing
   * store lost its state). Refreshes never overlap: one asked for while
   * another runs waits for it, then runs once for everyone who asked
   * meanwhile. It must run again rather than share the running one, whose
   * list of users predates the ask (a reset may have lost what it already
   * wrote); and overlapping ones piled up on a slow store, each writing
   * every route, one per interval tick.
   */
  refreshRoutes(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain ??= this.refreshing.then(() => {
        this.refreshAgain = undefined;
        return this.refreshRoutes();
      });
      return this.refreshAgain;
    }
    const run = this.refreshRoutesOnce().finally(() => {
      if (this.refreshing === run) this.refreshing = undefined;
    });
    this.refreshing = run;
    return run;
  }

  private async refreshRoutesOnce(): Promise<void> {
    const routes = this.deps.routes;
    if (!routes) return;
    const missing = [...this.unrouted];
    const held = [...this.byUser.keys()];
    const startedAt = monotonicNow();
    try {
      await routes.refresh(this.serverId, held);
      // Refreshes failed for longer than a route lives, the store's connection up (Redis refusing
      // writes at its maxmemory): no reset told, and the routes may have lapsed meanwhile, what
      // was pushed then reaching no one. Every session catches up, as after a reset.
      const lapsed = routes.ttlMs !== undefined && monotonicNow() - this.routesWrittenAt >= routes.ttlMs;
      this.routesWrittenAt = startedAt;
      for (const userId of missing) this.unrouted.delete(userId);
      for (const userId of lapsed ? held : missing) for (const s of this.byUser.get(userId) ?? []) s.catchUp();
    } catch (err) {
      this.logger?.warn({ err }, "could not refresh session routes");
    }
    // The refresh is not atomic (the Redis adapter sends it in chunks, one
    // after another): the last session of a user may end while it is under
    // way, and the refresh's touch land after that session's remove, putting
    // back a route to a server that no longer holds the user. Even a failed
    // refresh may have landed some chunks.
    const stale = new Set([...held, ...this.unremoved].filter((u) => !this.byUser.has(u)));
    await Promise.all([...stale].map((u) => this.changeRoute(u, "remove", () => routes.remove(u, this.serverId))));
  }

  /** Touches the device of every started session held here, as of its last frame. */
  retouchPresence(): void {
    const presence = this.deps.presence;
    if (!presence) return;
    for (const list of this.byUser.values()) for (const s of list) if (s.started) presence.deviceAlive(s.userId, s.deviceId, s.idleSinceMs);
  }

  get sessionCount(): number {
    return this.count;
  }

  open(identity: SessionIdentity, sink: SessionSink): SessionHandle {
    const session = new Session(this, identity, sink);
    if (!this.accepting) {
      // Draining: a listener still taking connections (chatd's gRPC one, for the
      // gateways' close) must not welcome a device only to reset it a moment later.
      session.close(CloseCode.goingAway, "server shutting down");
      return session;
    }
    const list = this.byUser.get(identity.userId);
    if (list !== undefined && list.length >= this.limits.maxSessionsPerUser) {
      // Each open and close copies the user's list (copy-on-write): one account's sockets by the
      // ten thousand made those quadratic, 50,000 of them a minute of event loop held from everyone.
      // Told as the gateways' caps are (4029: back off), not as a flood (4008), which it is not.
      session.close(CloseCode.tooManySessions, `too many sessions of this user (at most ${this.limits.maxSessionsPerUser} on a server)`);
      return session;
    }
    const firstHere = list === undefined;
    this.byUser.set(identity.userId, list ? [...list, session] : [session]);
    this.count++;
    this.deps.metrics?.sessions.inc();
    // The route must be visible before the session reads its inbox: an entry
    // written after that read is then pushed live, one written before is read.
    // That holds for a user's later sessions too, opened while the first's add
    // is under way. Without a route (the add failed) every session still
    // works: the periodic refresh restores the route, then catches it up.
    const routes = this.deps.routes;
    if (firstHere && routes) {
      this.unremoved.delete(identity.userId);
      void this.changeRoute(identity.userId, "add", () => routes.add(identity.userId, this.serverId));
    }
    const routed = this.routeChanges.get(identity.userId) ?? Promise.resolve();
    routed.then(() => session.start()).catch((err) => {
      this.logger?.error({ err }, "session start failed");
      session.close(CloseCode.internal, "could not start the session");
    });
    return session;
  }

  /** @internal A session started work for a frame (its handler, a cursor write): a drain waits for it, until frameWorkDone. */
  frameWorkStarted(): void {
    this.framesInFlight++;
  }

  /** @internal */
  frameWorkDone(): void {
    if (--this.framesInFlight === 0) for (const settled of this.framesSettled.splice(0)) settled();
  }

  /** @internal Takes `bytes` of text from the user's budget: 0 when allowed, else the milliseconds to wait. */
  takeText(userId: Id, bytes: number): number {
    return this.textBudgets.take(String(userId), bytes);
  }

  /** @internal Counts a send of the user's against their send rate: 0 when allowed, else the milliseconds to wait. */
  takeSend(userId: Id): number {
    return this.sendRates.take(userId);
  }

  /** @internal called by Session when it ends. */
  detach(session: Session, code?: number): void {
    const list = this.byUser.get(session.userId);
    if (!list?.includes(session)) return;
    const rest = list.filter((s) => s !== session);
    if (rest.length > 0) {
      this.byUser.set(session.userId, rest);
    } else {
      this.byUser.delete(session.userId);
      this.unrouted.delete(session.userId);
      const routes = this.deps.routes;
      if (routes) void this.changeRoute(session.userId, "remove", () => routes.remove(session.userId, this.serverId));
    }
    this.count--;
    this.deps.metrics?.sessions.dec();
    const device = `${session.userId}/${session.deviceId}`;
    const stillThere = rest.some((s) => s.deviceId === session.deviceId);
    const silent = session.silentForMs(performance.now()) > 3 * this.limits.heartbeatIntervalMs;
    // When the device was last there: at its own close, or its last frame for a silent session.
    const endedAtMs = silent ? session.idleSinceMs : Date.now();
    const endedBefore = this.endedBefore.get(device);
    if (stillThere) {
      if (session.started && code !== CloseCode.loggedOut) this.endedBefore.set(device, Math.max(endedAtMs, endedBefore ?? -Infinity));
      return;
    }
    this.endedBefore.delete(device);
    // A logout is reported by closeDevice, at once rather than after the grace
    // period; a session that never started never said its device was online.
    if (code === CloseCode.loggedOut) return;
    if (session.started && endedAtMs >= (endedBefore ?? -Infinity)) {
      this.deps.presence?.deviceDisconnected(session.userId, session.deviceId, session.idleSinceMs, silent);
    } else if (endedBefore !== undefined) {
      // A newer session of the device ended after this one's last frame: the device was there until then.
      this.deps.presence?.deviceDisconnected(session.userId, session.deviceId, endedBefore, true);
    }
  }

  /**
   * Makes a change to a user's route once the changes before it landed; one
   * that fails is logged, and the next goes on. Resolves (never rejects) when
   * it is done.
   */
  private changeRoute(userId: Id, what: "add" | "remove", change: () => Promise<void>): Promise<void> {
    const done = (this.routeChanges.get(userId) ?? Promise.resolve())
      .then(change)
      .then(
        () => void (what === "add" ? this.unrouted.delete(userId) : this.unremoved.delete(userId)),
        (err) => {
          this.routeChangeFailed[what].warn({ err });
          if (what === "add") this.unrouted.add(userId);
          // Unless the user came back meanwhile: their add is chained after this.
          else if (!this.byUser.has(userId)) this.unremoved.add(userId);
        },
      );
    this.routeChanges.set(userId, done);
    void done.then(() => {
      if (this.routeChanges.get(userId) === done) this.routeChanges.delete(userId);
    });
    return done;
  }

  /** @internal the session passed its checks and is welcomed: its device is online. */
  sessionStarted(session: Session): void {
    this.deps.presence?.deviceConnected(session.userId, session.deviceId);
  }

  /** @internal */
  heartbeat(session: Session): void {
    this.deps.presence?.deviceAlive(session.userId, session.deviceId);
  }

  // SessionDirectory, for the sessions on this server.

  async pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void> {
    for (const u of userIds) this.deliverChecked(u, ALL_DEVICES, frame);
  }

  async pushMany(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<ReadonlySet<Id>> {
    const reached = new Set<Id>();
    for (const { userId, frame } of items) if (this.deliverChecked(userId, ALL_DEVICES, frame) > 0) reached.add(userId);
    return reached;
  }

  /**
   * pushMany of each entry's delivery frame, encoded only for users held
   * here, each message once for all its entries: live delivery in chatd,
   * where building the frames as protobuf objects cost more than the
   * encoding. Returns the users not reached (SessionDirectory.pushEntries).
   */
  pushEntries(items: readonly { userId: Id; entry: InboxEntry }[]): ReadonlySet<Id> {
    let missed: Set<Id> | undefined;
    let message: StoredMessageBytes | undefined;
    for (const { userId, entry } of items) {
      const sessions = this.byUser.get(userId);
      if (sessions === undefined) {
        (missed ??= new Set()).add(userId);
        continue;
      }
      if (message?.message !== entry.message) message = new StoredMessageBytes(entry.message);
      const frame = new EntryFrame(entry, message);
      let started = false;
      for (const s of sessions) {
        s.deliverLive(entry.inboxSeq, frame);
        if (s.started) started = true;
      }
      if (!started) (missed ??= new Set()).add(userId);
    }
    return missed ?? NOBODY;
  }

  /**
   * deliverLocal, but a presence event about someone the user and they lately
   * blocked (either way) goes nowhere, unless it tells nothing: an OFFLINE
   * without a last seen, as the block itself sends. `protoBytes`, when the
   * frame came encoded, are its wire bytes, passed on to binary sessions.
   *
   * Nothing waits here for a block check: an event that needs one is held
   * apart until it answers, and the call returns at once with the sessions
   * it is queued on. Awaited, one slow check (a store read, up to its
   * timeout while the store is away) held every event after it: the rest of
   * an announcement's audience (chatd), and the whole DeliverStream batch,
   * whose sender then sent no other presence meanwhile and tore the stream
   * down after 2 s, with the typing hints and receipts on it. Of one
   * subject's events to one user, the one that came last is the one the
   * user ends with: a newer event, checked or not, replaces the one still
   * held (a later OFFLINE no longer waits behind an ONLINE being checked,
   * nor does that ONLINE land after it). Events about others do not wait
   * for it either. A check that fails drops its event (the pair's block
   * changed a moment ago; the subject's next flip tells them). Returned, an
   * event has its place: any that comes after it replaces or follows it,
   * which is what an announcement that reads the latest flip again after
   * its push relies on (PresenceTracker.tellUntilSteady).
   */
  deliverChecked(userId: Id, deviceIds: readonly Id[], frame: ServerFrame, protoBytes?: Uint8Array): number {
    const p = frame.kind.case === "presence" ? frame.kind.value.presence : undefined;
    if (p === undefined) return this.deliverLocal(userId, deviceIds, frame, protoBytes);
    const key = presenceKey(userId, p.userId, deviceIds);
    // Whatever of the subject's still waits is older than this: stale now.
    this.presenceHeld.delete(key);
    const tells = p.status === PresenceStatus.ONLINE || p.lastSeenAt !== undefined;
    const blocks = this.deps.blocks;
    if (!tells || !blocks || !this.watched(userId, p.userId)) return this.deliverLocal(userId, deviceIds, frame, protoBytes);
    const held = {};
    this.presenceHeld.set(key, held);
    const latest = () => this.presenceHeld.get(key) === held && this.presenceHeld.delete(key);
    // Nobody awaits this: whatever fails in it ends here, not as an unhandled rejection.
    blocks
      .blockersBetween(userId, p.userId)
      .then((blockers) => {
        if (latest() && blockers.length === 0) this.deliverLocal(userId, deviceIds, frame, protoBytes);
      })
      .catch((err: unknown) => {
        latest();
        this.heldPresenceDropped.warn({ err, userId: String(userId) });
      });
    return this.startedSessions(userId, deviceIds);
  }

  /** Whether a presence event about `about` must be checked against blocks before it reaches `userId`: their block changed lately. */
  private watched(userId: Id, about: Id): boolean {
    if (this.blockChanged.size === 0) return false;
    const key = pairKey(userId, about);
    const until = this.blockChanged.peek(key);
    if (until === undefined) return false;
    if (until > monotonicNow()) return true;
    this.blockChanged.delete(key);
    return false;
  }

  /**
   * Hands a frame to this server's sessions of one user (all devices when
   * deviceIds is empty); returns how many of them are started. One still
   * starting gets the frame too (after its welcome), but is not counted: it
   * has not yet been checked against a logout, and a token outlives its
   * device's logout, so counted it would keep the user "online" and hold
   * back their push notifications; and it may yet fail to start.
   */
  deliverLocal(userId: Id, deviceIds: readonly Id[], frame: ServerFrame, protoBytes?: Uint8Array): number {
    const sessions = this.byUser.get(userId);
    if (sessions === undefined) return 0;
    const entry = frame.kind.case === "message" ? frame.kind.value.entry : undefined;
    if (frame.kind.case === "message" && !entry?.message) return 0;
    // Encoded at most once per encoding for all of the user's sessions.
    const encoded = new EncodedFrame(frame, protoBytes);
    let n = 0;
    for (const s of sessions) {
      if (deviceIds.length > 0 && !deviceIds.includes(s.deviceId)) continue;
      if (entry) s.deliverLive(entry.inboxSeq, encoded);
      else s.sendShared(encoded);
      if (s.started) n++;
    }
    return n;
  }

  /** The started sessions of one user here (of `deviceIds`, or all): those deliverLocal counts. */
  private startedSessions(userId: Id, deviceIds: readonly Id[]): number {
    let n = 0;
    for (const s of this.byUser.get(userId) ?? []) if (s.started && (deviceIds.length === 0 || deviceIds.includes(s.deviceId))) n++;
    return n;
  }

  /** Closes this server's sessions of one device; resolves to how many it closed. */
  async closeDevice(userId: Id, deviceId: Id, code: number, reason: string): Promise<number> {
    let closed = 0;
    for (const s of this.byUser.get(userId) ?? []) {
      if (s.deviceId !== deviceId) continue;
      s.close(code, reason);
      closed++;
    }
    if (code === CloseCode.loggedOut) {
      const presence = this.deps.presence;
      if (presence?.deviceLoggedOut) presence.deviceLoggedOut(userId, deviceId);
      else presence?.deviceDisconnected(userId, deviceId);
    }
    return closed;
  }

  /** Users with a started session here (not one still starting: see deliverLocal). */
  async onlineUsers(userIds: readonly Id[]): Promise<Set<Id>> {
    return new Set(userIds.filter((u) => this.byUser.get(u)?.some((s) => s.started)));
  }

  /** A block or an unblock between the pair was made elsewhere: the next check reads it anew. */
  forgetBlock(a: Id, b: Id): void {
    this.deps.blocks?.forget(a, b);
    this.blockChanged.set(pairKey(a, b), monotonicNow() + BLOCK_CHANGE_WATCH_MS);
    // The pair's next hint is checked against the block as it now stands, not dropped as a repeat.
    this.typedAt.delete(a);
    this.typedAt.delete(b);
  }

  // Events that fan out to a channel's members.

  /** @internal */
  async markRead(userId: Id, channelId: Id, seq: bigint): Promise<void> {
    const channels = this.deps.channels;
    const member = await channels.getMember(channelId, userId);
    if (!member) throw new ChatError("not_a_member", "not a member of this channel");
    const { readSeq, newest } = await channels.advanceReadSeq(channelId, userId, seq);
    // Only a receipt that moved the position is news to the other members: one that moves nothing, repeated,
    // was a fan-out to the whole group each time. The reader's own devices hear it either way (it was taken).
    // Across a block in a direct chat only the reader's own devices hear of it: the pair tell each other nothing.
    // memberIds first: it learns the pair that isBlocked asks about.
    // As MarkRead: one that moved the stored position below the reader's own newest message moved nothing
    // the others are shown (ListMembers counts the reader's own message as read), and told, it moved their
    // view of the reader back (a device behind the one that sent). Only the reader's devices hear it.
    const untold = `${channelId}:${userId}`;
    // Once per move, beside the receipt's reads: best effort, as a push is; a failure refuses nothing.
    const toldNotifier =
      readSeq > member.readSeq && this.deps.readMoved
        ? this.deps.readMoved(userId, channelId, readSeq).catch((err: unknown) => this.readMarkPublishFailed.warn({ err, userId: String(userId) }))
        : undefined;
    const moved = readSeq > member.readSeq || this.untoldReads.peek(untold) !== undefined;
    let members: readonly Id[] = [userId];
    if (moved) {
      try {
        const [memberIds, ownAhead] = await Promise.all([this.members.memberIds(channelId), this.sentAfter(channelId, userId, readSeq, newest)]);
        if (!ownAhead && !(await this.members.isBlocked(channelId, userId))) members = memberIds;
      } catch (err) {
        this.untoldReads.set(untold, true);
        throw err;
      }
      this.untoldReads.delete(untold);
    }
    // The position is stored: a push that fails (the routes unreadable) is logged, as MarkRead does, not
    // refused, since a retry would move nothing and so tell the other members nothing either.
    await (this.deps.directory ?? this)
      .pushToUsers(members, create(ServerFrameSchema, { kind: { case: "receipt", value: { channelId, userId, seq: readSeq } } }))
      .catch((err: unknown) => this.receiptPushFailed.warn({ err, userId: String(userId) }));
    await toldNotifier;
  }

  /**
   * Whether the user sent a message of the channel after `seq` (sentAfter), `newest` being the channel's
   * newest message as advanceReadSeq read it. Unreadable, it answers false: the receipt goes to
   * everyone, as it did before this was asked.
   */
  private async sentAfter(channelId: Id, userId: Id, seq: bigint, newest: StoredMessage | undefined): Promise<boolean> {
    const log = this.deps.log;
    if (!log) return false;
    try {
      return await sentAfter(log, channelId, userId, seq, newest);
    } catch (err) {
      this.receiptOwnReadFailed.warn({ err, userId: String(userId) });
      return false;
    }
  }

  /** @internal */
  async typing(userId: Id, channelId: Id): Promise<void> {
    // Marked before the reads, so hints arriving together pass one at a time; a refused one takes its mark back.
    const now = monotonicNow();
    let typed = this.typedAt.get(userId);
    if (typed === undefined) this.typedAt.set(userId, (typed = new Map()));
    const last = typed.get(channelId);
    if (last !== undefined && now - last < TYPING_HINT_INTERVAL_MS) return;
    for (const [id, at] of typed) if (now - at >= TYPING_HINT_INTERVAL_MS) typed.delete(id);
    typed.set(channelId, now);
    if (!(await this.members.isMember(channelId, userId))) {
      typed.delete(channelId);
      throw new ChatError("not_a_member", "not a member of this channel");
    }
    // Typing is a hint with no answer: into a blocked chat it is dropped, not refused.
    if (await this.members.isBlocked(channelId, userId)) return;
    const others = (await this.members.memberIds(channelId)).filter((u) => u !== userId);
    // A hint has no answer and its next, a few seconds on, is the retry: a fan-out that fails (the
    // routes unreadable) is dropped, at debug since every typist would log it, not answered INTERNAL.
    await (this.deps.directory ?? this)
      .pushToUsers(others, create(ServerFrameSchema, { kind: { case: "typing", value: { channelId, userId } } }))
      .catch((err: unknown) => this.logger?.debug({ err, userId: String(userId) }, "typing push failed"));
  }

  /**
   * One slice of the idle sweep, the next tenth of the users (SWEEP_SLICES)
   * from where the last stopped: sessions whose token expired, and sessions
   * silent for three heartbeat intervals.
   */
  private sweep(): void {
    const now = Date.now();
    const nowMono = performance.now();
    const silentLimitMs = 3 * this.limits.heartbeatIntervalMs;
    // No copies: closing a session replaces or deletes its user's entry,
    // which a Map's iteration allows, and leaves the list being read alone.
    let users = Math.ceil(this.byUser.size / SWEEP_SLICES);
    let restarted = false;
    while (users-- > 0) {
      let next = this.sweepFrom?.next();
      if (next === undefined || next.done) {
        if (restarted) return; // fewer users left than the slice: all seen
        restarted = true;
        this.sweepFrom = this.byUser.values();
        next = this.sweepFrom.next();
        if (next.done) return;
      }
      for (const s of next.value) {
        if (s.tokenExpired(now)) s.close(CloseCode.tokenExpired, "access token expired");
        else if (s.silentForMs(nowMono) > silentLimitMs) s.close(CloseCode.goingAway, "no heartbeat");
      }
    }
  }

  /**
   * Closes every session with 1001 so devices reconnect elsewhere. Resolves
   * once the routes naming this server are removed and the work its
   * sessions' frames started is done (true), or after `routesWithinMs` and
   * `framesWithinMs` (false). The caller closes the stores only then: a
   * remove still chained behind another change, or a refresh's, was lost
   * with the routing store, and the route left behind sent the users'
   * messages to a server that is gone, and kept them "online" (no push)
   * until it expired; a read receipt or a cursor write under way failed,
   * and nothing writes it again.
   */
  async drain(reason = "server shutting down", routesWithinMs = DRAIN_ROUTES_MS, framesWithinMs = DRAIN_FRAMES_MS): Promise<boolean> {
    this.accepting = false;
    clearInterval(this.idleSweep);
    clearInterval(this.routesRefresh);
    for (const list of this.byUser.values()) for (const s of list) s.close(CloseCode.goingAway, reason);
    const routes = this.deps.routes;
    // No refresh comes to retry the removes that failed before.
    if (routes) for (const u of this.unremoved) if (!this.byUser.has(u)) void this.changeRoute(u, "remove", () => routes.remove(u, this.serverId));
    const [routed, handled] = await Promise.all([routes ? this.routesSettled(routesWithinMs) : true, this.framesDone(framesWithinMs)]);
    return routed && handled;
  }

  /** Waits until no frame's work is under way (framesInFlight), at most `withinMs`. */
  private async framesDone(withinMs: number): Promise<boolean> {
    if (this.framesInFlight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    let settled: (() => void) | undefined;
    const done = await new Promise<boolean>((resolve) => {
      settled = () => resolve(true);
      this.framesSettled.push(settled);
      timer = setTimeout(() => resolve(false), withinMs);
    });
    clearTimeout(timer);
    this.framesSettled = this.framesSettled.filter((s) => s !== settled);
    if (!done) this.logger?.warn({ frames: this.framesInFlight, withinMs }, "draining: frames' work not done in time; it may fail as the stores close");
    return done;
  }

  /** Waits until no route change or refresh is under way (those may chain more), at most `withinMs`. */
  private async routesSettled(withinMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), withinMs)));
    const settled = (async () => {
      while (this.refreshing || this.routeChanges.size > 0) await Promise.all([this.refreshAgain ?? this.refreshing, ...this.routeChanges.values()]);
      return true as const;
    })();
    try {
      const done = await Promise.race([settled, late]);
      if (!done) this.logger?.warn({ users: this.routeChanges.size, withinMs }, "draining: session routes not removed in time; they expire on their own");
      return done;
    } finally {
      clearTimeout(timer);
    }
  }
}
