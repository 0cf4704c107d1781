import { Redis } from "ioredis";
import type { SendClaims } from "./port.js";
import { shownRedisUrl } from "../config/engines.js";

export interface RedisSendClaimsOptions {
  /** redis://host:port */
  url: string;
  /** Every key starts with this (default "chat:"). */
  keyPrefix?: string;
  ttlMs: number;
  /** A claim Redis has not answered in this long fails (default 250 ms). */
  commandTimeoutMs?: number;
}

/**
 * SET NX PX, and the holder's id when it was taken: one command per send on
 * any Redis version and on Redis Cluster (one key), where MULTI, SET, GET,
 * EXEC was four (and a transaction object per send in the client).
 */
const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return ARGV[1] end
return redis.call('GET', KEYS[1])
`;

type ClaimClient = { chatSendClaim(key: string, messageId: string, ttlMs: number): Promise<string | null> };

/**
 * Claims in Redis, `<prefix>send:<key>` = message id, set only if absent and
 * expiring with the claim; the script above answers who holds it. The client fails
 * fast rather than queueing while Redis is away (no offline queue, a short
 * command timeout): the caller then keeps its own id, as before claims, and
 * the send is not held up.
 */
export class RedisSendClaims implements SendClaims {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(private readonly options: RedisSendClaimsOptions) {
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 1) throw new RangeError(`ttlMs must be a positive integer, got ${options.ttlMs}`);
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 250,
      // A Redis gone without a word (a dead host, a dropped route) leaves the socket
      // standing until TCP gives up, a quarter of an hour in which every claim times
      // out; silent this long with a claim waiting, it is dropped and made again, as
      // the routes' and the presence store's are.
      socketTimeout: 3_000,
      connectTimeout: 3_000,
      retryStrategy: (times) => Math.min(times * 100, 2_000),
    });
    this.redis.on("error", () => {}); // failures surface on the claims, where the caller counts them
    this.redis.defineCommand("chatSendClaim", { lua: CLAIM, numberOfKeys: 1 });
    this.prefix = `${options.keyPrefix ?? "chat:"}send:`;
  }

  /**
   * Connects, and keeps reconnecting after a loss; rejects, naming the address,
   * if Redis cannot be reached now (claims fail until it can).
   */
  async connect(): Promise<void> {
    if (this.redis.status !== "wait") return;
    try {
      await this.redis.connect();
    } catch (err) {
      throw new Error(`cannot connect to Redis at ${shownRedisUrl(this.options.url)} (send claims): ${(err as Error).message}`, { cause: err });
    }
  }

  async claim(key: string, messageId: bigint): Promise<bigint> {
    const held = await (this.redis as unknown as ClaimClient).chatSendClaim(this.prefix + key, messageId.toString(), this.options.ttlMs);
    // A claim is never without a holder: only a key lapsing between SET and GET could, and a script runs whole.
    if (held === null) throw new Error(`send claim ${key}: Redis answered no holder`);
    return BigInt(held);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
