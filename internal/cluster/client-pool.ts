import { credentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ChatServerServiceClient } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import type { ServerInfo, ServerWatch } from "../registry/port.js";
import { DeliveryStream } from "./delivery-stream.js";
import { INTERNAL_MESSAGE_LIMITS } from "./message-limits.js";

/** How long a delivery batch waits for its chat server's answer, on a stream or as a Deliver call. */
export const DELIVER_TIMEOUT_MS = 2_000;

type Entry = { address: string; client: ChatServerServiceClient; deliveries?: DeliveryStream };

/**
 * One grpc-js client per live chat server, and its delivery stream once a
 * batch was pushed there, both dropped when the server leaves the registry.
 */
export class ChatServerClients {
  private readonly clients = new Map<string, Entry>();
  /**
   * Live servers' addresses by id, as the watch last told: asked per user
   * and route on the delivery path, where the watch's servers() (a sorted
   * copy of every server) would cost O(N log N) per lookup.
   */
  private live: Map<string, string>;

  constructor(
    watch: ServerWatch,
    private readonly logger?: Logger,
  ) {
    this.live = addresses(watch.servers());
    watch.onChange((servers) => this.prune(servers));
  }

  get(serverId: string): ChatServerServiceClient | undefined {
    return this.entry(serverId)?.client;
  }

  /** The server's delivery stream (opened at its first batch). */
  deliveries(serverId: string): DeliveryStream | undefined {
    const entry = this.entry(serverId);
    if (!entry) return undefined;
    return (entry.deliveries ??= new DeliveryStream(entry.client, DELIVER_TIMEOUT_MS, this.logger?.child({ serverId })));
  }

  private entry(serverId: string): Entry | undefined {
    const address = this.live.get(serverId);
    if (address === undefined) return undefined;
    const known = this.clients.get(serverId);
    if (known && known.address === address) return known;
    if (known) drop(known);
    const entry = { address, client: new ChatServerServiceClient(address, credentials.createInsecure(), INTERNAL_MESSAGE_LIMITS) };
    this.clients.set(serverId, entry);
    return entry;
  }

  private prune(servers: ServerInfo[]): void {
    const live = (this.live = addresses(servers));
    for (const [id, c] of this.clients) {
      if (live.get(id) !== c.address) {
        drop(c);
        this.clients.delete(id);
      }
    }
  }

  close(): void {
    for (const c of this.clients.values()) drop(c);
    this.clients.clear();
  }
}

const addresses = (servers: readonly ServerInfo[]) => new Map(servers.map((s) => [s.serverId, s.address]));

/** A closed channel lets its calls run on, so the open stream is ended first. */
function drop(entry: Entry): void {
  entry.deliveries?.close();
  entry.client.close();
}
