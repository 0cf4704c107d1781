import type { ChannelStore } from "../../internal/channels/store.js";
import type { Inbox } from "../../internal/messages/inbox.js";
import type { MessageLog } from "../../internal/messages/log.js";
import { InboxWriter } from "../../internal/pipeline/inbox-writer.js";
import type { LiveDeliveryDeps } from "../../internal/pipeline/live-delivery.js";
import { Sequencer } from "../../internal/pipeline/sequencer.js";
import { ConsumerGroups, Topics } from "../../internal/pipeline/topics.js";
import type { SqliteQueue } from "../../internal/queue/sqlite.js";

export interface OldPipelineDeps extends LiveDeliveryDeps {
  queue: SqliteQueue;
  log: MessageLog;
  inbox: Inbox;
  channels: ChannelStore;
  /** How long the stages may go without progress before the start goes on without them (they keep going). */
  stallMs?: number;
  /** A stop was asked: the start goes on without them at once (they keep going until `stop`). */
  stopped?: AbortSignal;
}

/**
 * Until 2026-11-28 chatd acked a send once it was in queue.db's `submitted`
 * topic; its Sequencer then stored it in chat.db and its InboxWriter copied
 * it to the inboxes. A data directory such a chatd left with those stages
 * behind (killed, or stopped under load) holds acked messages nowhere else,
 * and chatd now writes sends itself and reads neither topic. So before it
 * serves, the same two stages finish what they left, then stop: nothing is
 * lost, and those messages keep their place before any new send. A directory
 * with nothing left (every one made since) costs two lookups.
 *
 * Resolves once they are done, or, should they stop making progress (a
 * batch that keeps failing), after `stallMs`, leaving them running; `stop`
 * stops them then. Once `stopped` aborts it resolves so at once: waiting out
 * `stallMs` (30 s) ran a stop asked meanwhile past its 25 s bound.
 */
export async function finishOldPipeline(deps: OldPipelineDeps): Promise<{ stop(): Promise<void> }> {
  const { queue, logger } = deps;
  const behind = async () =>
    (await queue.consumerLag(ConsumerGroups.sequencer, Topics.submitted)) + (await queue.consumerLag(ConsumerGroups.inboxWriter, Topics.inbox));
  let left = await behind();
  if (left === 0) return { stop: async () => {} };
  logger?.warn({ records: left }, "finishing the sends an older chatd acked and had not yet stored");
  const sequencer = new Sequencer({ queue, log: deps.log, channels: deps.channels, logger, metrics: deps.metrics });
  const inboxWriter = new InboxWriter({ ...deps, queue, inbox: deps.inbox });
  await sequencer.start();
  await inboxWriter.start();
  const stop = async () => {
    await sequencer.stop();
    await inboxWriter.stop();
  };
  const stallMs = deps.stallMs ?? 30_000;
  let movedAt = Date.now();
  while (left > 0) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = await behind();
    if (now !== left) [left, movedAt] = [now, Date.now()];
    else if (Date.now() - movedAt > stallMs) {
      logger?.error({ records: left }, "the sends an older chatd left are not going through; serving meanwhile, still trying");
      return { stop };
    }
    // What they have not stored stays in queue.db for the next start, as after a kill.
    if (deps.stopped?.aborted) {
      logger?.warn({ records: left }, "stopping before the sends an older chatd left are stored; the next start finishes them");
      return { stop };
    }
  }
  await stop();
  logger?.info("the sends an older chatd left are stored");
  return { stop: async () => {} };
}
