import { Metadata } from "@grpc/grpc-js";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { EncodedUserDelivery } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { ServerFrame as TsServerFrame } from "../../gen/ts-proto/chat/v1/session.js";
import type { Logger } from "pino";
import { PushFailedError, type SessionDirectory } from "../delivery/port.js";
import { encodeServerFrame } from "../chatserver/codec.js";
import type { Id } from "../model/types.js";
import type { SessionRoutes } from "../routing/port.js";
import { DELIVER_TIMEOUT_MS, type ChatServerClients } from "./client-pool.js";
import { DELIVER_CHUNK_BYTES } from "./message-limits.js";

/** What an EncodedUserDelivery adds around its frame: the user id, device ids and field tags. */
const DELIVERY_FRAMING_BYTES = 24;

export interface RedeliveryOptions {
  /** How long after a failed batch it is sent once more. */
  afterMs?: number;
  /** Bytes of failed batches held for that at once; past it a failed batch is not sent again. */
  maxHeldBytes?: number;
}

const REDELIVER_AFTER_MS = 1_000;
const REDELIVER_MAX_HELD_BYTES = 8 * 1024 * 1024;

/**
 * The SessionDirectory of processes that hold no sessions (the pipeline and
 * the api): it looks users up in the routing table and hands the frames to
 * the chat servers that hold them, on each one's delivery stream. Delivery is
 * best effort by design: whatever is not pushed live is read from the inbox
 * when the device catches up, and inbox entries whose batch failed are sent
 * once more a second later (`redeliverLater`).
 */
export class RoutedSessionDirectory implements SessionDirectory {
  /** Bytes of failed batches waiting to be sent again. */
  private heldBytes = 0;
  /** The second tries waiting for their moment, each with the bytes it holds. */
  private readonly waiting = new Map<NodeJS.Timeout, number>();
  private closed = false;

  constructor(
    private readonly routes: SessionRoutes,
    private readonly clients: ChatServerClients,
    private readonly logger?: Logger,
    private readonly redelivery: RedeliveryOptions = {},
  ) {}

  async pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void> {
    await this.pushMany(userIds.map((userId) => ({ userId, frame })));
  }

  /** Many (user, frame) pairs in one batch per chat server (more when they are large). */
  async pushMany(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<ReadonlySet<Id>> {
    return (await this.pushAll(items)).reached;
  }

  /**
   * pushMany for presence events, which no inbox makes up for: a batch whose
   * chat server did not take it (frozen, its stream broken) rejects with a
   * PushFailedError naming the users it was for, so the caller tries them
   * again; the route looked up then finds a session the gateway moved
   * meanwhile. A user still routed to a server that left the registry fails
   * too: a frozen server leaves it seconds before the gateway gives up on it
   * and moves its sessions (and one killed leaves routes until they expire,
   * a minute at most). A user routed nowhere was not failed: no session of
   * theirs is there to tell.
   */
  async pushPresence(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<ReadonlySet<Id>> {
    const { reached, failed } = await this.pushAll(items);
    // Reached through another of their servers: that session heard it.
    for (const id of reached) failed.delete(id);
    if (failed.size > 0) throw new PushFailedError(failed);
    return reached;
  }

  private async pushAll(items: readonly { userId: Id; frame: ServerFrame }[]): Promise<{ reached: Set<Id>; failed: Set<Id> }> {
    if (items.length === 0) return { reached: new Set(), failed: new Set() };
    const routes = await this.routes.lookup([...new Set(items.map((i) => i.userId))]);
    const perServer = new Map<string, EncodedUserDelivery[]>();
    // A frame pushed to many users is encoded once; a group message's frames
    // differ only in the inbox seq, and share the encoded Message (codec.ts).
    const encoded = new Map<ServerFrame, Buffer>();
    for (const { userId, frame } of items) {
      const servers = routes.get(userId);
      if (!servers) continue;
      let serverFrame = encoded.get(frame);
      if (!serverFrame) encoded.set(frame, (serverFrame = asBuffer(encodeServerFrame(frame, "proto") as Uint8Array)));
      for (const serverId of servers) {
        let list = perServer.get(serverId);
        if (!list) perServer.set(serverId, (list = []));
        list.push({ userId, deviceIds: [], serverFrame });
      }
    }
    // A route outlives a chat server that died (until its sessions' routes
    // expire, or one that restarted under the same id), and a user's
    // sessions may have left a live one: a user counts as reached only
    // through a live server that queued the frame on one of their sessions,
    // so the caller notifies the others instead of taking them for online.
    const reached = new Set<Id>();
    const failed = new Set<Id>();
    // Only inbox entries are sent again: a session drops an entry it already sent, by its seq,
    // while a presence or channel event sent again could land after a newer one and undo it.
    const entries = new Set<Buffer>();
    for (const [frame, bytes] of encoded) if (frame.kind.case === "message") entries.add(bytes);
    await Promise.all(
      [...perServer].map(async ([serverId, deliveries]) => {
        for (const chunk of chunksOf(deliveries, DELIVER_CHUNK_BYTES, (d) => d.serverFrame.byteLength + DELIVERY_FRAMING_BYTES)) {
          const missed = await this.deliver(serverId, chunk, entries);
          if (missed === "failed" || missed === "gone") for (const d of chunk) failed.add(d.userId);
          if (missed === "all" || missed === "failed" || missed === "gone") continue;
          for (const d of chunk) if (!missed.has(d.userId)) reached.add(d.userId);
        }
      }),
    );
    return { reached, failed };
  }

  /**
   * One batch to one chat server, on its stream (or as a Deliver call to a build without it); resolves with the users
   * it did not reach, "all" when the server holds none of them, "failed" when it did not take the batch, "gone" when it
   * left the registry.
   */
  private async deliver(serverId: string, chunk: EncodedUserDelivery[], entries: ReadonlySet<Uint8Array>): Promise<ReadonlySet<Id> | "all" | "failed" | "gone"> {
    const stream = this.clients.deliveries(serverId);
    if (!stream) return "gone";
    const outcome = await stream.send(chunk);
    if ("sessions" in outcome) return outcome.sessions === 0 ? "all" : new Set(outcome.missed);
    if (outcome.failed !== "unimplemented") {
      const again = chunk.filter((d) => entries.has(d.serverFrame));
      this.logger?.warn({ serverId, why: outcome.failed, again: again.length }, "deliver failed; sending its inbox entries once more shortly");
      if (again.length > 0) this.redeliverLater(serverId, again);
      return "failed";
    }
    const client = this.clients.get(serverId);
    if (!client) return "gone";
    const deliveries = chunk.map((d) => ({ userId: d.userId, deviceIds: d.deviceIds, frame: TsServerFrame.decode(d.serverFrame) }));
    // Deliver answers a count only: one session among the call's users counts them all.
    return new Promise((resolve) => {
      client.deliver({ deliveries }, new Metadata(), { deadline: Date.now() + DELIVER_TIMEOUT_MS }, (err, res) => {
        if (err) this.logger?.warn({ err: err.message, serverId }, "deliver failed; devices will catch up");
        resolve(err ? "failed" : res && res.sessions > 0 ? new Set() : "all");
      });
    });
  }

  /**
   * A session learns of a live push it missed only from the next one (its
   * seq past a gap) or a reconnect: the last message of a quiet chat, its
   * batch timed out on a stuck chat server or refused by a full queue, stayed
   * unseen on an open device, whose user, online, got no push either. Sent
   * once more a moment later, on the stream opened again, it reaches the
   * sessions, which drop what they already sent and read any gap from the
   * inbox. Not waited for: the caller's batch goes on.
   */
  private redeliverLater(serverId: string, chunk: EncodedUserDelivery[]): void {
    const bytes = chunk.reduce((n, d) => n + d.serverFrame.byteLength + DELIVERY_FRAMING_BYTES, 0);
    if (this.heldBytes + bytes > (this.redelivery.maxHeldBytes ?? REDELIVER_MAX_HELD_BYTES)) {
      this.logger?.warn({ serverId, bytes }, "deliver failed and too much is waiting to be sent again; devices catch up at their next message or reconnect");
      return;
    }
    if (this.closed) return;
    this.heldBytes += bytes;
    const timer = setTimeout(() => {
      this.waiting.delete(timer);
      const stream = this.clients.deliveries(serverId);
      const sent = stream ? stream.send(chunk) : Promise.resolve({ failed: "gone" } as const);
      void sent.then((outcome) => {
        this.heldBytes -= bytes;
        if ("failed" in outcome) this.logger?.warn({ serverId, why: outcome.failed }, "deliver failed again; devices catch up at their next message or reconnect");
      });
    }, this.redelivery.afterMs ?? REDELIVER_AFTER_MS).unref();
    this.waiting.set(timer, bytes);
  }

  /**
   * Drops the second tries still waiting, and takes no more: once its process
   * stops, a timer firing after the clients closed would open a stream to a
   * chat server again (or hold the batches for nothing). Devices catch up
   * from the inbox as for any missed push.
   */
  close(): void {
    this.closed = true;
    for (const [timer, bytes] of this.waiting) {
      clearTimeout(timer);
      this.heldBytes -= bytes;
    }
    this.waiting.clear();
  }

  /** Bytes of failed batches held for a second try (for tests and metrics). */
  get heldForRedelivery(): number {
    return this.heldBytes;
  }

  /**
   * Closes the device's sessions on every chat server routed for its user;
   * resolves to how many were closed. Best effort: a server that fails the
   * call is logged, its session ends at its token's expiry (and cannot
   * reopen, as opening one checks the device).
   */
  async closeDevice(userId: Id, deviceId: Id, code: number, reason: string): Promise<number> {
    const servers = (await this.routes.lookup([userId])).get(userId) ?? [];
    const closed = await Promise.all(
      servers.map(
        (serverId) =>
          new Promise<number>((resolve) => {
            const client = this.clients.get(serverId);
            if (!client) return resolve(0);
            client.closeDeviceSessions({ userId, deviceId, code, reason }, new Metadata(), { deadline: Date.now() + DELIVER_TIMEOUT_MS }, (err, res) => {
              if (err) this.logger?.warn({ err: err.message, serverId, userId: String(userId), deviceId: String(deviceId) }, "closing a device's sessions failed on a chat server");
              resolve(res?.sessions ?? 0);
            });
          }),
      ),
    );
    const sessions = closed.reduce((a, b) => a + b, 0);
    this.logger?.debug({ userId: String(userId), deviceId: String(deviceId), code, sessions, servers: servers.length }, "closed a device's sessions");
    return sessions;
  }

  /**
   * Makes the chat servers holding a session of either user of each pair
   * forget what they remember of blocks between the pair, so a block or an
   * unblock holds at the next send there. Best effort: a server missed (or
   * one the user connects to later) sees it within its cache's TTL.
   */
  async forgetBlocks(pairs: readonly { userId: Id; otherUserId: Id }[]): Promise<void> {
    if (pairs.length === 0) return;
    let routes: Map<Id, string[]>;
    try {
      routes = await this.routes.lookup([...new Set(pairs.flatMap((p) => [p.userId, p.otherUserId]))]);
    } catch (err) {
      this.logger?.warn({ err }, "forgetting blocks: the routing table cannot be read; the servers' caches expire them");
      return;
    }
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
            client.forgetBlocks({ pairs: forPairs }, new Metadata(), { deadline: Date.now() + DELIVER_TIMEOUT_MS }, (err) => {
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

/** Consecutive runs of items whose sizes stay within budget bytes (each run has at least one). */
export function chunksOf<T>(items: readonly T[], budget: number, sizeOf: (item: T) => number): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (chunk.length > 0 && bytes + size > budget) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
