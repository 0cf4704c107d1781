import Database from "better-sqlite3";
import type { Logger } from "pino";
import { WriteFailures } from "../observability/write-failures.js";
import { createPrivately, UnusableDatabaseError } from "../storage/sqlite/database.js";
import {
  partitionFor,
  type BatchHandler,
  type MessageQueue,
  type OutgoingRecord,
  type QueueRecord,
  type SubscribeOptions,
  type Subscription,
  type TopicSpec,
} from "./port.js";

export interface SqliteQueueOptions {
  /** File path, or ":memory:" for a queue that dies with the process. */
  path: string;
  /** "full" survives power loss; "normal" (default) survives a process crash. */
  synchronous?: "normal" | "full";
  /** Records every group has consumed are trimmed this often. */
  trimIntervalMs?: number;
  /** How long a failed write fails `writeCheck` when nothing is written after it (default 60 s). */
  writeFailureWindowMs?: number;
  logger?: Logger;
}

interface PendingPublish {
  topic: string;
  partitions: number[];
  records: readonly OutgoingRecord[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The embedded message-sync queue: a keyed, partitioned, durable log in its
 * own SQLite file, consumed in-process. Publishes made in the same turn of
 * the event loop share one transaction (group commit), which is what keeps
 * it fast with many concurrent senders.
 */
const COMMIT_RETRY_FIRST_MS = 10;
const COMMIT_RETRY_MAX_MS = 1_000;

export class SqliteQueue implements MessageQueue {
  private readonly db: Database.Database;
  private readonly partitionsOf = new Map<string, number>();
  private readonly nextOffset = new Map<string, bigint>(); // "topic/partition" -> offset
  private readonly wakers = new Map<string, Set<() => void>>(); // "topic/partition" -> waiting consumers
  private readonly groups = new Map<string, GroupConsumer>(); // "group/topic" -> active member
  private pending: PendingPublish[] = [];
  /**
   * Each group's position per partition ("group\0topic/partition"): the
   * consumers read from here, and commits land here at once and in the file
   * with the turn's next transaction (below), not one transaction each.
   */
  private readonly positions = new Map<string, bigint>();
  private pendingCommits = new Map<string, { group: string; topic: string; partition: number; next: bigint }>();
  private flushScheduled = false;
  /** A failed transaction's offset commits are retried after this, doubling to a second, not on the next turn (a spin while the disk is full). */
  private commitRetryMs = COMMIT_RETRY_FIRST_MS;
  private commitRetry?: NodeJS.Timeout;
  private closed = false;
  private readonly writes: WriteFailures;
  private readonly trimTimer: NodeJS.Timeout;
  private readonly stmt;

  constructor(private readonly options: SqliteQueueOptions) {
    this.writes = new WriteFailures(options.writeFailureWindowMs);
    this.db = openQueueFile(options);
    this.stmt = {
      insertTopic: this.db.prepare("INSERT OR IGNORE INTO topics (topic, partitions) VALUES (?, ?)"),
      topics: this.db.prepare("SELECT topic, partitions FROM topics"),
      maxOffsets: this.db.prepare("SELECT topic, part, MAX(off) AS max FROM records GROUP BY topic, part"),
      maxCommitted: this.db.prepare("SELECT topic, part, MAX(next_off) AS max FROM group_offsets GROUP BY topic, part"),
      insertRecord: this.db.prepare("INSERT INTO records (topic, part, off, key, value) VALUES (?, ?, ?, ?, ?)"),
      readRecords: this.db.prepare(
        "SELECT off, key, value FROM records WHERE topic = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?",
      ),
      groupOffset: this.db.prepare("SELECT next_off FROM group_offsets WHERE grp = ? AND topic = ? AND part = ?"),
      commit: this.db.prepare(
        `INSERT INTO group_offsets (grp, topic, part, next_off) VALUES (?, ?, ?, ?)
         ON CONFLICT (grp, topic, part) DO UPDATE SET next_off = excluded.next_off`,
      ),
      minCommitted: this.db.prepare(
        "SELECT topic, part, MIN(next_off) AS min FROM group_offsets GROUP BY topic, part",
      ),
      trim: this.db.prepare("DELETE FROM records WHERE topic = ? AND part = ? AND off < ?"),
      firstOffset: this.db.prepare("SELECT MIN(off) AS min FROM records WHERE topic = ? AND part = ?"),
    };
    for (const row of this.stmt.topics.all() as { topic: string; partitions: bigint }[]) {
      this.partitionsOf.set(row.topic, Number(row.partitions));
    }
    for (const row of this.stmt.maxOffsets.all() as { topic: string; part: bigint; max: bigint }[]) {
      this.nextOffset.set(`${row.topic}/${row.part}`, row.max + 1n);
    }
    // A trim deletes what every group consumed, up to all of a partition: the
    // groups' commits then remember how far it went. Restarting below them,
    // new records would sit under a group's position, never read.
    for (const row of this.stmt.maxCommitted.all() as { topic: string; part: bigint; max: bigint }[]) {
      const tp = `${row.topic}/${row.part}`;
      if (row.max > (this.nextOffset.get(tp) ?? 0n)) this.nextOffset.set(tp, row.max);
    }
    // A trim that throws from a timer would end the process (a full disk,
    // SQLITE_FULL): the records stay for the next one, and writeCheck tells.
    this.trimTimer = setInterval(() => {
      try {
        this.trim();
      } catch (err) {
        this.writeFailed(err);
        options.logger?.warn({ err }, "queue trim failed; retrying at the next interval");
      }
    }, options.trimIntervalMs ?? 30_000);
    this.trimTimer.unref();
  }

  async ensureTopics(topics: readonly TopicSpec[]): Promise<void> {
    for (const t of topics) {
      if (!Number.isInteger(t.partitions) || t.partitions < 1) {
        throw new RangeError(`topic ${t.topic}: partitions must be a positive integer`);
      }
      this.stmt.insertTopic.run(t.topic, t.partitions);
      if (!this.partitionsOf.has(t.topic)) this.partitionsOf.set(t.topic, t.partitions);
    }
  }

  publish(topic: string, records: readonly OutgoingRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error("queue is closed"));
    const partitions = this.partitionsOf.get(topic);
    if (partitions === undefined) return Promise.reject(new Error(`unknown topic ${topic}: call ensureTopics first`));
    if (records.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.pending.push({
        topic,
        partitions: records.map((r) => partitionFor(r.key, partitions)),
        records,
        resolve,
        reject,
      });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * One transaction for the turn: every publish and every offset commit. A
   * transaction each made the offset commits alone most of the queue's
   * writes in the benchmark (one per consumed batch, per partition).
   */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    const commits = this.pendingCommits;
    this.pendingCommits = new Map();
    if ((batch.length === 0 && commits.size === 0) || !this.db.open) return;
    const touched = new Set<string>();
    const assigned = new Map<string, bigint>();
    try {
      this.db.transaction(() => {
        for (const c of commits.values()) this.stmt.commit.run(c.group, c.topic, c.partition, c.next);
        for (const p of batch) {
          p.records.forEach((r, i) => {
            const tp = `${p.topic}/${p.partitions[i]}`;
            const off = assigned.get(tp) ?? this.nextOffset.get(tp) ?? 0n;
            this.stmt.insertRecord.run(p.topic, p.partitions[i], off, r.key, r.value);
            assigned.set(tp, off + 1n);
            touched.add(tp);
          });
        }
      })();
    } catch (e) {
      this.writeFailed(e);
      for (const p of batch) p.reject(e);
      // The positions stay in memory; write them with the next transaction (unless a newer one came).
      for (const [k, c] of commits) if (!this.pendingCommits.has(k)) this.pendingCommits.set(k, c);
      if (commits.size > 0 && !this.commitRetry && !this.closed) {
        this.commitRetry = setTimeout(() => {
          this.commitRetry = undefined;
          this.scheduleFlush();
        }, this.commitRetryMs);
        this.commitRetry.unref();
        this.commitRetryMs = Math.min(this.commitRetryMs * 2, COMMIT_RETRY_MAX_MS);
      }
      return;
    }
    this.commitRetryMs = COMMIT_RETRY_FIRST_MS;
    this.writes.succeeded();
    for (const [tp, off] of assigned) this.nextOffset.set(tp, off);
    for (const p of batch) p.resolve();
    for (const tp of touched) {
      const waiting = this.wakers.get(tp);
      if (waiting) for (const wake of [...waiting]) wake();
    }
  }

  private writeFailed(err: unknown): void {
    this.writes.failed(err);
  }

  /** Transactions (publishes, commits, trims) that failed since the file was opened. */
  get failedWrites(): number {
    return this.writes.total;
  }

  /**
   * A health check (`/healthz`): throws while the file takes no writes (a
   * full disk drops every notification published meanwhile). A read such as
   * `SELECT 1` still passes then; this fails from a failed write until one
   * goes through, or for the window after it when nothing is written.
   */
  readonly writeCheck = async (): Promise<void> => this.writes.check("queue writes");

  async subscribe(
    group: string,
    topic: string,
    handler: BatchHandler,
    options: SubscribeOptions = {},
  ): Promise<Subscription> {
    // Its loops would retry reading the closed file every 2 s for ever, keeping the process alive.
    if (this.closed) throw new Error("queue is closed");
    const partitions = this.partitionsOf.get(topic);
    if (partitions === undefined) throw new Error(`unknown topic ${topic}: call ensureTopics first`);
    const member = new GroupConsumer(this, group, topic, partitions, handler, options.maxBatch ?? 256);
    const key = `${group}/${topic}`;
    // One process holds every partition of a group; a second member of the
    // same group waits as a standby and takes over when the first stops.
    const active = this.groups.get(key);
    if (!active) {
      this.groups.set(key, member);
      member.start();
    } else {
      active.standbys.push(member);
    }
    return {
      stop: async () => {
        await member.stop();
        if (this.groups.get(key) === member) {
          const next = member.standbys.shift();
          if (next) {
            next.standbys = member.standbys;
            this.groups.set(key, next);
            next.start();
          } else {
            this.groups.delete(key);
          }
        } else {
          const a = this.groups.get(key);
          if (a) a.standbys = a.standbys.filter((s) => s !== member);
        }
      },
    };
  }

  async consumerLag(group: string, topic: string): Promise<number> {
    const partitions = this.partitionsOf.get(topic) ?? 0;
    let lag = 0n;
    for (let p = 0; p < partitions; p++) {
      const end = this.nextOffset.get(`${topic}/${p}`) ?? 0n;
      const committed =
        this.positions.get(`${group}\0${topic}/${p}`) ??
        (this.stmt.groupOffset.get(group, topic, p) as { next_off: bigint } | undefined)?.next_off ??
        0n;
      if (end > committed) lag += end - committed;
    }
    return Number(lag);
  }

  /** @internal used by GroupConsumer */
  read(group: string, topic: string, partition: number, max: number): { records: QueueRecord[]; from: bigint } {
    const k = `${group}\0${topic}/${partition}`;
    let from = this.positions.get(k);
    if (from === undefined) {
      const committed = this.stmt.groupOffset.get(group, topic, partition) as { next_off: bigint } | undefined;
      if (committed) {
        from = committed.next_off;
        this.positions.set(k, from);
      } else {
        // A group's first read writes where it starts, as a commit would: the
        // trim keeps every record at or after every group's position, and a
        // group with no row yet (its first batch slow or failing) would
        // otherwise lose the records other groups had consumed.
        from = (this.stmt.firstOffset.get(topic, partition) as { min: bigint | null }).min ?? 0n;
        this.commit(group, topic, partition, from);
      }
    }
    const rows = this.stmt.readRecords.all(topic, partition, from, max) as { off: bigint; key: string; value: Buffer }[];
    return {
      from,
      // A view of the row's buffer (no copy), typed as the port says.
      records: rows.map((r) => ({ topic, partition, offset: r.off, key: r.key, value: new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.byteLength) })),
    };
  }

  /**
   * @internal Moves the group's position now; the file follows with the
   * turn's transaction. A crash in between replays the last batch, which the
   * at-least-once contract allows (every consumer here is idempotent).
   */
  commit(group: string, topic: string, partition: number, nextOffset: bigint): void {
    const k = `${group}\0${topic}/${partition}`;
    this.positions.set(k, nextOffset);
    this.pendingCommits.set(k, { group, topic, partition, next: nextOffset });
    this.scheduleFlush();
  }

  /** @internal resolves when the partition gets a record, or at once if closed. */
  waitFor(topic: string, partition: number, signal: { cancel?: () => void }): Promise<void> {
    const tp = `${topic}/${partition}`;
    return new Promise((resolve) => {
      let set = this.wakers.get(tp);
      if (!set) this.wakers.set(tp, (set = new Set()));
      const wake = () => {
        set!.delete(wake);
        resolve();
      };
      set.add(wake);
      signal.cancel = wake;
    });
  }

  /** @internal */
  get logger(): Logger | undefined {
    return this.options.logger;
  }

  /**
   * @internal Deletes the records every group has consumed: below the lowest
   * position of any group, whether in the file or (not yet flushed) in memory.
   */
  trim(): void {
    if (this.closed) return;
    const lowest = new Map<string, { topic: string; part: bigint; min: bigint }>();
    const lower = (topic: string, part: bigint, at: bigint) => {
      const tp = `${topic}/${part}`;
      const seen = lowest.get(tp);
      if (!seen || at < seen.min) lowest.set(tp, { topic, part, min: at });
    };
    for (const row of this.stmt.minCommitted.all() as { topic: string; part: bigint; min: bigint }[]) lower(row.topic, row.part, row.min);
    for (const [k, at] of this.positions) {
      const tp = k.slice(k.indexOf("\0") + 1);
      const slash = tp.lastIndexOf("/");
      lower(tp.slice(0, slash), BigInt(tp.slice(slash + 1)), at);
    }
    let deleted = 0;
    for (const { topic, part, min } of lowest.values()) deleted += this.stmt.trim.run(topic, part, min).changes;
    // A delete of nothing writes nothing, and proves nothing about the disk.
    if (deleted > 0) this.writes.succeeded();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.trimTimer);
    clearTimeout(this.commitRetry);
    const members = [...this.groups.values()];
    this.groups.clear();
    await Promise.all(members.map((m) => m.stop()));
    this.flush(); // the offsets the stopped consumers committed last
    this.db.close();
  }
}

/** The queue's file, opened and given its tables; one that cannot be is named (UnusableDatabaseError). */
function openQueueFile(options: SqliteQueueOptions): Database.Database {
  let db: Database.Database | undefined;
  try {
    createPrivately(options.path);
    db = new Database(options.path);
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma("busy_timeout = 5000");
    db.defaultSafeIntegers(true);
    db.exec(`
      CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
        key TEXT NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS group_offsets (
        grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_off INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
    `);
    return db;
  } catch (e) {
    db?.close();
    throw new UnusableDatabaseError(options.path, e);
  }
}

/** One group's consumption of a topic: a loop per partition. */
class GroupConsumer {
  standbys: GroupConsumer[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly cancels: { cancel?: () => void }[] = [];

  constructor(
    private readonly queue: SqliteQueue,
    private readonly group: string,
    private readonly topic: string,
    private readonly partitions: number,
    private readonly handler: BatchHandler,
    private readonly maxBatch: number,
  ) {}

  start(): void {
    this.running = true;
    for (let p = 0; p < this.partitions; p++) {
      const signal: { cancel?: () => void } = {};
      this.cancels.push(signal);
      this.loops.push(this.loop(p, signal));
    }
  }

  private async loop(partition: number, signal: { cancel?: () => void }): Promise<void> {
    let backoffMs = 10;
    while (this.running) {
      try {
        // Inside the try: a read that fails (an I/O error, a damaged page) is retried like a failed
        // batch, where it was a rejection nobody caught, which ended chatd.
        const { records } = this.queue.read(this.group, this.topic, partition, this.maxBatch);
        if (records.length === 0) {
          await this.queue.waitFor(this.topic, partition, signal);
          continue;
        }
        await this.handler(records);
        this.queue.commit(this.group, this.topic, partition, records[records.length - 1]!.offset + 1n);
        backoffMs = 10;
      } catch (err) {
        // Never skip a record: retry the same batch with backoff until the
        // handler succeeds (or the consumer stops, leaving it uncommitted).
        this.queue.logger?.warn({ err, group: this.group, topic: this.topic, partition }, "batch failed; retrying");
        // Stopping: no retry comes, so no backoff to wait out (up to 2 s of the process's stop).
        if (!this.running) break;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, backoffMs);
          signal.cancel = () => {
            clearTimeout(t);
            resolve();
          };
        });
        backoffMs = Math.min(backoffMs * 2, 2000);
      }
    }
  }

  /** Set by the first stop: a later one (a second stop, the queue's close) waits for the same batch in hand. */
  private stopped: Promise<void> | undefined;

  stop(): Promise<void> {
    if (!this.running) return this.stopped ?? Promise.resolve();
    this.running = false;
    for (const s of this.cancels) s.cancel?.();
    this.stopped = Promise.all(this.loops).then(() => undefined);
    return this.stopped;
  }
}
