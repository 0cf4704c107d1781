import type { EnvReader } from "../config/env.js";
import type { Id } from "../model/types.js";
import { KeyedBuckets } from "./keyed-buckets.js";

/**
 * The sends an account may make (messages, replies, edits, deletes and
 * reactions; not receipts, typing, heartbeats or syncs), on a chat server over
 * all its sessions there, and on an api process over its SendMessage calls.
 * The frame rate is per session and the text budget charges a tiny text a
 * byte, so without it one account's 1,000 sessions on a server could send
 * 50,000 short messages a second, each written to up to a hundred inboxes.
 *
 * A person sends a message or two a second at most, a run of reactions a few;
 * the burst holds a phone's outbox of a hundred messages written offline, sent
 * at once on reconnect, or a bot answering in many chats at the same moment.
 * The rate, 72,000 messages an hour, is past anything but a flood, which it
 * holds to about 2,000 inbox writes a second per account and server, not
 * millions. CHAT_SEND_BURST and CHAT_SENDS_PER_SEC tune both (README: "Configuration").
 */
export const SEND_BURST = 100;
export const SENDS_PER_SEC = 20;

export interface SendRate {
  /** Sends an account may make per second, sustained; 0 turns the limit off. */
  sendsPerSecond: number;
  sendBurst: number;
}

export const DEFAULT_SEND_RATE: SendRate = { sendsPerSecond: SENDS_PER_SEC, sendBurst: SEND_BURST };

/** CHAT_SENDS_PER_SEC (0: no limit, as the api's rates) and CHAT_SEND_BURST. */
export function readSendRate(r: EnvReader): SendRate {
  return {
    sendsPerSecond: r.int("CHAT_SENDS_PER_SEC", 20, 0, 100_000),
    sendBurst: r.int("CHAT_SEND_BURST", 100, 1, 100_000),
  };
}

/** The sends of each account against a SendRate: a token bucket per account, none at all when the rate is 0. */
export class SendRateLimiter {
  private readonly buckets?: KeyedBuckets;

  constructor(rate: SendRate, now?: () => number) {
    if (rate.sendsPerSecond > 0) this.buckets = new KeyedBuckets(rate.sendsPerSecond, rate.sendBurst, now);
  }

  /** Counts a send of `userId`'s: 0 when allowed, else the milliseconds until it may send again. */
  take(userId: Id): number {
    return this.buckets?.take(String(userId)) ?? 0;
  }
}
