import type { Id, StoredMessage } from "../model/types.js";
import type { FanOuts } from "./fan-out.js";
import { Held, Origin, type HeldByChat } from "./held.js";
import type { NotifierContext } from "./notifier-context.js";
import { NotifiedMessages } from "./notified.js";
import type { NotificationRequest } from "./records.js";
import type { Sender } from "./sender.js";
import { ReadMarks, readCovers, withdraws } from "./withdrawal.js";

/** An open window: what it holds, and the timer that closes it. */
interface Collapsing {
  held: Held;
  timer: NodeJS.Timeout;
}

/**
 * The (user, chat) collapse windows: a chat's first request opens one, what
 * comes within collapseWindowMs joins it, and it closes into a fan-out.
 * Withdrawals, edits and read marks change what the chat holds unsent, in
 * its window and in the windows before it still on their way.
 */
export class CollapseWindows {
  private readonly collapsing = new Map<string, Collapsing>();
  private readonly notified: NotifiedMessages;
  private readonly readMarks: ReadMarks;

  constructor(
    private readonly c: NotifierContext,
    private readonly heldByChat: HeldByChat,
    private readonly fanOuts: FanOuts,
    private readonly sender: Sender,
  ) {
    this.notified = new NotifiedMessages(() => c.monotonicNow(), c.o.repeatWindowMs);
    this.readMarks = new ReadMarks(() => c.monotonicNow(), c.o.repeatWindowMs);
  }

  /** Windows open. */
  get size(): number {
    return this.collapsing.size;
  }

  /** Takes one request into its (user, channel) collapse window; `lost`: its batch's (BatchContext); `partition`: its record's. */
  accept(req: NotificationRequest, lost?: AbortSignal, partition?: number): void {
    // A reaction taken back handed on as a request (by a pipeline built before withdrawals) is one.
    if (req.message.reaction && req.message.text === "") return this.withdraw(req.userId, req.message);
    if (req.message.senderUserId === req.userId) return;
    // No message is sent empty: this is an inbox copy emptied by a delete for everyone, which a
    // batch the inbox writer handles again hands on. Deletes are never pushed, nor is nothing.
    if (!req.message.reaction && (req.message.deleted === true || req.message.text.trim() === "")) {
      this.c.deps.onSkipped?.("deleted");
      return;
    }
    // Read (on another device, or just before the user went offline) before its request came: the
    // read mark's producer is not ordered with the pipeline's requests.
    if (readCovers(this.readMarks.get(`${req.userId}:${req.message.channelId}`), req)) {
      this.c.deps.onSkipped?.("read");
      return;
    }
    this.notified.forget();
    const notified = this.notified.get(req.userId, req.message.messageId);
    // Unless its batch went back to the queue unsent: this is that batch again (the partition came back here).
    if (notified && (notified.origin.sent || !notified.origin.reassigned)) return;
    const key = `${req.userId}:${req.message.channelId}`;
    let c = this.collapsing.get(key);
    if (c?.held.origin.reassigned) {
      clearTimeout(c.timer);
      this.collapsing.delete(key);
      this.heldByChat.release(c.held);
      this.c.deps.onSkipped?.("reassigned");
      this.c.wakeWaiters();
      c = undefined;
    }
    if (c) {
      if (lost && !c.held.origin.batches.includes(lost)) c.held.origin.batches.push(lost);
      if (partition !== undefined) c.held.origin.partitions.add(partition);
      // A mention among the collapsed messages still reaches through a mute.
      if (!c.held.requests.has(req.message.messageId)) c.held.add(req);
      return;
    }
    const timer = setTimeout(() => this.flush(key), this.c.o.collapseWindowMs);
    const held = new Held(key, req, new Origin(lost ? [lost] : []));
    if (partition !== undefined) held.origin.partitions.add(partition);
    this.collapsing.set(key, { held, timer });
    this.heldByChat.add(held);
  }

  /**
   * A delete, or a reaction taken back: the chat's pushes not sent yet leave
   * out what it withdraws and send the rest; one left with nothing is
   * dropped (counted as "deleted"). A push already sent stays.
   */
  withdraw(userId: Id, change: StoredMessage): void {
    this.takeOut(userId, change.channelId, (req) => withdraws(change, req), "deleted");
  }

  /**
   * The user read the chat up to `seq` (a read receipt, MarkRead, on any
   * device): the pushes not sent yet of messages up to it are taken out as a
   * delete takes them, and a request for one that comes later (the read's
   * producer is not ordered with the pipeline) is dropped while the mark is
   * kept. The mark only moves forward: an older read that comes after a
   * newer one changes nothing.
   */
  read(userId: Id, channelId: Id, seq: bigint): void {
    if (!this.readMarks.moveTo(`${userId}:${channelId}`, seq)) return;
    this.takeOut(userId, channelId, (req) => readCovers(seq, req), "read");
  }

  /**
   * An edit: the chat's pushes not sent yet that tell of the message go with
   * its new text (a job rebuilds its notification when it is next taken from
   * the queue: a retry's after its backoff). A push already sent stays; an
   * edit of a message nothing holds (the usual case) is dropped on one lookup.
   * Whether it names the user follows the edited text, as the record tells
   * (one by a pipeline built before it does not: as the message first said).
   */
  edit(userId: Id, change: StoredMessage, mentioned?: boolean): void {
    const ofChat = this.heldByChat.of(`${userId}:${change.channelId}`);
    if (!ofChat) return;
    for (const held of ofChat) held.edit(change, mentioned);
  }

  /**
   * A rebalance left this notifier with `assigned`: the collapse windows it
   * holds of a partition that moved close now. Their records are committed,
   * so only this notifier can send them, and the changes that come after
   * (a delete, an edit, a read) go to the partition's new owner, which holds
   * nothing to take them out of: held on until the window closed, a push went
   * out for a message deleted or read meanwhile. One of a batch whose commit
   * was in flight at the rebalance may go before its `lost` aborts, and so
   * twice: the new owner reads it again (documented; the queue tells no
   * commit's end to wait for).
   */
  partitionsMoved(assigned: readonly number[]): void {
    if (this.c.draining) return;
    const kept = new Set(assigned);
    for (const [key, c] of this.collapsing) {
      if (![...c.held.origin.partitions].some((p) => !kept.has(p))) continue;
      clearTimeout(c.timer);
      this.flush(key);
    }
  }

  /** Closes every window now (stop() sends what it holds). */
  closeAll(): void {
    for (const [key, c] of this.collapsing) {
      clearTimeout(c.timer);
      this.flush(key);
    }
  }

  /** Takes what `out` names out of what the chat holds unsent; a push left with nothing is dropped (counted as `by`). */
  private takeOut(userId: Id, channelId: Id, out: (req: NotificationRequest) => boolean, by: "deleted" | "read"): void {
    const key = `${userId}:${channelId}`;
    const ofChat = this.heldByChat.of(key);
    if (!ofChat) return;
    for (const held of ofChat) {
      const gone = held.takeOut(out, by);
      if (gone.length === 0) continue;
      // A record of it that comes again (a batch published again) is not pushed either.
      this.notified.forget();
      this.notified.add(userId, gone, held.origin);
      if (held.requests.size > 0) continue;
      const c = this.collapsing.get(key);
      if (c?.held === held) {
        clearTimeout(c.timer);
        this.collapsing.delete(key);
        this.heldByChat.release(held);
        this.c.deps.onSkipped?.(by);
      }
      // A fan-out under way, a job queued or asking again see it themselves; a retry waiting is
      // given up now rather than hold its place for its backoff.
      if (held.refs === 0) continue;
      this.sender.giveUpRetriesOf(held, by);
    }
    this.sender.pump();
    this.c.wakeWaiters();
  }

  private flush(key: string): void {
    const c = this.collapsing.get(key);
    if (!c) return;
    const { held } = c;
    if (held.origin.reassigned) {
      this.collapsing.delete(key);
      this.heldByChat.release(held);
      this.c.deps.onSkipped?.("reassigned");
      this.c.wakeWaiters();
      return;
    }
    this.notified.add(held.latest.userId, held.requests.keys(), held.origin);
    this.notified.forget();
    this.fanOuts.start(key, held);
    this.collapsing.delete(key);
  }
}
