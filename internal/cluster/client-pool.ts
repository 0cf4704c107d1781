import { credentials } from "@grpc/grpc-js";
import { ChatServerServiceClient } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import type { ServerInfo, ServerWatch } from "../registry/port.js";
import { INTERNAL_MESSAGE_LIMITS } from "./message-limits.js";

/** One grpc-js client per live chat server, dropped when the server leaves the registry. */
export class ChatServerClients {
  private readonly clients = new Map<string, { address: string; client: ChatServerServiceClient }>();

  constructor(private readonly watch: ServerWatch) {
    watch.onChange((servers) => this.prune(servers));
  }

  get(serverId: string): ChatServerServiceClient | undefined {
    const info = this.watch.servers().find((s) => s.serverId === serverId);
    if (!info) return undefined;
    const known = this.clients.get(serverId);
    if (known && known.address === info.address) return known.client;
    known?.client.close();
    const client = new ChatServerServiceClient(info.address, credentials.createInsecure(), INTERNAL_MESSAGE_LIMITS);
    this.clients.set(serverId, { address: info.address, client });
    return client;
  }

  private prune(servers: ServerInfo[]): void {
    const live = new Map(servers.map((s) => [s.serverId, s.address]));
    for (const [id, c] of this.clients) {
      if (live.get(id) !== c.address) {
        c.client.close();
        this.clients.delete(id);
      }
    }
  }

  close(): void {
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}
