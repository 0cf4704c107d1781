import type { Consumer, EachBatchPayload } from "kafkajs";
import type { BatchHandler, QueueRecord, RecordsLost, SubscribeOptions, Subscription } from "./port.js";
import { onOffsetReset, type OffsetReset } from "./kafkajs-offset-reset.js";
import { isPermanentConsumerError, REVOKING_ERRORS } from "./kafka-consumer-errors.js";
import { DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, type KafkaQueueOptions } from "./kafka-options.js";
import { settlesWithin } from "../model/settles-within.js";

/** A handled offset not yet committed: the next offset of a partition, the join it was handled in, and the `lost` signals of the chunks it commits. */
interface Handled {
  offset: string;
  joins: number;
  lost: AbortController[];
}

/** The pause before the first offsets of a reset partition are asked again, doubling while Kafka does not answer. */
const LOG_START_RETRY_MS = { initial: 1_000, max: 30_000 };

const CONSUMER_RESTART_BACKOFF_MS = { initial: 1_000, max: 30_000 };

/** The pause before an offset commit that failed is tried again (unless a batch's commit comes first). */
const COMMIT_RETRY_MS = 1_000;

/** One subscription of KafkaQueue: its kafkajs consumer, the offsets handled and committed, and the consumer's replacements (see KafkaQueue, "Consuming"). */
export class KafkaSubscription implements Subscription {
  /** Counts group joins, to notice a rebalance that happened while a batch was in hand. */
  private joins = 0;
  private assigned = new Set<number>();
  private readonly backoff = new Map<number, number>();
  private readonly resumeTimers = new Set<NodeJS.Timeout>();
  private stopping: Promise<void> | undefined;
  /** Handled, not yet committed: the next offset of each partition, the join it was handled in, and the chunks' `lost` signals. */
  private readonly uncommitted = new Map<number, Handled>();
  private commitTimer: NodeJS.Timeout | undefined;
  private commits: Promise<void> = Promise.resolve();
  private batchesInHand = 0;
  /** Why kafkajs stopped this consumer for good while it was starting. */
  private failedToStart: Error | undefined;
  private readonly maxBatch: number;
  private readonly heartbeatIntervalMs: number;
  private consumer: Consumer;
  /** Set while a consumer kafkajs gave up on is being replaced. */
  private restarting: Promise<void> | undefined;
  /** Ends the pause before the next replacement early (on stop). */
  private wakeRestart: (() => void) | undefined;
  /** While run() waits for a consumer to join: kafkajs reports a failed start only through CRASH. */
  private starting = false;
  /** Aborted once a heartbeat says the partitions of this join may move (BatchContext.revoked); one per join. */
  private generation = new AbortController();
  /**
   * The offset each partition's next record should have (past each chunk handled this join,
   * or where kafkajs was when it reset the partition): a batch that starts later had records
   * deleted before they were read.
   */
  private readonly expected = new Map<number, bigint>();
  /**
   * Partitions kafkajs reset whose loss is not told yet, by the offset it reset from: told by
   * the first batch after it, or once the partition's first offset is read (no record may
   * come). Kept across joins: the reset overwrote the group's commit, so no one else can.
   */
  private readonly untold = new Map<number, bigint>();
  /** Stops listening for kafkajs' resets of this member (replaced at each join). */
  private unwatchResets: (() => void) | undefined;

  constructor(
    private readonly newConsumer: () => Consumer,
    private readonly group: string,
    private readonly topic: string,
    /** The topic as the caller named it (without the namespace), for the records. */
    private readonly recordTopic: string,
    private readonly handler: BatchHandler,
    private readonly subscribeOptions: SubscribeOptions,
    private readonly options: KafkaQueueOptions,
    private readonly onStopped: () => void,
    /** Each partition's first offset. */
    private readonly readLogStarts: () => Promise<Map<number, bigint>>,
    private readonly onRecordsLost: (loss: RecordsLost) => void,
  ) {
    this.maxBatch = subscribeOptions.maxBatch ?? 256;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.consumer = newConsumer();
  }

  /** Settles once the first consumer has joined its group (or failed to). */
  private started: Promise<void> | undefined;

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  start(): Promise<void> {
    this.started = this.run(this.consumer);
    return this.started;
  }

  /** Connects `consumer`, joins the group and starts fetching; rejects if kafkajs gave up on it meanwhile. */
  private async run(consumer: Consumer): Promise<void> {
    const log = this.options.logger;
    this.failedToStart = undefined;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joins++;
      this.generation = new AbortController();
      this.assigned = new Set(e.payload.memberAssignment[this.topic] ?? []);
      // Where a partition of the last join was says nothing of where it is now (another member
      // may have had it since); a reset of this join tells its own (watchResets).
      this.expected.clear();
      this.watchResets(consumer, e.payload.groupId, e.payload.memberId);
      // Offsets of the previous join can no longer be committed: their handlers learn it now
      // (`lost`), not at the next commit, which waits for a record that may not come.
      if (this.uncommitted.size > 0) void this.commit();
      this.subscribeOptions.onAssigned?.([...this.assigned]);
      this.subscribeOptions.onConsumerTrouble?.(undefined);
      log?.debug({ group: this.group, topic: this.topic, partitions: [...this.assigned] }, "kafka group joined");
    });
    consumer.on(consumer.events.CRASH, (e) => {
      const { error, restart } = e.payload;
      log?.error(
        { err: error, group: this.group, topic: this.topic, restart },
        restart ? "kafka consumer crashed; restarting" : "kafka consumer crashed and stopped",
      );
      // kafkajs restarts after retriable errors; after any other it has left the
      // group and disconnected, and this member consumes nothing from then on.
      if (this.stopping || consumer !== this.consumer) return;
      if (restart) return this.subscribeOptions.onConsumerTrouble?.(error);
      const err = new Error(`Kafka consumer of group ${this.group} on ${this.topic} stopped for good: ${error.message}`, { cause: error });
      if (this.starting) this.failedToStart = err;
      else if (isPermanentConsumerError(error)) this.subscribeOptions.onGiveUp?.(err);
      else if (!this.restarting) {
        // kafkajs counts some passing faults as final: a broker restart fails the
        // search for the group coordinator (KafkaJSGroupCoordinatorNotFound) and
        // the consumer stops for good (tulios/kafkajs#1445, #1630). A fresh one joins.
        this.subscribeOptions.onConsumerTrouble?.(error);
        this.restarting = this.replaceConsumer().finally(() => (this.restarting = undefined));
      }
    });
    this.starting = true;
    try {
      await consumer.connect().catch((err: Error) => {
        throw new Error(`cannot connect to Kafka at ${this.options.brokers.join(",")}: ${err.message}`, { cause: err });
      });
      // A new group starts from the beginning of what Kafka still holds; a known one from its commits.
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 4,
        eachBatch: (payload) => this.eachBatch(payload),
      });
    } finally {
      this.starting = false;
    }
    // kafkajs reports a failed start only through the CRASH event, before run() resolves.
    if (this.failedToStart) throw this.failedToStart;
  }

  /**
   * Replaces a consumer kafkajs stopped for good with a fresh one, again and
   * again with a growing pause while Kafka is away, until one runs or the
   * subscription stops. What was handled and not committed is read again.
   */
  private async replaceConsumer(): Promise<void> {
    const log = this.options.logger;
    const { initial, max } = CONSUMER_RESTART_BACKOFF_MS;
    for (let wait = initial, next = Math.min(initial * 2, max); !this.stopping; wait = next, next = Math.min(next * 2, max)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wakeRestart = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeRestart = undefined;
      if (this.stopping) return;
      await this.consumer.disconnect().catch(() => {});
      const consumer = this.newConsumer();
      this.consumer = consumer;
      try {
        log?.warn({ group: this.group, topic: this.topic }, "starting a fresh kafka consumer");
        await this.run(consumer);
        log?.info({ group: this.group, topic: this.topic }, "fresh kafka consumer running");
        return;
      } catch (err) {
        this.subscribeOptions.onConsumerTrouble?.(err as Error);
        if (isPermanentConsumerError(err)) {
          await consumer.disconnect().catch(() => {});
          if (!this.stopping) this.subscribeOptions.onGiveUp?.(err as Error);
          return;
        }
        log?.warn({ err, group: this.group, topic: this.topic, retryInMs: next }, "fresh kafka consumer failed to start");
      }
    }
  }

  /**
   * Tells records Kafka deleted before this group read them (it was down or
   * behind for longer than the topic's retention): kafkajs, finding the
   * committed offset out of range, resets it to the partition's first record
   * without a word, and acked messages are gone unseen. Its reset says where
   * the partition was; nothing is held meanwhile (a consumer joining its
   * group paused its partitions until it had read the group's commits, and
   * kafkajs, with all of them paused, slept a whole long poll: every join
   * held its records ~500 ms).
   */
  private watchResets(consumer: Consumer, groupId: string, memberId: string): void {
    this.unwatchResets?.();
    this.unwatchResets = onOffsetReset(groupId, memberId, (reset) => {
      if (consumer === this.consumer && reset.topic === this.topic) this.offsetReset(reset);
    });
  }

  private offsetReset({ partition, offset }: OffsetReset): void {
    // Logged at once, before how many is known: kafkajs has overwritten the group's commit, so a
    // process that died before a batch or the first-offset read told the count left no trace else.
    this.options.logger?.error(
      { group: this.group, topic: this.topic, partition, committedOffset: offset.toString() },
      "kafka has no records from this consumer group's position on (deleted unread after the topic's retention): acked messages lost; kafkajs goes on from the partition's first record, how many were lost is told next",
    );
    this.expected.set(partition, offset);
    const already = this.untold.has(partition);
    this.untold.set(partition, offset);
    if (!already) void this.tellWithoutRecords(partition);
  }

  /**
   * Tells the loss of a reset partition from its first offset, should no batch
   * tell it first: one may never come (everything after the group's commit
   * deleted, nothing new since).
   */
  private async tellWithoutRecords(partition: number): Promise<void> {
    // Once at least, stopping or not: the reset overwrote the group's commit, so no later member can tell it.
    for (let wait = LOG_START_RETRY_MS.initial; this.untold.has(partition); wait = Math.min(wait * 2, LOG_START_RETRY_MS.max)) {
      try {
        const low = (await this.readLogStarts()).get(partition);
        const from = this.untold.get(partition);
        if (from === undefined) return; // a batch told it meanwhile
        this.untold.delete(partition);
        if (low === undefined || low <= from) return; // reset past its end (a topic made afresh): nothing deleted
        this.recordsLost(partition, from, low);
        if (this.expected.get(partition) === from) this.expected.set(partition, low);
        return;
      } catch (err) {
        this.options.logger?.warn(
          { err, group: this.group, topic: this.topic, partition, retryInMs: wait },
          "could not read a reset partition's first offset to tell the records deleted unread; trying again",
        );
        if (this.stopping) return;
        await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  }

  /** Logs and counts records of `partition` from `committed` up to `logStart` that Kafka deleted unread. */
  private recordsLost(partition: number, committed: bigint, logStart: bigint): void {
    const records = Number(logStart - committed);
    this.options.logger?.error(
      {
        group: this.group,
        topic: this.topic,
        partition,
        committedOffset: committed.toString(),
        logStartOffset: logStart.toString(),
        records,
      },
      "kafka deleted records this consumer group had not read (down or behind for longer than the topic's retention): acked messages lost; going on from the partition's first record",
    );
    this.onRecordsLost({ topic: this.recordTopic, partition, committedOffset: committed, logStartOffset: logStart, records });
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    this.batchesInHand++;
    try {
      await this.handleBatch(payload);
    } finally {
      this.batchesInHand--;
      // Stopping: the group is left once the batches in hand are done, so commit now,
      // through the batch's own commit: consumer.commitOffsets does nothing once the
      // runner stopped (and stop() stops it while this batch is still in hand).
      if (this.stopping) await this.commit(payload.commitOffsetsIfNecessary);
    }
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale, pause } = payload;
    const { topic, partition } = batch;
    const joinsAtStart = this.joins;
    const generation = this.generation;
    const heard = (err: unknown) => {
      if (REVOKING_ERRORS.has((err as { type?: string }).type ?? "")) generation.abort(err);
    };
    const records: QueueRecord[] = batch.messages.map((m) => ({
      topic: this.recordTopic,
      partition,
      offset: BigInt(m.offset),
      key: m.key?.toString() ?? "",
      value: m.value ? new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength) : new Uint8Array(0),
    }));
    // Offsets run without gaps here (no transactions, no compaction): a first record past the one
    // expected means kafkajs found its position deleted meanwhile (a consumer behind by more than
    // the retention) and reset it to the partition's first record, which this batch starts at.
    const expected = this.expected.get(partition);
    if (expected !== undefined && records.length > 0 && records[0]!.offset > expected) {
      this.untold.delete(partition);
      this.recordsLost(partition, expected, records[0]!.offset);
      // Once told: a chunk of this batch that fails is fetched again from here.
      this.expected.set(partition, records[0]!.offset);
    }
    for (let i = 0; i < records.length; i += this.maxBatch) {
      // Stopping, or the partition moved: leave the rest unresolved, it is fetched again (here or by the new owner).
      if (!isRunning() || isStale() || this.stopping) return;
      if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
      const chunk = records.slice(i, i + this.maxBatch);
      // kafkajs heartbeats only between batches, and fetches no further batch while
      // this one is in hand: a handler call longer than the session timeout (a publish
      // waiting on a slow broker, a Cassandra read timing out) got the member evicted
      // and its partitions redone elsewhere while it still worked on them. Errors are
      // left to the heartbeat after the call, which reports a rebalance to kafkajs.
      // A heartbeat that tells of a rebalance is what the handler learns through `revoked`.
      const beating = setInterval(() => void heartbeat().catch(heard), this.heartbeatIntervalMs);
      beating.unref();
      const lost = new AbortController();
      try {
        await this.handler(chunk, { revoked: generation.signal, lost: lost.signal });
      } catch (err) {
        lost.abort(err);
        // Given up for a rebalance (or failed during one): no failure to back off from.
        if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
        // Never skip: this chunk stays unresolved and uncommitted. Pause the partition for a
        // backoff; the next fetch after resume starts again at the chunk's first offset.
        const wait = this.nextBackoff(partition);
        this.options.logger?.warn(
          { err, group: this.group, topic, partition, offset: chunk[0]!.offset.toString(), retryInMs: wait },
          "batch handler failed; will deliver the batch again",
        );
        if (!this.stopping) {
          const resume = pause();
          const t = setTimeout(() => {
            this.resumeTimers.delete(t);
            resume();
          }, wait);
          this.resumeTimers.add(t);
        }
        return;
      } finally {
        clearInterval(beating);
      }
      this.backoff.delete(partition);
      const last = chunk[chunk.length - 1]!.offset;
      resolveOffset(last.toString());
      this.expected.set(partition, last + 1n);
      if (this.joins !== joinsAtStart || !this.assigned.has(partition)) {
        // Rebalanced while the handler ran: the partition may be someone else's now. Do not
        // commit for them; whoever owns it re-reads from the last commit (at least once).
        this.options.logger?.info({ group: this.group, topic, partition }, "partition reassigned mid-batch; not committing");
        lost.abort(new Error(`partition ${partition} reassigned before its commit`));
        return;
      }
      this.keep(partition, { offset: (last + 1n).toString(), joins: this.joins, lost: [lost] });
      if ((this.options.commitIntervalMs ?? 100) <= 0) await this.commit();
      // (Stopping, eachBatch commits when the batch is done.)
      else if (!this.stopping) this.scheduleCommit();
      if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
      try {
        await heartbeat();
      } catch (err) {
        heard(err);
        if (generation.signal.aborted) return this.rejoinNow(payload, generation.signal);
        throw err;
      }
    }
  }

  /**
   * A rebalance began with this batch in hand: commits what was handled now,
   * while the group still takes this join's commits (once rejoined they are
   * dropped, and the partition's next owner did them again), leaves the rest
   * uncommitted for that owner, and hands kafkajs the heartbeat's error, on
   * which it rejoins at once rather than fetching the same batch again.
   */
  private async rejoinNow(payload: EachBatchPayload, revoked: AbortSignal): Promise<never> {
    await this.commit(payload.commitOffsetsIfNecessary);
    this.options.logger?.info({ group: this.group, topic: this.topic, partition: payload.batch.partition }, "kafka group rebalancing; rejoining");
    throw revoked.reason;
  }

  /**
   * Keeps a partition's handled offset for the next commit. A newer one takes the place of one
   * of the same join, and its commit commits both; one of an earlier join is not committed
   * any more (whoever owns the partition now reads it again): its chunks are lost.
   */
  private keep(partition: number, handled: Handled): void {
    const prev = this.uncommitted.get(partition);
    if (prev && prev.joins === handled.joins) handled = { ...handled, lost: [...prev.lost, ...handled.lost] };
    else if (prev) abortAll(prev, `partition ${partition} rebalanced before its commit`);
    this.uncommitted.set(partition, handled);
  }

  /**
   * Commits what was handled since the last commit, in one request. Offsets
   * handled before the latest rebalance, or of partitions this member no
   * longer owns, are dropped: their owner re-reads from the last commit
   * (their chunks' `lost` signals abort).
   */
  private commit(viaBatch?: EachBatchPayload["commitOffsetsIfNecessary"]): Promise<void> {
    this.commits = this.commits.then(async () => {
      // Stopping with a batch in hand, the runner has stopped and its
      // commitOffsets returns without committing: leave the offsets for that
      // batch's own commit, or they are lost and done again by the next owner.
      if (!viaBatch && this.stopping && this.batchesInHand > 0) return;
      const due: [number, Handled][] = [];
      for (const [p, c] of this.uncommitted) {
        if (c.joins === this.joins && this.assigned.has(p)) due.push([p, c]);
        else abortAll(c, `partition ${p} rebalanced before its commit`);
      }
      this.uncommitted.clear();
      if (due.length === 0) return;
      try {
        if (viaBatch) await viaBatch({ topics: [{ topic: this.topic, partitions: due.map(([partition, c]) => ({ partition, offset: c.offset })) }] });
        else await this.consumer.commitOffsets(due.map(([partition, c]) => ({ topic: this.topic, partition, offset: c.offset })));
      } catch (err) {
        // Kept for the next commit (unless a newer offset of the partition came meanwhile).
        for (const [p, c] of due) {
          const newer = this.uncommitted.get(p);
          if (!newer) this.uncommitted.set(p, c);
          else if (newer.joins === c.joins) newer.lost.unshift(...c.lost);
          else abortAll(c, `partition ${p} rebalanced before its commit`);
        }
        this.options.logger?.info({ err, group: this.group, topic: this.topic }, "offset commit failed; trying again");
        // Not only with the next batch's commit: on a partition that gets no further record the
        // offsets stayed uncommitted (its lag never 0, its records done again after a crash).
        // At most once a second: a commit that fails at once would otherwise be a loop of requests.
        if (!this.stopping) this.scheduleCommit(COMMIT_RETRY_MS);
      }
    });
    return this.commits;
  }

  /** Commits what was handled within the commit interval (or `atLeastMs`), unless a commit is due already. */
  private scheduleCommit(atLeastMs = 0): void {
    this.commitTimer ??= setTimeout(() => {
      this.commitTimer = undefined;
      void this.commit();
    }, Math.max(this.options.commitIntervalMs ?? 100, atLeastMs));
  }

  private nextBackoff(partition: number): number {
    const { initial, max } = this.options.retryBackoffMs ?? { initial: 50, max: 5_000 };
    const prev = this.backoff.get(partition);
    const next = prev === undefined ? initial : Math.min(max, prev * 2);
    this.backoff.set(partition, next);
    return next;
  }

  /**
   * Finishes (and commits) the batch in hand, leaves the group, disconnects;
   * gives up after closeTimeoutMs (Kafka away: the leave and the reconnects of
   * a consumer being replaced are retried for a minute and more), leaving what
   * was not committed to the group's next member.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      const timeoutMs = this.options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
      const left = this.leave();
      this.stopping = settlesWithin(left, timeoutMs).then((settled) => {
        if (settled) return left;
        this.options.logger?.warn({ group: this.group, topic: this.topic, timeoutMs }, "kafka consumer did not leave its group in time; giving it up");
        this.forgetUncommitted("stopped before its commit");
        this.unwatchResets?.();
        this.onStopped();
      });
    }
    return this.stopping;
  }

  private forgetUncommitted(why: string): void {
    for (const c of this.uncommitted.values()) abortAll(c, why);
    this.uncommitted.clear();
  }

  /** stop()'s work, unbounded. Runs synchronously until its first wait, before `stopping` is set. */
  private async leave(): Promise<void> {
    for (const t of this.resumeTimers) clearTimeout(t);
    this.resumeTimers.clear();
    clearTimeout(this.commitTimer);
    // A consumer still joining its group (a SIGTERM at start-up), or a replacement half
    // started: let it settle, then disconnect whichever is current. Disconnected while it
    // joins, kafkajs does not leave the group (it is not running yet), and the member
    // Kafka made of it kept its partitions, messages stalled, until the session timeout.
    this.wakeRestart?.();
    await this.started?.catch(() => {});
    await this.restarting;
    // With a batch in hand, it commits when it is done (eachBatch).
    if (this.batchesInHand === 0) await this.commit();
    try {
      await this.consumer.disconnect();
    } finally {
      // What a failed last commit left: the next member of the group reads it again.
      this.forgetUncommitted("stopped before its commit");
      this.unwatchResets?.();
      this.onStopped();
    }
  }
}

function abortAll(handled: Handled, why: string): void {
  const reason = new Error(why);
  for (const c of handled.lost) c.abort(reason);
}
