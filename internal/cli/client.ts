import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthService, type Credentials } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { ChannelKind, type Channel, type User } from "../../gen/es/chat/v1/types_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { LruMap } from "../cache/lru-map.js";
import { RefreshLockBusy, type LoginStore, type SavedLogin } from "./store.js";

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * The CliError behind `err`: itself, or one thrown inside a call (the token
 * refresh of the bearer interceptor, refused for a signed-out device), which
 * the Connect client hands on wrapped in a ConnectError.
 */
export function cliErrorOf(err: unknown): CliError | undefined {
  if (err instanceof CliError) return err;
  if (err instanceof ConnectError && err.cause instanceof CliError) return err.cause;
  return undefined;
}

/** The server each call that failed went to: what went wrong before any answer names it. */
const failedAt = new WeakMap<ConnectError, string>();
/** The servers that answered a call of this process: a hang-up from one is a cut connection, no wrong scheme or port. */
const answeredBy = new Set<string>();

/** The system's code of what failed under a call (ECONNREFUSED, HPE_…, a TLS check's), from its causes. */
function systemCode(err: ConnectError): string | undefined {
  let cause: unknown = err.cause;
  for (let depth = 0; depth < 4 && cause instanceof Error; depth++) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === "string") return code;
    cause = cause.cause;
  }
  return undefined;
}

/** Failures to connect at all: nothing listens there, or the name does not resolve. */
const UNREACHABLE = new Set(["ECONNREFUSED", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT"]);
/** A certificate this machine does not trust: chatd's own, made for CHAT_TLS_CERT, as a rule. */
const UNTRUSTED = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
]);

/**
 * What went wrong, in a line: the server's reason, or why there was no
 * answer, naming the address and the likely mistake (chatd not started, its
 * gRPC port for its HTTP one, a certificate not trusted here), which
 * Node's words alone ("write EPIPE", "Parse Error: Expected HTTP/") left a
 * newcomer to guess.
 */
export function describe(err: unknown): string {
  const cli = cliErrorOf(err);
  if (cli) return cli.message;
  if (err instanceof ConnectError) {
    const server = failedAt.get(err);
    const at = server ? ` at ${server}` : "";
    const code = systemCode(err);
    if (code === "ENOTFOUND") return `cannot reach the server${at}: no host has that name (${code})`;
    if (code && UNREACHABLE.has(code)) return `cannot reach the server${at} (${code}): is chatd running there? (npm start)`;
    if (code && UNTRUSTED.has(code)) {
      return `the TLS certificate of the server${at} is not trusted here (${err.rawMessage.trim()}); trust it with NODE_EXTRA_CA_CERTS=/path/to/cert.pem`;
    }
    if (code === "EPROTO" && /wrong version number/i.test(err.rawMessage)) return `the server${at} does not speak TLS: use http://, not https://`;
    // Mid-follow (a restart, a proxy's reset), the advice below sent the reader to check a URL that had just worked.
    if ((code === "ECONNRESET" || code === "EPIPE") && server && answeredBy.has(server)) return `the connection to the server${at} was cut (${code})`;
    // A TLS listener spoken to in plaintext hangs up without a byte, as a gRPC
    // port may before its HTTP/2 bytes arrive: both are likely, so name both.
    if ((code === "ECONNRESET" || code === "EPIPE") && server?.startsWith("http:")) {
      return `the server${at} hung up without answering (${code}): if it serves TLS (chatd started with CHAT_TLS_CERT), use https://; if that is its gRPC port, chat-cli takes the HTTP one (8080 by default)`;
    }
    if (isDeadline(err)) return `the server${at} did not answer within ${callTimeoutMs() / 1000} s${process.env.CHAT_CLI_CALL_TIMEOUT_MS ? " (CHAT_CLI_CALL_TIMEOUT_MS)" : ""}`;
    if (code === "EPIPE" || code?.startsWith("HPE_")) {
      return `the server${at} does not answer as chatd's HTTP API does (${code}): is that its gRPC port? chat-cli takes the HTTP one (8080 by default)`;
    }
    // An UNAVAILABLE the server answered with its own words (an overload, an engine down: "presence is not
    // available right now; retry") was said as "cannot reach the server", sending the reader to check it runs.
    if ((err.code === Code.Unavailable && code !== undefined) || /ECONNREFUSED|fetch failed/i.test(err.rawMessage)) return `cannot reach the server${at}`;
    return err.rawMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A call given up at its deadline, unanswered: what it asked may have been done or not. */
export function isDeadline(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.DeadlineExceeded && !cliErrorOf(err);
}

/** A failure that may mend by itself: the server down or restarting, a connection cut, a rate limit. */
export function isTransient(err: unknown): boolean {
  // Another chat-cli of this device held the refresh lock past the wait: its refresh is slow, not refused.
  if (err instanceof RefreshLockBusy) return true;
  if (!(err instanceof ConnectError) || cliErrorOf(err)) return false;
  return [Code.Unavailable, Code.Unknown, Code.Internal, Code.Aborted, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Canceled].includes(err.code);
}

export interface Api {
  auth: Client<typeof AuthService>;
  users: Client<typeof UserService>;
  channels: Client<typeof ChannelService>;
  messages: Client<typeof MessageService>;
  presence: Client<typeof PresenceService>;
}

const PUBLIC = new Set(["SignUp", "Login", "Refresh"]);
/**
 * A call not answered by then is given up (follow asks it again): one a
 * silent network lost was waited for without end (the kernel's
 * retransmission timeout, some 15 min, or never behind a proxy), and with it
 * everything follow printed after it, as a WebSocket handshake is.
 */
export const CALL_TIMEOUT_MS = 15_000;

/**
 * CHAT_CLI_CALL_TIMEOUT_MS: a deadline shorter than CALL_TIMEOUT_MS, for one
 * who would rather have follow ask again sooner (and for tests of a silent
 * network), from 100 ms. Not longer: the refresh lock's wait (LOCK_WAIT_MS)
 * must outlast a refresh that hangs to its deadline. Throws naming it.
 */
export function readCallTimeoutMs(env: NodeJS.ProcessEnv): number {
  const raw = env.CHAT_CLI_CALL_TIMEOUT_MS;
  if (raw === undefined || raw === "") return CALL_TIMEOUT_MS;
  const ms = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(ms >= 100 && ms <= CALL_TIMEOUT_MS)) throw new CliError(`CHAT_CLI_CALL_TIMEOUT_MS=${raw}: expected whole milliseconds from 100 to ${CALL_TIMEOUT_MS}`, 2);
  return ms;
}

let callTimeout: number | undefined;
/** The deadline of each call (CHAT_CLI_CALL_TIMEOUT_MS or CALL_TIMEOUT_MS), read once: main reads it first, so a bad value stops the CLI before it does anything. */
export function callTimeoutMs(): number {
  return (callTimeout ??= readCallTimeoutMs(process.env));
}
/** The largest id or seq the server takes (a signed 64-bit integer's; the wire's uint64 goes further). */
export const MAX_ID = 2n ** 63n - 1n;

function clients(baseUrl: string, interceptors: Interceptor[] = []): Api {
  const where: Interceptor = (next) => async (req) => {
    try {
      const res = await next(req);
      answeredBy.add(baseUrl);
      return res;
    } catch (err) {
      if (err instanceof ConnectError && !failedAt.has(err)) failedAt.set(err, baseUrl);
      throw err;
    }
  };
  // Every call has the deadline, not only follow's and a refresh's: `chats` or `logout` at a server that
  // stopped answering (a hung process, a silent network) waited without end, and a script with it.
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", defaultTimeoutMs: callTimeoutMs(), interceptors: [where, ...interceptors] });
  return {
    auth: createClient(AuthService, transport),
    users: createClient(UserService, transport),
    channels: createClient(ChannelService, transport),
    messages: createClient(MessageService, transport),
    presence: createClient(PresenceService, transport),
  };
}

/** Unauthenticated clients, for sign-up and login. */
export function publicApi(server: string): Api {
  return clients(server);
}

/**
 * When the server signed an access token, by its own clock: the `iat` of the
 * token's payload (base64url JSON before the signature); undefined when it
 * does not say.
 */
function issuedAt(token: string): number | undefined {
  const dot = token.indexOf(".");
  if (dot <= 0) return undefined;
  try {
    const iat = (JSON.parse(Buffer.from(token.slice(0, dot), "base64url").toString("utf8")) as { iat?: unknown }).iat;
    return typeof iat === "number" && Number.isFinite(iat) ? iat : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Credentials as saved. The token's expiry is by the server's clock, which
 * this machine's may be far from (ahead, every call would refresh first;
 * behind, expired tokens would be sent): it is kept as the token's lifetime
 * (its expiry less its issue time, both the server's) from `now`, when it
 * came, by this machine's clock.
 */
export function toSavedLogin(server: string, username: string, c: Credentials, now = Date.now()): SavedLogin {
  const expires = c.accessTokenExpiresAt ? timestampMs(c.accessTokenExpiresAt) : undefined;
  const lifetime = expires === undefined ? 60_000 : expires - (issuedAt(c.accessToken) ?? now);
  return {
    server,
    username,
    userId: c.userId.toString(),
    deviceId: c.deviceId.toString(),
    accessToken: c.accessToken,
    accessExpiresAtMs: now + lifetime,
    refreshToken: c.refreshToken,
  };
}

/**
 * Whether two saved logins are one device: its id on one server. Ids are
 * each server's own, and another server's login taken up by a running
 * chat-cli had its token sent to this one's server (its clients stay bound
 * to the server they were made for).
 */
function isSameDevice(a: SavedLogin, b: SavedLogin): boolean {
  return a.deviceId === b.deviceId && a.server === b.server;
}

const HELD_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Runs `fn` with Ctrl+C and SIGTERM held until it is done, then acted on as
 * they would have been (by the listeners there were, else by ending the
 * process). A refresh spends the saved refresh token at the server as it is
 * answered: killed before the new one was saved, the home kept the spent
 * one, and its next use past the server's reuse grace signed the device out
 * as a stolen token's. A second signal is acted on at once.
 */
let holding = false;
export async function withSignalsHeld<T>(fn: () => Promise<T>): Promise<T> {
  // Held already (another session's refresh at the same time): that hold's listeners are not ours to put back.
  if (holding) return fn();
  holding = true;
  // Wrappers and all, as registered: a `once` listener put back stays a once.
  const before = new Map(HELD_SIGNALS.map((sig) => [sig, process.rawListeners(sig) as Array<(...args: unknown[]) => void>]));
  let got: NodeJS.Signals | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    holding = false;
    for (const sig of HELD_SIGNALS) {
      for (const listener of before.get(sig)!) process.on(sig, listener);
      process.off(sig, hold);
    }
    if (got) process.kill(process.pid, got);
  };
  const hold = (sig: NodeJS.Signals) => {
    if (got) return release();
    got = sig;
    process.stderr.write("chat-cli: saving the access token refresh under way first (Ctrl+C again stops at once, and may sign this device out)\n");
  };
  // Ours goes on before theirs come off, and theirs back before ours goes: the signal's handler
  // stops with its last listener, and a signal it had caught but not yet handed over went with it
  // (a Ctrl+C just before a refresh began was lost, and `follow` went on for good).
  for (const sig of HELD_SIGNALS) {
    process.on(sig, hold);
    for (const listener of before.get(sig)!) process.removeListener(sig, listener);
  }
  try {
    return await fn();
  } finally {
    release();
  }
}

/** How many users a session keeps by id: a follow of a busy group for days met a new sender every few minutes. */
export const USERS_REMEMBERED = 4_000;

/**
 * A signed-in CLI device: Connect clients that always carry a valid access
 * token, refreshing it (under the store's lock, so parallel chat-cli
 * processes never spend the same refresh token twice) when it is about to
 * expire or the server says it has.
 */
export class Session {
  readonly api: Api;
  /** By id, the one used longest ago let go first, and asked for again when next needed. */
  private readonly users: LruMap<string, User>;
  /** The refresh under way in this process: a second waits for it, not for the file lock it holds (which gives up after LOCK_WAIT_MS). */
  private refreshing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: LoginStore,
    public login: SavedLogin,
    usersRemembered = USERS_REMEMBERED,
  ) {
    this.users = new LruMap(usersRemembered);
    const bearer: Interceptor = (next) => async (req) => {
      if (PUBLIC.has(req.method.name)) return next(req);
      req.header.set("authorization", `Bearer ${await this.accessToken()}`);
      try {
        return await next(req);
      } catch (err) {
        if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated) throw err;
        // Any other refusal of the token is this login's end there, as a refused refresh is. The
        // server's words alone ("access token signed by an unknown key": the README's cluster api
        // on the address of the chatd this home logged in on) left the newcomer without a next step.
        if (err.metadata.get("chat-error-code") !== "ERROR_CODE_TOKEN_EXPIRED") {
          throw new CliError(
            `the server at ${this.login.server} does not take this device's login (${err.rawMessage}); run: chat-cli login ${this.login.username} (or signup, where the account does not exist)`,
            3,
          );
        }
        req.header.set("authorization", `Bearer ${await this.refresh(true)}`);
        return next(req);
      }
    };
    this.api = clients(login.server, [bearer]);
  }

  get userId(): bigint {
    return BigInt(this.login.userId);
  }

  async accessToken(): Promise<string> {
    if (this.login.accessExpiresAtMs - Date.now() > 30_000) return this.login.accessToken;
    return this.refresh(false);
  }

  /** A fresh access token; `force` when the server refused the current one. */
  async refresh(force: boolean): Promise<string> {
    const used = this.login.accessToken;
    const run = this.refreshing.then(() => this.refreshLocked(force, used));
    this.refreshing = run.catch(() => undefined);
    return run;
  }

  private refreshLocked(force: boolean, used: string): Promise<string> {
    return withSignalsHeld(() => this.refreshUnderLock(force, used));
  }

  private refreshUnderLock(force: boolean, used: string): Promise<string> {
    return this.store.locked(async () => {
      // Another chat-cli may have refreshed while we waited.
      const onDisk = this.store.read();
      const mine = onDisk !== undefined && isSameDevice(onDisk, this.login);
      if (mine) this.login = onDisk;
      const fresh = this.login.accessExpiresAtMs - Date.now() > 30_000;
      if (fresh && (!force || this.login.accessToken !== used)) return this.login.accessToken;
      try {
        // Bounded, as the call it may run inside is not (an interceptor's wait is outside a call's deadline):
        // one asked again within the server's reuse grace (60 s) is taken as the retry of a lost reply.
        const res = await publicApi(this.login.server).auth.refresh({ refreshToken: this.login.refreshToken }, { timeoutMs: callTimeoutMs() });
        this.login = toSavedLogin(this.login.server, this.login.username, res.credentials!);
        // Written over this device's login only: a logout or another login (`chat-cli login` as someone else) since is not undone.
        if (mine) this.store.write(this.login);
        return this.login.accessToken;
      } catch (err) {
        if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
          throw new CliError(`this device was signed out (${err.rawMessage}); run: chat-cli login ${this.login.username}`, 3);
        }
        throw err;
      }
    });
  }

  /**
   * The users of `ids` found, by id; those used recently are not asked for again. The answer holds
   * exactly these (the cache may have let some of a long list go by the time it is whole).
   */
  async usersById(ids: bigint[]): Promise<Map<string, User>> {
    const found = new Map<string, User>();
    const missing: string[] = [];
    for (const id of new Set(ids.map(String))) {
      if (id === "0") continue;
      const u = this.users.get(id);
      if (u) found.set(id, u);
      else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += 100) {
      const res = await this.api.users.getUsers({ userIds: missing.slice(i, i + 100).map((s) => BigInt(s)) }, { timeoutMs: callTimeoutMs() });
      for (const u of res.users) {
        this.users.set(u.userId.toString(), u);
        found.set(u.userId.toString(), u);
      }
    }
    return found;
  }

  /** How many users are kept by id (a test's, to look at). */
  get usersKept(): number {
    return this.users.size;
  }

  async username(id: bigint): Promise<string> {
    const u = (await this.usersById([id])).get(id.toString());
    if (u?.deleted) return "(deleted account)";
    return u ? u.username : `user:${id}`;
  }

  /** The user called "@alice" (case-insensitive), or a CliError naming who is missing. */
  async findUser(ref: string): Promise<User> {
    // NFKC as the server's search: "＠ａｌｉｃｅ", typed in an East Asian keyboard's wide mode, is @alice.
    const name = ref.normalize("NFKC").replace(/^@/, "").toLowerCase();
    // The server's words for an empty search ("query is required") named no argument.
    if (!name.trim()) throw new CliError(`"${ref}" names no user: write @username`, 2);
    const res = await this.api.users.searchUsers({ query: name, limit: 20 });
    const user = res.users.find((u) => u.username.toLowerCase() === name);
    if (!user) throw new CliError(`no user is called @${name}`);
    this.users.set(user.userId.toString(), user);
    return user;
  }

  /** "@alice" (the direct chat with alice, opened if new) or a channel id. */
  async resolveChannel(ref: string): Promise<Channel> {
    if (ref.startsWith("@")) {
      const user = await this.findUser(ref);
      if (user.userId === this.userId) throw new CliError("that is you; pick someone else");
      return (await this.api.channels.openDirect({ userId: user.userId })).channel!;
    }
    // 0 or past the largest id fails in the server's checks, or past 64 bits in the request's encoding, in words that name no argument.
    if (!/^\d+$/.test(ref) || BigInt(ref) === 0n || BigInt(ref) > MAX_ID) {
      throw new CliError(`"${ref}" is neither a channel id (see: chat-cli chats) nor @username`, 2);
    }
    return (await this.api.channels.describeChannel({ channelId: BigInt(ref) })).channel!;
  }

  async channelName(c: Channel): Promise<string> {
    if (c.kind === ChannelKind.GROUP) return c.title || `group ${c.channelId}`;
    return `@${await this.username(c.peerUserId)}`;
  }
}
