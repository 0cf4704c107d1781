/**
 * ServerRegistry is how chat servers are found: each registers itself under
 * a short lease with its address and load; gateways watch the set and pick
 * the least-loaded live server. Adapters: etcd (distributed), memory (chatd
 * and tests).
 */
export interface ServerInfo {
  serverId: string;
  /** host:port of the server's internal gRPC listener. */
  address: string;
  /** Open sessions, or any number where lower means "send me more". */
  load: number;
  /**
   * Which registration wrote the entry, as watches report it (etcd: its lease); register()
   * ignores it. A new one is the server registered afresh: serving again after its lease was
   * lost, though the entry never left (etcd away for everyone keeps it).
   */
  registration?: string;
}

export interface Registration {
  /** Publishes a new load figure (cheap; may be coalesced). */
  setLoad(load: number): Promise<void>;
  /**
   * Called when the registration was lost (lease expired, or the registry
   * cannot be reached for longer than the TTL). The adapter keeps trying to
   * re-register; `regained` is called when it succeeds.
   */
  onLost(listener: () => void): void;
  onRegained(listener: () => void): void;
  /** True while the adapter believes its lease is live. A server stops taking sessions while false. */
  readonly live: boolean;
  /** Deletes the entry and revokes the lease (graceful shutdown). */
  close(): Promise<void>;
}

export interface ServerWatch {
  /** The live servers now. */
  servers(): ServerInfo[];
  /** Called after every change of the set (join, leave, load change). */
  onChange(listener: (servers: ServerInfo[]) => void): void;
  close(): Promise<void>;
}

export interface ServerRegistry {
  register(server: ServerInfo, options?: { ttlSeconds?: number }): Promise<Registration>;
  /** Resolves once the initial set is loaded. */
  watch(): Promise<ServerWatch>;
  close(): Promise<void>;
}

/** Another live process holds the entry of this server id: register() refuses it. */
export class DuplicateServerId extends Error {
  constructor(serverId: string) {
    super(`server id ${JSON.stringify(serverId)} is registered by another live process: each chat server needs its own CHAT_SERVER_ID`);
    this.name = "DuplicateServerId";
  }
}

/** What a server id may be: it names an etcd key and a Redis route field. */
export const SERVER_ID = /^[A-Za-z0-9._:-]{1,128}$/;
