import { Metadata } from "@grpc/grpc-js";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { UserDelivery } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import type { Logger } from "pino";
import type { SessionDirectory } from "../delivery/port.js";
import { utf8BytesAtMost, type Id } from "../model/types.js";
import type { SessionRoutes } from "../routing/port.js";
import type { ChatServerClients } from "./client-pool.js";
import { toTsProto } from "./frames.js";
import { DELIVER_CHUNK_BYTES } from "./message-limits.js";

const DELIVER_DEADLINE_MS = 2_000;

/**
 * The SessionDirectory of processes that hold no sessions (the pipeline and
 * the api): it looks users up in the routing table and calls Deliver on the
 * chat servers that hold them. Delivery is best effort by design: whatever is
 * not pushed live is read from the inbox when the device catches up.
 */
export class RoutedSessionDirectory implements SessionDirectory {
  constructor(
    private readonly routes: SessionRoutes,
    private readonly clients: ChatServerClients,
    private readonly logger?: Logger,
  ) {}

  async pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void> {
    await this.pushMany(userIds.map((userId) => ({ userId, frame })));
  }

  /** Many (user, frame) pairs in one Deliver call per chat server. */
  async pushMany(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<ReadonlySet<Id>> {
    if (items.length === 0) return new Set();
    const routes = await this.routes.lookup([...new Set(items.map((i) => i.userId))]);
    const perServer = new Map<string, UserDelivery[]>();
    for (const { userId, frame } of items) {
      const servers = routes.get(userId);
      if (!servers) continue;
      const ts = toTsProto(frame);
      for (const serverId of servers) {
        let list = perServer.get(serverId);
        if (!list) perServer.set(serverId, (list = []));
        list.push({ userId, deviceIds: [], frame: ts });
      }
    }
    // A route outlives a chat server that died (until its sessions' routes
    // expire, or one that restarted under the same id): a user counts as
    // reached only through a Deliver that a live server took and queued on
    // some session, so the caller notifies the others instead of taking them
    // for online. (The count is per call: one session among its users counts
    // them all.)
    const reached = new Set<Id>();
    await Promise.all(
      [...perServer].map(async ([serverId, deliveries]) => {
        const client = this.clients.get(serverId);
        if (!client) return;
        for (const chunk of chunksOf(deliveries, DELIVER_CHUNK_BYTES)) {
          await new Promise<void>((resolve) => {
            client.deliver({ deliveries: chunk }, new Metadata(), { deadline: Date.now() + DELIVER_DEADLINE_MS }, (err, res) => {
              if (err) this.logger?.warn({ err: err.message, serverId }, "deliver failed; devices will catch up");
              else if (res && res.sessions > 0) for (const d of chunk) reached.add(d.userId);
              resolve();
            });
          });
        }
      }),
    );
    return reached;
  }

  async closeDevice(userId: Id, deviceId: Id, code: number, reason: string): Promise<void> {
    const servers = (await this.routes.lookup([userId])).get(userId) ?? [];
    await Promise.all(
      servers.map(
        (serverId) =>
          new Promise<void>((resolve) => {
            const client = this.clients.get(serverId);
            if (!client) return resolve();
            client.closeDeviceSessions({ userId, deviceId, code, reason }, new Metadata(), { deadline: Date.now() + DELIVER_DEADLINE_MS }, () => resolve());
          }),
      ),
    );
  }

  /**
   * Makes the chat servers holding a session of either user of each pair
   * forget what they remember of blocks between the pair, so a block or an
   * unblock holds at the next send there. Best effort: a server missed (or
   * one the user connects to later) sees it within its cache's TTL.
   */
  async forgetBlocks(pairs: readonly { userId: Id; otherUserId: Id }[]): Promise<void> {
    if (pairs.length === 0) return;
    const routes = await this.routes.lookup([...new Set(pairs.flatMap((p) => [p.userId, p.otherUserId]))]);
    const perServer = new Map<string, { userId: Id; otherUserId: Id }[]>();
    for (const pair of pairs) {
      for (const serverId of new Set([...(routes.get(pair.userId) ?? []), ...(routes.get(pair.otherUserId) ?? [])])) {
        let list = perServer.get(serverId);
        if (!list) perServer.set(serverId, (list = []));
        list.push(pair);
      }
    }
    await Promise.all(
      [...perServer].map(
        ([serverId, forPairs]) =>
          new Promise<void>((resolve) => {
            const client = this.clients.get(serverId);
            if (!client) return resolve();
            client.forgetBlocks({ pairs: forPairs }, new Metadata(), { deadline: Date.now() + DELIVER_DEADLINE_MS }, (err) => {
              if (err) this.logger?.warn({ err: err.message, serverId }, "forgetting blocks failed; the server's cache expires them");
              resolve();
            });
          }),
      ),
    );
  }

  /**
   * Users with a route to a chat server live in the registry: a server that
   * died leaves its routes for up to a minute, and its users must be notified
   * meanwhile (as pushMany counts them unreached).
   */
  async onlineUsers(userIds: readonly Id[]): Promise<Set<Id>> {
    const routes = await this.routes.lookup(userIds);
    const online = new Set<Id>();
    for (const [userId, servers] of routes) if (servers.some((id) => this.clients.get(id) !== undefined)) online.add(userId);
    return online;
  }
}

/** Consecutive runs of deliveries whose texts stay within budget bytes (each run has at least one). */
export function chunksOf(deliveries: UserDelivery[], budget: number): UserDelivery[][] {
  const chunks: UserDelivery[][] = [];
  let chunk: UserDelivery[] = [];
  let bytes = 0;
  for (const d of deliveries) {
    const size = utf8BytesAtMost(textOf(d)) + 64;
    if (chunk.length > 0 && bytes + size > budget) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(d);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

function textOf(d: UserDelivery): string {
  const kind = d.frame?.kind;
  return kind?.$case === "message" ? (kind.value.entry?.message?.text ?? "") : "";
}
