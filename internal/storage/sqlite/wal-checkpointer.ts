import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

/** Pages the writing connection lets the WAL grow to before it checkpoints by itself. */
export const WRITER_AUTOCHECKPOINT_PAGES = 10_000;

/**
 * Why a checkpoint did not happen: `error`, one the worker tried failed (each
 * try is counted); `worker_exit`, the worker thread ended on its own or could
 * not start (its connection would not open), so none is tried until it is
 * started again.
 */
export const CHECKPOINT_FAILURES = ["error", "worker_exit"] as const;
export type CheckpointFailure = (typeof CHECKPOINT_FAILURES)[number];

export interface WalCheckpointerOptions {
  /** Between two checkpoints. Default 10 ms. */
  intervalMs?: number;
  /** Told once per failure streak (a checkpoint, or a start, failing until one goes through). */
  logger?: Logger;
  /** Each failure, by cause (metrics, tests): see walCheckpointMetrics. */
  onFailure?: (cause: CheckpointFailure) => void;
  /** The first wait before a dead worker is started again, doubled at each death in a row up to restartMaxMs. Default 100 ms. */
  restartBaseMs?: number;
  /** Default 30 s. */
  restartMaxMs?: number;
}

/** A checkpoint that keeps failing is tried at most this far apart, not every intervalMs. */
const FAILING_INTERVAL_MAX_MS = 1_000;

// CommonJS, run with `eval`: a TypeScript worker file would need the loader
// that runs this process (tsx in development, none once built).
// It tells its parent of every failure, and of the first checkpoint that goes
// through after its start or after failures: what ends a failure streak.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
let failures = 0;
let through = false;
let timer;
const tick = () => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    if (!through || failures > 0) parentPort.postMessage({ ok: true });
    through = true;
    failures = 0;
  } catch (err) {
    failures++;
    parentPort.postMessage({ failed: { message: String(err && err.message), code: err && err.code } });
  }
  const backoff = Math.min(workerData.intervalMs * 2 ** Math.min(failures, 20), workerData.failingMaxMs);
  timer = setTimeout(tick, failures === 0 ? workerData.intervalMs : Math.max(workerData.intervalMs, backoff));
};
timer = setTimeout(tick, workerData.intervalMs);
parentPort.once("message", () => {
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
`;

type WorkerMessage = { ok: true } | { failed: { message: string; code?: string } };

/**
 * Copies the write-ahead log back into the database file from a worker
 * thread, on its own connection, so the event loop that writes never does it.
 * SQLite's default is a checkpoint inside the COMMIT that takes the WAL past
 * 1,000 pages: on a group message (a hundred inbox rows on a hundred pages) it
 * was as much CPU as the inserts themselves, every time, on the main thread.
 *
 * PASSIVE checkpoints never wait for, or block, the writer. The writing
 * connection keeps a checkpoint of its own at WRITER_AUTOCHECKPOINT_PAGES as
 * a backstop: by then the worker has copied nearly every page, so it is
 * cheap, and it is what lets the WAL start over from its beginning while the
 * writer is never idle. Durability is unchanged: a commit is in the WAL
 * whether or not it has been copied back.
 *
 * A worker that dies is started again with backoff: with the backstop alone,
 * every 10,000 pages the writer copied them all back itself, on the main
 * thread, in the middle of a COMMIT. Checkpoints that fail, and deaths, are
 * counted (onFailure) and logged once per streak: both used to go unseen.
 */
export class WalCheckpointer {
  private worker?: Worker;
  private exit: Promise<void> = Promise.resolve();
  private stopping = false;
  private restartTimer?: NodeJS.Timeout;
  private readonly intervalMs: number;
  private readonly restartBaseMs: number;
  private readonly restartMaxMs: number;
  private restartDelayMs: number;
  /** Failures since the last checkpoint that went through: 0 outside a failure streak. */
  private failures = 0;

  constructor(
    private readonly path: string,
    private readonly options: WalCheckpointerOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 10;
    this.restartBaseMs = options.restartBaseMs ?? 100;
    this.restartMaxMs = options.restartMaxMs ?? 30_000;
    this.restartDelayMs = this.restartBaseMs;
    this.spawn();
  }

  private spawn(): void {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver, path: this.path, intervalMs: this.intervalMs, failingMaxMs: FAILING_INTERVAL_MAX_MS },
    });
    let error: unknown;
    // An uncaught error ends the worker: told with its exit, below.
    worker.on("error", (err) => (error = err));
    worker.on("message", (m: WorkerMessage) => this.told(m));
    this.exit = new Promise((resolve) =>
      worker.once("exit", (code) => {
        this.worker = undefined;
        resolve();
        if (!this.stopping) this.died(code, error);
      }),
    );
    // Never keep the process alive for it: the writer's backstop covers the time it is away.
    worker.unref();
    this.worker = worker;
  }

  private told(m: WorkerMessage): void {
    if ("failed" in m) {
      this.failed("error", { err: m.failed }, "WAL checkpoints failing; the writer copies the WAL back itself at each 10,000 pages meanwhile");
      return;
    }
    this.restartDelayMs = this.restartBaseMs;
    if (this.failures > 0) this.options.logger?.info({ failures: this.failures, path: this.path }, "WAL checkpoints going through again");
    this.failures = 0;
  }

  private died(code: number, err: unknown): void {
    const delayMs = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.restartMaxMs);
    this.failed("worker_exit", { err, code, restartInMs: delayMs }, "WAL checkpointer worker ended; started again with backoff, the writer copies the WAL back itself at each 10,000 pages meanwhile");
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopping) this.spawn();
    }, delayMs);
    this.restartTimer.unref();
  }

  /** Counts every failure; logs only the first of a streak, which may go on at every try. */
  private failed(cause: CheckpointFailure, fields: Record<string, unknown>, msg: string): void {
    this.options.onFailure?.(cause);
    if (this.failures++ > 0) return;
    const log = this.options.logger;
    if (cause === "worker_exit") log?.error({ ...fields, cause, path: this.path }, msg);
    else log?.warn({ ...fields, cause, path: this.path }, msg);
  }

  /**
   * Asks the worker to close its connection and exit, and starts no other;
   * does not wait. From here the worker holds the process open until it has
   * exited, so a caller awaiting exited() with nothing else pending is not cut
   * short (Node would end the process with exit code 13, the WAL file left behind).
   */
  stop(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.worker?.ref();
    this.worker?.postMessage("stop");
  }

  /** Resolves when the worker running now (if any) has exited (tests, close). */
  exited(): Promise<void> {
    return this.exit;
  }
}

/**
 * `chat_sqlite_checkpoints_failed_total{cause}`, counted from 0, and the
 * onFailure hook that counts into it.
 */
export function walCheckpointMetrics(registry: Registry): Required<Pick<WalCheckpointerOptions, "onFailure">> {
  const failed = new Counter({
    name: "chat_sqlite_checkpoints_failed_total",
    help: "WAL checkpoints of chat.db that failed (error) or could not run, the checkpointer's worker thread having ended (worker_exit), by cause",
    labelNames: ["cause"],
    registers: [registry],
  });
  for (const cause of CHECKPOINT_FAILURES) failed.inc({ cause }, 0);
  return { onFailure: (cause) => failed.inc({ cause }) };
}
