import type { Logger } from "pino";
import { ChannelMembers } from "../channels/members.js";
import { notifiedOfChange } from "../messages/changes.js";
import type { ChannelStore } from "../channels/store.js";
import type { MessageLog } from "../messages/log.js";
import { isChange, type NewMessage } from "../model/types.js";
import type { MessageQueue, OutgoingRecord, QueueRecord, Subscription } from "../queue/port.js";
import { decodeSubmitted, emptiedParts, encodeInboxAppends } from "./records.js";
import { ConsumerGroups, Topics } from "./topics.js";
import type { PipelineMetrics } from "./metrics.js";
import { StageHealth } from "../observability/stage-health.js";
import { allSettledOrFirstFailure } from "./settle.js";

export interface SequencerDeps {
  queue: MessageQueue;
  log: MessageLog;
  channels: ChannelStore;
  logger?: Logger;
  metrics?: PipelineMetrics;
  /** Failing batches for this long make the stage's health check fail (default 30 s). */
  stallMs?: number;
}

/**
 * The Sequencer is the single writer of each channel it owns (its partitions
 * of `submitted`): it gives every accepted message the channel's next seq,
 * stores it, and copies it towards the inbox of every member. Each step is
 * idempotent, so a batch that fails half-way is simply done again.
 */
export class Sequencer {
  readonly health: StageHealth;
  private sub?: Subscription;
  private readonly members: ChannelMembers;

  constructor(private readonly deps: SequencerDeps) {
    this.members = new ChannelMembers(deps.channels);
    this.health = new StageHealth("sequencer", deps.stallMs);
  }

  async start(): Promise<void> {
    this.sub = await this.deps.queue.subscribe(ConsumerGroups.sequencer, Topics.submitted, (rs) => this.health.run(() => this.handle(rs)), {
      onGiveUp: this.health.consumerStopped,
      onConsumerTrouble: this.health.consumerTrouble,
    });
  }

  async stop(): Promise<void> {
    await this.sub?.stop();
  }

  private async handle(records: QueueRecord[]): Promise<void> {
    const { log, queue } = this.deps;
    const submitted = records.map((r) => decodeSubmitted(r.value));
    // All at once, in batch order: each channel's log keeps call order, and
    // the Cassandra adapter stores a channel's appends of the batch as one group.
    const fanouts = await allSettledOrFirstFailure(submitted.map(async (m) => {
      if (isChange(m)) return this.amend(m);
      const { message, duplicate } = await log.append(m);
      // A duplicate with another message id is a client's resend that raced
      // the first copy through the queue: the first copy did the fan-out.
      // With the same id it is this very record again (a retried batch), whose
      // fan-out may not have happened, so do it again; inboxes drop repeats.
      if (duplicate && message.messageId !== m.messageId) return [];
      this.deps.metrics?.sequenced.inc();
      const memberIds = await this.members.memberIds(message.channelId);
      const values = encodeInboxAppends(memberIds, message);
      return memberIds.map((userId, i) => ({ key: userId.toString(), value: values[i]! }));
    }));
    // Published in batch order, so each user's inbox copies keep channel order.
    const out: OutgoingRecord[] = fanouts.flat();
    await queue.publish(Topics.inbox, out);
  }

  /**
   * An edit, a delete or a reaction: applied to its target, then copied to
   * every member's inbox as an entry of its own (no seq), so devices learn it
   * in order with the channel's messages. One that no longer applies (its target deleted,
   * or changed later) goes nowhere; the log says so by returning nothing.
   */
  private async amend(change: NewMessage): Promise<OutgoingRecord[]> {
    const { log } = this.deps;
    const target = await log.amend(change);
    if (!target) return [];
    this.deps.metrics?.sequenced.inc();
    // A delete also takes the text out of the inbox copies of the message and
    // of its edits: the inbox writers empty them as they append the delete.
    // A message with more edits than a record may name gets its delete's
    // entry once per part (each member's parts in order on their partition).
    const [memberIds, edits] = await Promise.all([
      this.members.memberIds(change.channelId),
      change.deleted ? log.editsOf(change.channelId, target.seq) : [],
    ]);
    const parts = emptiedParts(change.deleted ? [target.messageId, ...edits] : []);
    const notify = notifiedOfChange(change, target);
    return parts.flatMap((empties) => {
      const values = encodeInboxAppends(memberIds, { ...change, seq: 0n }, empties, notify);
      return memberIds.map((userId, i) => ({ key: userId.toString(), value: values[i]! }));
    });
  }
}
