import { EtcdLeaseInvalidError, type Etcd3, type IKeyValue, type IWatchResponse, type Watcher } from "etcd3";
import type { Logger } from "pino";
import { createEtcdClient, deadline, normalizePrefix } from "../etcd/client.js";
import { KeptLease } from "../etcd/lease-keeper.js";
import { OutageLog } from "../observability/outage-log.js";
import { validateServer } from "./memory.js";
import { DuplicateServerId, type Registration, type ServerInfo, type ServerRegistry, type ServerWatch } from "./port.js";

export interface EtcdServerRegistryOptions {
  /** A client to use (not closed by close()); or give `endpoints` and the registry makes its own. */
  client?: Etcd3;
  /** etcd endpoints "host:port", used when no client is given. */
  endpoints?: readonly string[];
  /** Keys live under /<prefix>/servers/<serverId> (default "chat"). */
  prefix?: string;
  /** Lease TTL in seconds when register() is not given one (default 5). */
  ttlSeconds?: number;
  /** Load updates are written at most this often per server (default 500 ms); the latest value wins. */
  loadIntervalMs?: number;
  /** Timeout of one etcd request (default 3000 ms). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

interface StoredValue {
  address: string;
  load: number;
}

/**
 * Discovery over etcd. Each server's entry is /<prefix>/servers/<id> with
 * the JSON value {address, load}, bound to a lease with a short TTL that
 * this process keeps alive (internal/etcd/lease-keeper.ts): if the process
 * dies or is cut off from etcd, the entry disappears within the TTL.
 *
 * The lease is a fence: `live` is true only while a keepalive answered
 * recently enough that the lease is surely alive on the server. When that is
 * no longer sure (or etcd says the lease is gone) the registration reports
 * lost, then keeps trying to re-register with a new lease and reports
 * regained once the entry is back.
 */
export class EtcdServerRegistry implements ServerRegistry {
  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  /** "/<prefix>/servers/" */
  readonly dir: string;
  private readonly registrations = new Set<EtcdRegistration>();
  private readonly watches = new Set<EtcdServerWatch>();
  private closed = false;

  constructor(private readonly options: EtcdServerRegistryOptions) {
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      if (!options.endpoints?.length) throw new Error("EtcdServerRegistry needs a client or endpoints");
      this.client = createEtcdClient({ endpoints: options.endpoints });
      this.ownsClient = true;
    }
    this.dir = `${normalizePrefix(options.prefix ?? "chat")}servers/`;
  }

  /** The etcd key of a server's entry. */
  keyOf(serverId: string): string {
    return this.dir + serverId;
  }

  async register(server: ServerInfo, options: { ttlSeconds?: number } = {}): Promise<Registration> {
    if (this.closed) throw new Error("registry is closed");
    validateServer(server);
    const reg = new EtcdRegistration(
      this.client,
      this.keyOf(server.serverId),
      { ...server },
      options.ttlSeconds ?? this.options.ttlSeconds ?? 5,
      this.options.loadIntervalMs ?? 500,
      this.options.requestTimeoutMs ?? 3_000,
      this.options.logger,
      () => this.registrations.delete(reg),
    );
    await reg.start();
    this.registrations.add(reg);
    return reg;
  }

  async watch(): Promise<ServerWatch> {
    if (this.closed) throw new Error("registry is closed");
    const w = new EtcdServerWatch(this.client, this.dir, this.options.requestTimeoutMs ?? 3_000, this.options.logger, () =>
      this.watches.delete(w),
    );
    await w.start();
    this.watches.add(w);
    return w;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.registrations].map((r) => r.close()));
    await Promise.all([...this.watches].map((w) => w.close()));
    if (this.ownsClient) this.client.close();
  }
}

type RegState = "live" | "lost" | "closed";


class EtcdRegistration implements Registration {
  private state: RegState = "live";
  private lease: KeptLease | undefined;
  private readonly lostListeners: Array<() => void> = [];
  private readonly regainedListeners: Array<() => void> = [];
  private chain: Promise<unknown> = Promise.resolve();
  private loadVersion = 0;
  private writtenVersion = 0;
  private loadWaiters: Array<{ version: number; resolve: () => void }> = [];
  private loadTimer: NodeJS.Timeout | undefined;
  /**
   * On the monotonic clock: on the wall clock, one stepped back an hour held
   * every load update for that hour, and gateways placed by a stale figure.
   */
  private lastLoadWrite = -Infinity;
  /** The load etcd holds for the entry, as last written by us. */
  private storedLoad: number | undefined;
  private regainTimer: NodeJS.Timeout | undefined;
  private wakeRegain: (() => void) | undefined;
  private regaining: Promise<void> | undefined;
  /** Ends the wait for a lease being granted (close()): a lease granted after all is revoked unused. */
  private abortGrant: (() => void) | undefined;
  private entryWatcher: Watcher | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly key: string,
    private readonly info: ServerInfo,
    private readonly ttlSeconds: number,
    private readonly loadIntervalMs: number,
    private readonly timeoutMs: number,
    private readonly logger: Logger | undefined,
    private readonly onClosed: () => void,
  ) {}

  get live(): boolean {
    return this.state === "live" && this.lease !== undefined && this.lease.live;
  }

  /** Grants the first lease and writes the entry; rejects if etcd cannot be reached. */
  async start(): Promise<void> {
    this.lease = await this.acquire();
    this.watchOwnEntry();
  }

  /**
   * Writes the entry again when it is deleted while the lease that holds it
   * lives on (by hand, say): gateways stop seeing the server at once, and a
   * server whose load did not change wrote nothing that brought it back, so
   * it took no new session for good with a healthy /healthz. A delete while
   * lost is the lease's expiry (regain writes the entry again); while closing,
   * our own.
   */
  private watchOwnEntry(): void {
    const watcher = this.client.watch().key(this.key).only("delete").watcher();
    this.entryWatcher = watcher;
    let dropped = false;
    watcher.on("delete", () => {
      const lease = this.lease;
      if (this.state !== "live" || !lease?.live || watcher !== this.entryWatcher) return;
      this.logger?.warn({ key: this.key }, "registry entry deleted while its lease lives: writing it again");
      this.serialized(() => this.write(lease)).catch((err) => this.logger?.warn({ err, key: this.key }, "writing the deleted registry entry again failed"));
    });
    watcher.on("disconnected", () => (dropped = true));
    // etcd3 resumes from the revision etcd answered the create with, before etcd has sent the
    // events that led up to it: a stream dropped again in between lost a delete for good.
    watcher.on("connected", () => {
      if (!dropped) return;
      dropped = false;
      const lease = this.lease;
      if (this.state !== "live" || !lease?.live || watcher !== this.entryWatcher) return;
      void this.serialized(async () => {
        const value = await deadline(this.client.get(this.key).string(), this.timeoutMs, `reading ${this.key}`);
        if (value === null && this.state === "live" && lease === this.lease && lease.live) {
          this.logger?.warn({ key: this.key }, "registry entry deleted while its watch was away: writing it again");
          await this.write(lease);
        }
      }).catch((err) => this.logger?.warn({ err, key: this.key }, "checking the registry entry after its watch reconnected failed"));
    });
    watcher.on("error", (err) => {
      // Cancelled by etcd (its revision compacted while we were away): watched afresh.
      if (this.state === "closed" || watcher !== this.entryWatcher) return;
      this.logger?.warn({ err, key: this.key }, "registry entry watch cancelled by etcd; watching it again");
      this.entryWatcher = undefined;
      void deadline(watcher.cancel(), this.timeoutMs, "cancelling the registry entry watch").catch(() => {});
      const again = setTimeout(() => this.state !== "closed" && !this.entryWatcher && this.watchOwnEntry(), 1_000);
      again.unref();
    });
  }

  onLost(listener: () => void): void {
    this.lostListeners.push(listener);
  }

  onRegained(listener: () => void): void {
    this.regainedListeners.push(listener);
  }

  async setLoad(load: number): Promise<void> {
    if (typeof load !== "number" || !Number.isFinite(load)) throw new RangeError(`load must be a finite number, got ${load}`);
    if (this.state === "closed") return;
    // etcd holds it already, nothing written since: a put of the same value would still wake every watcher.
    if (this.state === "live" && !this.loadTimer && this.writtenVersion === this.loadVersion && load === this.storedLoad) return;
    this.info.load = load;
    const version = ++this.loadVersion;
    // While lost, the latest load is written when the entry comes back.
    if (this.state !== "live") return;
    const done = new Promise<void>((resolve) => this.loadWaiters.push({ version, resolve }));
    if (!this.loadTimer) {
      const wait = Math.max(0, this.lastLoadWrite + this.loadIntervalMs - performance.now());
      this.loadTimer = setTimeout(() => void this.flushLoad(), wait);
      this.loadTimer.unref();
    }
    return done;
  }

  private async flushLoad(): Promise<void> {
    this.loadTimer = undefined;
    const version = this.loadVersion;
    this.lastLoadWrite = performance.now();
    const lease = this.lease;
    if (this.state === "live" && lease) {
      try {
        await this.serialized(() => this.write(lease));
      } catch (err) {
        this.logger?.warn({ err, key: this.key }, "registry load update failed");
      }
    }
    this.settleLoad(version);
  }

  private settleLoad(version: number): void {
    this.writtenVersion = Math.max(this.writtenVersion, version);
    const ready = this.loadWaiters.filter((w) => w.version <= this.writtenVersion);
    this.loadWaiters = this.loadWaiters.filter((w) => w.version > this.writtenVersion);
    for (const w of ready) w.resolve();
  }

  /** Runs etcd writes one at a time, so an old load never overwrites a newer one. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  /**
   * Writes the entry bound to `lease`, where the key is ours to write: bound
   * to this lease already, absent, or bound to `previous` (ours before a
   * loss, perhaps still alive in etcd). A key bound to any other lease is
   * another live server under the same id: writing over it would make the
   * two take each other's sessions and routes, so the write is refused and
   * the registration counts as lost until that server is gone.
   */
  private async write(lease: KeptLease, previous?: KeptLease): Promise<void> {
    const value: StoredValue = { address: this.info.address, load: this.info.load };
    const put = () => this.client.put(this.key).value(JSON.stringify(value)).lease(lease.id);
    const ours: Array<["Lease" | "Create", string | number]> = [["Lease", lease.id], ["Create", 0]];
    if (previous) ours.push(["Lease", previous.id]);
    try {
      for (const [column, expected] of ours) {
        const res = await deadline(this.client.if(this.key, column, "==", expected).then(put()).commit(), this.timeoutMs, `writing ${this.key}`);
        if (res.succeeded) {
          this.storedLoad = value.load;
          return;
        }
      }
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError || /lease not found/i.test(String(err))) {
        lease.markLost("etcd refused a write: the lease is gone");
      }
      throw err;
    }
    lease.markLost("another live server is registered under this id");
    throw new DuplicateServerId(this.info.serverId);
  }

  /** A new lease and the entry written under it. */
  private async acquire(previous?: KeptLease): Promise<KeptLease> {
    const granting = KeptLease.grant({
      client: this.client,
      ttlSeconds: this.ttlSeconds,
      name: this.key,
      logger: this.logger,
    });
    // A grant etcd does not answer waits up to the TTL (up to 60 s), and a drain during an etcd
    // outage waited on it before ending any session, past the process's stop bound.
    const lease = await new Promise<KeptLease | undefined>((resolve, reject) => {
      this.abortGrant = () => resolve(undefined);
      granting.then(resolve, reject);
    }).finally(() => (this.abortGrant = undefined));
    if (!lease) {
      void granting.then((l) => l.revoke(), () => {});
      throw new Error(`registration of ${this.key} closed while a lease was asked for`);
    }
    try {
      await this.serialized(() => this.write(lease, previous));
      // Lost while the entry was written (etcd slow, as when it elects a leader): no
      // listener heard it, so it is given up here and the caller tries again.
      if (lease.status !== "alive") throw new Error(`the lease of ${this.key} was lost while its entry was written`);
    } catch (err) {
      await lease.revoke();
      throw err;
    }
    lease.onLost(() => this.handleLost(lease));
    return lease;
  }

  private handleLost(lease: KeptLease): void {
    if (this.state !== "live" || lease !== this.lease) return;
    this.state = "lost";
    this.logger?.warn({ key: this.key }, "registration lost; re-registering");
    fire(this.lostListeners, this.logger);
    // Pending load updates are done: the latest load goes out with the new entry.
    this.settleLoad(this.loadVersion);
    this.regaining = this.regain(lease);
  }

  private async regain(old: KeptLease): Promise<void> {
    let backoff = 100;
    while (this.state === "lost") {
      try {
        // A load set while the entry is being written again may have missed
        // that write (it does not write while lost): written once live.
        const version = this.loadVersion;
        const lease = await this.acquire(old);
        if (this.state !== "lost") {
          await lease.revoke();
          return;
        }
        this.lease = lease;
        this.state = "live";
        void old.revoke(); // it may still be alive on the server if we were only cut off
        this.logger?.info({ key: this.key, lease: lease.id }, "registration regained");
        if (this.loadVersion !== version) void this.flushLoad();
        else this.settleLoad(this.loadVersion);
        fire(this.regainedListeners, this.logger);
        return;
      } catch (err) {
        if (err instanceof DuplicateServerId) this.logger?.error({ err, key: this.key }, "re-registering refused; retrying");
        else this.logger?.debug({ err, key: this.key }, "re-registering failed; retrying");
      }
      if (this.state !== "lost") return;
      await new Promise<void>((resolve) => {
        this.wakeRegain = resolve;
        this.regainTimer = setTimeout(resolve, backoff);
        this.regainTimer.unref();
      });
      backoff = Math.min(backoff * 2, 2_000);
    }
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.loadTimer);
    clearTimeout(this.regainTimer);
    this.wakeRegain?.();
    this.abortGrant?.();
    this.settleLoad(this.loadVersion);
    await this.regaining;
    await this.chain;
    const watcher = this.entryWatcher;
    this.entryWatcher = undefined;
    if (watcher) await deadline(watcher.cancel(), this.timeoutMs, "cancelling the registry entry watch").catch(() => {});
    // Revoking deletes the entry; a key someone else wrote since is not ours to delete.
    await this.lease?.revoke();
    this.onClosed();
  }
}

class EtcdServerWatch implements ServerWatch {
  private readonly entries = new Map<string, ServerInfo>();
  private readonly listeners: Array<(servers: ServerInfo[]) => void> = [];
  private watcher: Watcher | undefined;
  private closed = false;
  private reopening: Promise<void> | undefined;
  /** etcd3 retries every second or faster and reports each failed try: an outage is one warning as it starts and one line as it ends, not one a try. */
  private readonly outage: OutageLog;

  constructor(
    private readonly client: Etcd3,
    private readonly dir: string,
    private readonly timeoutMs: number,
    private readonly logger: Logger | undefined,
    private readonly onClosed: () => void,
  ) {
    this.outage = new OutageLog({
      logger,
      fields: () => ({ dir }),
      counted: false,
      lengthKey: "outageMs",
      failed: "registry watch lost etcd; retrying until it answers (the servers known stay as they were)",
      failedAgain: "registry watch: etcd still unreachable; retrying",
      recovered: "registry watch back on etcd",
    });
  }

  async start(): Promise<void> {
    await this.open();
  }

  /** Loads the prefix, then follows it with a watcher from the revision it was read at. */
  private async open(): Promise<void> {
    const revision = await this.load();
    const watcher = this.client.watch().prefix(this.dir).startRevision(String(revision + 1n)).watcher();
    this.watcher = watcher;
    // Until it is created, an error is this open's failure, which its caller handles:
    // start() by failing, reopen() by trying again. Reopening from here as well would
    // leave a watcher behind that nothing closes when start() fails.
    let created = false;
    let dropped = false;
    watcher.on("data", (res: IWatchResponse) => {
      if (watcher === this.watcher) this.apply(res);
    });
    watcher.on("disconnected", (err) => {
      // etcd3 reconnects (its watch backoff, internal/etcd/client.ts) and watches again from a revision of its own.
      if (watcher === this.watcher) this.outageStarted(err);
      if (created) dropped = true;
    });
    watcher.on("connected", () => {
      if (watcher !== this.watcher) return;
      this.outage.succeeded();
      // etcd3 resumes from the revision etcd answered the create with, before etcd has sent
      // the events that led up to it: a stream dropped again in between lost them for good
      // (a server that left stayed listed). Read afresh after every reconnect instead.
      if (dropped) void this.reopen();
    });
    watcher.on("error", (err) => {
      // Cancelled by etcd (for example its revision was compacted while we were away): start over.
      this.logger?.warn({ err, dir: this.dir }, "registry watch cancelled by etcd; reloading");
      if (created && watcher === this.watcher) void this.reopen();
    });
    try {
      await deadline(
        new Promise<void>((resolve, reject) => {
          if (watcher.id !== null) return resolve();
          watcher.once("connected", () => resolve());
          watcher.once("error", reject);
        }),
        this.timeoutMs,
        "creating the registry watch",
      );
      created = true;
    } catch (err) {
      this.watcher = undefined;
      // Bounded too: etcd3 answers the cancel of a watcher etcd has not created only once it is created or the stream drops.
      await deadline(watcher.cancel(), this.timeoutMs, "cancelling the registry watch").catch(() => {});
      throw err;
    }
  }

  private async reopen(): Promise<void> {
    if (this.reopening || this.closed) return;
    this.reopening = (async () => {
      let backoff = 100;
      // What the listeners were last told: a try that read the list and then failed to watch
      // changed it without a word, and measured from there the change was never told.
      const before = JSON.stringify(this.servers());
      while (!this.closed) {
        const old = this.watcher;
        this.watcher = undefined;
        // Bounded: etcd3 may never settle the cancel of a watcher etcd itself cancelled.
        if (old) await deadline(old.cancel(), this.timeoutMs, "cancelling the registry watch").catch(() => {});
        if (this.closed) return;
        try {
          await this.open();
          this.outage.succeeded();
          if (JSON.stringify(this.servers()) !== before) this.notify();
          return;
        } catch (err) {
          this.outageStarted(err);
        }
        await new Promise((r) => setTimeout(r, backoff).unref());
        backoff = Math.min(backoff * 2, 2_000);
      }
    })().finally(() => (this.reopening = undefined));
  }

  private outageStarted(err: unknown): void {
    if (!this.closed) this.outage.failed(err);
  }

  /** Loads every entry under the prefix; returns the revision it was read at. */
  private async load(): Promise<bigint> {
    const res = await deadline(this.client.getAll().prefix(this.dir).exec(), this.timeoutMs, "reading the registry");
    this.entries.clear();
    for (const kv of res.kvs) this.put(kv);
    return BigInt(res.header.revision);
  }

  private apply(res: IWatchResponse): void {
    if (this.closed) return;
    let changed = false;
    for (const ev of res.events) {
      if (ev.type === "Put") changed = this.put(ev.kv) || changed;
      else changed = this.entries.delete(ev.kv.key.toString().slice(this.dir.length)) || changed;
    }
    if (changed) this.notify();
  }

  private put(kv: IKeyValue): boolean {
    const serverId = kv.key.toString().slice(this.dir.length);
    try {
      const v = JSON.parse(kv.value.toString()) as Partial<StoredValue>;
      // An empty address is no server's (register() refuses it), and grpc-js throws on it: picked, it threw out of the gateway's placement.
      if (typeof v.address !== "string" || v.address === "" || typeof v.load !== "number") throw new Error("missing address or load");
      this.entries.set(serverId, { serverId, address: v.address, load: v.load, registration: kv.lease });
      return true;
    } catch (err) {
      this.logger?.warn({ err, key: kv.key.toString() }, "ignoring a malformed registry entry");
      return this.entries.delete(serverId);
    }
  }

  private notify(): void {
    const list = this.servers();
    for (const l of this.listeners) {
      try {
        l(list.map((s) => ({ ...s })));
      } catch (err) {
        this.logger?.error({ err }, "registry watch listener threw");
      }
    }
  }

  servers(): ServerInfo[] {
    return [...this.entries.values()]
      .map((s) => ({ ...s }))
      .sort((a, b) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0));
  }

  onChange(listener: (servers: ServerInfo[]) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reopening;
    if (this.watcher) await deadline(this.watcher.cancel(), this.timeoutMs, "cancelling the registry watch").catch(() => {});
    this.onClosed();
  }
}

function fire(listeners: Array<() => void>, logger: Logger | undefined): void {
  for (const l of listeners) {
    try {
      l();
    } catch (err) {
      logger?.error({ err }, "registration listener threw");
    }
  }
}
