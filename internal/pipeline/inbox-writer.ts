import type { Inbox } from "../messages/inbox.js";
import type { Id } from "../model/types.js";
import type { MessageQueue, QueueRecord, Subscription } from "../queue/port.js";
import { deliverLive, type LiveDeliveryDeps, type LiveEntry } from "./live-delivery.js";
import { decodeEach, decodeInboxAppend } from "./records.js";
import { failedBatches, skippedRecords } from "./metrics.js";
import { monotonicNow } from "../model/clock.js";
import { PartitionedStageHealth } from "./partition-health.js";
import { ConsumerGroups, Topics } from "./topics.js";
import { allSettledOrFirstFailure } from "./settle.js";

export interface InboxWriterDeps extends LiveDeliveryDeps {
  queue: MessageQueue;
  inbox: Inbox;
  /** Failing batches for this long (all of them, or every one of one partition) make the stage's health check fail (default 30 s). */
  stallMs?: number;
}

/**
 * The InboxWriter is the single writer of each user's inbox it owns (its
 * partitions of `inbox`): it appends the entry with the user's next inbox
 * seq and hands it to the user's live sessions. Delivery is best effort:
 * the entry is already stored, and a session that misses it catches up
 * from its cursor. A push notification that cannot be queued fails the
 * batch, which comes again.
 */
export class InboxWriter {
  readonly health: PartitionedStageHealth;
  private sub?: Subscription;
  private readonly skip: ReturnType<typeof skippedRecords>;

  constructor(private readonly deps: InboxWriterDeps) {
    this.skip = skippedRecords(deps.metrics, deps.logger, "inbox-writer");
    this.health = new PartitionedStageHealth("inbox-writer", deps.stallMs, monotonicNow, failedBatches(deps.metrics, "inbox-writer"));
  }

  async start(): Promise<void> {
    this.sub = await this.deps.queue.subscribe(ConsumerGroups.inboxWriter, Topics.inbox, (rs) => this.health.runBatch(rs, () => this.handle(rs)), {
      onGiveUp: this.health.consumerStopped,
      onConsumerTrouble: this.health.consumerTrouble,
      onAssigned: this.health.assigned,
    });
  }

  async stop(): Promise<void> {
    await this.sub?.stop();
  }

  private async handle(records: QueueRecord[]): Promise<void> {
    const appends = decodeEach(records, decodeInboxAppend, this.skip);
    // All at once, in batch order: each inbox keeps call order, and the
    // Cassandra adapter stores a user's appends of the batch as one group.
    const results = await allSettledOrFirstFailure(appends.map((a) => this.deps.inbox.append(a.userId, a.message)));
    // Duplicates are handed on too. A batch that failed after some of its appends
    // comes again, and those come back duplicate: skipping them left their users
    // without the live push and the notification (an idle device saw the message
    // only at its next one). A session drops an inbox seq it already sent, so a
    // repeat costs nothing there; a repeated push notification after a redelivery
    // beats none, and the notifier collapses a user's per channel.
    // The same entry twice in one batch (a delete of a message with many edits
    // comes in parts, each naming some of the copies to empty) is handed on once.
    const handedOn = new Set<string>();
    const entries: LiveEntry[] = [];
    results.forEach(({ entry }, i) => {
      const { userId, notify } = appends[i]!;
      const key = `${userId}/${entry.inboxSeq}`;
      if (handedOn.has(key)) return;
      handedOn.add(key);
      entries.push(notify ? { userId, entry, notify } : { userId, entry });
    });
    // A delete's copies are emptied once the delete is in the inbox, and
    // before its devices hear of it: by then the text is gone from the sync
    // queue too. Done again with a retried batch; emptying is idempotent.
    // The deleted message's own copy is marked deleted as well, as chatd
    // marks it; a record of a pipeline built before `deleted_message_id`
    // names none, and its copies are only emptied, as that build did.
    const empties = new Map<Id, { ids: Id[]; deleted: Id[] }>();
    for (const a of appends) {
      if (!a.emptyMessageIds) continue;
      let of = empties.get(a.userId);
      if (!of) empties.set(a.userId, (of = { ids: [], deleted: [] }));
      of.ids.push(...a.emptyMessageIds);
      if (a.deletedMessageId !== undefined) of.deleted.push(a.deletedMessageId);
    }
    if (empties.size > 0) {
      await Promise.all([...empties].map(([userId, { ids, deleted }]) => this.deps.inbox.emptyTexts(userId, ids, deleted)));
    }
    this.deps.metrics?.inboxAppends.inc(results.filter((r) => !r.duplicate).length);
    await deliverLive(this.deps, entries);
  }
}
