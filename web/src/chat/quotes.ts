import { PageDirection } from "../../../gen/es/chat/v1/messages_pb.js";
import type { Message } from "../../../gen/es/chat/v1/types_pb.js";
import type { Api } from "../api.js";
import { applyChange, applyLate } from "../changes.js";
import { quoteKey } from "./keys.js";
import type { Users } from "./users.js";

export interface QuotesHost {
  readonly api: Api;
  readonly users: Users;
  /** A quote of the chat was read (or could not be). */
  quoteLoaded(channelId: bigint): void;
}

/**
 * Answered messages fetched from history because the open chat had not
 * loaded them, kept current by the changes that arrive.
 */
export class Quotes {
  /** By quoteKey; null when there is no such message, or it could not be read. */
  private readonly quotes = new Map<string, Message | null>();
  /** Quotes being fetched, with the changes to their messages that arrived meanwhile. */
  private readonly quoteLoads = new Map<string, Message[]>();

  constructor(private readonly host: QuotesHost) {}

  /** The quote as held: undefined when not fetched, null when there is none. */
  get(channelId: bigint, seq: bigint): Message | null | undefined {
    return this.quotes.get(quoteKey(channelId, seq));
  }

  /** An answered message the open chat has not loaded, from history; undefined while it is being read, or if it cannot be. */
  fetched(channelId: bigint, seq: bigint): Message | undefined {
    const k = quoteKey(channelId, seq);
    const have = this.quotes.get(k);
    if (have !== undefined) return have ?? undefined;
    if (!this.quoteLoads.has(k)) void this.load(channelId, seq);
    return undefined;
  }

  private async load(channelId: bigint, seq: bigint): Promise<void> {
    const k = quoteKey(channelId, seq);
    const meanwhile: Message[] = [];
    this.quoteLoads.set(k, meanwhile);
    let got: Message | null = null;
    try {
      // FORWARD pages start after the anchor: this reads exactly `seq`.
      const res = await this.host.api.messages.listMessages({ channelId, anchorSeq: seq - 1n, direction: PageDirection.FORWARD, limit: 1 });
      const m = res.messages[0];
      if (m && m.seq === seq) {
        await this.host.users.ensureUsers([m.senderUserId]);
        got = m;
      }
    } catch {
      // the placeholder stays until the chat is opened again
    } finally {
      this.quoteLoads.delete(k);
    }
    // A change that arrived while the page was read may or may not be in it.
    for (const ch of meanwhile) if (got) got = applyLate(got, ch);
    this.quotes.set(k, got);
    this.host.quoteLoaded(channelId);
  }

  /** A live change (`ch`): applied to its message if held, kept for it if being fetched. Says whether one was held. */
  applyChange(ch: Message): boolean {
    const qk = quoteKey(ch.channelId, ch.targetSeq);
    const quoted = this.quotes.get(qk);
    if (quoted) this.quotes.set(qk, applyChange(quoted, ch));
    this.quoteLoads.get(qk)?.push(ch);
    return !!quoted;
  }

  /** The chat's quotes are read again as they now are when next shown. */
  forget(channelId: bigint): void {
    for (const k of this.quotes.keys()) if (k.startsWith(`${channelId}:`)) this.quotes.delete(k);
  }

  /** My clear of the chat's history took the messages through `through` away: their quotes show none. */
  cleared(channelId: bigint, through: bigint): void {
    const prefix = `${channelId}:`;
    for (const k of this.quotes.keys()) if (k.startsWith(prefix) && BigInt(k.slice(prefix.length)) <= through) this.quotes.set(k, null);
  }
}
