import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import WebSocket from "ws";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelEventKind, ClientFrameSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { callTimeoutMs, CliError, describe, isTransient, type Session } from "./client.js";
import { ServerClock } from "./server-clock.js";
import { settlesWithin } from "../model/settles-within.js";

// internal/model/close-codes.ts
const CLOSE_UNAUTHENTICATED = 4001;
const CLOSE_TOKEN_EXPIRED = 4002;
const CLOSE_LOGGED_OUT = 4003;
/** The device or the account holds its most open sessions on the gateway (CHAT_MAX_SESSIONS_PER_*). */
const CLOSE_TOO_MANY_SESSIONS = 4029;
/**
 * The least wait before trying again after 4029: a slot frees only when another session of the
 * device closes, which the backoff's first steps (under a second) would not wait for.
 */
const TOO_MANY_SESSIONS_WAIT_MS = 10_000;
/** How long a stop waits for the server to answer its close before letting the socket go. */
const GOODBYE_WAIT_MS = 1_000;
/** ClientFrame's field number of Reauthenticate, as an Error's refused_kind names it. */
const REAUTHENTICATE_KIND = ClientFrameSchema.field.reauthenticate!.number;
/** A fresh token that could not be had, or that the server could not take now, is tried again after this. */
const REAUTHENTICATE_RETRY_MS = 3_000;
/**
 * How many printed messages, and how many printed changes, following keeps
 * in mind. It follows for weeks: kept all, one entry a message or change,
 * they grew without end. A replay (an ack lost with its connection) brings
 * what came since the last ack, well within this; a change to a message
 * further back is told news or not by the server's clock alone, which errs
 * towards printing it twice, never towards not at all.
 */
export const REMEMBERED = 5_000;
/**
 * How long before a history read a reaction may have been stamped and still be missing from it: the
 * server stamps it, then stores it (a moment later; longer through a cluster's pipeline), and the
 * read's time is this machine's estimate of the server's clock, off by a trip. A reaction stamped in
 * this span is news only if the message, read again, has it and what was shown does not.
 */
export const READ_OVERLAP_MS = 10_000;

/** A map of at most `limit` entries: the one set longest ago goes first. */
export class Recent<K, V> {
  private readonly map = new Map<K, V>();
  constructor(readonly limit: number) {}
  get size(): number {
    return this.map.size;
  }
  get(key: K): V | undefined {
    return this.map.get(key);
  }
  has(key: K): boolean {
    return this.map.has(key);
  }
  set(key: K, value: V): void {
    this.map.set(key, value);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value as K);
  }
}

/** A printed message as it was shown, with the changes to it shown since. */
export interface Printed {
  deleted: boolean;
  editedMs: number;
  readMs?: number;
  reactions: Map<bigint, string>;
}

/** What following keeps in mind of what it printed, to tell a change that is news from one it showed already. */
export class FollowMemory {
  /** Each printed message as printed, by seq; `readMs` as `follow` tells; `reactions`, each user's emoji by user id, as shown since. */
  readonly printed: Recent<bigint, Printed>;
  /** The changes printed, by message id. */
  readonly changes: Recent<bigint, true>;
  constructor(limit = REMEMBERED) {
    this.printed = new Recent(limit);
    this.changes = new Recent(limit);
  }
}

export interface FollowOptions {
  channelId: bigint;
  /** Messages with seq above this are printed (the history already shown ends here). */
  afterSeq: bigint;
  /** The messages of that history, as printed: a change they already show is not news. */
  shown?: Message[];
  /**
   * When that history was read (on this machine's clock, taken before
   * asking): a reaction sent before then is in it already. Default: when
   * following starts.
   */
  shownAtMs?: number;
  print(m: Message): Promise<void>;
  /** An edit or delete of, or a reaction to, a message (target_seq set), printed once, only when it is news. */
  printChange(change: Message): Promise<void>;
  /** What happens to the connection: "connected" (a Welcome on a new one), "moved" (another on the same one), or a line to show. */
  status(line: string): void;
  signal: AbortSignal;
  /** Where what was printed is kept in mind (a test's, to look at); default a new one. */
  memory?: FollowMemory;
  /**
   * The realtime WebSocket; default `/ws` on the saved server, which is
   * chatd. A cluster serves it on its gateways, not on the api.
   */
  wsUrl?: string;
}

export function wsUrl(server: string): string {
  const u = new URL("/ws", server);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

/**
 * Prints a channel's new messages as they arrive over the realtime
 * WebSocket, until the signal aborts. Reconnects with backoff (refreshing
 * the token when the server says it expired), prints each message once and
 * in channel order, and fills any gap (messages sent while it was
 * reconnecting) from the history API. Edits, deletes and reactions are
 * printed as they happen; the ones replayed from before (the device's
 * cursor may lag far behind) are not, as the history printed shows messages
 * as they are.
 */
export async function follow(session: Session, opts: FollowOptions): Promise<void> {
  // Ends following: Ctrl+C (opts.signal), or a failure that waiting will not mend (kept in `fatal`).
  const stop = new AbortController();
  const signal = stop.signal;
  const onAbort = () => stop.abort();
  if (opts.signal.aborted) stop.abort();
  opts.signal.addEventListener("abort", onAbort, { once: true });
  let fatal: unknown;
  let lastSeq = opts.afterSeq;
  let chain = Promise.resolve();
  let attempts = 0;
  /** The server's clock when following began (the first Welcome). */
  let startedMs: number | undefined;
  /**
   * The server's clock when the history shown was read, as near as this
   * machine can tell (by the first Welcome; off by a trip or so, towards
   * printing a reaction twice rather than never).
   */
  let shownServerMs: number | undefined;
  const clock = new ServerClock();
  const memory = opts.memory ?? new FollowMemory();
  /**
   * The recent printed messages as printed, so that a replayed change one
   * already showed is not printed again; `readMs`, for one read from history
   * after following began (a gap, what came while reconnecting): when that
   * read was asked, by the server's clock, as its reactions then are shown
   * on it. Messages themselves need none of it: `lastSeq` tells a replayed one.
   */
  const printed = memory.printed;
  const remember = (m: Message, readMs?: number) =>
    printed.set(m.seq, { deleted: m.deleted, editedMs: m.editedAt ? timestampMs(m.editedAt) : 0, readMs, reactions: new Map(m.reactions.map((r) => [r.userId, r.emoji])) });
  for (const m of opts.shown ?? []) remember(m);
  /**
   * The recent changes printed, by message id: one the server brings again
   * (an ack lost with its connection) is not news twice. A reaction leaves
   * nothing on `printed` that would tell.
   */
  const printedChanges = memory.changes;
  /**
   * `fn`, tried again while it fails in a way that may mend (the server
   * restarting, a connection cut): a message is printed late rather than
   * never, and following goes on.
   */
  const patiently = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (signal.aborted || !isTransient(err)) throw err;
        const wait = Math.max(backoffMs(attempt), retryAfterMs(err));
        opts.status(`could not ${what} (${describe(err)}); trying again in ${seconds(wait)}`);
        await sleep(wait, signal);
        if (signal.aborted) throw err;
      }
    }
  };
  const print = async (m: Message, readMs?: number) => {
    await patiently(`print message #${m.seq}`, () => opts.print(m));
    remember(m, readMs);
  };

  const isNews = async (ch: Message): Promise<boolean> => {
    const at = ch.sentAt ? timestampMs(ch.sentAt) : 0;
    const was = printed.get(ch.targetSeq);
    // A message's reactions leave no trace on it but the reactions
    // themselves (history gives them as they are, not when each came), so
    // the clock tells news from a replay. One to a message not printed
    // yet will show when it is.
    if (ch.reaction) {
      if (was?.deleted || ch.targetSeq > lastSeq || shownServerMs === undefined) return false;
      // What is shown already is no news, however the clock reads: a reaction the recheck after a reconnect
      // read from history, then brought live, was printed twice when the read was asked before it was stamped.
      if (was && (was.reactions.get(ch.senderUserId) ?? "") === ch.text) return false;
      const readMs = Math.max(shownServerMs, was?.readMs ?? 0);
      if (at >= readMs) return true;
      // Stamped just before the read, it may have been stored after it, and the read not shown it: told by
      // the clock alone, it was skipped, and nothing else would bring it. A replay of what the read showed
      // is shown already; one no longer so (changed since) is not what the message has now.
      if (!was || at < readMs - READ_OVERLAP_MS) return false;
      const now = await reread(ch.targetSeq);
      return !!now && !now.deleted && (now.reactions.find((r) => r.userId === ch.senderUserId)?.emoji ?? "") === ch.text;
    }
    // A message printed unchanged cannot have had this change yet; an
    // edited one had every edit up to its edited_at (the edit's sent_at).
    if (was) return !was.deleted && (ch.deleted || at > was.editedMs);
    // Older than the history shown: only the server's clock tells news from
    // a replay. One not printed yet will be printed as it now is.
    return ch.targetSeq <= lastSeq && startedMs !== undefined && at >= startedMs;
  };

  // Everything printed goes through one chain, so order holds even when a
  // gap is being filled. A step that fails for good (not patiently mended)
  // ends following with its error.
  const step = (fn: () => Promise<void>) => {
    chain = chain.then(fn).catch((err: unknown) => {
      if (signal.aborted) return;
      fatal = err;
      stop.abort();
    });
  };
  // Entries stay in inbox order, which keeps a channel's messages in seq
  // order and each change after its message.
  const take = (entries: Message[]) => {
    const here = entries.filter((m) => m.channelId === opts.channelId);
    if (here.length === 0) return;
    step(async () => {
      for (const m of here) {
        if (m.targetSeq !== 0n) {
          if (printedChanges.has(m.messageId) || !(await isNews(m))) continue;
          await patiently(`print the change to #${m.targetSeq}`, () => opts.printChange(m));
          printedChanges.set(m.messageId, true);
          const was = printed.get(m.targetSeq);
          // A reaction changes neither the text nor whether it is deleted.
          if (m.reaction) {
            if (m.text) was?.reactions.set(m.senderUserId, m.text);
            else was?.reactions.delete(m.senderUserId);
            continue;
          }
          const at = m.sentAt ? timestampMs(m.sentAt) : 0;
          printed.set(m.targetSeq, { ...was, deleted: m.deleted || !!was?.deleted, editedMs: m.deleted ? (was?.editedMs ?? 0) : at, reactions: was?.reactions ?? new Map() });
          continue;
        }
        if (m.seq <= lastSeq) continue;
        if (m.seq > lastSeq + 1n) await fill(m.seq);
        if (m.seq <= lastSeq) continue;
        await print(m);
        lastSeq = m.seq;
      }
    });
  };
  /** A page of the chat's history; refused because I am no longer in the chat, following ends saying so. */
  const readHistory = (page: { anchorSeq: bigint; direction: PageDirection; limit: number }) =>
    stillMember(session.api.messages.listMessages({ channelId: opts.channelId, ...page }, { signal, timeoutMs: callTimeoutMs() }));
  /** Prints the messages between lastSeq and upTo (without it: all the channel has after lastSeq), from history. */
  const fill = async (upTo?: bigint) => {
    while (upTo === undefined || lastSeq + 1n < upTo) {
      const anchorSeq = lastSeq;
      // Taken before asking (each try), as the history shown is: towards printing a reaction twice rather than never.
      let readMs = 0;
      const res = await patiently(`read the messages after #${anchorSeq}`, () => {
        readMs = clock.now();
        return readHistory({ anchorSeq, direction: PageDirection.FORWARD, limit: 200 });
      });
      if (res.messages.length === 0) return;
      for (const m of res.messages) {
        if (upTo !== undefined && m.seq >= upTo) return;
        if (m.seq <= lastSeq) continue;
        await print(m, readMs);
        lastSeq = m.seq;
      }
      if (!res.hasMore) return;
    }
  };

  /** Message #seq as it is now, if the chat still has it. */
  const reread = async (seq: bigint): Promise<Message | undefined> => {
    const res = await patiently(`read message #${seq}`, () =>
      readHistory({ anchorSeq: seq + 1n, direction: PageDirection.BACKWARD, limit: 1 }),
    );
    return res.messages.find((m) => m.seq === seq);
  };

  /**
   * The edits, deletes and reactions of the messages printed (the last 200 of them, as they are
   * now), each one not yet shown printed as its change would be. Another chat-cli of this device
   * may have acked their inbox entries while this one was away, and no replay brings them then.
   */
  const recheck = async () => {
    if (lastSeq === 0n) return;
    const upTo = lastSeq;
    let readMs = 0;
    const res = await patiently(`read the messages up to #${upTo}`, () => {
      readMs = clock.now();
      return readHistory({ anchorSeq: upTo + 1n, direction: PageDirection.BACKWARD, limit: 200 });
    });
    for (const m of [...res.messages].sort((a, b) => (a.seq < b.seq ? -1 : 1))) {
      const was = printed.get(m.seq);
      if (!was || was.deleted) continue;
      if (!m.deleted) await recheckReactions(m, was, readMs);
      const editedMs = m.editedAt ? timestampMs(m.editedAt) : 0;
      if (!m.deleted && editedMs <= was.editedMs) continue;
      // Who deleted it (its sender, or a group's admin) history does not tell: no sender.
      const change = m.deleted
        ? create(MessageSchema, { channelId: m.channelId, targetSeq: m.seq, deleted: true })
        : create(MessageSchema, { channelId: m.channelId, targetSeq: m.seq, text: m.text, senderUserId: m.senderUserId, sentAt: m.editedAt });
      await patiently(`print the change to #${m.seq}`, () => opts.printChange(change));
      // As the replayed change would leave it: that one is not news again.
      printed.set(m.seq, { ...was, deleted: m.deleted, editedMs: m.deleted ? was.editedMs : editedMs });
    }
  };

  /**
   * Each user's reaction to `m` now that differs from the one shown, printed as its change would
   * be (history does not say when each came: no time). A replayed one read here already is not news
   * again: the read's time on `was` tells it, as on a message read to fill a gap.
   */
  const recheckReactions = async (m: Message, was: Printed, readMs: number) => {
    const now = new Map(m.reactions.map((r) => [r.userId, r.emoji]));
    const users = [...new Set([...was.reactions.keys(), ...now.keys()])].sort((a, b) => (a < b ? -1 : 1));
    for (const userId of users) {
      const emoji = now.get(userId) ?? "";
      if ((was.reactions.get(userId) ?? "") === emoji) continue;
      const change = create(MessageSchema, { channelId: m.channelId, targetSeq: m.seq, senderUserId: userId, text: emoji, reaction: true });
      await patiently(`print the change to #${m.seq}`, () => opts.printChange(change));
      if (emoji) was.reactions.set(userId, emoji);
      else was.reactions.delete(userId);
    }
    was.readMs = Math.max(was.readMs ?? 0, readMs);
  };

  /**
   * I left the chat (on another device), or was taken out: nothing more
   * comes for it, and following on in silence looked like a quiet chat.
   * Asked of the server after what came before is printed: a LEFT followed
   * at once by a new add leaves me in it.
   */
  const left = () =>
    step(async () => {
      await patiently("ask whether you are still in the chat", () => stillMember(session.api.channels.describeChannel({ channelId: opts.channelId }, { signal, timeoutMs: callTimeoutMs() })));
    });

  let refused = false;
  while (!signal.aborted) {
    let token: string;
    const fresh = refused;
    try {
      // A token the server refused is refreshed even if it looks fresh here.
      token = refused ? await session.refresh(true) : await session.accessToken();
      refused = false;
    } catch (err) {
      // The server down past the token's lifetime (a restart, a network cut) is waited for like a lost connection; a signed-out device is not.
      if (!isTransient(err)) throw err;
      const wait = Math.max(backoffMs(attempts++), retryAfterMs(err));
      opts.status(`cannot refresh the access token (${describe(err)}); trying again in ${seconds(wait)}`);
      await sleep(wait, signal);
      continue;
    }
    const welcomed = (serverTimeMs: number) => {
      attempts = 0;
      const again = startedMs !== undefined;
      startedMs ??= serverTimeMs;
      shownServerMs ??= clock.toServer(opts.shownAtMs ?? Date.now());
      // What was sent while it was away comes from history, not from the
      // inbox replay alone: another chat-cli of this device (a follow of
      // another chat) may have acked it, moving the cursor past it. So do
      // the changes made meanwhile to what was printed (none before the first: the history shown is new).
      step(() => fill());
      if (again) step(() => recheck());
    };
    const url = opts.wsUrl ?? wsUrl(session.login.server);
    const { code, reason, httpStatus, opened, error } = await connectOnce(url, session, token, clock, take, welcomed, left, signal, opts);
    if (signal.aborted) break;
    if (httpStatus !== undefined && refusedForGood(httpStatus)) {
      throw new CliError(`${url} answered HTTP ${httpStatus}, not a chat WebSocket (a cluster serves it on a gateway: --ws ws://host:8090/ws)`);
    }
    if (code === CLOSE_LOGGED_OUT) throw new CliError("this device was signed out; log in again", 3);
    if (code === CLOSE_TOKEN_EXPIRED || code === CLOSE_UNAUTHENTICATED) {
      refused = true;
      // A token refused just after its refresh is no stale one: that server takes none the api
      // issues (a gateway reading other keys), and refreshing again at once looped without end.
      if (fresh) {
        const wait = backoffMs(attempts++);
        opts.status(
          `${url} refused a fresh access token (close ${code}${reason ? `: ${reason}` : ""}): is it a gateway of the api at ${session.login.server} (the same CHAT_KEYS_DIR)? trying again in ${seconds(wait)}`,
        );
        await sleep(wait, signal);
      }
      continue;
    }
    if (code === CLOSE_TOO_MANY_SESSIONS) {
      const wait = TOO_MANY_SESSIONS_WAIT_MS + backoffMs(attempts++);
      opts.status(`${url} refused the session: ${reason || "too many sessions open"} (close ${code}); trying again in ${seconds(wait)}`);
      await sleep(wait, signal);
      continue;
    }
    const wait = backoffMs(attempts++);
    opts.status(`${lost(url, code, httpStatus, opened, error)}; reconnecting in ${seconds(wait)}`);
    await sleep(wait, signal);
  }
  // Stopped by Ctrl+C, a print waiting for an answer (a name asked of a silent network) is let go
  // after a moment: the stop waited for the call's deadline (15 s).
  if (fatal === undefined && opts.signal.aborted) await settlesWithin(chain, GOODBYE_WAIT_MS);
  else await chain;
  opts.signal.removeEventListener("abort", onAbort);
  if (fatal !== undefined) throw fatal;
}

/** `call`, whose refusal because I am not in the chat (taken out, or left on another device) says so in words. */
async function stillMember<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.PermissionDenied) throw new CliError("you are no longer a member of this chat (taken out, or you left it); stopped following");
    throw err;
  }
}

/**
 * A handshake answered with this status will be answered so again: a wrong
 * path or host, a page that is no WebSocket, a redirect. Retrying it for
 * good only hid the mistake; a server busy or restarting (5xx, 429, 408) is
 * waited for.
 */
function refusedForGood(status: number): boolean {
  return status < 500 && status !== 408 && status !== 425 && status !== 429;
}

/**
 * Why a connection ended, in a line: one never made ("connection lost
 * (code 1006)" after a line of its error, at each try while chatd was
 * down), one the server closed going away (a stop or restart), or one lost.
 */
function lost(url: string, code: number, httpStatus: number | undefined, opened: boolean, error: string | undefined): string {
  if (httpStatus !== undefined) return `the WebSocket answered HTTP ${httpStatus}`;
  if (!opened) return `cannot connect to ${url}${error ? ` (${error})` : ""}`;
  if (code === 1001) return `connection lost: the server is stopping or restarting (code 1001)`;
  return `connection lost (code ${code}${error ? `: ${error}` : ""})`;
}

/**
 * The wait before try `attempt` (from 0) again: full jitter, anywhere up to 0.5 s doubling to 15 s.
 * Each follower of a gateway that restarted, or of an api back from a stop, waited the same 0.5 s,
 * 1 s, 2 s: all came back in one wave at each step, the load that had felled the server.
 */
export function backoffMs(attempt: number): number {
  return Math.random() * Math.min(15_000, 500 * 2 ** attempt);
}

/**
 * How long the server asked to be left alone (a rate limit's, an overload's chat-retry-after-ms):
 * asked again at 0.5 s, 1 s, 2 s meanwhile, each try was refused, and counted against the limit.
 */
export function retryAfterMs(err: unknown): number {
  const hinted = err instanceof ConnectError ? Number(err.metadata.get("chat-retry-after-ms")) : NaN;
  return Number.isFinite(hinted) && hinted > 0 ? hinted : 0;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`;
}

/**
 * When to hand the session a fresh token: once 80% of the token's life (as
 * far as it is known, from `sinceMs`) is gone, or a minute before it ends if
 * that is sooner, but not before half of it, nor at once. A token of a
 * minute or less (CHAT_ACCESS_TOKEN_TTL_S goes down to 10) has no minute to
 * spare: each was refreshed and handed over a second after the last, as the
 * web client's were (web/src/session.ts).
 */
function reauthenticateAt(sinceMs: number, expiresMs: number, now = Date.now()): number {
  const span = expiresMs - sinceMs;
  return Math.max(now + 1000, sinceMs + 0.5 * span, Math.min(sinceMs + 0.8 * span, expiresMs - 60_000));
}

/**
 * One WebSocket session; resolves with its close code, and the HTTP status
 * of a handshake the server refused. Before the token it
 * runs on expires, it hands the server a fresh one, so that it is not closed
 * then (4002) and goes on without a reconnect.
 */
function connectOnce(
  url: string,
  session: Session,
  token: string,
  clock: ServerClock,
  take: (m: Message[]) => void,
  /** After the Welcome's server time is in `clock`. */
  welcomed: (serverTimeMs: number) => void,
  left: () => void,
  signal: AbortSignal,
  opts: FollowOptions,
): Promise<{ code: number; reason: string; httpStatus?: number; opened: boolean; error?: string }> {
  return new Promise((resolve) => {
    // A handshake a dead network never answers fails too, and is tried again: at the calls' deadline, which CHAT_CLI_CALL_TIMEOUT_MS shortens.
    const ws = new WebSocket(url, ["chat.v1.proto", `bearer.${token}`], { handshakeTimeout: callTimeoutMs() });
    let ref = 1n;
    /** When the server was last heard from: a connection that went silent is given up. */
    let heardAt = Date.now();
    let cursor = 0n;
    let heartbeat: NodeJS.Timeout | undefined;
    /** Whether this socket had its Welcome: another on it is the gateway's move of the session to another chat server, not a reconnect. */
    let welcomedHere = false;
    let ackTimer: NodeJS.Timeout | undefined;
    let closed = false;
    const send = (init: MessageInitShape<typeof ClientFrameSchema>): bigint | undefined => {
      if (ws.readyState !== WebSocket.OPEN) return undefined;
      ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ...init, ref })));
      return ref++;
    };

    /** The token the session runs on, and when it expires (this machine's clock); unknown for a token no longer the saved one. */
    let usedToken = token;
    let expiresMs = session.login.accessToken === token ? session.login.accessExpiresAtMs : undefined;
    let reauthTimer: NodeJS.Timeout | undefined;
    /** The Reauthenticate waiting for its answer. */
    let asked: { ref: bigint; token: string; sinceMs: number } | undefined;
    const scheduleReauthenticate = (sinceMs: number, delayMs?: number) => {
      clearTimeout(reauthTimer);
      if (closed || expiresMs === undefined) return;
      reauthTimer = setTimeout(() => void reauthenticate(), Math.max(1000, delayMs ?? reauthenticateAt(sinceMs, expiresMs) - Date.now()));
    };
    const reauthenticate = async () => {
      const sinceMs = Date.now();
      let fresh: string;
      try {
        fresh = await session.accessToken();
        // Fresh enough for a call, but the session needs one that outlives it.
        if (fresh === usedToken) fresh = await session.refresh(true);
      } catch (err) {
        // A signed-out device is told so by the reconnect at the token's expiry.
        if (isTransient(err)) scheduleReauthenticate(sinceMs, REAUTHENTICATE_RETRY_MS);
        return;
      }
      const sent = closed ? undefined : send({ kind: { case: "reauthenticate", value: { accessToken: fresh } } });
      if (sent !== undefined) asked = { ref: sent, token: fresh, sinceMs };
    };
    let goodbyeTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      ws.close(1000, "bye");
      // A silent network never answers the goodbye: Ctrl+C waited out ws's 30 s close timeout.
      goodbyeTimer = setTimeout(() => ws.terminate(), GOODBYE_WAIT_MS);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });

    ws.on("message", (data, isBinary) => {
      heardAt = Date.now();
      if (!isBinary) return;
      let frame;
      try {
        frame = fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer));
      } catch {
        // Skipped, as the web client does: thrown here, a frame that cannot be read (a broken proxy's) ended following with a stack trace.
        return;
      }
      const k = frame.kind;
      if (k.case === "heartbeatAck") {
        if (k.value.serverTime) clock.sample(timestampMs(k.value.serverTime));
        return;
      }
      if (k.case === "welcome") {
        const serverTimeMs = k.value.serverTime ? timestampMs(k.value.serverTime) : undefined;
        if (serverTimeMs !== undefined) clock.sample(serverTimeMs);
        welcomed(serverTimeMs ?? clock.now());
        cursor = k.value.deviceCursor;
        scheduleReauthenticate(Date.now());
        const every = Math.max(1000, k.value.heartbeatIntervalMs || 25_000);
        clearInterval(heartbeat);
        heartbeat = setInterval(() => {
          // Every heartbeat is answered: three intervals without a word is a network that dropped
          // the connection without a close (a partition, a NAT that forgot it), which TCP may not notice for minutes.
          if (Date.now() - heardAt > 3 * every) return ws.terminate();
          send({ kind: { case: "heartbeat", value: {} } });
        }, every);
        opts.status(welcomedHere ? "moved" : "connected");
        welcomedHere = true;
        return;
      }
      if (k.case === "reauthenticated" && frame.ref === asked?.ref) {
        usedToken = asked.token;
        // The server's word on when the session ends now, on this machine's clock.
        if (k.value.tokenExpiresAt) expiresMs = timestampMs(k.value.tokenExpiresAt) - clock.offsetMs();
        scheduleReauthenticate(asked.sinceMs);
        asked = undefined;
        return;
      }
      if (k.case === "error" && k.value.refusedKind === REAUTHENTICATE_KIND) {
        if (frame.ref !== asked?.ref) return;
        // Refused for good: the server closes the session when its token expires (4002), and the reconnect brings a fresh one.
        const later = k.value.code === ErrorCode.RATE_LIMITED || k.value.code === ErrorCode.UNAVAILABLE;
        if (later) scheduleReauthenticate(asked.sinceMs, k.value.retryAfterMs || REAUTHENTICATE_RETRY_MS);
        else opts.status(`server: ${k.value.message}`);
        asked = undefined;
        return;
      }
      if (k.case === "channel" && k.value.kind === ChannelEventKind.LEFT && k.value.userId === session.userId && k.value.channel?.channelId === opts.channelId) {
        left();
        return;
      }
      if (k.case === "syncBatch" && k.value.expiredThrough > 0n) {
        opts.status(`some messages are past the inbox retention window; \`chat-cli history\` shows them`);
      }
      const entries = k.case === "message" ? (k.value.entry ? [k.value.entry] : []) : k.case === "syncBatch" ? k.value.entries : [];
      if (entries.length === 0) {
        if (k.case === "error") opts.status(`server: ${k.value.message}`);
        return;
      }
      const fresh = entries.filter((e) => e.inboxSeq > cursor);
      if (fresh.length === 0) return;
      cursor = fresh[fresh.length - 1]!.inboxSeq;
      take(fresh.map((e) => e.message!).filter(Boolean));
      ackTimer ??= setTimeout(() => {
        ackTimer = undefined;
        send({ kind: { case: "deliveryAck", value: { inboxSeq: cursor } } });
      }, 100);
    });
    let httpStatus: number | undefined;
    ws.on("unexpected-response", (req, res) => {
      httpStatus = res.statusCode;
      req.destroy();
      ws.terminate();
    });
    let opened = false;
    let error: string | undefined;
    ws.on("open", () => (opened = true));
    // Said with the close that follows it, as one line.
    ws.on("error", (err) => (error ??= err.message));
    ws.on("close", (code, reason) => {
      closed = true;
      clearInterval(heartbeat);
      clearTimeout(ackTimer);
      clearTimeout(reauthTimer);
      clearTimeout(goodbyeTimer);
      signal.removeEventListener("abort", onAbort);
      resolve({ code, reason: reason.toString(), httpStatus, opened, error });
    });
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // The listener goes with the wait: left on the signal, which lasts as long as following, one more
    // stayed at every reconnect, and Node said "MaxListenersExceededWarning ... memory leak" after the 11th.
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
