import type { Logger } from "pino";
import { DuplicateServerId, SERVER_ID, type Registration, type ServerInfo, type ServerRegistry, type ServerWatch } from "./port.js";

export interface MemoryServerRegistryOptions {
  /** After expire(), how long until the registration comes back (default 0: next turn of the event loop). */
  regainAfterMs?: number;
  logger?: Logger;
}

/**
 * The in-process registry of chatd and of tests: every server and watcher
 * lives in one process, so there is no lease to lose unless a test asks for
 * it with expire().
 */
export class MemoryServerRegistry implements ServerRegistry {
  private readonly entries = new Map<string, { info: ServerInfo; owner: MemoryRegistration }>();
  private readonly watches = new Set<MemoryWatch>();
  private readonly registrations = new Set<MemoryRegistration>();
  private closed = false;

  constructor(private readonly options: MemoryServerRegistryOptions = {}) {}

  async register(server: ServerInfo, _options?: { ttlSeconds?: number }): Promise<Registration> {
    if (this.closed) throw new Error("registry is closed");
    validateServer(server);
    if (this.entries.has(server.serverId)) throw new DuplicateServerId(server.serverId);
    const reg = new MemoryRegistration(this, { ...server });
    this.registrations.add(reg);
    this.put(reg);
    return reg;
  }

  async watch(): Promise<ServerWatch> {
    if (this.closed) throw new Error("registry is closed");
    const w = new MemoryWatch(this, this.options.logger);
    this.watches.add(w);
    return w;
  }

  /**
   * Simulates a lost lease: the entry disappears, the registration reports
   * lost (live false), and after `regainAfterMs` it registers again and
   * reports regained. For tests.
   */
  expire(serverId: string): void {
    const entry = this.entries.get(serverId);
    if (!entry) return;
    this.entries.delete(serverId);
    this.notify();
    entry.owner.lose(this.options.regainAfterMs ?? 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.registrations].map((r) => r.close()));
    await Promise.all([...this.watches].map((w) => w.close()));
    this.closed = true;
  }

  /** @internal */
  put(reg: MemoryRegistration): void {
    const entry = this.entries.get(reg.info.serverId);
    // The same entry again: as in etcd (registry/etcd.ts), nobody is woken for it.
    if (entry?.owner === reg && entry.info.address === reg.info.address && entry.info.load === reg.info.load) return;
    this.entries.set(reg.info.serverId, { info: { ...reg.info }, owner: reg });
    this.notify();
  }

  /** @internal removes the entry if this registration still owns it */
  remove(reg: MemoryRegistration): void {
    this.registrations.delete(reg);
    const entry = this.entries.get(reg.info.serverId);
    if (entry?.owner === reg) {
      this.entries.delete(reg.info.serverId);
      this.notify();
    }
  }

  /** @internal */
  owns(reg: MemoryRegistration): boolean {
    return this.entries.get(reg.info.serverId)?.owner === reg;
  }

  /** @internal */
  dropWatch(w: MemoryWatch): void {
    this.watches.delete(w);
  }

  /** @internal */
  snapshot(): ServerInfo[] {
    return [...this.entries.values()].map((e) => ({ ...e.info })).sort(byId);
  }

  private notify(): void {
    for (const w of this.watches) w.changed();
  }
}

class MemoryRegistration implements Registration {
  private state: "live" | "lost" | "closed" = "live";
  private readonly lostListeners: Array<() => void> = [];
  private readonly regainedListeners: Array<() => void> = [];
  private regainTimer: NodeJS.Timeout | undefined;
  private flush: Promise<void> | undefined;

  constructor(
    private readonly registry: MemoryServerRegistry,
    readonly info: ServerInfo,
  ) {}

  get live(): boolean {
    return this.state === "live" && this.registry.owns(this);
  }

  async setLoad(load: number): Promise<void> {
    validateLoad(load);
    this.info.load = load;
    // Coalesced: updates made in the same turn of the event loop notify watchers once.
    if (!this.flush) {
      this.flush = Promise.resolve().then(() => {
        this.flush = undefined;
        if (this.state === "live" && this.registry.owns(this)) this.registry.put(this);
      });
    }
    await this.flush;
  }

  onLost(listener: () => void): void {
    this.lostListeners.push(listener);
  }

  onRegained(listener: () => void): void {
    this.regainedListeners.push(listener);
  }

  /** @internal */
  lose(regainAfterMs: number): void {
    if (this.state !== "live") return;
    this.state = "lost";
    call(this.lostListeners);
    this.regainTimer = setTimeout(() => {
      if (this.state !== "lost") return;
      this.state = "live";
      this.registry.put(this);
      call(this.regainedListeners);
    }, regainAfterMs);
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.regainTimer);
    this.registry.remove(this);
  }
}

class MemoryWatch implements ServerWatch {
  private readonly listeners: Array<(servers: ServerInfo[]) => void> = [];
  private current: ServerInfo[];
  private closed = false;

  constructor(
    private readonly registry: MemoryServerRegistry,
    private readonly logger?: Logger,
  ) {
    this.current = registry.snapshot();
  }

  servers(): ServerInfo[] {
    return this.current.map((s) => ({ ...s }));
  }

  onChange(listener: (servers: ServerInfo[]) => void): void {
    this.listeners.push(listener);
  }

  /** @internal */
  changed(): void {
    if (this.closed) return;
    this.current = this.registry.snapshot();
    for (const l of this.listeners) {
      try {
        l(this.servers());
      } catch (err) {
        this.logger?.error({ err }, "registry watch listener threw");
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.registry.dropWatch(this);
  }
}

function call(listeners: Array<() => void>): void {
  for (const l of listeners) {
    try {
      l();
    } catch {
      // a listener's failure is its own
    }
  }
}

const byId = (a: ServerInfo, b: ServerInfo) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0);

/** @internal shared by the adapters */
export function validateServer(server: ServerInfo): void {
  if (typeof server.serverId !== "string" || !SERVER_ID.test(server.serverId)) {
    throw new RangeError(`server id must be 1-128 characters of [A-Za-z0-9._:-], got ${JSON.stringify(server.serverId)}`);
  }
  if (typeof server.address !== "string" || server.address === "") {
    throw new RangeError("server address must be a non-empty host:port");
  }
  validateLoad(server.load);
}

function validateLoad(load: number): void {
  if (typeof load !== "number" || !Number.isFinite(load)) throw new RangeError(`load must be a finite number, got ${load}`);
}
