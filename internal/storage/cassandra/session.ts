import { createRequire } from "node:module";
import cassandra from "cassandra-driver";
import { LruMap } from "../../cache/lru-map.js";
import { ENGINE_RETRY_AFTER_MS } from "../../model/engine-errors.js";
import { ChatError } from "../../model/errors.js";

const { types, errors } = cassandra;

export type Client = cassandra.Client;
export type Row = cassandra.types.Row;
export type Params = unknown[];

/** Which serial consistency the lightweight transactions use. */
export type SerialLevel = "localSerial" | "serial";

export interface ConnectOptions {
  /** Native-protocol contact points, "host" or "host:port". */
  contactPoints: string[];
  /** The data centre this process runs in (the driver routes to it). */
  localDataCenter: string;
  credentials?: { username: string; password: string };
  /**
   * LOCAL_SERIAL (default) keeps the Paxos round inside the local data centre:
   * enough for one data centre, or when each partition is only ever written
   * from one of them. SERIAL makes usernames, direct pairs and seats unique
   * across data centres at the price of a cross-DC round trip per LWT.
   */
  serialConsistency?: SerialLevel;
  /** Client-side timeout of one request. */
  readTimeoutMs?: number;
}

/**
 * Longest wait between attempts to reconnect to a node that went down
 * (250 ms doubling to this). The driver's default doubles from 1 s to 10
 * minutes: after a whole cluster was away for a few minutes (a restart, a
 * partition), every process went on failing for a minute and more after it
 * answered again (90 s after a 4-minute outage; up to 10 minutes), since with
 * no node up no status event resets the schedule. A connection attempt every
 * few seconds to a node that is down costs nothing worth saving.
 */
export const RECONNECT_MAX_DELAY_MS = 4_000;
const RECONNECT_BASE_DELAY_MS = 250;

/**
 * A client set up the way the adapters need it: 64-bit integers as bigint
 * (ids exceed 2^53, so a Long or number anywhere is a bug waiting),
 * LOCAL_QUORUM by default so a read sees every acknowledged write of its DC,
 * and nodes that come back used again within seconds.
 */
export function createClient(o: ConnectOptions): Client {
  const client = new cassandra.Client({
    contactPoints: o.contactPoints,
    localDataCenter: o.localDataCenter,
    credentials: o.credentials,
    encoding: { useBigIntAsLong: true, useBigIntAsVarint: true },
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(RECONNECT_BASE_DELAY_MS, RECONNECT_MAX_DELAY_MS, false),
    },
    queryOptions: {
      consistency: types.consistencies.localQuorum,
      serialConsistency: serialLevel(o.serialConsistency),
      prepare: true,
    },
    socketOptions: { readTimeout: o.readTimeoutMs ?? 12_000, tcpNoDelay: true },
  });
  client.on("hostRemove", shutDownRemovedHost);
  return client;
}

/**
 * When no node answered, the driver's control connection starts over from the
 * contact points and puts a new Host in place of each old one without shutting
 * the old one down (cassandra-driver 4.10, ControlConnection._setLocalInfo):
 * the old Host's 200 ms interval ran for ever, its pool went on reconnecting
 * and, once the node answered, held a connection of its own that nothing used.
 * One more such Host per outage, each keeping the process alive past
 * shutdown(). A Host the driver dropped from its map is never used again.
 */
function shutDownRemovedHost(host: cassandra.Host): void {
  const h = host as cassandra.Host & { shutdown?(waitForPending: boolean): Promise<void> };
  // Closing sockets nothing uses: a failure there leaves nothing to undo.
  h.shutdown?.(false).catch(() => {});
}

/**
 * cassandra-driver 4.10 leaves a connection whose socket closes before it is
 * ready (Cassandra reset it, or the process shut the client down while it
 * connected) with its timers running: the socket's close handler marks it
 * closed and then calls close(), which returns at once for a connection that
 * is neither connected nor open, so its pending STARTUP (12 s) and its idle
 * heartbeat (30 s, re-armed once by the heartbeat it sends) were never
 * cleared, and held the process about 60 s after shutdown(). Such a close
 * now fails what the connection holds at once, which clears both.
 */
interface DriverConnection {
  connected: boolean;
  isSocketOpen: boolean;
  clearAndInvokePending(err?: unknown): void;
  close(callback?: () => void): void;
}
const { prototype: connection } = createRequire(import.meta.url)("cassandra-driver/lib/connection.js") as { prototype: DriverConnection };
const driverClose = connection.close;
// Only over the driver whose internals this was written against: another 4.x may rename them.
if (typeof driverClose === "function" && typeof connection.clearAndInvokePending === "function") {
  connection.close = function (this: DriverConnection, callback) {
    if (!this.connected && !this.isSocketOpen) this.clearAndInvokePending();
    driverClose.call(this, callback);
  };
}

function serialLevel(s: SerialLevel | undefined): number {
  return s === "serial" ? types.consistencies.serial : types.consistencies.localSerial;
}

/**
 * The failure of a request to Cassandra, as the domain sees it. It carries the
 * retry time of any engine outage (engineOutageError): without one the api
 * answered no `chat-retry-after-ms` and a session's Error frame a retry of 0,
 * where an untranslated engine error got 1 s.
 */
export class StorageUnavailable extends ChatError {
  constructor(
    message: string,
    /** A write that timed out may still be applied later (CAS included). */
    readonly unknownOutcome: boolean,
    override readonly cause: unknown,
  ) {
    super("unavailable", message, ENGINE_RETRY_AFTER_MS);
  }
}

const CAS_WRITE_UNKNOWN = 0x1700;
const CDC_WRITE_FAILURE = 0x1600;
const isRead = (query: string) => /^\s*SELECT\b/i.test(query);

function translate(e: unknown, query: string): never {
  if (e instanceof errors.ResponseError) {
    const c = types.responseErrorCodes;
    if (e.code === c.writeTimeout) throw new StorageUnavailable(`cassandra write timeout: ${e.message}`, true, e);
    // A replica failed it (a disk, too many tombstones): others may have applied it, and a logged batch is replayed.
    if (e.code === c.writeFailure) throw new StorageUnavailable(`cassandra write failed on a replica: ${e.message}`, true, e);
    // Protocol v5's CAS_WRITE_UNKNOWN and CDC_WRITE_FAILURE (the driver names neither): a write perhaps applied.
    if (e.code === CAS_WRITE_UNKNOWN || e.code === CDC_WRITE_FAILURE) throw new StorageUnavailable(`cassandra write outcome unknown: ${e.message}`, true, e);
    if (e.code === c.readTimeout || e.code === c.readFailure || e.code === c.unavailableException || e.code === c.overloaded ||
      e.code === c.isBootstrapping || e.code === c.truncateError) {
      throw new StorageUnavailable(`cassandra unavailable: ${e.message}`, false, e);
    }
    // The coordinator failed on its own side (an exception in the node, often under memory or
    // disk pressure): passed on raw it reached clients as INTERNAL, not to be asked again. A write
    // may have gone to replicas before it.
    if (e.code === c.serverError) throw new StorageUnavailable(`cassandra server error: ${e.message}`, !isRead(query), e);
    throw e; // syntax, invalid query, config: a bug, not an outage
  }
  if (e instanceof errors.OperationTimedOutError) {
    throw new StorageUnavailable(`cassandra request timed out (${query.slice(0, 60)})`, true, e);
  }
  // A connection that closed under the request (a node restarting): the
  // driver sends a repeatable one again, and hands this back for the rest,
  // which the node may have applied once it was written.
  if (e instanceof errors.DriverError && (e as { isSocketError?: boolean }).isSocketError === true) {
    const written = (e as { requestNotWritten?: boolean }).requestNotWritten !== true;
    throw new StorageUnavailable(`cassandra connection lost: ${e.message}`, written, e);
  }
  if (e instanceof errors.NoHostAvailableError) {
    // Every host tried failed, but one tried before another (a repeatable
    // request sent again) may have applied it.
    const tried = Object.values((e.innerErrors ?? {}) as Record<string, unknown>);
    throw new StorageUnavailable(`cassandra unreachable: ${e.message}`, tried.some(mayHaveApplied), e);
  }
  if (e instanceof errors.BusyConnectionError) {
    throw new StorageUnavailable(`cassandra unreachable: ${e.message}`, false, e);
  }
  throw e;
}

/** Whether a host's failure of a request leaves it perhaps applied there. */
function mayHaveApplied(e: unknown): boolean {
  if (e instanceof errors.OperationTimedOutError) return true;
  if (e instanceof errors.ResponseError) {
    const c = types.responseErrorCodes;
    return e.code === c.writeTimeout || e.code === c.writeFailure || e.code === c.serverError || e.code === CAS_WRITE_UNKNOWN || e.code === CDC_WRITE_FAILURE;
  }
  const socket = e as { isSocketError?: boolean; requestNotWritten?: boolean } | null;
  return socket?.isSocketError === true && socket.requestNotWritten !== true;
}

export interface Statement {
  query: string;
  params: Params;
}

/**
 * Whether running the statement twice leaves the same outcome as once, so
 * the driver may send it again (to another coordinator after a dropped
 * connection or a client timeout): a read, or a write of fixed values (a
 * timestamp included) or a delete. Not a condition (IF: the second round
 * sees the first's write and answers differently) nor an increment or
 * append, whose every run adds again.
 */
export function repeatable(query: string): boolean {
  // Asked of every write, and its regular expressions (one with a backreference)
  // were a percent of a pipeline's CPU: the statements are a fixed set of strings.
  let r = decided.peek(query);
  if (r === undefined) decided.set(query, (r = decide(query)));
  return r;
}

const decided = new LruMap<string, boolean>(1_000);

function decide(query: string): boolean {
  if (/^\s*SELECT\b/i.test(query)) return true;
  if (/\sIF\s/i.test(query)) return false;
  // c = c + ?, c = c - ?, l = ? + l: counters, list appends and prepends.
  return !/\b(\w+)\s*=\s*\1\s*[-+]/.test(query) && !/=\s*(\?|\[[^\]]*\])\s*\+\s*\w+/.test(query);
}

/**
 * The keyspace-bound handle the adapters share: every statement is prepared
 * (the driver caches the preparation per query string), and driver errors
 * become ChatError("unavailable") so the edges answer with a retryable status.
 */
export class Db {
  private readonly serial: number;

  constructor(
    readonly client: Client,
    readonly keyspace: string,
    serial: SerialLevel = "localSerial",
  ) {
    assertKeyspaceName(keyspace);
    const enc = (client as unknown as { options: { encoding?: { useBigIntAsLong?: boolean } } }).options.encoding;
    if (!enc?.useBigIntAsLong) {
      throw new Error("the Cassandra client must be created with encoding.useBigIntAsLong (use createClient)");
    }
    this.serial = serialLevel(serial);
  }

  /** Qualified table name. */
  t(table: string): string {
    return `${this.keyspace}.${table}`;
  }

  /**
   * Every row the query selects. The driver returns one page (5,000 rows by
   * default) per request; a caller that wants fewer says so with LIMIT.
   */
  async rows(query: string, params: Params): Promise<Row[]> {
    let rs = await this.read(query, params);
    const out = rs.rows ?? [];
    while (rs.pageState) {
      rs = await this.read(query, params, { pageState: rs.pageState });
      for (const r of rs.rows ?? []) out.push(r);
    }
    return out;
  }

  /**
   * One page of the query's rows, at most `fetchSize`, and where the next
   * one starts (undefined after the last): for a read that decides after
   * each page whether to go on.
   */
  async page(query: string, params: Params, fetchSize: number, pageState?: string): Promise<{ rows: Row[]; next?: string }> {
    const rs = await this.read(query, params, { fetchSize, pageState });
    return { rows: rs.rows ?? [], next: rs.pageState ?? undefined };
  }

  async one(query: string, params: Params): Promise<Row | undefined> {
    return (await this.read(query, params)).first() ?? undefined;
  }

  /** A linearizable read: it sees (and finishes) any Paxos round in flight. */
  async serialOne(query: string, params: Params): Promise<Row | undefined> {
    // Repeating it is safe as well: a round it finished stays finished.
    return (await this.read(query, params, { consistency: this.serial })).first() ?? undefined;
  }

  /** A plain write: idempotent, so the driver may retry it on another node. */
  async write(query: string, params: Params): Promise<void> {
    if (!repeatable(query)) throw new Error(`not a plain write, its repeat would change the outcome (use lwt): ${query.slice(0, 80)}`);
    await this.run(query, params, { isIdempotent: true });
  }

  /**
   * Plain writes with no order among them, as one request: an unlogged batch,
   * which the coordinator applies partition by partition as it would the
   * writes one by one (no atomicity, no batch log), so it saves the requests'
   * own cost on both sides (the driver's encoding and socket writes, the
   * coordinator's parsing and answers). Writes Cassandra would warn about as
   * a batch (over 5 KiB: a long text) go side by side instead.
   */
  async writeTogether(statements: Statement[]): Promise<void> {
    for (const st of statements) {
      if (!repeatable(st.query)) throw new Error(`not a plain write, its repeat would change the outcome (use lwt): ${st.query.slice(0, 80)}`);
    }
    if (statements.length > 1 && statements.reduce((n, st) => n + paramBytes(st.params), 0) <= TOGETHER_MAX_BYTES) {
      await this.batch(statements, { logged: false });
    } else {
      await Promise.all(statements.map((st) => this.run(st.query, st.params, { isIdempotent: true })));
    }
  }

  /** A lightweight transaction; `row` carries the current values when not applied. */
  async lwt(query: string, params: Params): Promise<{ applied: boolean; row: Row }> {
    // Never sent twice by the driver: a second round would see the first one's write and answer "not applied".
    const rs = await this.run(query, params, { serialConsistency: this.serial, isIdempotent: false });
    const row = rs.first();
    return { applied: row.get("[applied]") === true, row };
  }

  /**
   * A batch. Logged: atomic across partitions (through the batch log), used
   * only where a half-done write would break an invariant. Unlogged within one
   * partition: applied atomically and in isolation anyway. A batch with a
   * condition must stay within one partition.
   */
  async batch(
    statements: Statement[],
    o: { logged: boolean; conditional?: boolean },
  ): Promise<{ applied: boolean; row: Row | undefined }> {
    try {
      const rs = await this.client.batch(statements, {
        prepare: true,
        logged: o.logged,
        serialConsistency: this.serial,
        // A plain batch only sets values; a conditional one must not be replayed blindly.
        isIdempotent: !o.conditional && statements.every((st) => repeatable(st.query)),
      });
      const row = rs.first() ?? undefined;
      const applied = row?.get("[applied]");
      return { applied: applied === undefined || applied === true, row };
    } catch (e) {
      translate(e, statements[0]?.query ?? "batch");
    }
  }

  /** Reads change nothing: the driver may send them again, to another coordinator if need be. */
  private read(query: string, params: Params, o: cassandra.QueryOptions = {}): Promise<cassandra.types.ResultSet> {
    return this.run(query, params, { ...o, isIdempotent: true });
  }

  private async run(query: string, params: Params, o: cassandra.QueryOptions = {}): Promise<cassandra.types.ResultSet> {
    try {
      return await this.client.execute(query, params as unknown[], { prepare: true, ...o });
    } catch (e) {
      translate(e, query);
    }
  }
}

/** Cassandra warns of a batch over 5 KiB (batch_size_warn_threshold); this bound on the values leaves room for the rest. */
const TOGETHER_MAX_BYTES = 4_096;

/** An upper bound of the bytes of the values (a string's UTF-8 takes at most 3 per UTF-16 unit). */
function paramBytes(params: Params): number {
  let n = 0;
  for (const p of params) n += typeof p === "string" ? 3 * p.length : p instanceof Uint8Array ? p.byteLength : 8;
  return n;
}

export function assertKeyspaceName(name: string): void {
  // Interpolated into CQL, so only plain unquoted identifiers.
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(name)) {
    throw new Error(`keyspace name ${JSON.stringify(name)}: use 1-48 of a-z, 0-9, _ starting with a letter`);
  }
}

// Row decoding. Missing cells come back as null.

export function big(v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (v === null || v === undefined) return 0n;
  throw new TypeError(`expected a bigint cell, got ${typeof v}`);
}

export function ms(v: unknown): number {
  return Number(big(v));
}

/** Epoch milliseconds (a JS number) to a bigint cell. */
export function msCell(n: number): bigint {
  return BigInt(Math.trunc(n));
}

/** Runs fn over items with at most `limit` in flight, results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** How many single-partition requests one call keeps in flight. */
export const FANOUT = 32;

/**
 * Partitions one `IN` read names at most: its coordinator reads them side by
 * side, and an add names at most a group's worth of users.
 */
export const IN_PARTITIONS = 100;

/** `ids` in lists of `size` at most, for the `IN ?` of one read each. */
export function inParts<T>(ids: readonly T[], size = IN_PARTITIONS): T[][] {
  const parts: T[][] = [];
  for (let i = 0; i < ids.length; i += size) parts.push(ids.slice(i, i + size));
  return parts;
}
