import type { Logger } from "pino";
import { ChannelMembers } from "../channels/members.js";
import { joinersOf } from "../channels/joins.js";
import { notifiedOfChange } from "../messages/changes.js";
import type { ChannelStore } from "../channels/store.js";
import type { MessageLog } from "../messages/log.js";
import { isChange, type Id, type NewMessage, type StoredMessage } from "../model/types.js";
import type { MessageQueue, OutgoingRecord, QueueRecord, Subscription } from "../queue/port.js";
import { decodeEach, decodeSubmitted, emptiedParts, encodeInboxAppends } from "./records.js";
import { ConsumerGroups, Topics } from "./topics.js";
import { failedBatches, skippedRecords, type PipelineMetrics } from "./metrics.js";
import { monotonicNow } from "../model/clock.js";
import { PartitionedStageHealth } from "./partition-health.js";
import { allSettledOrFirstFailure } from "./settle.js";

export interface SequencerDeps {
  queue: MessageQueue;
  log: MessageLog;
  channels: ChannelStore;
  logger?: Logger;
  metrics?: PipelineMetrics;
  /** Failing batches for this long (all of them, or every one of one partition) make the stage's health check fail (default 30 s). */
  stallMs?: number;
}

/**
 * The Sequencer is the single writer of each channel it owns (its partitions
 * of `submitted`): it gives every accepted message the channel's next seq,
 * stores it, and copies it towards the inbox of every member. Each step is
 * idempotent, so a batch that fails half-way is simply done again.
 */
export class Sequencer {
  readonly health: PartitionedStageHealth;
  private sub?: Subscription;
  private readonly members: ChannelMembers;
  private readonly skip: ReturnType<typeof skippedRecords>;

  constructor(private readonly deps: SequencerDeps) {
    this.members = new ChannelMembers(deps.channels);
    this.skip = skippedRecords(deps.metrics, deps.logger, "sequencer");
    this.health = new PartitionedStageHealth("sequencer", deps.stallMs, monotonicNow, failedBatches(deps.metrics, "sequencer"));
  }

  async start(): Promise<void> {
    this.sub = await this.deps.queue.subscribe(ConsumerGroups.sequencer, Topics.submitted, (rs) => this.health.runBatch(rs, () => this.handle(rs)), {
      onGiveUp: this.health.consumerStopped,
      onConsumerTrouble: this.health.consumerTrouble,
      onAssigned: this.health.assigned,
    });
  }

  async stop(): Promise<void> {
    await this.sub?.stop();
  }

  private async handle(records: QueueRecord[]): Promise<void> {
    const { queue } = this.deps;
    const submitted = decodeEach(records, decodeSubmitted, this.skip);
    // All at once, in batch order: each channel's log keeps call order, and
    // the Cassandra adapter stores a channel's appends of the batch as one group.
    // A channel's changes one after the other: whether one changes anything is
    // read after the one before it applied.
    const lastChange = new Map<Id, Promise<Fanout | undefined>>();
    // A channel this process does not know yet is read before anything is
    // stored in it: a send checked against a direct chat's candidate that then
    // lost its creation race (or by a chat server that kept such a candidate)
    // is dropped, not stored under a channel id that leads nowhere. A known
    // channel answers at once, and its records go on without a wait.
    const admitted = new Map<Id, boolean | Promise<boolean>>();
    for (const m of submitted) if (!admitted.has(m.channelId)) admitted.set(m.channelId, this.members.admits(m.channelId));
    const steps = submitted.map((m) => {
      const store = (): Promise<Fanout | undefined> => {
        if (!isChange(m)) return this.append(m);
        const before = lastChange.get(m.channelId);
        const step = before ? before.then(() => this.amend(m)) : this.amend(m);
        lastChange.set(m.channelId, step);
        return step;
      };
      const admits = admitted.get(m.channelId)!;
      // Every record of the channel waits on the one answer, so they still reach the log in batch order.
      return admits === true ? store() : Promise.resolve(admits).then((ok) => (ok ? store() : this.drop(m)));
    });
    // Each channel's roster is read once, after all of its appends and changes
    // of the batch, and fans out every one of them. Read per message, side by
    // side, the reads came back in any order: around a join or a removal an
    // earlier message saw the new roster and a later one the old, and the
    // member missed a message in the middle of their membership, which no sync
    // fills in (the inbox is the sync queue). One read per batch, and batches
    // one after the other, means a member has all of a channel's entries from
    // one batch on, or until one batch, never a gap.
    const ofChannel = new Map<Id, Promise<Fanout | undefined>[]>();
    submitted.forEach((m, i) => {
      const list = ofChannel.get(m.channelId);
      if (list) list.push(steps[i]!);
      else ofChannel.set(m.channelId, [steps[i]!]);
    });
    const rosters = new Map<Id, Promise<readonly Id[]>>();
    for (const [channelId, own] of ofChannel) {
      rosters.set(channelId, allSettledOrFirstFailure(own).then((fs) => (fs.some(Boolean) ? this.members.memberIds(channelId) : [])));
    }
    // Everything settles before a failure fails the batch: its retry must not run beside this attempt.
    const stepsDone = allSettledOrFirstFailure(steps);
    await allSettledOrFirstFailure<unknown>([stepsDone, ...rosters.values()]);
    const fanouts = await stepsDone;
    // Published in batch order, so each user's inbox copies keep channel order.
    const out: OutgoingRecord[] = [];
    for (const f of fanouts) {
      if (!f) continue;
      const memberIds = await rosters.get(f.entry.channelId)!;
      for (const [i, empties] of f.parts.entries()) {
        // The first part names the deleted message (emptiedParts keeps the order it is given).
        const values = encodeInboxAppends(memberIds, f.entry, empties, f.notify, i === 0 ? f.deleted : undefined);
        memberIds.forEach((userId, i) => out.push({ key: userId.toString(), value: values[i]! }));
      }
    }
    await queue.publish(Topics.inbox, out);
  }

  /** A record for a channel that does not exist (or is not its pair's direct chat): stored nowhere, told to nobody. */
  private drop(m: NewMessage): undefined {
    this.deps.logger?.warn(
      { channelId: m.channelId.toString(), messageId: m.messageId.toString() },
      "dropping a record for a channel that does not exist (a direct chat's candidate that lost its creation race?)",
    );
    return undefined;
  }

  /** A message: stored with the channel's next seq, then copied to every member's inbox. */
  private async append(m: NewMessage): Promise<Fanout | undefined> {
    const { message, duplicate } = await this.deps.log.append(m);
    // A duplicate with another message id is a client's resend that raced
    // the first copy through the queue: the first copy did the fan-out.
    // With the same id it is this very record again (a retried batch), whose
    // fan-out may not have happened, so do it again; inboxes drop repeats.
    if (duplicate && message.messageId !== m.messageId) return undefined;
    // Before the batch is committed: a retry moves it again (forward only), a failure retries the batch.
    const joiners = joinersOf(message);
    if (joiners.length > 0) await this.deps.channels.markJoined(message.channelId, joiners, message.seq);
    // This very record again was given its seq the first time, and counted then.
    if (!duplicate) this.deps.metrics?.sequenced.inc();
    return { entry: message, parts: [[]] };
  }

  /**
   * An edit, a delete or a reaction: applied to its target, then copied to
   * every member's inbox as an entry of its own (no seq), so devices learn it
   * in order with the channel's messages. One that no longer applies (its target deleted,
   * or changed later) goes nowhere; the log says so by returning nothing.
   * Nor does one that would leave its target as it is (an edit to the text it
   * has, a reaction its sender has on it: it was acked when queued, and a
   * repeat must not reach every member's inbox). The log tells that from the
   * read of the target it applies the change on (`amendIfChanges`): a read
   * here first made two reads of the same row per change. That one read
   * follows the channel's earlier changes (`handle` runs them one after the
   * other, the log applies them in call order) on the channel's one writer,
   * so what is judged is the state the change lands on, never an older one.
   */
  private async amend(change: NewMessage): Promise<Fanout | undefined> {
    const { log } = this.deps;
    const amended = await log.amendIfChanges(change);
    if (!amended?.changed) return undefined;
    const target = amended.message;
    // Applied and counted the first time its record came (its fan-out, maybe lost then, is done again).
    if (!amended.again) this.deps.metrics?.sequenced.inc();
    // A delete also takes the text out of the inbox copies of the message and
    // of its edits: the inbox writers empty them as they append the delete.
    // A message with more edits than a record may name gets its delete's
    // entry once per part (each member's parts in order on their partition).
    // The message's own copies are also marked deleted, as chatd marks them:
    // a device syncing up to one, and no further, shows it deleted, not blank.
    const edits = change.deleted ? await log.editsOf(change.channelId, target.seq) : [];
    return {
      entry: { ...change, seq: 0n },
      parts: emptiedParts(change.deleted ? [target.messageId, ...edits] : []),
      notify: notifiedOfChange(change, target),
      ...(change.deleted && { deleted: target.messageId }),
    };
  }
}

/** What one record of the batch copies to every member's inbox: the entry, once per part of the ids it empties. */
interface Fanout {
  entry: StoredMessage;
  parts: Id[][];
  /** The member whose copy is marked `notify` (a reaction's author). */
  notify?: Id;
  /** A delete's target: its copies are marked deleted (`deleted_message_id`, on the first part, which names it). */
  deleted?: Id;
}
